"""glibc malloc settings for processes that move many multi-megabyte messages (servers and their clients)."""
from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 128 * 1024 * 1024  # freed heap kept for reuse before it is returned to the OS
_done: bool | None = None


def reuse_large_buffers() -> bool:
    """Keep freed buffers below 32 MiB in the heap for the next message; True when applied (once per process).

    A gRPC process allocates each request's buffers (the wire bytes, gRPC's slices, the parsed copy) in
    per-thread arenas, where glibc serves anything above its mmap threshold by a fresh mmap and unmaps it
    on free, so every page of the next message faults again: measured at a 32-ECG batch, 200 page faults
    and 0.6 ms of kernel time per ECG on the client alone, more than all of its user time. A fixed mmap
    threshold of 32 MiB and a 128 MiB trim threshold make those buffers reusable (faults fell to ~6 per
    ECG). A single-threaded numpy loop gets this already from glibc's sliding threshold. The cost is up
    to 128 MiB of freed heap kept per process. ECGLENS_MALLOC_TUNE=0 leaves malloc alone.
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("ECGLENS_MALLOC_TUNE", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is None:  # not glibc (macOS, musl without mallopt): nothing to tune
        return False
    # The user may have tuned malloc through glibc's own environment variables: theirs wins.
    if not any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")):
        _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
