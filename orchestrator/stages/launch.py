"""Launch stage: start every model replica the run serves itself and read every model's card.

Where the servers run depends on where the run's Ray runs:
- a local Ray the run started (a laptop, CI): the driver starts each replica as a child process on
  127.0.0.1, as simple as it gets;
- a cluster the run joined (`--ray-address`, a RayJob): each replica is a ServerHost actor that starts
  its server on the node Ray places it on, bound to that node's IP and guarded by a token made for this
  run (orchestrator/server_host.py), so every node reaches it and nothing assumes the driver's loopback.
Analyses need no server: they run in Ray tasks on the analysis code (see stages/analyse.py).
"""
from __future__ import annotations

import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import ray

from orchestrator.endpoints import open_client
from orchestrator.experiment import Experiment
from orchestrator.stages.types import Hooks, Launched
from services.common.process import ServerProcess, ServerStartError, start_server
from services.embedding.zoo.registry import resolve_package


# (model name, replica address, connection settings, ServerHost actor or None) of a replica just given an address.
OnAddress = Callable[[str, str, dict, Any], None]


@dataclass
class Services:
    """Every server this run started (child processes or ServerHost actors); stopped together."""

    log_dir: Path
    started: list[ServerProcess] = field(default_factory=list)
    hosts: list[Any] = field(default_factory=list)  # ServerHost actor handles

    def start(self, module: str, args: list[str], name: str,
              on_bound: Callable[[str], None] | None = None) -> ServerProcess:
        """Start one server as a child process on 127.0.0.1 and remember it, so stop_all reaches it
        (on_bound(address) once it has a port, before its model has loaded)."""
        handle = start_server(module, args, name=name, log_dir=self.log_dir, timeout_s=300, on_bound=on_bound)
        self.started.append(handle)
        return handle

    def start_on_cluster(self, package: str, name: str, token: str) -> tuple[Any, str]:
        """Start one server through a ServerHost actor on a cluster node; (actor, address)."""
        from orchestrator.server_host import ServerHost

        host = ServerHost.options(name=None).remote(package, name, token)
        self.hosts.append(host)
        try:
            return host, ray.get(host.address.remote())
        except ray.exceptions.RayActorError as err:
            raise ServerStartError(f"{name}: the server did not start on its node: {err}") from None

    def stop_all(self) -> None:
        """Stop every server started so far (actors: drain their server first, then end the actor)."""
        for handle in self.started:
            handle.stop()
        if self.hosts:
            stops = [host.stop.remote() for host in self.hosts]
            ray.wait(stops, num_returns=len(stops), timeout=30)
            for host in self.hosts:
                ray.kill(host)


def _plan(exp: Experiment) -> list[tuple[str, str, str]]:
    """(package, process name, owner) of every replica to start."""
    plan = []
    for model in exp.models:
        if not model.remote:
            package = str(resolve_package(model.package))  # build zoo models once, before replicas start
            # The process name is also its log file's name under <out>/logs: never a path.
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.name).strip("._") or "model"
            plan += [(package, f"{safe}-{r}", model.name) for r in range(model.replicas)]
    return plan


def launch(exp: Experiment, services: Services, hooks: Hooks, on_cluster: bool = False,
           cards: dict[str, Any] | None = None, on_address: OnAddress | None = None) -> Launched:
    """Start one server per launched model replica (on cluster nodes when on_cluster); read every card
    not already in `cards` (remote models' cards, read before Ray started by stages/connect.py).

    on_address(model, address, connection, host) is called for each replica as soon as its address is known:
    on a local run before its server has loaded the model, so clients can get ready meanwhile."""
    plan = _plan(exp)
    connections = {m.name: dict(m.connection) for m in exp.models}
    token = secrets.token_urlsafe(32) if on_cluster else None
    if on_cluster:
        for model in exp.models:
            if not model.remote:  # internal: never from the experiment file, never written anywhere
                connections[model.name]["auth"] = {"token": token}

    def start(package: str, name: str, owner: str) -> tuple[Any, str]:
        if on_cluster:
            host, address = services.start_on_cluster(package, name, token)
            if on_address:
                on_address(owner, address, connections[owner], host)
            return host, address
        bound = (lambda address: on_address(owner, address, connections[owner], None)) if on_address else None
        handle = services.start("services.embedding", ["--model", package], name, on_bound=bound)
        return handle, handle.address

    # Started in parallel (each waits for its own warm-up); a failure still leaves the others stoppable,
    # because Services records each handle as soon as it exists.
    with ThreadPoolExecutor(max(1, len(plan))) as pool:
        futures = [(owner, pool.submit(start, package, name, owner)) for package, name, owner in plan]
        handles = [(owner, *future.result()) for owner, future in futures]
    endpoints: dict[str, list[str]] = {m.name: list(m.endpoints) for m in exp.models}
    by_owner: dict[str, list[Any]] = {}
    hosts: dict[str, Any] = {}
    for owner, handle, address in handles:
        by_owner.setdefault(owner, []).append(handle)
        endpoints[owner].append(address)
        if on_cluster:
            hosts[address] = handle
    if hooks.on_launched:
        hooks.on_launched(by_owner)
    cards = dict(cards or {})
    for model in exp.models:
        if model.name in cards:
            continue
        client, cards[model.name] = open_client(endpoints[model.name][0], connections[model.name],
                                                exp.runtime["timeout_s"])
        client.close()
    return Launched(endpoints, cards, connections, hosts)
