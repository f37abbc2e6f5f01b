"""Generate the Python stubs of a proto package next to its .proto files.

Packages: `ecglens.v1` (protos/ecglens/v1, ours) and `inference` (protos/inference, the vendored
Open Inference Protocol). Run `python -m protos.generate` (every package) or
`python -m protos.generate ecglens.v1` after editing a .proto; tests/test_protos.py and
tests/test_inference_protos.py fail while the committed stubs differ from what this produces.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
PACKAGES = ("ecglens.v1", "inference")
# Deliberate edits of the vendored Open Inference Protocol file, as (upstream text, local text).
# ModelMetadataResponse field 6: upstream OIP says `map<string, string> properties`, but Seldon
# MLServer (1.7.x, proto/dataplane.proto) sends `map<string, InferParameter> parameters` under the same
# number. A string map cannot parse a map of messages ("Exception deserializing response" on MLServer's
# metadata whenever it carries int64 or bool parameters), so ECGLens follows MLServer: our server
# sends the card's ECG meaning as string InferParameters and our client reads string/int/bool/double
# ones. A server that follows upstream (strings in field 6) cannot be read for field 6 by this
# definition either way; MLServer is the V2 server ECGLens is tested against, so its wire form wins.
INFERENCE_PATCHES = [(
    "  // Optional Model Properties\n  map<string, string> properties = 6;\n",
    "  // Optional Model Properties\n"
    "  // LOCAL PATCH (protos/generate.py INFERENCE_PATCHES): upstream's `map<string, string> properties = 6`\n"
    "  // cannot parse what MLServer sends as field 6; this is MLServer's declaration (proto/dataplane.proto).\n"
    "  map<string, InferParameter> parameters = 6;\n",
)]


def unpatched(text: str) -> str:
    """The vendored file's upstream part with INFERENCE_PATCHES undone (what upstream's sha256 is of)."""
    for upstream, local in INFERENCE_PATCHES:
        if text.count(local) != 1:
            raise ValueError(f"local patch not found exactly once: {local[:80]!r}")
        text = text.replace(local, upstream)
    return text


def package_dir(package: str) -> Path:
    """The folder holding a package's .proto files and committed stubs, e.g. protos/ecglens/v1."""
    if package not in PACKAGES:
        raise ValueError(f"unknown proto package {package!r}; known: {', '.join(PACKAGES)}")
    return PROTO_ROOT.joinpath(*package.split("."))


def generate(out_root: Path, package: str = "ecglens.v1") -> list[Path]:
    """Compile every .proto of package into out_root; return the written files."""
    from grpc_tools import protoc
    import grpc_tools

    source = package_dir(package)
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in source.glob("*.proto"))
    well_known = str(Path(grpc_tools.__file__).parent / "_proto")
    args = ["protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", f"--python_out={out_root}",
            f"--pyi_out={out_root}", f"--grpc_python_out={out_root}", *protos]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {protos}")
    written = sorted(out_root.joinpath(*package.split(".")).glob("*_pb2*.py*"))
    sibling_import = re.compile(rf"^from {re.escape(package)} import ", flags=re.M)
    for path in written:
        # Generated code imports siblings as the top-level package (`ecglens.v1`, `inference`); make
        # them package-relative so the stubs work from inside `protos.` and never shadow another
        # top-level package of that name.
        path.write_text(sibling_import.sub("from . import ", path.read_text()))
    return written


def write_stubs(package: str) -> list[Path]:
    """Regenerate package's committed stubs in place; return their paths."""
    targets = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(Path(tmp), package):
            target = package_dir(package) / path.name
            target.write_bytes(path.read_bytes())
            targets.append(target)
    return targets


def main(argv: list[str] | None = None) -> int:
    """Regenerate the committed stubs of the named packages (default: all)."""
    parser = argparse.ArgumentParser(prog="python -m protos.generate", description=__doc__)
    parser.add_argument("packages", nargs="*", metavar="PACKAGE",
                        help=f"proto packages to regenerate: {', '.join(PACKAGES)} (default: all)")
    packages = parser.parse_args(argv).packages or list(PACKAGES)
    for unknown in set(packages) - set(PACKAGES):
        parser.error(f"unknown package {unknown!r}; known: {', '.join(PACKAGES)}")
    for package in packages:
        for target in write_stubs(package):
            print(f"wrote {target.relative_to(PROTO_ROOT.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
