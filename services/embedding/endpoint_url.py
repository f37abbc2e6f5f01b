"""One endpoint syntax for `--model`, the experiment's `endpoint:` and `ecglens check`.

    HOST:PORT  or  grpc://HOST:PORT               ecglens.v1 EmbeddingService, plaintext
    grpcs://HOST:PORT                             ecglens.v1 over TLS
    v2://HOST:PORT/MODEL[/VERSION][?KEY=VALUE&...] KServe / Triton V2 (Open Inference Protocol), plaintext
    v2s://HOST:PORT/MODEL[/VERSION][?...]          V2 over TLS

Query keys: `sampling_rate_hz`, `leads` (comma-separated or `standard12`), `num_samples`, `layout`, ... (any
V2 override), `input` / `output` (tensor names), `datatype`, `name` (the model's name in the run), and for
either protocol `ca_file` (TLS trust; system CAs otherwise) and `token_file` (a bearer token). A bare
`HOST:PORT` always means ecglens.v1: the scheme, never a guess, picks the protocol.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

STANDARD12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
SCHEMES = {"grpc": ("ecglens", False), "grpcs": ("ecglens", True), "v2": ("v2", False), "v2s": ("v2", True)}
_INTS = ("num_samples", "embedding_dim", "max_batch_size", "pool_axis")
_FLOATS = ("sampling_rate_hz",)
# Query key -> key of the experiment's `v2:` mapping (the short names read better in a URL).
_V2_CLIENT = {"input": "input_name", "output": "output_name", "datatype": "datatype", "version": "model_version",
              "input_name": "input_name", "output_name": "output_name"}
_V2_OVERRIDES = ("sampling_rate_hz", "leads", "num_samples", "layout", "normalization", "input_units",
                 "embedding_dim", "max_batch_size", "pooling", "pool_axis", "description", "license", "objective")
_COMMON = ("name", "ca_file", "token_file")


class EndpointSyntaxError(ValueError):
    """An endpoint string that does not parse; the text shows the accepted forms."""


FORMS = ("HOST:PORT (ecglens.v1), grpcs://HOST:PORT (ecglens.v1 over TLS), "
         "v2://HOST:PORT/MODEL[?sampling_rate_hz=500&leads=I,II,...] (KServe/Triton V2), v2s://... (V2 over TLS)")


@dataclass(frozen=True)
class Endpoint:
    """A parsed endpoint: protocol, address, TLS, and (V2) the model and what its tensors mean."""

    protocol: str  # "ecglens" | "v2"
    address: str  # HOST:PORT
    tls: bool = False
    explicit: bool = False  # a scheme was written (so the protocol is stated, not defaulted)
    model: str | None = None  # V2 model name
    v2: dict[str, Any] = field(default_factory=dict)  # the experiment's `v2:` keys (model_name excluded)
    name: str | None = None
    ca_file: str | None = None
    token_file: str | None = None

    def connection(self) -> dict[str, Any]:
        """protocol / v2 / tls / auth settings as the experiment's model entry writes them."""
        out: dict[str, Any] = {"protocol": self.protocol}
        if self.protocol == "v2":
            out["v2"] = {"model_name": self.model, **self.v2}
        if self.tls or self.ca_file:
            out["tls"] = {"ca_file": self.ca_file} if self.ca_file else True
        if self.token_file:
            out["auth"] = {"token_file": self.token_file}
        return out


def looks_like_endpoint(text: str) -> bool:
    """Whether a --model / models[] string names an endpoint (a scheme or HOST:PORT), not a zoo name or path."""
    scheme = text.split("://", 1)[0].lower() if "://" in text else None
    if scheme is not None:
        return True
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isdigit() and "/" not in host)


def _value(key: str, raw: str) -> Any:
    if key == "leads":
        return list(STANDARD12) if raw.strip().lower() == "standard12" else [v.strip() for v in raw.split(",")
                                                                              if v.strip()]
    try:
        if key in _INTS:
            return int(raw)
        if key in _FLOATS:
            return float(raw)
    except ValueError:
        raise EndpointSyntaxError(f"{key}={raw!r} is not a number") from None
    return raw


def parse_endpoint(text: str) -> Endpoint:
    """Parse an endpoint string; raise EndpointSyntaxError naming what is wrong and the accepted forms."""
    text = text.strip()
    if "://" not in text:
        if not looks_like_endpoint(text):
            raise EndpointSyntaxError(f"{text!r} is not an endpoint; write {FORMS}")
        return Endpoint("ecglens", text)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise EndpointSyntaxError(f"{text!r}: unknown scheme {parts.scheme + '://'!r}; write {FORMS}")
    protocol, tls = SCHEMES[scheme]
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise EndpointSyntaxError(f"{text!r}: expected HOST:PORT after {scheme}://")
    address = parts.netloc.rsplit("@", 1)[-1]
    path = [unquote(p) for p in parts.path.split("/") if p]
    query = parse_qsl(parts.query, keep_blank_values=True)
    allowed = _COMMON + ((*_V2_OVERRIDES, *_V2_CLIENT) if protocol == "v2" else ())
    settings: dict[str, Any] = {}
    for key, raw in query:
        if key not in allowed:
            raise EndpointSyntaxError(f"{text!r}: unknown setting {key!r}; allowed: {', '.join(allowed)}")
        if key in settings:
            raise EndpointSyntaxError(f"{text!r}: {key} is given twice")
        settings[key] = _value(key, raw)
    common = {k: settings.pop(k) for k in _COMMON if k in settings}
    if protocol == "ecglens":
        if path:
            raise EndpointSyntaxError(f"{text!r}: an ecglens.v1 endpoint has no path (one model per server); "
                                      f"for a V2 model write v2://{address}/{'/'.join(path)}")
        return Endpoint(protocol, address, tls, True, **common)
    if not path or len(path) > 2:
        raise EndpointSyntaxError(f"{text!r}: a V2 endpoint names its model: v2://{address}/MODEL[/VERSION]")
    v2 = {_V2_CLIENT.get(k, k): v for k, v in settings.items()}
    if len(path) == 2:
        if "model_version" in v2 and v2["model_version"] != path[1]:
            raise EndpointSyntaxError(f"{text!r}: version {path[1]!r} in the path but {v2['model_version']!r} "
                                      "in the query")
        v2["model_version"] = path[1]
    return Endpoint(protocol, address, tls, True, model=path[0], v2=v2, **common)
