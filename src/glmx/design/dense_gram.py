"""The weighted Gram X'WX of a narrow dense design (and X'v in the same pass), by a Numba
kernel.

For a tall design with few columns a BLAS ``syrk`` is a poor fit: the p x p result is
tiny against the long inner dimension, OpenBLAS runs it on one thread, and scaling the
rows by sqrt(w) first (numpy's broadcast multiply over rows of p values) costs about as
much as the product.  Here each thread takes a slice of rows, and block by block of
``_BLOCK_ROWS`` rows

* copies the block transposed into a p x b buffer (columns become contiguous), then
* forms every upper entry G[j, k] += sum_i w_i x_ij x_ik as a dot product over the
  block's rows, four k at a time so that w_i x_ij is loaded once for four products,
  vectorized by LLVM (reassociation allowed for these sums only, not NaN/inf shortcuts).

Measured on the 2-core dev machine (ms a Gram with X'v, 2 threads; syrk: the chunked
sqrt(w)-scaled ``syrk`` of :class:`~glmx.design.matrix.DenseDesign`):

=============  =====  =====  =====  =====  =====
n \\ p          5      10     20     30     50
=============  =====  =====  =====  =====  =====
100,000 kernel 0.46   0.80   3.8    4.5    8.6
100,000 syrk   1.5    2.1    3.7    5.0    8.8
1e6 kernel     4.2    9.7    20     36     84
1e6 syrk       15     20     33     43     81
=============  =====  =====  =====  =====  =====

Past about 32 columns BLAS's blocked product is as fast or faster, so the design uses
the kernel only up to 32 columns.  Weights may have any sign (no square roots).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

from glmx.design.parallel import map_slices, n_threads

Array = NDArray[np.float64]

# rows a block: the p x b transposed block stays in the L1 cache
_BLOCK_ROWS = 64


@njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _gram_kernel(X, w, v, lo, hi, G, rhs):  # type: ignore[no-untyped-def]
    """Adds rows lo:hi's upper triangle of X'WX to G and, when v is not empty, their X'v
    to rhs."""
    p = X.shape[1]
    with_rhs = v.shape[0] > 0
    T = np.empty((p, _BLOCK_ROWS))  # the block, transposed
    wb = np.empty(_BLOCK_ROWS)
    for s in range(lo, hi, _BLOCK_ROWS):
        b = min(_BLOCK_ROWS, hi - s)
        for i in range(b):
            wb[i] = w[s + i]
            for j in range(p):
                T[j, i] = X[s + i, j]
        for j in range(p):
            tj = T[j]
            k = j
            while k + 4 <= p:
                t0, t1, t2, t3 = T[k], T[k + 1], T[k + 2], T[k + 3]
                a0 = a1 = a2 = a3 = 0.0
                for i in range(b):
                    u = wb[i] * tj[i]  # w_i x_ij
                    a0 += u * t0[i]
                    a1 += u * t1[i]
                    a2 += u * t2[i]
                    a3 += u * t3[i]
                G[j, k] += a0
                G[j, k + 1] += a1
                G[j, k + 2] += a2
                G[j, k + 3] += a3
                k += 4
            while k < p:
                tk = T[k]
                a0 = 0.0
                for i in range(b):
                    a0 += wb[i] * tj[i] * tk[i]
                G[j, k] += a0
                k += 1
            if with_rhs:
                a0 = 0.0
                for i in range(b):
                    a0 += tj[i] * v[s + i]
                rhs[j] += a0


def narrow_gram(X: Array, w: Array, v: Array | None = None) -> tuple[Array, Array | None]:
    """X'WX (p x p, symmetric) and X'v (None when v is None) for a dense X of at most a
        few dozen columns (any memory layout), the rows split among glmx's threads (the
    design calls it only for Grams of at least a few million multiply-adds)."""
    n, p = X.shape
    w = np.ascontiguousarray(w, dtype=np.float64)
    vv = np.empty(0) if v is None else np.ascontiguousarray(v, dtype=np.float64)
    step = max(1, -(-n // n_threads()))  # one slice of rows a thread
    step = -(-step // _BLOCK_ROWS) * _BLOCK_ROWS

    def part(lo: int, hi: int) -> tuple[Array, Array]:
        G, rhs = np.zeros((p, p)), np.zeros(p)
        _gram_kernel(X, w, vv, lo, hi, G, rhs)
        return G, rhs

    parts = map_slices(part, [(lo, min(lo + step, n)) for lo in range(0, n, step)] or [(0, 0)])
    G = parts[0][0] if len(parts) == 1 else np.sum([g for g, _ in parts], axis=0)
    G = np.triu(G) + np.triu(G, 1).T
    rhs = parts[0][1] if len(parts) == 1 else np.sum([r for _, r in parts], axis=0)
    return G, (None if v is None else rhs)
