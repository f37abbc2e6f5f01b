"""The ONNX server image carries no torch: `ecglens serve` must serve ONNX and python packages without it.

Each server runs in a subprocess whose every Python process (model loaders included) has torch made
unimportable by a sitecustomize meta-path finder, as in docker/Dockerfile's default image."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.common.healthcheck import check
from services.embedding.conformance import check_endpoint

ROOT = Path(__file__).resolve().parents[1]
# onnxscript imports torch and only exports models; neither is in docker/requirements/server-onnx.txt.
BLOCKED = ("torch", "onnxscript")
SITECUSTOMIZE = f"""
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: the ONNX image has none)", name=name)
        return None
sys.meta_path.insert(0, _NoTorch())
"""


@pytest.fixture
def no_torch_env(tmp_path: Path) -> dict[str, str]:
    """Environment whose Python processes cannot import torch."""
    block = tmp_path / "no-torch"
    block.mkdir()
    (block / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(block), str(ROOT)]), "HOME": str(tmp_path)}


def test_the_block_holds(no_torch_env: dict[str, str]) -> None:
    # Without this the tests below would prove nothing: torch is installed in the test venv.
    result = subprocess.run([sys.executable, "-c", "import torch"], env=no_torch_env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1 and "blocked" in result.stderr
    pretrain = subprocess.run([sys.executable, "-m", "ecglens_cli.main", "pretrain", "--objective", "x"],
                              env=no_torch_env, capture_output=True, text=True, timeout=60)
    assert pretrain.returncode == 2 and "needs PyTorch" in pretrain.stderr, pretrain.stderr


@pytest.mark.parametrize("package", ["random_resnet_pkg", "handcrafted_pkg"])
def test_serves_the_contract_without_torch(package: str, request, no_torch_env: dict[str, str],
                                           tmp_path: Path) -> None:
    pkg: Path = request.getfixturevalue(package)  # built with torch, in this process
    port_file, log = tmp_path / "port", tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "ecglens_cli.main", "serve", "--model", str(pkg),
                                   "--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file)],
                                  env=no_torch_env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert server.poll() is None, f"server exited {server.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        address = f"127.0.0.1:{port_file.read_text().strip()}"
        while check(address, "ecglens.v1.EmbeddingService") != "SERVING":  # the port is bound before load
            assert server.poll() is None, f"server exited {server.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        report = check_endpoint(address, timeout=60)
        assert report.ok, report.render() + "\n" + log.read_text()
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0, log.read_text()
        assert "blocked" not in log.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
