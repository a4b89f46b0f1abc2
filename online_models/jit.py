"""How the engine's kernels are compiled: numba, no fastmath, cached on disk (docs/decisions/0017).

numba keeps its cache beside the module (`__pycache__`), in NUMBA_CACHE_DIR, or in the user's cache
directory — the first one it can write to. Where none is writable (a read-only root filesystem
without a cache volume) `cache=True` would fail at import; the kernels then compile without a cache
on every start, and a warning says how to give them one.
"""
from __future__ import annotations

import logging

from numba import njit

log = logging.getLogger(__name__)
_warned = False


def kernel(fn):
    """`numba.njit(cache=True)`, falling back to an uncached kernel where no cache is writable."""
    global _warned
    try:
        return njit(cache=True)(fn)
    except RuntimeError as e:          # numba: "cannot cache function ...: no locator available"
        if not _warned:
            _warned = True
            log.warning("no writable numba cache directory (%s): the engine's kernels compile at "
                        "every start; set NUMBA_CACHE_DIR to a writable directory", e)
        return njit(fn)
