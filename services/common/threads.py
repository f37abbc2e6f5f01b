"""BLAS thread limits that take effect in whichever Python thread sets them."""
from __future__ import annotations

from threadpoolctl import OpenBLASController


def free_openblas_control() -> None:
    """Let the next thread that sets an OpenBLAS limit have it take effect."""
    # threadpoolctl >= 3.8 hands a pthreads OpenBLAS to the first Python thread that sets a limit and
    # silently ignores every other thread while that one lives. A server fits in whichever worker
    # thread is free, so a fit in a second worker ran with all cores' BLAS threads, and its float32
    # MLP differed from the same fit elsewhere in the last digit; a Ray task meets the same rule.
    clear = getattr(OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)
