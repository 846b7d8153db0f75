"""Numba kernel of the dense tail's Schur update from a sparse stage block."""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

Array = NDArray[np.float64]
IntArray = NDArray[np.intp]


@njit(nogil=True, cache=True)
def subtract_outer_columns(
    indptr_i: IntArray,
    rows_i: IntArray,
    vals_i: Array,
    indptr_j: IntArray,
    rows_j: IntArray,
    vals_j: Array,
    row_off: int,
    col_off: int,
    lower: bool,
    out: Array,
) -> None:
    """out[row_off + r, col_off + c] -= sum_l Li[r, l] Lj[c, l] for two CSC matrices with
    the same columns l (only r + row_off >= c + col_off when ``lower``): the update
    ``A_ij -= L_i L_j'`` at a cost of the products of the column counts."""
    for col in range(indptr_i.size - 1):
        for b in range(indptr_j[col], indptr_j[col + 1]):
            c = rows_j[b] + col_off
            vb = vals_j[b]
            for a in range(indptr_i[col], indptr_i[col + 1]):
                r = rows_i[a] + row_off
                if lower and r < c:
                    continue
                out[r, c] -= vals_i[a] * vb


@njit(nogil=True, cache=True)
def pair_quadratic(
    indptr: IntArray, rows: IntArray, vals: Array, Sinv: Array, ii: IntArray, jj: IntArray
) -> Array:
    """out[k] = N[:, ii[k]]' S^-1 N[:, jj[k]] for a CSC matrix N and a dense S^-1, at a
    cost of the product of the two columns' counts."""
    out = np.zeros(ii.size)
    for k in range(ii.size):
        acc = 0.0
        for b in range(indptr[jj[k]], indptr[jj[k] + 1]):
            c = rows[b]
            inner = 0.0
            for a in range(indptr[ii[k]], indptr[ii[k] + 1]):
                inner += vals[a] * Sinv[rows[a], c]
            acc += inner * vals[b]
        out[k] = acc
    return out


@njit(nogil=True, cache=True)
def column_dots(
    indptr: IntArray, rows: IntArray, vals: Array, Y: Array, ii: IntArray, jj: IntArray
) -> Array:
    """out[k] = sum_r N[r, ii[k]] Y[r, jj[k]] for a CSC matrix N."""
    out = np.zeros(ii.size)
    for k in range(ii.size):
        acc = 0.0
        for a in range(indptr[ii[k]], indptr[ii[k] + 1]):
            acc += vals[a] * Y[rows[a], jj[k]]
        out[k] = acc
    return out
