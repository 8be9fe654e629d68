# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Native plate kernels: confusion-weighted edit distance on integer-coded plates and the
order-preserving assignment of the site join. The pure-Python twin is ``_plates_py.py``; the
facade ``plates.py`` picks this module when it is built.

Costs are int32 in hundredths (0.25 -> 25). ``sub`` is a flattened [n_codes, n_codes] matrix;
``indel[i, p]`` is the cost of inserting or deleting character p of plate i.
"""

import numpy as np

from libc.stdint cimport int32_t, int64_t

CYTHON_MODULE = 1

cdef enum:
    MAXL = 8


cdef inline int32_t _distance(const int32_t* a, int la, const int32_t* ia,
                              const int32_t* b, int lb, const int32_t* ib,
                              const int32_t* sub, int n_codes, int32_t cutoff) noexcept nogil:
    """Weighted Levenshtein; returns the exact distance if <= cutoff, else a value > cutoff.

    The left and diagonal neighbours ride in registers (``left``, ``diag``): keeping them in the
    row arrays puts a store-to-load round trip on the critical path of every cell.
    """
    cdef int32_t rows[2][MAXL + 1]
    cdef int32_t* prev = rows[0]
    cdef int32_t* cur = rows[1]
    cdef int32_t* tmp
    cdef int32_t v, t, rowmin, d, left, diag, up
    cdef const int32_t* srow
    cdef int i, j
    prev[0] = 0
    for j in range(1, lb + 1):
        prev[j] = prev[j - 1] + ib[j - 1]
    for i in range(1, la + 1):
        srow = sub + a[i - 1] * n_codes
        d = ia[i - 1]
        left = prev[0] + d
        cur[0] = left
        rowmin = left
        diag = prev[0]
        for j in range(1, lb + 1):
            up = prev[j]
            v = diag + srow[b[j - 1]]
            t = up + d
            v = t if t < v else v
            t = left + ib[j - 1]
            v = t if t < v else v
            cur[j] = v
            left = v
            diag = up
            rowmin = v if v < rowmin else rowmin
        if rowmin > cutoff:
            return rowmin
        tmp = prev
        prev = cur
        cur = tmp
    return prev[lb]


cdef inline void _distance2(const int32_t* a, int la, const int32_t* ia,
                            const int32_t* b0, int lb0, const int32_t* ib0,
                            const int32_t* b1, int lb1, const int32_t* ib1,
                            const int32_t* sub, int n_codes, int32_t cutoff,
                            int32_t* out0, int32_t* out1) noexcept nogil:
    """Two candidates against one plate, interleaved: the two dependency chains overlap.

    Cells past a candidate's length are computed on padding and never read back.
    """
    cdef int32_t p0[MAXL + 1]
    cdef int32_t c0[MAXL + 1]
    cdef int32_t p1[MAXL + 1]
    cdef int32_t c1[MAXL + 1]
    cdef int32_t v0, t0, left0, diag0, up0, v1, t1, left1, diag1, up1, d, m0, m1
    cdef const int32_t* srow
    cdef int i, j, lb = lb0 if lb0 > lb1 else lb1
    p0[0] = 0
    p1[0] = 0
    for j in range(1, lb + 1):
        p0[j] = p0[j - 1] + ib0[j - 1]
        p1[j] = p1[j - 1] + ib1[j - 1]
    for i in range(1, la + 1):
        srow = sub + a[i - 1] * n_codes
        d = ia[i - 1]
        left0 = p0[0] + d
        left1 = p1[0] + d
        c0[0] = left0
        c1[0] = left1
        diag0 = p0[0]
        diag1 = p1[0]
        for j in range(1, lb + 1):
            up0 = p0[j]
            up1 = p1[j]
            v0 = diag0 + srow[b0[j - 1]]
            v1 = diag1 + srow[b1[j - 1]]
            t0 = up0 + d
            t1 = up1 + d
            v0 = t0 if t0 < v0 else v0
            v1 = t1 if t1 < v1 else v1
            t0 = left0 + ib0[j - 1]
            t1 = left1 + ib1[j - 1]
            v0 = t0 if t0 < v0 else v0
            v1 = t1 if t1 < v1 else v1
            c0[j] = v0
            c1[j] = v1
            left0 = v0
            left1 = v1
            diag0 = up0
            diag1 = up1
        m0 = c0[0]
        for j in range(1, lb0 + 1):
            m0 = c0[j] if c0[j] < m0 else m0
        m1 = c1[0]
        for j in range(1, lb1 + 1):
            m1 = c1[j] if c1[j] < m1 else m1
        if m0 > cutoff and m1 > cutoff:
            out0[0] = m0
            out1[0] = m1
            return
        for j in range(lb + 1):
            p0[j] = c0[j]
            p1[j] = c1[j]
    out0[0] = p0[lb0]
    out1[0] = p1[lb1]


def pairwise(const int32_t[:, ::1] a, const int32_t[::1] la, const int32_t[:, ::1] ia,
             const int32_t[:, ::1] b, const int32_t[::1] lb, const int32_t[:, ::1] ib,
             const int32_t[::1] sub, int n_codes, int32_t cutoff):
    """Distance of a[i] to b[i] for every row i."""
    cdef Py_ssize_t n = a.shape[0], i
    out = np.empty(n, dtype=np.int32)
    cdef int32_t[::1] o = out
    with nogil:
        for i in range(n):
            o[i] = _distance(&a[i, 0], la[i], &ia[i, 0], &b[i, 0], lb[i], &ib[i, 0],
                             &sub[0], n_codes, cutoff)
    return out


def cdist(const int32_t[:, ::1] a, const int32_t[::1] la, const int32_t[:, ::1] ia,
          const int32_t[:, ::1] b, const int32_t[::1] lb, const int32_t[:, ::1] ib,
          const int32_t[::1] sub, int n_codes, int32_t cutoff):
    """Distance of every a[i] to every b[j]: int32 [len(a), len(b)]."""
    cdef Py_ssize_t n = a.shape[0], m = b.shape[0], i, j
    out = np.empty((n, m), dtype=np.int32)
    cdef int32_t[:, ::1] o = out
    with nogil:
        for i in range(n):
            j = 0
            while j + 1 < m:
                _distance2(&a[i, 0], la[i], &ia[i, 0], &b[j, 0], lb[j], &ib[j, 0],
                           &b[j + 1, 0], lb[j + 1], &ib[j + 1, 0], &sub[0], n_codes, cutoff,
                           &o[i, j], &o[i, j + 1])
                j += 2
            if j < m:
                o[i, j] = _distance(&a[i, 0], la[i], &ia[i, 0], &b[j, 0], lb[j], &ib[j, 0],
                                    &sub[0], n_codes, cutoff)
    return out


def align_in_order(const double[:, ::1] cost, double null_row, double null_col):
    """Order-preserving min-cost matching of rows to columns (Needleman-Wunsch).

    ``cost[i, j]`` is the cost of matching row i to column j (inf = not allowed); leaving a row
    unmatched costs ``null_row``, a column ``null_col``. Returns int64 [rows]: the matched column
    or -1. Ties prefer matching, then leaving the row unmatched.
    """
    cdef Py_ssize_t n = cost.shape[0], m = cost.shape[1], i, j
    best_np = np.empty((n + 1, m + 1), dtype=np.float64)
    move_np = np.zeros((n + 1, m + 1), dtype=np.int8)
    cdef double[:, ::1] best = best_np
    cdef signed char[:, ::1] move = move_np
    cdef double v, t
    match_np = np.full(n, -1, dtype=np.int64)
    cdef int64_t[::1] match = match_np
    with nogil:
        best[0, 0] = 0.0
        for j in range(1, m + 1):
            best[0, j] = best[0, j - 1] + null_col
            move[0, j] = 2
        for i in range(1, n + 1):
            best[i, 0] = best[i - 1, 0] + null_row
            move[i, 0] = 1
            for j in range(1, m + 1):
                v = best[i - 1, j - 1] + cost[i - 1, j - 1]
                move[i, j] = 0
                t = best[i - 1, j] + null_row
                if t < v:
                    v = t
                    move[i, j] = 1
                t = best[i, j - 1] + null_col
                if t < v:
                    v = t
                    move[i, j] = 2
                best[i, j] = v
        i = n
        j = m
        while i > 0 and j > 0:
            if move[i, j] == 0:
                match[i - 1] = j - 1
                i -= 1
                j -= 1
            elif move[i, j] == 1:
                i -= 1
            else:
                j -= 1
    return match_np
