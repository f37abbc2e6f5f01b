"""Generate the Python stubs of the vendored Open Inference Protocol (protos/inference/*.proto).

Run `python -m protos.generate_inference` after re-vendoring the .proto; tests/test_inference_protos.py
fails while the committed stubs differ from what this produces.
"""
from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
PACKAGE_DIR = PROTO_ROOT / "inference"


def generate(out_root: Path) -> list[Path]:
    """Compile every .proto under inference/ into out_root; return the written files."""
    from grpc_tools import protoc
    import grpc_tools

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PACKAGE_DIR.glob("*.proto"))
    well_known = str(Path(grpc_tools.__file__).parent / "_proto")
    args = ["protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", f"--python_out={out_root}",
            f"--pyi_out={out_root}", f"--grpc_python_out={out_root}", *protos]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {protos}")
    written = sorted((out_root / "inference").glob("*_pb2*.py*"))
    for path in written:
        # Generated code imports siblings as top-level `inference`; make them package-relative so the
        # stubs work as `protos.inference` and never shadow another top-level `inference` package.
        text = re.sub(r"^from inference import ", "from . import ", path.read_text(), flags=re.M)
        path.write_text(text)
    return written


def main() -> int:
    """Regenerate the committed stubs in place."""
    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(Path(tmp)):
            target = PACKAGE_DIR / path.name
            target.write_bytes(path.read_bytes())
            print(f"wrote {target.relative_to(PROTO_ROOT.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
