"""Several network hosts on one machine for tests: `ip netns` namespaces joined by veth pairs to a bridge.

Each host has its own loopback and one address on a private /24, so a process on one host cannot
reach another host's 127.0.0.1; the filesystem and the process table stay shared. The bridge lives in
a namespace of its own and the veth pairs are created inside namespaces, so the root namespace's
networking is never touched. Names carry the test process's pid, so several test sessions on one
machine never meet. Teardown kills every process on every host (whatever started it, daemons
included) and deletes the namespaces; it runs on close, on failure, and at interpreter exit.

    with Hosts(3) as hosts:              # skips the test when not root / no `ip` / no netns
        proc = hosts.exec(1, ["python", "-m", "http.server", "--bind", hosts.ips[1]])
"""
from __future__ import annotations

import atexit
import itertools
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

PREFIX = "ecgl"
_instances = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def netns_pids(name: str) -> list[int]:
    """Pids of every process whose network namespace is `name` (empty when it does not exist)."""
    found = _ip("netns", "pids", name, check=False)
    return [int(p) for p in found.stdout.split()] if found.returncode == 0 else []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def netns_commands(name: str) -> list[str]:
    """Command lines of the processes in namespace `name`."""
    return [line for line in map(_cmdline, netns_pids(name)) if line]


def kill_namespace(name: str, timeout_s: float = 10.0) -> list[str]:
    """SIGKILL every process in namespace `name` until none is left; returns their command lines."""
    killed: list[str] = []
    deadline = time.monotonic() + timeout_s
    while pids := netns_pids(name):
        for pid in pids:
            line = _cmdline(pid)
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(line)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes survive in netns {name}: {pids}")
        time.sleep(0.05)
    return killed


def sweep_stale() -> None:
    """Delete namespaces left by test processes that died without teardown (SIGKILL, OOM)."""
    listing = _ip("netns", "list", check=False).stdout.split("\n")
    for line in listing:
        name = line.split(" ")[0]
        parts = name.split("-")
        if len(parts) >= 3 and parts[0] == PREFIX and parts[1].isdigit() and not _pid_alive(int(parts[1])):
            kill_namespace(name)
            _ip("netns", "del", name, check=False)


class Hosts:
    """`count` hosts on one bridge: hosts.names[i] (netns), hosts.ips[i] (10.a.b.i+1/24)."""

    def __init__(self, count: int) -> None:
        pid, serial = os.getpid(), next(_instances)
        key = (pid * 4 + serial) & 0xFFFF  # subnet per process and instance (hosts of separate bridges never meet)
        self.tag = f"{PREFIX}-{pid}-{serial}"
        self.bridge = f"{self.tag}-br"
        self.names = [f"{self.tag}-{i}" for i in range(count)]
        self.ips = [f"10.{key >> 8}.{key & 0xFF}.{i + 1}" for i in range(count)]
        self.started: list[subprocess.Popen] = []
        self._created: list[str] = []
        self._closed = False

    def create(self) -> "Hosts":
        """Make the namespaces; raises RuntimeError with the reason when this machine cannot."""
        if os.geteuid() != 0:
            raise RuntimeError("network namespaces need root")
        if shutil.which("ip") is None:
            raise RuntimeError("the `ip` command (iproute2) is missing")
        atexit.register(self.close)
        sweep_stale()
        try:
            self._add(self.bridge)
            _ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.bridge, "link", "set", "br0", "up")
            for i, (name, ip) in enumerate(zip(self.names, self.ips)):
                self._add(name)
                # Both ends are made inside namespaces: no interface ever appears in the root namespace.
                _ip("-n", self.bridge, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", name)
                _ip("-n", self.bridge, "link", "set", f"p{i}", "master", "br0")
                _ip("-n", self.bridge, "link", "set", f"p{i}", "up")
                _ip("-n", name, "addr", "add", f"{ip}/24", "dev", "eth0")
                _ip("-n", name, "link", "set", "eth0", "up")
                _ip("-n", name, "link", "set", "lo", "up")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
            self.close()
            detail = getattr(err, "stderr", "") or ""
            raise RuntimeError(f"could not create network namespaces: {err} {detail}".strip()) from None
        return self

    def _add(self, name: str) -> None:
        _ip("netns", "add", name)
        self._created.append(name)

    def __enter__(self) -> "Hosts":
        import pytest

        try:
            return self.create()
        except RuntimeError as err:
            pytest.skip(str(err))

    def __exit__(self, *exc) -> None:
        self.close()

    def exec(self, host: int, argv: list[str], env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
        """Start argv on host `host` (a Popen; its own session, so a stray signal never reaches pytest)."""
        popen.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(["ip", "netns", "exec", self.names[host], *argv], env=env,
                                start_new_session=True, **popen)
        self.started.append(proc)
        return proc

    def run(self, host: int, argv: list[str], env: dict[str, str] | None = None,
            timeout: float = 300.0) -> subprocess.CompletedProcess:
        """Run argv on host `host` to completion; output captured as text (raises on time-out)."""
        proc = self.exec(host, argv, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(host)
            out, _ = proc.communicate()
            raise AssertionError(f"{argv[:4]} on host {host} ran over {timeout:.0f}s:\n{out[-4000:]}") from None
        return subprocess.CompletedProcess(argv, proc.returncode, out, "")

    def kill(self, host: int) -> list[str]:
        """SIGKILL every process on host `host` (a crash of the whole machine); their command lines."""
        return kill_namespace(self.names[host])

    def close(self) -> None:
        """Kill every process on every host, delete every namespace; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        try:
            for name in self._created:
                kill_namespace(name)
        finally:
            for proc in self.started:
                if proc.poll() is None:  # a child that left its namespace? never expected; still reaped
                    proc.kill()
                proc.wait()
            for name in reversed(self._created):
                _ip("netns", "del", name, check=False)
            atexit.unregister(self.close)
