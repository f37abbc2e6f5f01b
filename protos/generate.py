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
