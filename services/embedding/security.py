"""Transport security and call authentication for servers: TLS / mutual TLS and a bearer token.

Secrets are read from files (mounted Kubernetes secrets) and never logged. Health checking and
reflection stay open so that probes and generic clients keep working without the token.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

import grpc

# Methods that need no token: Kubernetes probes and discovery must work without secrets.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class SecurityError(ValueError):
    """Unreadable or inconsistent TLS/token settings."""


def _read(path: str | None, what: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise SecurityError(f"cannot read {what} {path}: {err.strerror}") from None


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Answers UNAUTHENTICATED unless the call carries `authorization: Bearer <token>`."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

        async def deny(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing or wrong bearer token (send metadata 'authorization: Bearer <token>')")

        self._deny = deny

    async def intercept_service(self, continuation, details):
        """Let open methods and calls with the right token through."""
        if details.method.startswith(OPEN_PREFIXES):
            return await continuation(details)
        header = dict(details.invocation_metadata or ()).get("authorization", "")
        presented = header[7:].encode() if header.lower().startswith("bearer ") else b""
        if hmac.compare_digest(presented, self._token):  # constant time: no timing side channel
            return await continuation(details)
        handler = await continuation(details)
        if handler is None:
            return None
        if handler.request_streaming and handler.response_streaming:
            async def deny_stream(request_iterator, context):
                await self._deny(None, context)
                yield  # pragma: no cover (abort raises)
            return grpc.stream_stream_rpc_method_handler(deny_stream)
        return grpc.unary_unary_rpc_method_handler(self._deny)


@dataclass(frozen=True)
class Security:
    """What a server needs to bind securely; the default is plaintext without a token."""

    cert: bytes | None = None
    key: bytes | None = None
    client_ca: bytes | None = None
    token: str | None = None

    @classmethod
    def from_files(cls, cert: str | None, key: str | None, client_ca: str | None,
                   token_file: str | None) -> "Security":
        """Read PEM files and the token file; raise SecurityError with the path on failure."""
        if bool(cert) != bool(key):
            raise SecurityError("--tls-cert and --tls-key go together")
        if client_ca and not cert:
            raise SecurityError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
        token = _read(token_file, "token file")
        token_text = token.decode().strip() if token is not None else None
        if token is not None and not token_text:
            raise SecurityError(f"token file {token_file} is empty")
        return cls(_read(cert, "certificate"), _read(key, "private key"), _read(client_ca, "client CA"), token_text)

    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """The token check, when a token is configured."""
        return [TokenInterceptor(self.token)] if self.token else []

    def bind(self, server: grpc.aio.Server, address: str) -> int:
        """Add the listening port, TLS when a certificate is configured; return the bound port."""
        if self.cert:
            creds = grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.client_ca,
                                                require_client_auth=self.client_ca is not None)
            return server.add_secure_port(address, creds)
        return server.add_insecure_port(address)
