"""The engine's compiled kernels: cached on disk by numba and loaded at the next start; where no
cache directory is writable they still compile (with a warning), instead of failing at import."""
from __future__ import annotations

import os
import subprocess
import sys

REPORT = ("import logging, sys; logging.basicConfig(stream=sys.stdout);"
          "from online_models.compiled import warm_up; w = warm_up();"
          "print(w.loaded, w.compiled, repr(w.cache_dir)); print(w.describe())")


def _start(env: dict) -> tuple[int, int, str, str]:
    out = subprocess.run([sys.executable, "-c", REPORT], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=300, check=True).stdout
    counts, *rest = out.splitlines()[-2:]
    loaded, compiled, cache_dir = counts.split(" ", 2)
    return int(loaded), int(compiled), cache_dir, out


def test_second_start_loads_every_kernel_from_the_cache(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_CACHE_LOCATOR_CLASSES": "UserProvidedCacheLocator"}
    loaded, compiled, cache_dir, _ = _start(env)
    assert loaded == 0 and compiled >= 10 and cache_dir.startswith(repr(str(tmp_path))[:-1])
    assert any(p.suffix == ".nbi" for p in tmp_path.rglob("*"))        # numba's cache index
    again = _start(env)
    assert again[0] >= 10 and again[1] == 0, again[3]   # helpers inlined into callers load with them


def test_no_writable_cache_compiles_anyway_and_says_so(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    loaded, compiled, cache_dir, out = _start({"NUMBA_CACHE_DIR": str(not_a_dir),
                                               "NUMBA_CACHE_LOCATOR_CLASSES": "UserProvidedCacheLocator"})
    assert (loaded, cache_dir) == (0, "''") and compiled > 0
    assert "no writable numba cache directory" in out and "set NUMBA_CACHE_DIR" in out
    assert "no writable cache" in out.splitlines()[-1]
