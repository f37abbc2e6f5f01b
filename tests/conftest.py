"""Session-wide test settings: caches inside the project, Ray and HOME kept in temp dirs."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# UMAP's numba compilation costs ~30 s; persist it beside the venv so only the first run pays.
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".venv" / "numba-cache"))
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
# Ray gives its GCS 30 s to publish its port; on a loaded 2-core machine that once ran out in ray.init
# (test_attribution, session 5). Waiting longer only matters when it would otherwise fail.
os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")

import shutil
import socket

import pytest
import yaml


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray per test module that asks for it; yields the ray module (short temp path: Ray's
    Unix sockets have a length limit)."""
    import tempfile

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def zoo_dir(tmp_path_factory) -> Path:
    """Zoo packages are built once per session into a temp dir (never into ~/.cache)."""
    path = tmp_path_factory.mktemp("zoo")
    os.environ["ECGLENS_ZOO"] = str(path)
    return path


@pytest.fixture(scope="session")
def random_resnet_pkg(zoo_dir) -> Path:
    """The random-resnet package, built deterministically."""
    from services.embedding.zoo.registry import build_package

    return build_package("random-resnet", zoo_dir)


@pytest.fixture(scope="session")
def handcrafted_pkg(zoo_dir) -> Path:
    """The handcrafted package."""
    from services.embedding.zoo.registry import build_package

    return build_package("handcrafted", zoo_dir)


def package_variant(src: Path, dest: Path, **serving) -> Path:
    """Copy a package and override its serving settings (batch size, queue delay, queue limit)."""
    shutil.copytree(src, dest)
    card = yaml.safe_load((dest / "card.yaml").read_text())
    card.setdefault("serving", {}).update(serving)
    (dest / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return dest


def free_port() -> int:
    """An unused TCP port on loopback (for servers that take a fixed port, e.g. metrics)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

# Ray's token auth would write ~/.ray/auth_token; test clusters are loopback-only and short-lived.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
