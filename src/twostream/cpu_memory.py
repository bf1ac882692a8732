"""Keep freed memory in the process on CPU training (glibc ``mallopt``), instead of returning it to the OS.

Why: PyTorch's CPU allocator is plain ``malloc``. Every training step frees and re-allocates the same
activations and gradients (tens of MB each for a ViT-B); glibc serves blocks above its mmap threshold
with fresh ``mmap``s and trims the heap top on free, so each step pays the kernel again to map and zero
those pages (ViT-B-32, batch 8, one thread: 60,000-85,000 page faults and 0.13 s of system time per
step). A fixed 32 MB mmap threshold (glibc's maximum) and a 1 GiB trim threshold keep the memory in the
heap for the next step: 0 faults and 6 % less wall time per step, measured in docs/performance.md. The
cost: the process keeps up to its peak step's memory between steps, which training needs anyway.
Nothing happens off Linux/glibc. ``twostream fit --cpu_malloc_tuning false`` turns it off.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc malloc.h
MMAP_THRESHOLD = 32 << 20  # glibc's largest accepted value (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
TRIM_THRESHOLD = 1 << 30

_applied = False


def keep_freed_memory() -> bool:
    """Set the thresholds once per process; True when they are (now or before) in force."""
    global _applied
    if _applied:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    except (OSError, AttributeError):
        return False
    _applied = ok
    return ok
