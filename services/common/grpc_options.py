"""gRPC channel and server options shared by every ECGLens client and server."""
from __future__ import annotations

import json

import grpc

# A 64-ECG float32 batch of 12 x 5000 samples is 15.4 MB; gRPC's default limit is 4 MB.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024

_MESSAGE_LIMITS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]

# Client pings no more often than servers allow (otherwise servers answer `too_many_pings`).
_KEEPALIVE_MS = 30_000

SERVER_OPTIONS = _MESSAGE_LIMITS + [
    ("grpc.keepalive_time_ms", _KEEPALIVE_MS),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", _KEEPALIVE_MS // 2),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.so_reuseport", 0),
]


def retry_service_config(service: str, max_attempts: int = 4) -> str:
    """A service config that retries only UNAVAILABLE, with exponential backoff, for every method."""
    return json.dumps({
        "methodConfig": [{
            "name": [{"service": service}],
            "retryPolicy": {
                "maxAttempts": max_attempts,
                "initialBackoff": "0.1s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }]
    })


def channel_options(service: str | None = None) -> list[tuple[str, object]]:
    """Client channel options: large messages, keepalive in step with the server, optional retries."""
    options: list[tuple[str, object]] = _MESSAGE_LIMITS + [
        ("grpc.keepalive_time_ms", _KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.enable_retries", 1),
    ]
    if service:
        options.append(("grpc.service_config", retry_service_config(service)))
    return options


def open_channel(address: str, service: str, credentials: grpc.ChannelCredentials | None = None,
                 extra_options: list[tuple[str, object]] | None = None) -> grpc.Channel:
    """A client channel with channel_options(service): TLS when credentials are given, else plaintext."""
    options = channel_options(service) + list(extra_options or [])
    if credentials:
        return grpc.secure_channel(address, credentials, options)
    return grpc.insecure_channel(address, options)


class ChannelClient:
    """Closes self.channel on close() or at the end of a `with` block."""

    channel: grpc.Channel

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
