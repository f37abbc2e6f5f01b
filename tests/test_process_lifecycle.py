"""Everything a launcher starts dies with it: SIGKILL of the launcher ends its servers; SIGTERM of a run exits 130."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAUNCHER = textwrap.dedent("""
    import sys, threading, time
    from services.common.process import start_server

    # Started from a worker thread that then ends, as the run's launch stage does (a thread-bound
    # PR_SET_PDEATHSIG would kill the server right here).
    handles = []
    worker = threading.Thread(target=lambda: handles.append(start_server("services.probing", ["--workers", "1"])))
    worker.start(); worker.join()
    print(handles[0].process.pid, flush=True)
    time.sleep(600)
""")


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pid: int, deadline_s: float) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(0.2)
    return not alive(pid)


def test_a_server_dies_with_its_launcher_even_on_sigkill(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdout=subprocess.PIPE, text=True, env=env,
                                cwd=tmp_path)
    server_pid = None
    try:
        server_pid = int(launcher.stdout.readline())
        time.sleep(1.5)
        assert alive(server_pid), "the server died while its launcher was alive"
        launcher.kill()
        launcher.wait()
        assert wait_gone(server_pid, 20), "the server outlived its SIGKILLed launcher"
    finally:
        launcher.kill()
        if server_pid and alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """Every process below pid (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, parent in parents.items() if parent in frontier]
        found += kids
        frontier = kids
    return found


def test_sigterm_of_a_run_exits_130_after_stopping_its_servers(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled",
           "RAY_TMPDIR": tempfile.mkdtemp(prefix="ray", dir="/tmp")}
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "ecglens_cli.main", "run", "--dataset", "synthetic:eu@200",
                             "--model", "handcrafted", "--quiet", "--out", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)
    servers: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while not list((out / "logs").glob("*.log")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        time.sleep(2.0)
        servers = [p for p in descendants(proc.pid)
                   if b"services.embedding" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert servers, "no model server found under the run"
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=120)[0].decode()
        assert proc.returncode == 130, output[-2000:]
        assert "interrupted" in output
        assert all(wait_gone(p, 10) for p in servers), "a model server outlived the run"
    finally:
        proc.kill()
        for pid in servers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", env["RAY_TMPDIR"]], check=False)
