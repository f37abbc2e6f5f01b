"""Offline checks of k8s/: rendering, schemas, CRD excerpts, yamllint, the semantics that matter.

docker/ is checked by tests/test_docker.py."""
from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

import crd_check
import k8s_render

ROOT = Path(__file__).resolve().parents[1]
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

