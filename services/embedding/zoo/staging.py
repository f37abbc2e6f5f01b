"""Publish a package directory atomically: build it in a private staging dir, move it into place only if it validates."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def staged_package(out_root: Path, name: str) -> Iterator[Path]:
    """Yield a staging dir next to out_root/name; it replaces out_root/name only if the block completes.

    The staging dir is a dot-directory (listings skip it) and is removed either way, so a crash or a failed
    validation never leaves half a package.
    """
    out_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out_root))
    staging.chmod(0o755)  # mkdtemp makes it private; containers read it as another user
    try:
        yield staging
        target = out_root / name
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
