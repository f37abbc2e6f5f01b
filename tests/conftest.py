"""Session-wide test settings: caches inside the project, Ray and HOME kept in temp dirs."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# UMAP's numba compilation costs ~30 s; persist it beside the venv so only the first run pays.
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".venv" / "numba-cache"))
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
