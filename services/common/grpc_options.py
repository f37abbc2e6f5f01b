"""gRPC channel and server options shared by every ECGLens client and server."""
from __future__ import annotations

import json

import grpc

# A 64-ECG float32 batch of 12 x 5000 samples is 15.4 MB; gRPC's default limit is 4 MB. Clients may send
# this much; each server accepts what its own options say (server_options), e.g. the embedding server
# takes EMBED_MAX_MESSAGE_BYTES unless told otherwise.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
# 256 ECGs of 12 x 5000 float32 samples (58.6 MiB): the largest batch a real client sends, with room.
EMBED_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Streams one connection may have open at once (gRPC's default is unbounded).
MAX_CONCURRENT_STREAMS = 128

_MESSAGE_LIMITS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]

# Client pings no more often than servers allow (otherwise servers answer `too_many_pings`).
_KEEPALIVE_MS = 30_000

_SERVER_TRANSPORT = [
    ("grpc.keepalive_time_ms", _KEEPALIVE_MS),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", _KEEPALIVE_MS // 2),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.so_reuseport", 0),
    ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
    # Without BDP probing a stream's HTTP/2 window stays small until the server asks for the message,
    # so a request waiting for memory budget is not buffered by the transport behind the server's back.
    ("grpc.http2.bdp_probe", 0),
]
SERVER_OPTIONS = _MESSAGE_LIMITS + _SERVER_TRANSPORT


def server_options(max_receive_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, object]]:
    """Server options with a given receive limit; gRPC core refuses a larger message from its length
    prefix, before buffering it, with RESOURCE_EXHAUSTED."""
    return [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", int(max_receive_bytes))] + _SERVER_TRANSPORT


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
