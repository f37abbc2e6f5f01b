"""Compare two results.json files key by key: what was added, removed or changed, numbers within a tolerance.

    python -m orchestrator.results.diff BEFORE.json AFTER.json [--tol 1e-12]

Exit status 0 when nothing differs (beyond the tolerance), 1 otherwise. Key order is ignored (a JSON
object is unordered); list order is not (rows are written in a documented order).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Iterator


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def differences(a: Any, b: Any, tol: float = 0.0, path: str = "") -> Iterator[str]:
    """One line per difference: 'added PATH', 'removed PATH', 'changed PATH: A -> B', 'length PATH: m -> n'."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            where = f"{path}/{key}"
            if key not in a:
                yield f"added {where}"
            elif key not in b:
                yield f"removed {where}"
            else:
                yield from differences(a[key], b[key], tol, where)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"length {path}: {len(a)} -> {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, tol, f"{path}[{i}]")
    elif _number(a) and _number(b):
        if not (a == b or (math.isfinite(a) and math.isfinite(b) and abs(a - b) <= tol)):
            yield f"changed {path}: {a!r} -> {b!r} (|d| = {abs(a - b):.3g})"
    elif a != b:
        yield f"changed {path}: {json.dumps(a)[:80]} -> {json.dumps(b)[:80]}"


def main(argv: list[str] | None = None) -> int:
    """Print the differences of two results.json files; exit 1 when there are any."""
    parser = argparse.ArgumentParser(prog="python -m orchestrator.results.diff", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--tol", type=float, default=0.0, help="absolute tolerance for numbers (default 0: exact)")
    args = parser.parse_args(argv)
    with open(args.before) as fa, open(args.after) as fb:
        found = list(differences(json.load(fa), json.load(fb), args.tol))
    print("\n".join(found) if found else "no differences")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
