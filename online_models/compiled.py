"""The engine's compiled kernels, made ready before a worker takes traffic (docs/decisions/0017).

numba compiles a kernel on its first call, or loads it from its on-disk cache (see `jit.py`). A
cold compile takes seconds: done in the middle of a consumer batch it would stall the poll loop,
so the worker calls `warm_up` before it joins its group, and reports how long it took.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from numba.core.registry import CPUDispatcher

from online_models.models import covisit_kernels, mf_kernels

MODULES = (covisit_kernels, mf_kernels)


@dataclass(frozen=True)
class WarmUp:
    seconds: float
    loaded: int      # kernels loaded from numba's on-disk cache
    compiled: int    # kernels compiled now (cold or stale cache, another CPU, or no cache)
    cache_dir: str   # where numba keeps them ("" when no cache is writable)

    def describe(self) -> str:
        where = f"cache {self.cache_dir}" if self.cache_dir else "no writable cache"
        return (f"engine kernels ready in {self.seconds:.1f} s "
                f"({self.loaded} loaded, {self.compiled} compiled; {where})")


def kernels() -> list[CPUDispatcher]:
    return [f for m in MODULES for f in vars(m).values() if isinstance(f, CPUDispatcher)]


def warm_up() -> WarmUp:
    """Compile or load every kernel (about 0.5 s from a warm cache, ~10 s cold)."""
    start = time.perf_counter()
    for module in MODULES:
        module.warm_up()
    seconds = time.perf_counter() - start
    stats = [k.stats for k in kernels()]
    return WarmUp(seconds,
                  loaded=sum(1 for s in stats if s.cache_hits),
                  compiled=sum(1 for s in stats if s.cache_misses),
                  cache_dir=next((s.cache_path for s in stats if s.cache_path), ""))
