"""Start ECGLens servers as child processes and stop them cleanly (tests, orchestrator, demo).

A child never outlives its launcher: start_server tells it the launcher's pid (ECGLENS_PARENT_PID) and
the child's runtime watches for being orphaned (watch_parent), drains and exits, even when the
launcher was killed with SIGKILL and could clean nothing up. A getppid() watchdog rather than
PR_SET_PDEATHSIG: the latter fires when the launching *thread* ends, and launchers start servers from
thread pools. Children run in their own session, so a terminal's Ctrl-C reaches only the launcher,
which stops them in order.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


log = logging.getLogger(__name__)
PARENT_ENV = "ECGLENS_PARENT_PID"
ORPHAN_EXIT = 70  # exit status of a server that had to force its way out after its launcher died


class ServerStartError(RuntimeError):
    """A child server exited or never became SERVING; the message carries its log tail."""


@dataclass
class ServerProcess:
    """A running child server: its address, process handle and log file."""

    name: str
    address: str
    process: subprocess.Popen
    log_path: Path
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return int(self.address.rsplit(":", 1)[1])

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of the child's combined stdout/stderr."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 15.0) -> int | None:
        """SIGTERM (the server drains), then SIGKILL after grace_s; return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL at once (simulates a crash)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_serving(address: str, timeout_s: float = 60.0, service: str = "",
                 credentials: grpc.ChannelCredentials | None = None) -> None:
    """Block until grpc.health.v1 reports SERVING for `service` at address; raise TimeoutError."""
    deadline = time.monotonic() + timeout_s
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{address} not SERVING after {timeout_s:.0f}s")
            time.sleep(0.1)


def start_server(module: str, args: list[str], name: str | None = None, host: str = "127.0.0.1",
                 timeout_s: float = 120.0, env: dict[str, str] | None = None,
                 log_dir: Path | None = None, credentials: grpc.ChannelCredentials | None = None,
                 on_bound: Callable[[str], None] | None = None) -> ServerProcess:
    """Run `python -m module --port 0 --port-file F *args`, wait until SERVING, return the handle.

    on_bound(address) is called as soon as the server has published its port, while it may still be loading
    (a server with a warm-up publishes its port first; see services/common/runtime.serve).
    """
    tmp = tempfile.TemporaryDirectory(prefix="ecglens-srv-")
    port_file = Path(tmp.name) / "port"
    log_path = (Path(log_dir) if log_dir else Path(tmp.name)) / f"{name or module.rsplit('.', 1)[-1]}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {}), PARENT_ENV: str(os.getpid())}
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", module, "--host", host, "--port", "0", "--port-file", str(port_file), *args],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env,
            start_new_session=True)
    handle = ServerProcess(name or module, "", process, log_path, tmp)
    deadline = time.monotonic() + timeout_s
    try:
        while not port_file.exists():
            if process.poll() is not None:
                raise ServerStartError(f"{handle.name} exited with {process.returncode}:\n{handle.log_tail()}")
            if time.monotonic() > deadline:
                raise ServerStartError(f"{handle.name} did not bind within {timeout_s:.0f}s:\n{handle.log_tail()}")
            time.sleep(0.05)
        handle.address = f"{host}:{int(port_file.read_text())}"
        if on_bound is not None:
            on_bound(handle.address)
        wait_serving(handle.address, max(1.0, deadline - time.monotonic()), credentials=credentials)
    except (ServerStartError, TimeoutError) as err:
        handle.stop()
        raise ServerStartError(f"{err}\n{handle.log_tail()}") from None
    except BaseException:  # on_bound failed, or the caller was interrupted: leave no server behind
        handle.stop()
        raise
    return handle


def write_port_file(path: str | None, port: int) -> None:
    """Atomically publish the bound port once the server is SERVING (read by start_server)."""
    if not path:
        return
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(str(port))
    os.replace(tmp, path)


def watch_parent(on_orphaned: Callable[[], None], hard_exit_after_s: float = 30.0,
                 interval_s: float = 0.5) -> threading.Thread | None:
    """When started by start_server, call on_orphaned once the launcher is gone, and exit hard if still alive
    hard_exit_after_s later; None when this process was not started that way."""
    text = os.environ.pop(PARENT_ENV, None)  # popped: this process's own children are not watched for it
    if not text or not text.isdigit():
        return None
    parent = int(text)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        log.warning("launcher (pid %d) is gone: shutting down", parent)
        on_orphaned()
        time.sleep(hard_exit_after_s)
        log.error("still running %.0fs after the launcher died: exiting", hard_exit_after_s)
        os._exit(ORPHAN_EXIT)

    thread = threading.Thread(target=watch, name="parent-watchdog", daemon=True)
    thread.start()
    return thread
