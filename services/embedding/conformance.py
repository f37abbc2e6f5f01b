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
    """Outcome of each check, in order."""

    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(passed for _, passed, _ in self.checks)

    def add(self, name: str, passed: bool, detail: str = "") -> bool:
        """Record a check."""
        self.checks.append((name, passed, detail))
        return passed

    def render(self) -> str:
        """Human-readable lines, one per check."""
        return "\n".join(f"[{'PASS' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail else "")
                         for name, ok, detail in self.checks)


def _call(channel: grpc.Channel, method, request, timeout: float):
    """Invoke a unary method known only by its descriptor."""
    response_cls = message_factory.GetMessageClass(method.output_type)
    rpc = channel.unary_unary(f"/{method.containing_service.full_name}/{method.name}",
                              request_serializer=lambda m: m.SerializeToString(),
                              response_deserializer=response_cls.FromString)
    return rpc(request, timeout=timeout)


def check_endpoint(address: str, timeout: float = 60.0, batch: int = 4) -> Report:
    """Run the contract checks against address and return the report."""
    report = Report()
    options = [("grpc.max_send_message_length", _LIMIT), ("grpc.max_receive_message_length", _LIMIT)]
    with grpc.insecure_channel(address, options) as channel:
        try:
            status = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE), timeout=timeout, wait_for_ready=True).status
        except grpc.RpcError as err:
            report.add("grpc.health.v1 Check", False, f"{err.code().name}: {err.details()}")
            return report
        if not report.add("health SERVING", status == health_pb2.HealthCheckResponse.SERVING,
                          health_pb2.HealthCheckResponse.ServingStatus.Name(status)):
            return report
        database = ProtoReflectionDescriptorDatabase(channel)
        try:
            services = list(database.get_services())
        except grpc.RpcError as err:
            report.add("reflection lists services", False, f"{err.code().name}: {err.details()}")
            return report
        if not report.add("reflection lists " + SERVICE, SERVICE in services, ", ".join(services)):
            return report
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName(SERVICE)
        methods = {m.name: m for m in service.methods}
        wanted = {"GetModelCard", "Embed", "EmbedStream"}
        if not report.add("methods", wanted <= set(methods), ", ".join(sorted(methods))):
            return report
        request_cls = message_factory.GetMessageClass(methods["GetModelCard"].input_type)
        card = _call(channel, methods["GetModelCard"], request_cls(), timeout)
        leads, samples, dim = list(card.leads), int(card.num_samples), int(card.embedding_dim)
        report.add("model card", bool(card.name) and bool(leads) and samples > 0 and dim > 0,
                   f"{card.name} {card.version}: {len(leads)} leads x {samples} samples @ "
                   f"{card.sampling_rate_hz:g} Hz -> {dim}-d")
        embed_cls = message_factory.GetMessageClass(methods["Embed"].input_type)
        dtype_enum = pool.FindEnumTypeByName("ecglens.v1.DType")
        x = np.random.default_rng(0).normal(0, 0.3, (batch, len(leads), samples)).astype("<f4")
        request = embed_cls(request_id="conformance-1")
        request.ecg.dtype = dtype_enum.values_by_name["FLOAT32"].number
        request.ecg.shape.extend(x.shape)
        request.ecg.data = x.tobytes()
        reply = _call(channel, methods["Embed"], request, timeout)
        emb = np.frombuffer(reply.embedding.data, "<f4")
        report.add("Embed shape", list(reply.embedding.shape) == [batch, dim] and emb.size == batch * dim,
                   f"{list(reply.embedding.shape)}")
        report.add("Embed echoes request_id", reply.request_id == "conformance-1", reply.request_id)
        report.add("Embed finite", bool(np.isfinite(emb).all()))
        again = _call(channel, methods["Embed"], request, timeout)
        report.add("Embed deterministic", again.embedding.data == reply.embedding.data)
        bad = embed_cls(request_id="conformance-bad")
        bad.CopyFrom(request)
        bad.ecg.shape[1] = len(leads) + 1
        try:
            _call(channel, methods["Embed"], bad, timeout)
            report.add("wrong lead count -> INVALID_ARGUMENT", False, "the server accepted it")
        except grpc.RpcError as err:
            report.add("wrong lead count -> INVALID_ARGUMENT", err.code() == grpc.StatusCode.INVALID_ARGUMENT,
                       f"{err.code().name}: {err.details()}")
        status = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE), timeout=timeout).status
        report.add("still SERVING after bad input", status == health_pb2.HealthCheckResponse.SERVING)
    return report


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
