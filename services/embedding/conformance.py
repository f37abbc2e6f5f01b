"""Check that an endpoint honours the ECGLens embedding contract, learning it only from the endpoint.

Deliberately imports nothing of ECGLens: the .proto descriptors come from the server's reflection
service and the readiness from grpc.health.v1, exactly as a third-party client (grpcurl, Postman)
would see them. `ecglens check ADDRESS` runs it; a hospital can run it against its own FM endpoint.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

import grpc
import numpy as np
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

SERVICE = "ecglens.v1.EmbeddingService"
_LIMIT = 256 * 1024 * 1024


@dataclass
class Report:
    """Outcome of each check, in order: PASS, FAIL, or WARN (what the protocol does not promise)."""

    checks: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings do not fail)."""
        return all(status != "FAIL" for _, status, _ in self.checks)

    def add(self, name: str, passed: bool, detail: str = "") -> bool:
        """Record a check."""
        self.checks.append((name, "PASS" if passed else "FAIL", detail))
        return passed

    def warn(self, name: str, detail: str) -> None:
        """Record something worth knowing that the contract does not require."""
        self.checks.append((name, "WARN", detail))

    def render(self) -> str:
        """Human-readable lines, one per check."""
        return "\n".join(f"[{status}] {name}" + (f": {detail}" if detail else "")
                         for name, status, detail in self.checks)


def rpc_detail(err: grpc.RpcError) -> str:
    """'CODE: details' of a failed call."""
    return f"{err.code().name}: {err.details()}"


def _call(channel: grpc.Channel, method, request, timeout: float, metadata=()):
    """Invoke a unary method known only by its descriptor."""
    response_cls = message_factory.GetMessageClass(method.output_type)
    rpc = channel.unary_unary(f"/{method.containing_service.full_name}/{method.name}",
                              request_serializer=lambda m: m.SerializeToString(),
                              response_deserializer=response_cls.FromString)
    return rpc(request, timeout=timeout, metadata=metadata)


def _is_v2(channel: grpc.Channel, timeout: float) -> bool:
    """Whether the server answers the V2 ServerLive method (called by name: no ECGLens code is imported)."""
    live = channel.unary_unary("/inference.GRPCInferenceService/ServerLive",
                               request_serializer=lambda _: b"", response_deserializer=lambda b: b)
    try:
        live(None, timeout=timeout)
        return True
    except grpc.RpcError:
        return False


def check_endpoint(address: str, timeout: float = 60.0, batch: int = 4,
                   credentials: grpc.ChannelCredentials | None = None, metadata=(),
                   connect_timeout: float = 10.0) -> Report:
    """Run the contract checks against address and return the report; a failed call is a FAIL line, never raised."""
    report = Report()
    options = [("grpc.max_send_message_length", _LIMIT), ("grpc.max_receive_message_length", _LIMIT)]
    channel = (grpc.secure_channel(address, credentials, options) if credentials
               else grpc.insecure_channel(address, options))
    with channel:
        try:
            _checks(channel, report, timeout, batch, tuple(metadata), min(timeout, connect_timeout))
        except grpc.RpcError as err:  # any call not checked explicitly: a FAIL line, not a traceback
            report.add("call failed", False, rpc_detail(err))
    return report


def _checks(channel: grpc.Channel, report: Report, timeout: float, batch: int, metadata: tuple,
            connect_timeout: float) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    try:
        status = health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=connect_timeout).status
    except grpc.RpcError as err:
        hint = ""
        if err.code() == grpc.StatusCode.UNIMPLEMENTED and _is_v2(channel, connect_timeout):
            hint = (" (this is a KServe/Triton V2 server, not ecglens.v1: run `ecglens check "
                    "v2://HOST:PORT/MODEL`)")
        elif err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            hint = f" (not reachable within {connect_timeout:g}s: check the address, and TLS)"
        report.add("grpc.health.v1 Check", False, rpc_detail(err) + hint)
        return
    if not report.add("health SERVING", status == health_pb2.HealthCheckResponse.SERVING,
                      health_pb2.HealthCheckResponse.ServingStatus.Name(status)):
        return
    database = ProtoReflectionDescriptorDatabase(channel)
    try:
        services = list(database.get_services())
    except grpc.RpcError as err:
        report.add("reflection lists services", False, rpc_detail(err))
        return
    if not report.add("reflection lists " + SERVICE, SERVICE in services, ", ".join(services)):
        return
    pool = descriptor_pool.DescriptorPool(database)
    service = pool.FindServiceByName(SERVICE)
    methods = {m.name: m for m in service.methods}
    wanted = {"GetModelCard", "Embed", "EmbedStream"}
    if not report.add("methods", wanted <= set(methods), ", ".join(sorted(methods))):
        return
    request_cls = message_factory.GetMessageClass(methods["GetModelCard"].input_type)
    try:
        card = _call(channel, methods["GetModelCard"], request_cls(), timeout, metadata)
    except grpc.RpcError as err:
        report.add("model card", False, rpc_detail(err))
        return
    leads, samples, dim = list(card.leads), int(card.num_samples), int(card.embedding_dim)
    if not report.add("model card", bool(card.name) and bool(leads) and samples > 0 and dim > 0,
                      f"{card.name} {card.version}: {len(leads)} leads x {samples} samples @ "
                      f"{card.sampling_rate_hz:g} Hz -> {dim}-d"):
        return
    embed_cls = message_factory.GetMessageClass(methods["Embed"].input_type)
    float32 = pool.FindEnumTypeByName("ecglens.v1.DType").values_by_name["FLOAT32"].number

    def request(x: np.ndarray, request_id: str):
        message = embed_cls(request_id=request_id)
        message.ecg.dtype = float32
        message.ecg.shape.extend(x.shape)
        message.ecg.data = x.astype("<f4").tobytes()
        return message

    x = np.random.default_rng(0).normal(0, 0.3, (batch, len(leads), samples)).astype("<f4")
    good = request(x, "conformance-1")
    try:
        reply = _call(channel, methods["Embed"], good, timeout, metadata)
    except grpc.RpcError as err:
        report.add("Embed", False, rpc_detail(err))
        return
    emb = np.frombuffer(reply.embedding.data, "<f4")
    report.add("Embed shape", list(reply.embedding.shape) == [batch, dim] and emb.size == batch * dim,
               f"{list(reply.embedding.shape)}")
    report.add("Embed echoes request_id", reply.request_id == "conformance-1", reply.request_id)
    report.add("Embed finite", bool(np.isfinite(emb).all()))
    try:
        again = _call(channel, methods["Embed"], good, timeout, metadata)
        report.add("Embed deterministic", again.embedding.data == reply.embedding.data)
    except grpc.RpcError as err:
        report.add("Embed deterministic", False, rpc_detail(err))
    # A consistent tensor (shape and bytes agree) with one lead too many: only lead validation can refuse it.
    wrong = np.concatenate([x, x[:, :1]], axis=1)
    try:
        _call(channel, methods["Embed"], request(wrong, "conformance-bad"), timeout, metadata)
        report.add("wrong lead count -> INVALID_ARGUMENT", False, "the server accepted it")
    except grpc.RpcError as err:
        report.add("wrong lead count -> INVALID_ARGUMENT", err.code() == grpc.StatusCode.INVALID_ARGUMENT,
                   rpc_detail(err))
    status = health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=timeout).status
    report.add("still SERVING after bad input", status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: list[str] | None = None) -> int:
    """`python -m services.embedding.conformance ADDRESS`: exit 0 when every check passes."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("address", help="host:port of the endpoint")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per call")
    args = parser.parse_args(argv)
    report = check_endpoint(args.address, args.timeout)
    print(report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
