"""`ecglens`: serve ECG foundation models, build the zoo, and run benchmarks."""
from __future__ import annotations

import argparse
import json
import sys

DESCRIPTION = """ECGLens: a holistic benchmark for ECG foundation models.

Every FM runs as a gRPC embedding server (one model per process); the orchestrator feeds it
ECGs, probes and analyses the embeddings, and writes a report.
"""


def _cmd_serve(args: argparse.Namespace) -> int:
    from services.embedding.server import run

    return run(args)


def _cmd_zoo_list(args: argparse.Namespace) -> int:
    from services.embedding.zoo.registry import list_zoo

    entries = list_zoo()
    if args.json:
        keys = ("name", "version", "kind", "objective", "embedding_dim", "params")
        print(json.dumps([{k: e[k] for k in keys} for e in entries], indent=2))
        return 0
    print(f"{'name':<16} {'version':<8} {'kind':<10} {'dim':>5} {'params':>10}  built  objective")
    for e in entries:
        print(f"{e['name']:<16} {e['version']:<8} {e['kind']:<10} {e['embedding_dim']:>5} {e['params']:>10}  "
              f"{'yes' if e['built'] else 'no':<5}  {e['objective']}")
    return 0


def _cmd_zoo_build(args: argparse.Namespace) -> int:
    import logging

    from services.embedding.zoo.registry import BUILDERS, build_package, zoo_dir

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = args.only or sorted(BUILDERS)
    for name in names:
        path = build_package(name, args.out or zoo_dir(), force=args.force)
        print(f"{name}: {path}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from services.embedding.conformance import check_endpoint

    report = check_endpoint(args.address, args.timeout)
    print(report.render())
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    """The whole CLI."""
    from services.embedding.server import build_parser as serve_parser

    parser = argparse.ArgumentParser(prog="ecglens", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", help="serve one model package over gRPC (EmbeddingService + health + reflection)",
                           description="Serve one model package (one FM per process) over gRPC: "
                                       "ecglens.v1.EmbeddingService, grpc.health.v1, reflection, Prometheus metrics.")
    serve_parser(serve)
    serve.set_defaults(func=_cmd_serve)

    zoo = sub.add_parser("zoo", help="list or build the reference model packages",
                         description="The zoo: reference model packages built deterministically from code.")
    zoo_sub = zoo.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND", required=True)
    zlist = zoo_sub.add_parser("list", help="list zoo models (name, version, kind, objective, dim, params)")
    zlist.add_argument("--json", action="store_true", help="print a JSON list for machines")
    zlist.set_defaults(func=_cmd_zoo_list)
    zbuild = zoo_sub.add_parser("build", help="build zoo packages (deterministic: fixed seeds)")
    zbuild.add_argument("--out", help="output directory (default: $ECGLENS_ZOO or ~/.cache/ecglens/zoo)")
    zbuild.add_argument("--only", action="append", metavar="NAME", help="build only this model (repeatable)")
    zbuild.add_argument("--force", action="store_true", help="rebuild even if the package exists")
    zbuild.set_defaults(func=_cmd_zoo_build)
    check = sub.add_parser("check", help="check that an endpoint honours the EmbeddingService contract",
                           description="Learns the contract only through server reflection and grpc.health.v1 "
                                       "(as any third-party client would), then checks card, Embed, errors.")
    check.add_argument("address", help="host:port of the endpoint")
    check.add_argument("--timeout", type=float, default=60.0, help="seconds per call")
    check.set_defaults(func=_cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse and dispatch; user errors print one clear line and exit 2."""
    args = build_parser().parse_args(argv)
    from services.embedding.card import CardError

    try:
        return int(args.func(args) or 0)
    except CardError as err:
        print(f"ecglens: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
