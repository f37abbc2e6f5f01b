"""Transport security and call authentication for servers: TLS / mutual TLS and a bearer token.

Secrets are read from files (mounted Kubernetes secrets) and never logged. Health checking and
reflection stay open so that probes and generic clients keep working without the token.
"""
from __future__ import annotations

import hmac
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import grpc

from services.common.admission import refusal
from services.common.runtime import OPEN_PREFIXES
from services.common.text import clip

log = logging.getLogger("ecglens.security")


class SecurityError(ValueError):
    """Unreadable or inconsistent TLS/token settings."""


def _read(path: str | None, what: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise SecurityError(f"cannot read {what} {path}: {err.strerror}") from None


DENIED = "missing or wrong bearer token (send metadata 'authorization: Bearer <token>')"


def bearer_matches(header: str | bytes | None, token: bytes) -> bool:
    """True when an authorization header value is `Bearer <token>` (compared in constant time)."""
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    header = header or ""
    presented = header[7:].encode("utf-8", "replace") if header.lower().startswith("bearer ") else b""
    return hmac.compare_digest(presented, token)  # constant time: no timing side channel


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Answers UNAUTHENTICATED unless the call carries `authorization: Bearer <token>`.

    The check runs on metadata alone: a refused call is answered by a request-streaming handler that
    never reads, so its body is never buffered (an unauthenticated client cannot drive memory up).
    Each refusal is logged (method and peer, never the token) and passed to on_denied(method).
    """

    def __init__(self, token: str, on_denied: Callable[[str], None] | None = None) -> None:
        self._token = token.encode()
        self._on_denied = on_denied

    async def intercept_service(self, continuation, details):
        """Let open methods and calls with the right token through."""
        if details.method.startswith(OPEN_PREFIXES):
            return await continuation(details)
        header = dict(details.invocation_metadata or ()).get("authorization", "")
        if bearer_matches(header, self._token):
            return await continuation(details)
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method.rsplit("/", 1)[-1]

        def denied(context) -> None:
            log.warning("authentication failed", extra={"method": clip(details.method, 120),
                                                        "peer": clip(context.peer(), 120),
                                                        "reason": "no bearer token" if not header else "wrong token"})
            if self._on_denied:
                self._on_denied(method)

        return refusal(handler, grpc.StatusCode.UNAUTHENTICATED, DENIED, before=denied)


def _no_password() -> str:
    raise SecurityError("encrypted key")  # never let OpenSSL prompt on a terminal


def check_key_pair(cert: str, key: str) -> None:
    """Raise SecurityError (one line naming both files) unless key is the private key of cert."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except SecurityError:
        raise SecurityError(f"TLS key {key} is encrypted; gRPC needs an unencrypted PEM key") from None
    except ssl.SSLError as err:
        reason = err.reason or str(err)
        if "KEY_VALUES_MISMATCH" in str(err).upper():
            raise SecurityError(f"TLS key {key} does not match certificate {cert}") from None
        raise SecurityError(f"cannot use TLS certificate {cert} with key {key}: {reason}") from None
    except ValueError as err:  # e.g. an encrypted key with no password
        raise SecurityError(f"cannot use TLS certificate {cert} with key {key}: {err}") from None


@dataclass(frozen=True)
class Security:
    """What a server needs to bind securely; the default is plaintext without a token."""

    cert: bytes | None = None
    key: bytes | None = None
    client_ca: bytes | None = None
    token: str | None = None
    cert_path: str | None = None  # the files, for the metrics endpoint's TLS (ssl loads from paths)
    key_path: str | None = None

    @classmethod
    def from_files(cls, cert: str | None, key: str | None, client_ca: str | None,
                   token_file: str | None) -> "Security":
        """Read PEM files and the token file; raise SecurityError with the path on failure."""
        if bool(cert) != bool(key):
            raise SecurityError("--tls-cert and --tls-key go together")
        if client_ca and not cert:
            raise SecurityError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
        token = _read(token_file, "token file")
        try:
            token_text = token.decode().strip() if token is not None else None
        except UnicodeDecodeError:
            raise SecurityError(f"token file {token_file} is not UTF-8 text") from None
        if token is not None and not token_text:
            raise SecurityError(f"token file {token_file} is empty")
        security = cls(_read(cert, "certificate"), _read(key, "private key"), _read(client_ca, "client CA"),
                       token_text, cert, key)
        if cert:
            check_key_pair(cert, key)
        return security

    def interceptors(self, on_denied: Callable[[str], None] | None = None) -> list[grpc.aio.ServerInterceptor]:
        """The token check, when a token is configured."""
        return [TokenInterceptor(self.token, on_denied)] if self.token else []

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server-side TLS context over the same certificate and key (for the metrics endpoint), or None."""
        if not self.cert_path:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def bind(self, server: grpc.aio.Server, address: str) -> int:
        """Add the listening port, TLS when a certificate is configured; return the bound port."""
        if self.cert:
            creds = grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.client_ca,
                                                require_client_auth=self.client_ca is not None)
            return server.add_secure_port(address, creds)
        return server.add_insecure_port(address)
