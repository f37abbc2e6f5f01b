"""One BLAS thread while probes fit: faster on small matrices and bit-identical on any host."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from threadpoolctl import threadpool_limits

from services.common.threads import free_openblas_control

_BLAS_LOCK = threading.Lock()
_blas_users = 0
_blas_limiter: threadpool_limits | None = None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Hold BLAS at one thread while any probe in this process is fitting."""
    # Probe matrices are small: BLAS threads cost more than they save (10x on 2 cores), and one
    # thread fixes the summation order so fits are bit-identical on any host. The limit is
    # process-wide, so it is reference-counted across concurrent fits (server worker threads), and set
    # and restored under _BLAS_LOCK, taking OpenBLAS control each time and releasing it once restored.
    global _blas_users, _blas_limiter
    with _BLAS_LOCK:
        if _blas_users == 0:
            free_openblas_control()
            _blas_limiter = threadpool_limits(limits=1, user_api="blas")  # held by this thread until the end
        _blas_users += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                free_openblas_control()  # the last fit to end may run in another thread than the first
                _blas_limiter.restore_original_limits()
                free_openblas_control()
                _blas_limiter = None
