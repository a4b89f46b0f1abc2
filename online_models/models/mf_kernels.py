"""Compiled kernels of the online MF (mf.py holds the state): one learning step and the scores
of item rows, as plain sequential loops — no BLAS, no SIMD reduction, no fastmath — so the
factors and scores are the same on every CPU (numpy's `dot` picks its kernel per CPU)."""
from __future__ import annotations

import math

import numpy as np

from online_models.jit import kernel


@kernel
def _dot(a, b):
    s = 0.0
    for f in range(len(a)):
        s += a[f] * b[f]
    return s


@kernel
def _sigmoid(x):
    if x < -30.0:
        return 0.0
    if x > 30.0:
        return 1.0
    return 1.0 / (1.0 + math.exp(-x))


@kernel
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


@kernel
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


@kernel
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


@kernel
def all_scores(V, bias, size, vec):
    """Raw scores of rows 0..size-1."""
    out = np.empty(size)
    for r in range(size):
        s = 0.0
        for f in range(len(vec)):
            s += V[r, f] * vec[f]
        out[r] = s + bias[r]
    return out


def warm_up() -> None:
    """Call every kernel once with tiny arrays of the types the model passes (see covisit_kernels)."""
    V, bias = np.zeros((3, 2)), np.zeros(3)
    rows, u = np.array([1], dtype=np.int64), np.zeros(2)
    step(V, bias, 0, 1, rows, u, False, 1.0, 0.05, 0.002)
    step(V, bias, 0, -1, rows, np.zeros(0), True, 1.0, 0.05, 0.002)
    pooled(V, rows, u)
    scores(V, bias, rows, u)
    all_scores(V, bias, 3, u)
