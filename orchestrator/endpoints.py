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


class EndpointError(RuntimeError):
    """An endpoint that cannot be reached, authenticated or understood; the message names the model."""


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


def credentials(tls: dict | None) -> grpc.ChannelCredentials | None:
    """TLS channel credentials (server CA, optional client cert/key for mutual TLS), or None for plaintext."""
    if not tls:
        return None

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
    name = (cfg.get("tls") or {}).get("server_name")
    return [("grpc.ssl_target_name_override", name)] if name else []


def open_client(address: str, cfg: dict, timeout_s: float):
    """A client with embed(x, request_id) for the endpoint's protocol, and its card."""
    from services.embedding.client import EmbedError, EmbeddingClient

    protocol = cfg.get("protocol", "ecglens")
    creds, metadata = credentials(cfg.get("tls")), call_metadata(cfg.get("auth"))
    name = cfg.get("name", address)
    try:
        if protocol == "v2":
            from services.embedding.v2_client import V2CardError, connect_v2

            v2 = dict(cfg.get("v2") or {})
            model_name = v2.pop("model_name", None) or name
            client_keys = {k: v2.pop(k) for k in ("input_name", "output_name", "datatype", "model_version")
                           if k in v2}
            try:
                return connect_v2(address, model_name, v2, timeout_s=timeout_s, credentials=creds,
                                  metadata=metadata, **client_keys)
            except V2CardError as err:
                raise EndpointError(f"model {name} at {address}: {err}") from None
        client = EmbeddingClient(address, timeout_s=timeout_s, credentials=creds, metadata=metadata,
                                 extra_options=_options(cfg))
        return client, client.card()
    except EmbedError as err:
        hint = ""
        if err.code.name in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
            hint = (f" (not reachable within {timeout_s:g}s: check the address, and that `tls:` is set exactly "
                    "when the endpoint serves TLS)")
        raise EndpointError(f"model {name} at {address}: {err.code.name}: {err.details}{hint}") from None
