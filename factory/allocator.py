"""Keep freed tensor memory in the process instead of handing it back to the kernel.

glibc's malloc serves the large buffers of a training step (activations of a batch, tens of
MB) with mmap, or trims them off the heap, once they are freed, so every step faults the same
pages in again. On the 2-core machine of docs/search.md that made the default search spend
more time in the kernel than in torch (216,000 page faults a second; system time 746 s against
user time 621 s); with the thresholds below it ran the same warm-up twice as fast. PyTorch's
CPU tuning guide suggests an allocator that keeps memory (jemalloc, tcmalloc) for the same
reason; glibc's own knobs do it without a dependency.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters, malloc.h
M_MMAP_THRESHOLD = -3
KEEP = 1 << 30  # blocks below 1 GiB come from the heap, not from mmap
TRIM = (1 << 31) - 1  # the heap keeps up to 2 GiB free at its top


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where there is no
    glibc (macOS, musl) or it refuses, and nothing changes."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM))
