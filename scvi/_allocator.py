"""Keep freed tensor memory inside the process while training on the CPU (glibc only).

Training allocates and frees dozens of megabyte-sized temporaries per minibatch. With glibc's
default, adaptive settings, freed blocks at the top of the heap are handed back to the kernel
and the next minibatch faults the same pages in again; in a virtual machine those page faults
cost more than the arithmetic (the ZINB likelihood ran about twice as slow because of them).
Raising the mmap and trim thresholds makes glibc reuse the memory instead. Peak memory is
unchanged (it is the high-water mark either way); arrays above 32 MB are still mapped and
unmapped individually.

Set the environment variable ``SCVI_KEEP_MALLOC_DEFAULTS=1`` to leave the allocator alone.
"""
import ctypes
import ctypes.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's own upper bound for the adaptive mmap threshold on 64-bit systems
_MMAP_THRESHOLD_BYTES = 32 << 20
_TRIM_THRESHOLD_BYTES = 256 << 20

_tuned = None


def tune_cpu_allocator() -> bool:
    """Raise glibc's mmap/trim thresholds once per process; return whether they are raised.

    A no-op (returning ``False``) on systems without glibc or when ``SCVI_KEEP_MALLOC_DEFAULTS``
    is set.
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if os.environ.get("SCVI_KEEP_MALLOC_DEFAULTS") or not sys.platform.startswith("linux"):
        return _tuned
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return _tuned
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # the mmap threshold first: setting the trim threshold alone disables glibc's adaptive mmap
    # threshold and would map every large temporary
    _tuned = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)
    )
    logger.debug("glibc malloc thresholds raised: %s", _tuned)
    return _tuned
