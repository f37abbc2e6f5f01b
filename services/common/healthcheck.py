"""Probe a gRPC server's grpc.health.v1 status: exit 0 when SERVING, 1 otherwise (Docker HEALTHCHECK)."""
from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(address: str, service: str = "", timeout_s: float = 3.0) -> str:
    """The status name address reports for service, or the gRPC error code name when the call fails."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            # No wait_for_ready: a probe must fail fast on a closed port, not wait out the timeout.
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as err:
            return err.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, probe once, print the status and return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m services.common.healthcheck", description=__doc__)
    parser.add_argument("--address", default="127.0.0.1:8500", help="host:port of the gRPC server")
    parser.add_argument("--service", default="", help="service name to check; '' means the whole server")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds before the check counts as failed")
    args = parser.parse_args(argv)
    status = check(args.address, args.service, args.timeout)
    print(f"{args.address} {args.service or '(server)'}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
