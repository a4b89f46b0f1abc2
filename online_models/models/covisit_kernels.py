"""Compiled kernels of the co-visitation model (covisitation.py holds the state they work on).

Rows live in one arena: item `a`'s neighbours are `nb[off[a]:off[a]+ln[a]]` with weights at the
same places in `wt`, in a block of capacity `cp[a]` (0: no row). A full row moves to a block
twice its size at the arena's top; the caller guarantees room for that (`room_needed`).
Orders are by weight, ties by the neighbours' `tie` keys (item_ids.py): never by arena layout,
which a restore does not reproduce. Plain sequential float arithmetic, no fastmath: the same
numbers on every CPU.
"""
from __future__ import annotations

import numpy as np

from online_models.jit import kernel

FIRST_CAPACITY = 8


def room_needed(pairs: int, max_neighbors: int) -> int:
    """Arena slots `add_pairs` may take for `pairs` additions (each may move one row)."""
    return pairs * (2 * max_neighbors + 1)


@kernel
def _best_first(nb, wt, start, n, tie):
    """Positions start..start+n-1 ordered by weight descending, ties by tie key ascending."""
    keys = np.empty(n, dtype=np.int64)
    for k in range(n):
        keys[k] = tie[nb[start + k]]
    by_tie = np.argsort(keys, kind="mergesort")
    neg = np.empty(n)
    for k in range(n):
        neg[k] = -wt[start + by_tie[k]]
    order = by_tie[np.argsort(neg, kind="mergesort")]
    return order + start


@kernel
def add_pairs(off, ln, cp, nb, wt, top, tie, dirty, pa, pb, pw, max_neighbors):
    """Add weight pw[k] to neighbour pb[k] of row pa[k], in order; a row past twice
    `max_neighbors` keeps its `max_neighbors` strongest. Returns (arena top, rows created)."""
    created = 0
    cap_max = 2 * max_neighbors + 1
    for k in range(len(pa)):
        a, b, v = pa[k], pb[k], pw[k]
        dirty[a] = 1
        if cp[a] == 0:
            off[a], ln[a], cp[a] = top, 0, FIRST_CAPACITY
            top += FIRST_CAPACITY
            created += 1
        o, n = off[a], ln[a]
        found = False
        for p in range(o, o + n):
            if nb[p] == b:
                wt[p] += v
                found = True
                break
        if found:
            continue
        if n == cp[a]:  # full: move to a bigger block at the top
            cap = min(2 * cp[a], cap_max)
            nb[top:top + n] = nb[o:o + n]
            wt[top:top + n] = wt[o:o + n]
            off[a], cp[a], o = top, cap, top
            top += cap
        nb[o + n] = b
        wt[o + n] = 0.0 + v
        n += 1
        ln[a] = n
        if n > 2 * max_neighbors:  # prune to the strongest, stored best first
            order = _best_first(nb, wt, o, n, tie)[:max_neighbors]
            keep_nb = nb[order]
            keep_wt = wt[order]
            nb[o:o + max_neighbors] = keep_nb
            wt[o:o + max_neighbors] = keep_wt
            ln[a] = max_neighbors
    return top, created


@kernel
def strongest(off, ln, nb, wt, tie, a, n):
    """Row a's n strongest neighbours and their weights, best first."""
    order = _best_first(nb, wt, off[a], ln[a], tie)[:n]
    return nb[order], wt[order]


@kernel
def evict_coldest(off, ln, cp, wt, tie, dirty, keep):
    """Keep the `keep` rows of most total weight (ties by tie key); drop the others."""
    live = np.flatnonzero(cp)
    heat = np.empty(len(live))
    keys = np.empty(len(live), dtype=np.int64)
    for r in range(len(live)):
        a = live[r]
        s = 0.0
        for p in range(off[a], off[a] + ln[a]):
            s += wt[p]
        heat[r] = -s
        keys[r] = tie[a]
    by_tie = np.argsort(keys, kind="mergesort")
    order = by_tie[np.argsort(heat[by_tie], kind="mergesort")]
    for r in order[keep:]:
        a = live[r]
        off[a], ln[a], cp[a] = 0, 0, 0
        dirty[a] = 1
    return max(0, len(live) - keep)


@kernel
def rescale(off, ln, cp, nb, wt, dirty, mult):
    """Multiply every weight by `mult`; weights that underflow to 0 leave, and so do rows left
    empty. Returns the number of rows dropped."""
    dropped = 0
    for a in np.flatnonzero(cp):
        o, n = off[a], ln[a]
        m = 0
        for p in range(o, o + n):
            v = wt[p] * mult
            if v != 0.0:
                nb[o + m] = nb[p]
                wt[o + m] = v
                m += 1
        ln[a] = m
        dirty[a] = 1
        if m == 0:
            off[a], cp[a] = 0, 0
            dropped += 1
    return dropped


@kernel
def first_row_holding(off, ln, nb, rows, items, mark):
    """For each item, the position in `rows` of the first row that holds it as a neighbour,
    else -1 (-1 rows hold nothing). `mark`: scratch of one 0 per item id, left all 0."""
    out = np.full(len(items), -1, dtype=np.int64)
    for k in range(len(items)):
        if items[k] >= 0:
            mark[items[k]] = k + 1
    for r in range(len(rows)):
        a = rows[r]
        if a < 0:
            continue
        for p in range(off[a], off[a] + ln[a]):
            k = mark[nb[p]] - 1
            if k >= 0 and out[k] < 0:
                out[k] = r
    for k in range(len(items)):
        if items[k] >= 0:
            mark[items[k]] = 0
    return out


@kernel
def compact(off, ln, cp, nb, wt, remap, new_nb, new_wt):
    """Copy every live row, in item order, into new arenas, renumbering items through `remap`;
    returns the new top. Row metadata is rewritten in place (indexed by the new numbers)."""
    live = np.flatnonzero(cp)
    top = 0
    offs = np.empty(len(live), dtype=np.int64)
    lens = np.empty(len(live), dtype=np.int64)
    caps = np.empty(len(live), dtype=np.int64)
    for r in range(len(live)):
        a = live[r]
        o, n = off[a], ln[a]
        for p in range(n):
            new_nb[top + p] = remap[nb[o + p]]
            new_wt[top + p] = wt[o + p]
        offs[r], lens[r], caps[r] = top, n, cp[a]
        top += cp[a]
    off[:] = 0
    ln[:] = 0
    cp[:] = 0
    for r in range(len(live)):
        a = remap[live[r]]
        off[a], ln[a], cp[a] = offs[r], lens[r], caps[r]
    return top


def warm_up() -> None:
    """Call every kernel once with tiny arrays of the types the model passes: compiles them, or
    loads them from numba's on-disk cache, before traffic needs them."""
    n = 4
    off, ln, cp = (np.zeros(n, dtype=np.int64) for _ in range(3))
    dirty, tie = np.zeros(n, dtype=np.uint8), np.arange(n, dtype=np.int64)
    nb, wt = np.zeros(room_needed(4, 1) + FIRST_CAPACITY, dtype=np.int64), np.zeros(room_needed(4, 1) + FIRST_CAPACITY)
    pa, pb = np.array([0, 1, 0, 2], dtype=np.int64), np.array([1, 0, 2, 0], dtype=np.int64)
    top, _ = add_pairs(off, ln, cp, nb, wt, 0, tie, dirty, pa, pb, np.ones(4), 1)
    strongest(off, ln, nb, wt, tie, 0, 1)
    first_row_holding(off, ln, nb, pa[:1], pb, np.zeros(n, dtype=np.int64))
    rescale(off, ln, cp, nb, wt, dirty, 0.5)
    evict_coldest(off, ln, cp, wt, tie, dirty, 1)
    compact(off, ln, cp, nb, wt, np.arange(n, dtype=np.int64), np.zeros_like(nb), np.zeros_like(wt))
