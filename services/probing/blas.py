"""One BLAS thread while probes fit: faster on small matrices and bit-identical on any host."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from threadpoolctl import threadpool_limits

_BLAS_LOCK = threading.Lock()
_blas_users = 0
_blas_limiter: threadpool_limits | None = None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Hold BLAS at one thread while any probe in this process is fitting."""
    # Probe matrices are small: BLAS threads cost more than they save (10x on 2 cores), and one
    # thread fixes the summation order so fits are bit-identical on any host. The limit is
    # process-wide, so it is reference-counted across concurrent fits (server worker threads).
    global _blas_users, _blas_limiter
    with _BLAS_LOCK:
        if _blas_users == 0:
            _blas_limiter = threadpool_limits(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None
