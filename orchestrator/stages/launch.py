"""Launch stage: start every model replica the run serves itself and read every model's card.

Analyses need no server: they run in Ray tasks on the analysis code (see stages/analyse.py).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.endpoints import open_client
from orchestrator.experiment import Experiment
from orchestrator.stages.types import Hooks, Launched
from services.common.process import ServerProcess, start_server
from services.embedding.zoo.registry import resolve_package

@dataclass
class Services:
    """Every server process this run started; stopped together."""

    log_dir: Path
    started: list[ServerProcess] = field(default_factory=list)

    def start(self, module: str, args: list[str], name: str) -> ServerProcess:
        """Start one server and remember it, so stop_all reaches it."""
        handle = start_server(module, args, name=name, log_dir=self.log_dir, timeout_s=300)
        self.started.append(handle)
        return handle

    def stop_all(self) -> None:
        """Stop every server started so far."""
        for handle in self.started:
            handle.stop()


def _plan(exp: Experiment) -> list[tuple[str, list[str], str, str]]:
    """(module, args, process name, owner) of every server to start."""
    plan = []
    for model in exp.models:
        if not model.remote:
            package = str(resolve_package(model.package))  # build zoo models once, before replicas start
            plan += [("services.embedding", ["--model", package], f"{model.name}-{r}", model.name)
                     for r in range(model.replicas)]
    return plan


def launch(exp: Experiment, services: Services, hooks: Hooks) -> Launched:
    """Start one server per launched model replica; read every model's card."""
    plan = _plan(exp)
    # Started in parallel (each waits for its own warm-up); a failure still leaves the others stoppable,
    # because Services.start records each handle as soon as it exists.
    with ThreadPoolExecutor(max(1, len(plan))) as pool:
        futures = [(owner, pool.submit(services.start, module, args, name)) for module, args, name, owner in plan]
        handles = [(owner, future.result()) for owner, future in futures]
    endpoints: dict[str, list[str]] = {m.name: list(m.endpoints) for m in exp.models}
    by_owner: dict[str, list[ServerProcess]] = {}
    for owner, handle in handles:
        by_owner.setdefault(owner, []).append(handle)
        endpoints[owner].append(handle.address)
    if hooks.on_launched:
        hooks.on_launched(by_owner)
    cards = {}
    for model in exp.models:
        client, cards[model.name] = open_client(endpoints[model.name][0], model.connection, exp.runtime["timeout_s"])
        client.close()
    return Launched(endpoints, cards)
