"""A run on a Ray cluster of separate network hosts (tests/netns.py): driver and a 0-CPU head on host A,
Ray workers on B (and D), a remote embedding server on C. Every process of every host is killed and
every namespace deleted at the end, also on failure. Select with `-m multihost`."""
from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from netns import Hosts, netns_commands

pytestmark = pytest.mark.multihost

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
A, B, C, D = 0, 1, 2, 3
GCS_PORT = 6379  # each host has its own ports: a fixed one cannot collide with another session's


@dataclass
class Cluster:
    """The hosts, the environment every process on them gets, and what runs where."""

    hosts: Hosts
    env: dict[str, str]
    work: Path
    endpoint: str  # host:port of the embedding server on C
    temp_dirs: dict[int, Path] = field(default_factory=dict)  # Ray node temp dir per host

    @property
    def address(self) -> str:
        """The Ray head's GCS address on host A."""
        return f"{self.hosts.ips[A]}:{GCS_PORT}"

    def start_node(self, host: int, *args: str) -> None:
        """`ray start` on a host (non-blocking: it returns once the node runs); its own short temp dir."""
        temp = self.work / f"r{host}"
        self.temp_dirs[host] = temp
        done = self.hosts.run(host, [RAY, "start", f"--node-ip-address={self.hosts.ips[host]}", f"--temp-dir={temp}",
                                     "--disable-usage-stats", *args], self.env, timeout=120)
        assert done.returncode == 0, done.stdout[-3000:]

    def python(self, host: int, code: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
        """Run a Python snippet on a host; its stdout (fails the test on a non-zero exit)."""
        done = self.hosts.run(host, [sys.executable, "-c", code], env or self.env, timeout=timeout)
        assert done.returncode == 0, done.stdout[-3000:]
        return done.stdout

    def wait_nodes(self, alive: int) -> None:
        """Block until the cluster has `alive` live nodes."""
        self.python(A, f"""
import time, ray
ray.init(address="{self.address}", log_to_driver=False)
deadline = time.monotonic() + 60
while sum(n["Alive"] for n in ray.nodes()) != {alive}:
    assert time.monotonic() < deadline, ray.nodes()
    time.sleep(0.2)
""")

    def run(self, experiment: dict, out: Path, cluster: bool = True, host: int = A) -> subprocess.Popen:
        """Start `ecglens run` on a host (driver on the cluster, or a single-node run with its own local Ray)."""
        out.mkdir(parents=True)
        spec = out.parent / f"{out.name}.yaml"
        spec.write_text(yaml.safe_dump(experiment, sort_keys=False))
        argv = [sys.executable, "-m", "ecglens_cli.main", "run", str(spec), "--out", str(out), "--quiet"]
        env = self.env if cluster else {**self.env, "RAY_AUTH_MODE": "disabled"}
        if cluster:
            argv += ["--ray-address", self.address]
        log = open(out.parent / f"{out.name}.log", "wb")
        proc = self.hosts.exec(host, argv, env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return proc


def finish(proc: subprocess.Popen, out: Path, timeout: float = 500) -> tuple[int, str]:
    """Wait for a run; its exit status and the tail of its output."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc.returncode, (out.parent / f"{out.name}.log").read_text(errors="replace")[-4000:]


def ray_processes(path: Path) -> list[str]:
    """Command lines of live processes that name path (Ray's daemons carry their node's temp dir)."""
    found = subprocess.run(["pgrep", "-af", str(path)], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def cluster(random_resnet_pkg, handcrafted_pkg):
    """Head (0 CPUs) on A, a 2-CPU worker on B, the random-resnet server on C; D left free for a test."""
    # Short path under /tmp: Ray's Unix sockets live in the node temp dirs and have a length limit.
    work = Path(tempfile.mkdtemp(prefix="mh", dir="/tmp"))
    token = work / "token"
    token.write_text(uuid.uuid4().hex)
    (work / "home").mkdir()
    # The token comes from a file of our own and HOME is private: nothing is written to the real ~/.ray.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "HOME": str(work / "home"),
           "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    try:
        with Hosts(4) as hosts:
            port_file = work / "c.port"
            with open(work / "c.log", "wb") as log:
                server = hosts.exec(C, [sys.executable, "-m", "services.embedding", "--host", hosts.ips[C],
                                        "--port", "0", "--port-file", str(port_file), "--model", str(random_resnet_pkg)],
                                    env, stdout=log, stderr=subprocess.STDOUT)
            cluster = Cluster(hosts, env, work, "")
            cluster.start_node(A, "--head", f"--port={GCS_PORT}", "--num-cpus=0", "--include-dashboard=false")
            cluster.start_node(B, f"--address={cluster.address}", "--num-cpus=2")
            deadline = time.monotonic() + 120
            while not port_file.exists():
                assert server.poll() is None and time.monotonic() < deadline, (work / "c.log").read_text()[-3000:]
                time.sleep(0.1)
            cluster.endpoint = f"{hosts.ips[C]}:{int(port_file.read_text())}"
            cluster.wait_nodes(2)
            yield cluster
    finally:
        leftovers = ray_processes(work)
        shutil.rmtree(work, ignore_errors=True)
        assert not leftovers, f"processes outlived the cluster: {leftovers}"


def experiment(endpoint: str) -> dict:
    """Two models (one remote on host C, one the run launches), 2 fractions x 2 seeds, every analysis (cheap)."""
    return {
        "name": "multihost",
        "datasets": [{"kind": "synthetic", "sites": ["eu", "as"], "records_per_site": 40, "seed": 1}],
        "models": [{"name": "remote-resnet", "endpoint": endpoint}, "handcrafted"],
        "tasks": ["condition"],
        "scarcity": {"train_fractions": [0.5, 1.0]},
        "seeds": [0, 1],
        "probe": {"cv_folds": 3, "bootstrap": 20},
        "analyses": {"attribution": {"ecgs_per_class": 1, "segments": 1, "nsamples": 32}},
        # An unreachable endpoint fails in a minute, not the default five.
        "runtime": {"batch_size": 8, "timeout_s": 60.0},
    }


def check_complete(results: dict, exp: dict) -> None:
    """Every probe and every analysis of the experiment is there, and nothing failed."""
    failures = [e for e in results["errors"] if e["stage"] != "warning"]
    assert failures == [], [(e["stage"], e["model"], e["reason"]) for e in failures]
    assert results["partial"] is False
    models = [m if isinstance(m, str) else m["name"] for m in exp["models"]]
    expected = {(m, t, f, s, "linear") for m in models for t in exp["tasks"]
                for f in exp["scarcity"]["train_fractions"] for s in exp["seeds"]}
    got = [(p["model"], p["task"], p["train_fraction"], p["seed"], p["probe"]) for p in results["probes"]]
    assert sorted(got) == sorted(expected)
    reps = {r["model"]: r for r in results["representations"]}
    assert set(reps) == set(models)
    for name, rep in reps.items():
        assert {"umap", "structure", "shap"} <= set(rep), (name, sorted(rep))
        assert {"lead_importance", "attribution", "stability_seeds"} <= set(rep["shap"]), (name, sorted(rep["shap"]))
    assert [(s["model_a"], s["model_b"]) for s in results["similarity"]] == list(itertools.combinations(models, 2))
    assert {t["model"] for t in results["transfer"]} == set(models)
    assert all(c["lost"] == 0 and c["embedded"] == 80 for c in results["counts"]), results["counts"]


def worker_logs(temp: Path) -> list[str]:
    """Log files of Ray worker processes (one per task/actor worker) a node started."""
    return sorted(p.name for p in temp.glob("session_*/logs/python-core-worker-*.log"))


IDLE = ("ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent")  # a worker waiting; the node's agents


def busy(commands: list[str]) -> list[str]:
    """Ray worker processes running a task or an actor (their title is ray::<name>)."""
    return [c for c in commands if c.startswith("ray::") and not c.startswith(IDLE)]


def acting(hosts: Hosts, candidates: tuple[int, ...]) -> int | None:
    """The first of candidates with a worker inside an actor method (Ray titles it ray::<Class>.<method>)."""
    for host in candidates:
        if any("." in c.split()[0] for c in busy(netns_commands(hosts.names[host]))):
            return host
    return None


def test_a_run_on_a_cluster_of_hosts_completes_with_all_work_on_the_worker(cluster, tmp_path):
    exp = experiment(cluster.endpoint)
    out = tmp_path / "out"
    code, log = finish(cluster.run(exp, out), out)
    assert code == 0, log
    results = json.loads((out / "results.json").read_text())
    check_complete(results, exp)
    # The head has no CPU, so every task and actor had to run elsewhere: on B, the only worker.
    actors = json.loads(cluster.python(A, f"""
import json, ray
ray.init(address="{cluster.address}", log_to_driver=False)
print(json.dumps([a["Address"]["IPAddress"] for a in ray._private.state.actors().values()]))
""").splitlines()[-1])
    assert actors and set(actors) == {cluster.hosts.ips[B]}, actors
    assert worker_logs(cluster.temp_dirs[B]), "no worker process ran on B"
    assert worker_logs(cluster.temp_dirs[A]) == []


def test_losing_a_worker_host_mid_run_gives_the_single_node_result(cluster, tmp_path):
    # Runs last in the module: it adds D to the cluster and leaves one worker host dead.
    exp = experiment(cluster.endpoint)
    single = tmp_path / "single"
    # The same experiment with one local Ray on one host (D, before it joins the cluster).
    code, log = finish(cluster.run(exp, single, cluster=False, host=D), single)
    assert code == 0, log
    cluster.start_node(D, f"--address={cluster.address}", "--num-cpus=2")
    cluster.wait_nodes(3)
    out = tmp_path / "out"
    proc = cluster.run(exp, out)
    # Once embedding has begun, kill the worker host that is running an actor's method (B or D, as Ray
    # placed it): the run loses an actor, its tasks and the objects on that host at once.
    deadline = time.monotonic() + 300
    while not (list(out.glob("cache/**/shard-*.npz")) and (victim := acting(cluster.hosts, (B, D)))):
        assert proc.poll() is None and time.monotonic() < deadline, finish(proc, out)[1]
        time.sleep(0.05)
    shards = len(list(out.glob("cache/**/shard-*.npz")))
    killed = cluster.hosts.kill(victim)  # every process on the host at once: the host is gone
    assert busy(killed), killed
    code, log = finish(proc, out)
    batches = len(exp["models"]) * 80 // exp["runtime"]["batch_size"]
    assert shards < batches, "the run had embedded everything before the host died"
    assert code == 0, f"host {victim} killed after {shards} of {batches} shards, running {busy(killed)}:\n{log}"
    diff = subprocess.run([sys.executable, "-m", "orchestrator.results.diff", str(single / "results.json"),
                           str(out / "results.json")], capture_output=True, text=True, env=cluster.env)
    assert diff.returncode == 0, diff.stdout[-3000:]
