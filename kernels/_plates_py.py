"""Pure-Python twin of ``_plates.pyx`` for platforms without a C compiler (same results, slower).

CI sets ``KERNELS_REQUIRE_NATIVE=1``; a test then fails if this module was loaded instead of the
compiled one.
"""

from __future__ import annotations

import numpy as np

CYTHON_MODULE = 0


def _distance(a, la, ia, b, lb, ib, sub, n_codes, cutoff):
    prev = [0] * (lb + 1)
    for j in range(1, lb + 1):
        prev[j] = prev[j - 1] + int(ib[j - 1])
    for i in range(1, la + 1):
        row = int(a[i - 1]) * n_codes
        d = int(ia[i - 1])
        cur = [prev[0] + d] + [0] * lb
        for j in range(1, lb + 1):
            cur[j] = min(
                prev[j - 1] + int(sub[row + int(b[j - 1])]),
                prev[j] + d,
                cur[j - 1] + int(ib[j - 1]),
            )
        if min(cur) > cutoff:
            return min(cur)
        prev = cur
    return prev[lb]


def pairwise(a, la, ia, b, lb, ib, sub, n_codes, cutoff):
    return np.array(
        [
            _distance(a[i], la[i], ia[i], b[i], lb[i], ib[i], sub, n_codes, cutoff)
            for i in range(len(a))
        ],
        dtype=np.int32,
    )


def cdist(a, la, ia, b, lb, ib, sub, n_codes, cutoff):
    out = np.empty((len(a), len(b)), dtype=np.int32)
    for i in range(len(a)):
        for j in range(len(b)):
            out[i, j] = _distance(a[i], la[i], ia[i], b[j], lb[j], ib[j], sub, n_codes, cutoff)
    return out


def align_in_order(cost, null_row, null_col):
    n, m = cost.shape
    best = np.zeros((n + 1, m + 1))
    move = np.zeros((n + 1, m + 1), dtype=np.int8)
    for j in range(1, m + 1):
        best[0, j] = best[0, j - 1] + null_col
        move[0, j] = 2
    for i in range(1, n + 1):
        best[i, 0] = best[i - 1, 0] + null_row
        move[i, 0] = 1
        for j in range(1, m + 1):
            options = (
                best[i - 1, j - 1] + cost[i - 1, j - 1],
                best[i - 1, j] + null_row,
                best[i, j - 1] + null_col,
            )
            k = 0
            if options[1] < options[k]:
                k = 1
            if options[2] < options[k]:
                k = 2
            best[i, j] = options[k]
            move[i, j] = k
    match = np.full(n, -1, dtype=np.int64)
    i, j = n, m
    while i > 0 and j > 0:
        if move[i, j] == 0:
            match[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif move[i, j] == 1:
            i -= 1
        else:
            j -= 1
    return match
