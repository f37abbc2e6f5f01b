"""Launched model servers on a Ray cluster: each replica started by an actor on the node Ray places it on.

On a laptop (the run started Ray itself) the driver starts its servers on 127.0.0.1, as always. A run that
joins a cluster cannot do that: a server on the driver's loopback is unreachable from every other node. So
each replica is a ServerHost actor that starts `python -m services.embedding` on its own node, bound to that
node's IP and guarded by a token made for the run; its address travels through Ray, never hard-coded. The
actor restarts on another node when its node is lost (max_restarts), starting a fresh server there, and
EndpointWorker asks it for the current address whenever its replica stops answering.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import ray

# A sliver of a CPU, not a whole one: enough that no server lands on a head started with --num-cpus=0 (the
# usual layout), while a whole CPU per server would starve small clusters (two launched models on a 2-CPU
# node left nothing for the read tasks, and the run waited forever). Restarts: a replica lost with its node
# comes back on another.
HOST_OPTIONS = {"num_cpus": 0.1, "max_restarts": 3, "max_task_retries": 3}


def node_ip() -> str:
    """The address this node joined the cluster with (`ray start --node-ip-address`), else the routed one."""
    node_id = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node.get("NodeID") == node_id and node.get("NodeManagerAddress"):
            return node["NodeManagerAddress"]
    return ray.util.get_node_ip_address()


@ray.remote(**HOST_OPTIONS)
class ServerHost:
    """One launched replica: an embedding server on this actor's node, at this node's IP."""

    def __init__(self, package: str, name: str, token: str | None, timeout_s: float = 300.0) -> None:
        from services.common.process import start_server
        from services.embedding.zoo.registry import resolve_package

        self._tmp = tempfile.TemporaryDirectory(prefix="ecglens-host-")
        args = ["--model", str(resolve_package(package))]
        if token:
            token_file = Path(self._tmp.name) / "token"
            token_file.write_text(token)
            os.chmod(token_file, 0o600)
            args += ["--auth-token-file", str(token_file)]
        self._server = start_server("services.embedding", args, name=name, host=node_ip(),
                                    timeout_s=timeout_s, log_dir=Path(self._tmp.name))

    def address(self) -> str:
        """host:port of the server this actor runs now (a new one after a restart)."""
        return self._server.address

    def log_tail(self, lines: int = 30) -> str:
        """The server's last log lines (its log stays on this node)."""
        return self._server.log_tail(lines)

    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self._server.process.poll() is None

    def stop(self) -> int | None:
        """Drain and stop the server; its exit code."""
        code = self._server.stop()
        self._tmp.cleanup()
        return code


def address_of(host: object, fallback: str, timeout_s: float = 60.0) -> str:
    """Where a ServerHost serves now (it waits for a restart in progress); fallback when it is gone for good."""
    try:
        return ray.get(host.address.remote(), timeout=timeout_s)
    except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
        return fallback  # the caller finds no answer there and says so


def current_endpoints(endpoints: dict[str, list[str]], hosts: dict[str, object],
                      timeout_s: float = 60.0) -> dict[str, list[str]]:
    """Each model's replica addresses now: a replica whose ServerHost restarted after a node loss has a new one."""
    return {model: [address_of(hosts[a], a, timeout_s) if a in hosts else a for a in addresses]
            for model, addresses in endpoints.items()}
