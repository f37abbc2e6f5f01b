"""`ecglens`: serve ECG foundation models, build the zoo, and run benchmarks."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

EXIT_PARTIAL = 3
EXIT_NO_RESULTS = 4
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

    from services.embedding.zoo.catalog import BUILDERS, zoo_dir
    from services.embedding.zoo.registry import build_package

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = args.only or sorted(BUILDERS)
    for name in names:
        path = build_package(name, args.out or zoo_dir(), force=args.force)
        print(f"{name}: {path}")
    return 0


def _run_and_print(exp, out: str, ray_address: str | None, quiet: bool, allow_partial: bool = False) -> int:
    from orchestrator.report import results_table
    from orchestrator.runner import run_experiment

    results = run_experiment(exp, out, ray_address=ray_address, show_progress=not quiet)
    print(results_table(results))
    skipped = len([e for e in results.errors if e.record != "*"])
    print(f"\n{len(results.probes)} probes, {skipped} record(s) not used (see the report's 'records not used')")
    print(f"report:  {Path(out) / 'report.html'}\nresults: {Path(out) / 'results.json'}")
    for row in results.losses():
        print(f"PARTIAL: {row.model} lost {row.lost} of {row.records} records of {row.dataset} "
              "(its endpoint failed; see errors)", file=sys.stderr)
    if not results.probes:
        print("ecglens: error: no probe could be fitted; see results.json errors", file=sys.stderr)
    return exit_status(results, allow_partial)


def exit_status(results, allow_partial: bool = False) -> int:
    """0, EXIT_NO_RESULTS when no probe was fitted, EXIT_PARTIAL when a model lost records (unless allowed)."""
    if not results.probes:
        return EXIT_NO_RESULTS
    return EXIT_PARTIAL if results.partial and not allow_partial else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from orchestrator.experiment import DEMO, parse_experiment

    return _run_and_print(parse_experiment(DEMO, "demo"), args.out, args.ray_address, args.quiet, args.allow_partial)


def _cmd_run(args: argparse.Namespace) -> int:
    from orchestrator.experiment import load_experiment, parse_experiment

    if args.experiment and (args.dataset or args.model):
        raise _usage("give either an EXPERIMENT file or --dataset/--model, not both")
    if args.experiment:
        exp = load_experiment(args.experiment)
    else:
        if not args.dataset or not args.model:
            raise _usage("the quick form needs at least one --dataset and one --model")
        data: dict = {"name": "run", "datasets": args.dataset, "models": args.model}
        if args.task:
            data["tasks"] = args.task
        if args.fractions:
            data["scarcity"] = {"train_fractions": _floats(args.fractions, "--fractions"),
                                "k_shots": [int(v) for v in _floats(args.k_shots or "", "--k-shots")]}
        elif args.k_shots:
            data["scarcity"] = {"train_fractions": [], "k_shots": [int(v) for v in _floats(args.k_shots, "--k-shots")]}
        if args.seeds:
            data["seeds"] = [int(v) for v in _floats(args.seeds, "--seeds")]
        exp = parse_experiment(data, "command line")
    return _run_and_print(exp, args.out, args.ray_address, args.quiet, args.allow_partial)


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise _usage(f"{flag}: expected comma-separated numbers, got {text!r}") from None


class _UsageError(Exception):
    pass


def _usage(message: str) -> _UsageError:
    return _UsageError(message)


def _cmd_datasets_describe(args: argparse.Namespace) -> int:
    from orchestrator.datasets.describe import describe, render, spec_from_arg

    try:
        summary = describe(spec_from_arg(args.dataset))
    except (ValueError, FileNotFoundError) as err:
        raise _usage(str(err)) from None
    print(json.dumps(summary, indent=2, default=str) if args.json else render(summary))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from orchestrator.endpoints import call_metadata, credentials
    from services.embedding.conformance import check_endpoint
    from services.embedding.endpoint_url import EndpointSyntaxError, parse_endpoint

    try:
        endpoint = parse_endpoint(args.address)
    except EndpointSyntaxError as err:
        raise _usage(str(err)) from None
    ca_file = args.ca_file or endpoint.ca_file
    tls = {"ca_file": ca_file} if ca_file else (True if endpoint.tls or args.tls else None)
    token_file = args.token_file or endpoint.token_file
    creds, metadata = credentials(tls), call_metadata({"token_file": token_file} if token_file else None)
    if endpoint.protocol == "v2":
        from services.embedding.v2_conformance import check_v2

        report = check_v2(endpoint.address, endpoint.model, endpoint.v2, args.timeout, credentials=creds,
                          metadata=metadata, connect_timeout=args.connect_timeout)
    else:
        report = check_endpoint(endpoint.address, args.timeout, credentials=creds, metadata=metadata,
                                connect_timeout=args.connect_timeout)
    print(report.render())
    return 0 if report.ok else 1


def _runtime_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray-address", help="join an existing Ray cluster (default: start a local one)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--allow-partial", action="store_true",
                        help=f"exit 0 even when a model lost records to a failing endpoint (default: exit "
                             f"{EXIT_PARTIAL})")


EXIT_EPILOG = """exit status:
  0    every model embedded every readable record, and probes were fitted
  2    bad experiment, card, endpoint or flags (one line says which)
  3    partial: some model lost records to a failing endpoint (results.json "partial": true, the
       report's banner names the losses); results are still written. --allow-partial exits 0
  4    no probe could be fitted at all (see results.json errors)
  130  interrupted (Ctrl-C / SIGTERM); every process the run started has been stopped
"""


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

    zoo = sub.add_parser("zoo", help="list, build, inspect or import model packages",
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
    from services.embedding.zoo.importer.cli import add_cli as add_import_cli

    add_import_cli(zoo_sub)  # zoo inspect FILE, zoo import FILE (bring your own model)
    from services.embedding.zoo.official.cli import add_cli as add_official_cli

    add_official_cli(zoo_sub)  # zoo import-official FM --checkpoint FILE
    pretrain = sub.add_parser("pretrain", help="pretrain a small ECG FM with a self-supervised objective",
                              description="Self-supervised pretraining on the offline synthetic corpus (no labels): "
                                          "contrastive multi-segment (CMSC) or masked signal modelling. Writes an "
                                          "ONNX model package whose card records exactly how it was trained.")
    try:
        from orchestrator import pretrain as pretrain_module
    except ModuleNotFoundError as err:  # the slim ONNX server image carries no torch; the rest still works
        if err.name != "torch":
            raise
        pretrain.set_defaults(func=_needs_torch)  # main() lets its options through to say so
    else:
        pretrain_module.add_arguments(pretrain)
        pretrain.set_defaults(func=pretrain_module.run)

    demo = sub.add_parser("demo", help="run the embedded default experiment (no network, no cluster) and write a report",
                          description="The embedded default: synthetic 12-lead ECGs from two simulated sites, the zoo's "
                                      "models served as separate processes, linear probes at 3 training fractions x 3 "
                                      "seeds, UMAP and SHAP. Writes report.html and results.json.",
                          epilog=EXIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--out", default="reports/demo", help="output directory (default: reports/demo)")
    _runtime_flags(demo)
    demo.set_defaults(func=_cmd_demo)

    run = sub.add_parser("run", help="run an experiment file, or a quick experiment from flags",
                         description="Run EXPERIMENT.yaml (see docs/experiment.md), or the quick form: "
                                     "ecglens run --dataset KIND:PATH --model NAME_OR_DIR_OR_ENDPOINT "
                                     "[--task T] [--fractions 0.01,0.1,1.0] [--seeds 0,1,2] --out DIR",
                         epilog=EXIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("experiment", nargs="?", help="experiment YAML file")
    run.add_argument("--dataset", action="append", metavar="KIND:PATH",
                     help="dataset, e.g. synthetic:eu,sa@120 (repeatable)")
    run.add_argument("--model", action="append", metavar="NAME|DIR|ENDPOINT",
                     help="zoo name, package directory (both launched as servers) or a running endpoint: HOST:PORT "
                          "(ecglens.v1), v2://HOST:PORT/MODEL[?sampling_rate_hz=500&leads=I,II,...] (KServe/Triton "
                          "V2), grpcs:// or v2s:// for TLS (repeatable)")
    run.add_argument("--task", action="append", help="task name (default: every task of each dataset)")
    run.add_argument("--fractions", help="training fractions, e.g. 0.01,0.1,1.0")
    run.add_argument("--k-shots", help="k examples per class, e.g. 1,5,10")
    run.add_argument("--seeds", help="seeds, e.g. 0,1,2")
    run.add_argument("--out", default="reports/run", help="output directory (default: reports/run)")
    _runtime_flags(run)
    run.set_defaults(func=_cmd_run)

    datasets = sub.add_parser("datasets", help="inspect datasets (records, rates, leads, labels, problems)",
                              description="Dataset tools. Kinds: synthetic, ptbxl, challenge, code15, wfdb.")
    ds_sub = datasets.add_subparsers(dest="datasets_command", metavar="DATASETS_COMMAND", required=True)
    describe = ds_sub.add_parser("describe", help="summarise a dataset: records, patients, rates, lengths, leads, "
                                                  "label counts, sources, problems found")
    describe.add_argument("dataset", help="KIND:PATH (e.g. ptbxl:/data/ptb-xl, synthetic:eu,sa@100) or a bare PATH "
                                          "whose kind is detected from its layout")
    describe.add_argument("--json", action="store_true", help="print JSON")
    describe.set_defaults(func=_cmd_datasets_describe)

    check = sub.add_parser("check", help="check that an endpoint can serve ECGLens (ecglens.v1 or KServe V2)",
                           description="HOST:PORT (ecglens.v1): learns the contract only through server reflection "
                                       "and grpc.health.v1 (as any third-party client would), then checks card, "
                                       "Embed, errors. v2://HOST:PORT/MODEL[?sampling_rate_hz=500&leads=...]: "
                                       "ServerLive/Ready, ModelReady, ModelMetadata, the model's ECG meaning, "
                                       "ModelInfer shape and determinism; what V2 does not promise is a warning. "
                                       "Exit 0 when no check fails.")
    check.add_argument("address", metavar="ENDPOINT",
                       help="HOST:PORT, grpcs://HOST:PORT, v2://HOST:PORT/MODEL[?settings] or v2s://... "
                            "(the syntax of --model; see docs/experiment.md)")
    check.add_argument("--timeout", type=float, default=60.0, help="seconds per call")
    check.add_argument("--connect-timeout", type=float, default=10.0,
                       help="seconds to reach the endpoint before giving up (default 10)")
    check.add_argument("--tls", action="store_true", help="connect over TLS (as grpcs:// or v2s://)")
    check.add_argument("--ca-file", help="PEM CA bundle to trust (implies TLS)")
    check.add_argument("--token-file", help="file holding a bearer token sent with every call")
    check.set_defaults(func=_cmd_check)
    return parser


def _needs_torch(args: argparse.Namespace) -> int:
    """`ecglens pretrain` where PyTorch is not installed: say so instead of a traceback."""
    raise _UsageError("`ecglens pretrain` needs PyTorch, which is not installed here (the ONNX server image has none)")


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _interrupted(exit_: SystemExit) -> bool:
    """True for the SystemExit(SIGTERM) that ray.init's own SIGTERM handler (which replaces ours) raises."""
    return exit_.code == signal.SIGTERM


def main(argv: list[str] | None = None) -> int:
    """Parse and dispatch; user errors print one clear line and exit 2."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.func is not _needs_torch:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    from orchestrator.endpoints import EndpointError
    from orchestrator.experiment import ConfigError
    from services.common.process import ServerStartError
    from services.embedding.card import CardError

    signal.signal(signal.SIGTERM, _raise_interrupt)  # stop launched servers on SIGTERM as on Ctrl-C
    # Ray's C++ failure-signal handler would otherwise catch SIGTERM itself and abort the driver (exit -6)
    # before any cleanup; with it off, SIGTERM reaches Python and unwinds like Ctrl-C.
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    try:
        return int(args.func(args) or 0)
    except (CardError, ConfigError, _UsageError, ServerStartError, EndpointError) as err:
        print(f"ecglens: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupt_exit()
    except SystemExit as exit_:
        if _interrupted(exit_):
            return _interrupt_exit()
        raise


def _interrupt_exit() -> int:
    print("ecglens: interrupted; every process it started has been stopped", file=sys.stderr)
    return 130


if __name__ == "__main__":
    sys.exit(main())
