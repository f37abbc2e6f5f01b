"""Connecting to a model endpoint: ECGLens EmbeddingService or KServe/Triton V2, with TLS and tokens.

Secrets come from files or environment variables named in the experiment, are read when a
connection is made, and are never written to results.json, run.json or logs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import grpc

PROTOCOLS = ("ecglens", "v2")
TLS_KEYS = ("ca_file", "cert_file", "key_file", "server_name")
AUTH_KEYS = ("token_file", "token_env", "api_key_file", "api_key_env", "api_key_header")


# Seconds to reach an endpoint before its model is given up (docs/experiment.md#remote-models-v2-tls-and-tokens).
CONNECT_TIMEOUT_S = 10.0
UNREACHABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED")


class EndpointError(RuntimeError):
    """An endpoint that cannot be reached, authenticated or understood; the message names the model.

    unreachable: the endpoint did not answer at all (refused, unresolvable, no reply within the connect
    deadline), as opposed to answering with an error; a run goes on without such a model.
    """

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def _secret(file_key: str, env_key: str, cfg: dict, what: str) -> str | None:
    if cfg.get(file_key):
        try:
            return Path(cfg[file_key]).expanduser().read_text().strip()
        except OSError as err:
            raise EndpointError(f"cannot read {what} file {cfg[file_key]}: {err.strerror}") from None
    if cfg.get(env_key):
        value = os.environ.get(cfg[env_key])
        if not value:
            raise EndpointError(f"environment variable {cfg[env_key]} (the {what}) is not set")
        return value.strip()
    return None


def credentials(tls: dict | bool | None) -> grpc.ChannelCredentials | None:
    """TLS channel credentials (server CA, optional client cert/key for mutual TLS), or None for plaintext."""
    if not tls:
        return None
    if tls is True:  # `tls: true` / grpcs:// / v2s://: TLS trusting the system's CAs
        return grpc.ssl_channel_credentials()

    def read(key: str) -> bytes | None:
        if not tls.get(key):
            return None
        try:
            return Path(tls[key]).expanduser().read_bytes()
        except OSError as err:
            raise EndpointError(f"cannot read tls.{key} {tls[key]}: {err.strerror}") from None

    return grpc.ssl_channel_credentials(read("ca_file"), read("key_file"), read("cert_file"))


def call_metadata(auth: dict | None) -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying a bearer token and/or an API key."""
    auth = auth or {}
    out = []
    # "token" itself is internal: the run's token for servers it launched on a cluster (stages/launch.py);
    # the experiment file cannot set it (its auth keys are AUTH_KEYS), so no secret is ever written out.
    token = auth.get("token") or _secret("token_file", "token_env", auth, "token")
    if token:
        out.append(("authorization", f"Bearer {token}"))
    key = _secret("api_key_file", "api_key_env", auth, "API key")
    if key:
        out.append((auth.get("api_key_header") or "x-api-key", key))
    return tuple(out)


def _options(cfg: dict) -> list[tuple[str, Any]]:
    tls = cfg.get("tls")
    name = tls.get("server_name") if isinstance(tls, dict) else None
    return [("grpc.ssl_target_name_override", name)] if name else []


def open_client(address: str, cfg: dict, timeout_s: float, connect_timeout_s: float = CONNECT_TIMEOUT_S):
    """A client with embed(x, request_id) for the endpoint's protocol, and its card.

    Reaching the endpoint has its own deadline (connect_timeout_s, capped by timeout_s), separate from the
    per-request timeout: a refused or unresolvable address fails within seconds, not after timeout_s.
    """
    from services.embedding.client import EmbedError, EmbeddingClient

    protocol = cfg.get("protocol", "ecglens")
    creds, metadata = credentials(cfg.get("tls")), call_metadata(cfg.get("auth"))
    name = cfg.get("name", address)
    connect_s = min(connect_timeout_s, timeout_s)
    try:
        if protocol == "v2":
            from services.embedding.v2_client import V2CardError, connect_v2

            v2 = dict(cfg.get("v2") or {})
            model_name = v2.pop("model_name", None) or name
            client_keys = {k: v2.pop(k) for k in ("input_name", "output_name", "datatype", "model_version")
                           if k in v2}
            try:
                return connect_v2(address, model_name, v2, connect_timeout_s=connect_s, timeout_s=timeout_s,
                                  credentials=creds, metadata=metadata, **client_keys)
            except V2CardError as err:
                raise EndpointError(f"model {name} at {address}: {err}") from None
        client = EmbeddingClient(address, timeout_s=timeout_s, credentials=creds, metadata=metadata,
                                 extra_options=_options(cfg))
        try:
            return client, client.card(connect_timeout_s=connect_s)
        except EmbedError:
            client.close()
            raise
    except EmbedError as err:
        raise EndpointError(f"model {name} at {address}: {err.code.name}: {err.details}"
                            f"{_hint(err.code.name, protocol, address, connect_s)}",
                            unreachable=err.code.name in UNREACHABLE) from None


def _hint(code: str, protocol: str, address: str, connect_s: float) -> str:
    """What to check for a failed first contact."""
    if code in UNREACHABLE:
        return (f" (not reachable within {connect_s:g}s: check the address, and that `tls:` is set exactly "
                "when the endpoint serves TLS)")
    if code == "UNIMPLEMENTED" and protocol == "ecglens":
        return (" (the server does not speak ecglens.v1; for a KServe/Triton/MLServer V2 server write the endpoint "
                f"as v2://{address}/MODEL, and check it with `ecglens check v2://{address}/MODEL`)")
    return ""
