"""The real ECGLens embedding server (ecglens.v1 and its V2 face on one port), as tests/test_v2.py spawns it.

Run: python tests/v2_testserver.py --model PACKAGE --port-file F (binds 127.0.0.1, any free port).
"""
from __future__ import annotations

import sys

from services.embedding.server import main

if __name__ == "__main__":
    sys.exit(main(["--port", "0", "--grace", "1", *sys.argv[1:]]))
