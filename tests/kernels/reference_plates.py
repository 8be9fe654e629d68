"""The plate distance and the order-preserving assignment, written slowly from their definitions."""

from __future__ import annotations

import itertools

from kernels.plate_grammar import PROVINCES, SUFFIXES

TABLE = {
    "strong": {"0D", "0Q", "8B", "2Z", "5S", "6G"},
    "weak": {
        "DQ",
        "17",
        "1T",
        "1L",
        "7T",
        "0C",
        "CG",
        "89",
        "UV",
        "VY",
        "UY",
        "MN",
        "MW",
        "NW",
        "HM",
        "KX",
        "EF",
        "PR",
        "4A",
    },
}


def substitution(a: str, b: str, local: str | None) -> float:
    if a == b:
        return 0.0
    if "?" in (a, b):
        return 0.3
    if a + b in TABLE["strong"] or b + a in TABLE["strong"]:
        return 0.25
    if a + b in TABLE["weak"] or b + a in TABLE["weak"]:
        return 0.5
    if a in PROVINCES and b in PROVINCES:
        return 0.3 if local in (a, b) else 0.5
    return 1.0


def indel(plate: str, i: int) -> float:
    if i == 0 or i == len(plate) - 1:
        return 0.5
    if plate[i] in SUFFIXES:
        return 0.5
    return 1.0


def distance(a: str, b: str, local: str | None = None) -> float:
    d = [[0.0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        d[i][0] = d[i - 1][0] + indel(a, i - 1)
    for j in range(1, len(b) + 1):
        d[0][j] = d[0][j - 1] + indel(b, j - 1)
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(
                d[i - 1][j] + indel(a, i - 1),
                d[i][j - 1] + indel(b, j - 1),
                d[i - 1][j - 1] + substitution(a[i - 1], b[j - 1], local),
            )
    return d[len(a)][len(b)]


def best_order_preserving_cost(cost, n: int, m: int, null_row: float, null_col: float) -> float:
    """Try every order-preserving partial matching (small inputs only)."""
    best = null_row * n + null_col * m
    for k in range(1, min(n, m) + 1):
        for rows in itertools.combinations(range(n), k):
            for cols in itertools.combinations(range(m), k):
                total = sum(cost[r][c] for r, c in zip(rows, cols, strict=True))
                total += null_row * (n - k) + null_col * (m - k)
                best = min(best, total)
    return best
