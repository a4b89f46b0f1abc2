"""Compiled kernels of the online MF (mf.py holds the state): one learning step and the scores
of item rows, as plain sequential loops — no BLAS, no SIMD reduction, no fastmath — so the
factors and scores are the same on every CPU (numpy's `dot` picks its kernel per CPU)."""
from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def _dot(a, b):
    s = 0.0
    for f in range(len(a)):
        s += a[f] * b[f]
    return s


@njit(cache=True)
def _sigmoid(x):
    if x < -30.0:
        return 0.0
    if x > 30.0:
        return 1.0
    return 1.0 / (1.0 + math.exp(-x))


@njit(cache=True)
def pooled(V, rows, u):
    """The user's representation: the mean of the session rows' vectors, plus their own
    vector `u` (empty: none yet)."""
    k = V.shape[1]
    p = np.zeros(k)
    if len(rows):
        for r in rows:
            for f in range(k):
                p[f] += V[r, f]
        inv = 1.0 / len(rows)
        for f in range(k):
            p[f] *= inv
    if len(u):
        for f in range(k):
            p[f] += u[f]
    return p


@njit(cache=True)
def step(V, bias, i, j, rows, u, negative, weight, lr, reg):
    """One pairwise step: item i over the sampled item j (negative: push i away; j unused).
    Updates V and bias in place and returns the user's new own vector."""
    k = V.shape[1]
    p = pooled(V, rows, u)
    keep = 1.0 - lr * reg
    vi = V[i].copy()
    diff = np.empty(k)
    if negative:
        g = lr * -weight * _sigmoid(_dot(p, vi) + bias[i])
        for f in range(k):
            diff[f] = -vi[f]
            V[i, f] = vi[f] * keep - g * p[f]
        bias[i] -= g
    else:
        vj = V[j].copy()
        for f in range(k):
            diff[f] = vi[f] - vj[f]
        g = lr * min(weight, 4.0) * _sigmoid(-(_dot(p, diff) + bias[i] - bias[j]))
        for f in range(k):
            gp = g * p[f]
            V[i, f] = vi[f] * keep + gp
            V[j, f] = vj[f] * keep - gp
        bias[i] += g
        bias[j] -= g
    # The user's own vector and the session items it was pooled from share the gradient.
    new_u = np.empty(k)
    for f in range(k):
        s = g * diff[f]
        new_u[f] = s if len(u) == 0 else u[f] * keep + s
    if len(rows):
        inv = 1.0 / len(rows)
        done = np.zeros(len(rows), dtype=np.bool_)
        for a in range(len(rows)):  # each distinct session row once, however often it repeats
            if done[a]:
                continue
            for b in range(a, len(rows)):
                if rows[b] == rows[a]:
                    done[b] = True
            r = rows[a]
            for f in range(k):
                V[r, f] += g * diff[f] * inv
    return new_u


@njit(cache=True)
def scores(V, bias, rows, vec):
    """Raw scores of the given rows: their vector . vec + bias."""
    out = np.empty(len(rows))
    for n in range(len(rows)):
        r = rows[n]
        s = 0.0
        for f in range(len(vec)):
            s += V[r, f] * vec[f]
        out[n] = s + bias[r]
    return out


@njit(cache=True)
def all_scores(V, bias, size, vec):
    """Raw scores of rows 0..size-1."""
    out = np.empty(size)
    for r in range(size):
        s = 0.0
        for f in range(len(vec)):
            s += V[r, f] * vec[f]
        out[r] = s + bias[r]
    return out
