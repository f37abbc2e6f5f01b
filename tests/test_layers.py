"""Layers that hold: no import cycles, services/ never imports orchestrator/, no module over 600 lines."""
from __future__ import annotations

from pathlib import Path

from import_graph import build

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("protos", "services", "orchestrator", "ecglens_cli", "bench")
MAX_LINES = 600


def test_no_import_cycles():
    assert build(ROOT, PACKAGES).cycles() == []


def test_lower_layers_never_import_upper_ones():
    graph = build(ROOT, PACKAGES)
    assert graph.back_imports("protos", ("services", "orchestrator", "ecglens_cli", "bench")) == []
    assert graph.back_imports("services", ("orchestrator", "ecglens_cli", "bench")) == []
    assert graph.back_imports("orchestrator", ("ecglens_cli", "bench")) == []


def test_no_hand_written_module_is_too_long():
    assert build(ROOT, PACKAGES).long_modules(MAX_LINES) == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checks_can_fail(tmp_path):
    root = _tree(tmp_path, {
        "services/__init__.py": "",
        "services/a.py": "def f():\n    from services import b  # a function-level import counts too\n",
        "services/b.py": "from .a import f\nimport orchestrator.run\n",
        "services/c_pb2.py": "x = 1\n" * 700,  # generated stubs are exempt
        "orchestrator/__init__.py": "",
        "orchestrator/run.py": "y = 2\n" * 701,
    })
    graph = build(root, ("services", "orchestrator"))
    assert graph.cycles() == [["services.a", "services.b"]]
    assert graph.back_imports("services", ("orchestrator",)) == [("services.b", "orchestrator.run")]
    assert graph.long_modules(600) == [("orchestrator.run", 701)]
