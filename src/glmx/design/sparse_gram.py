"""The weighted Gram X'WX of a CSR design (and X'v in the same pass), by a Numba kernel.

X'WX = sum_i w_i x_i x_i': each stored pair (j, k), j <= k, of row i adds
w_i x_ij x_ik to G[j, k].  The work is split by *rows of G*, not rows of X: a block
[c_b, c_b+1) of G's rows is owned by one thread, which walks every row of X and adds
only the pairs whose smaller column j falls in its block.  Hence

* there is one shared G: no per-thread copies to zero and add up;
* every G[j, k] is summed over i = 0, 1, ... in that order whatever the number of threads
  or blocks, so the result is bitwise the same for any ``GLMX_NUM_THREADS``;
* a block's part of G stays in cache while its pairs land in it (an outer product hits
  G at scattered places; with all of G as the target, cache misses dominate).  Each
  further block costs one more pass over X's row pointers.

Measured on the 2-core dev machine (seconds a Gram, 2 threads; SpGEMM is scipy's
``(sqrt(w) X)'(sqrt(w) X)`` by row slices, the former ``SparseDesign.gram``):

==============================  ============  ======  ======  ======
n x p                           values a row  blocks  kernel  SpGEMM
==============================  ============  ======  ======  ======
200,000 x 2,000                 11            7       0.036   0.27
200,000 x 2,000                 31            8       0.125   1.0
200,000 x 10,000                11            7       0.22    3.5
200,000 x 200                   11            2       0.017   0.07
1,000,000 x 2,000               3             2       0.060   0.19
20,000 x 2,000                  101           8       0.091   0.32
2,000 x 2,000                   1,501         8       1.2     3.4
1,000 x 2,000 (dense rows)      2,000         8       1.06    3.1
200,050 x 2,000, 50 rows dense  10 (2,000)    8       0.086   0.56
==============================  ============  ======  ======  ======

The kernel was faster in every case tried (by 2.5x on fully dense rows, where the
outer products cost nnz_row^2 / 2 each, and likewise with one thread), so
``SparseDesign`` forms every Gram with it; scipy's SpGEMM is left only for a Python
without Numba.  X'v in the same pass adds under 5%.

Rows of X must have sorted, distinct column indices (scipy's canonical CSR;
:func:`canonical_csr` makes such a copy when needed).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from numba import njit
from numpy.typing import NDArray

from glmx.design.parallel import map_slices, n_threads

Array = NDArray[np.float64]

# bytes of G's upper triangle per block: the 2 MB L2 cache of a core of the dev machine
# (blocks of 2-4 MB were fastest for p = 2,000 and 10-100 values a row)
_BLOCK_BYTES = 2 * 2**20
# a block costs a pass over the n rows (about 10 ns a row) against about 4 ns a pair:
# at most pairs / (_ROW_PAIRS * n) blocks keep the passes to a fraction of the pairs' time
_ROW_PAIRS = 8
# rows taken at a time (bounds the per-thread cursor array to 8 MB)
_CHUNK_ROWS = 2**20
# below this many pairs the Gram runs in the calling thread
_MIN_PARALLEL_PAIRS = 200_000


@njit(nogil=True, cache=True)
def _gram_kernel(data, indices, indptr, w, v, cuts, first, last, chunk, G, rhs):  # type: ignore[no-untyped-def]
    """G's row blocks first..last-1: for cuts[b] <= j < cuts[b + 1], G[j, k] (k >= j)
    and, when v is not empty, rhs[j] = sum_i x_ij v_i; then each block is mirrored
    into G's lower triangle.  X's rows are taken ``chunk`` at a time (this bounds the
    cursor array)."""
    n = indptr.shape[0] - 1
    with_rhs = v.shape[0] > 0
    pos = np.empty(min(chunk, n), dtype=indptr.dtype)  # a row's first entry not yet taken
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        jlo = cuts[first]
        for i in range(lo, hi):
            s, stop = indptr[i], indptr[i + 1]
            while s < stop and indices[s] < jlo:
                s += 1
            pos[i - lo] = s
        for b in range(first, last):
            jhi = cuts[b + 1]
            for i in range(lo, hi):
                s, stop = pos[i - lo], indptr[i + 1]
                wi = w[i]
                while s < stop and indices[s] < jhi:
                    j = indices[s]
                    t = wi * data[s]
                    for r in range(s, stop):  # the row's columns k >= j (sorted)
                        G[j, indices[r]] += t * data[r]  # w_i x_ij x_ik
                    if with_rhs:
                        rhs[j] += data[s] * v[i]
                    s += 1
                pos[i - lo] = s
    for b in range(first, last):
        _mirror(G, cuts[b], cuts[b + 1])


@njit(nogil=True, cache=True)
def _mirror(G, jlo, jhi):  # type: ignore[no-untyped-def]
    """G[k, j] = G[j, k] for jlo <= j < jhi, j < k, in tiles (a plain column walk thrashes)."""
    p = G.shape[0]
    tile = 64
    for j0 in range(jlo, jhi, tile):
        j1 = min(j0 + tile, jhi)
        for k0 in range(j0, p, tile):
            k1 = min(k0 + tile, p)
            for j in range(j0, j1):
                for k in range(max(k0, j + 1), k1):
                    G[k, j] = G[j, k]


def canonical_csr(X: sp.csr_matrix) -> sp.csr_matrix:
    """X itself when its rows have sorted, distinct indices; else a summed, sorted copy."""
    if X.has_canonical_format:
        return X
    Y = X.copy()
    Y.sum_duplicates()  # sorts the indices too
    return Y


def column_pairs(X: sp.csr_matrix) -> Array:
    """For each column j, the stored pairs (j, k >= j) over all rows: the kernel's work on
    G's row j.  X must be canonical."""
    # the entry at position s of a row ending at `stop` pairs with the stop - s entries from s on
    after = np.repeat(X.indptr[1:], np.diff(X.indptr)) - np.arange(X.nnz)
    return np.bincount(X.indices, weights=after, minlength=X.shape[1]).astype(np.float64)


class GramBlocks(NamedTuple):
    """G's row blocks [cuts[b], cuts[b + 1]) and, for each thread, its run of blocks
    (first, last): a thread takes neighbouring blocks, the runs have about equal pairs."""

    cuts: NDArray[np.intp]
    runs: list[tuple[int, int]]


def gram_blocks(pairs: Array, n_rows: int) -> GramBlocks:
    """G's rows cut into one run a thread, each run into blocks of about equal pairs.

    There are about B blocks in all: enough to cover G's upper triangle in blocks of
    ``_BLOCK_BYTES``, but at most pairs / (_ROW_PAIRS * n) and at least one a thread."""
    p = pairs.shape[0]
    cum = np.cumsum(pairs)
    total = float(cum[-1]) if p else 0.0
    threads = min(n_threads(), max(p, 1)) if total >= _MIN_PARALLEL_PAIRS else 1
    by_cache = -(-4 * p * (p + 1) // _BLOCK_BYTES)  # 8 bytes x p(p+1)/2 entries
    by_passes = int(total // (_ROW_PAIRS * max(n_rows, 1)))
    per_thread = max(1, -(-min(by_cache, by_passes) // threads))
    cuts = [0]
    runs = []
    shares = _split(cum, 0, p, threads)
    for lo, hi in zip(shares[:-1], shares[1:]):
        first = len(cuts) - 1
        cuts.extend(_split(cum, lo, hi, per_thread)[1:])
        runs.append((first, len(cuts) - 1))
    return GramBlocks(np.asarray(cuts, dtype=np.intp), runs)


def _split(cum: Array, lo: int, hi: int, parts: int) -> list[int]:
    """Cuts lo = c_0 < ... < hi of columns lo..hi-1 into at most ``parts`` runs of about
    equal pairs (cum: cumulative pairs by column)."""
    if hi <= lo:
        return [lo]
    base = cum[lo - 1] if lo > 0 else 0.0
    targets = base + (cum[hi - 1] - base) * np.arange(1, parts) / parts
    inner = np.searchsorted(cum[lo:hi], targets, side="right") + lo
    return sorted({lo, hi, *(int(c) for c in inner if lo < c < hi)})


def sparse_gram(
    X: sp.csr_matrix,
    w: Array,
    v: Array | None = None,
    blocks: tuple[NDArray[np.intp], list[tuple[int, int]]] | None = None,
) -> tuple[Array, Array | None]:
    """X'WX (p x p, symmetric) and X'v (None when v is None) for a canonical CSR X.

    ``blocks`` are G's row blocks, :class:`GramBlocks` from :func:`gram_blocks` (computed
    here when None; a design that forms many Grams keeps them)."""
    if not X.has_canonical_format:
        raise ValueError("sparse_gram needs sorted, distinct column indices (canonical_csr)")
    n, p = X.shape
    cuts, runs = gram_blocks(column_pairs(X), n) if blocks is None else blocks
    w = np.ascontiguousarray(w, dtype=np.float64)
    vv = np.empty(0) if v is None else np.ascontiguousarray(v, dtype=np.float64)
    G = np.zeros((p, p))
    rhs = np.zeros(p)
    if p > 0 and n > 0:
        map_slices(
            lambda first, last: _gram_kernel(
                X.data, X.indices, X.indptr, w, vv, cuts, first, last, _CHUNK_ROWS, G, rhs
            ),
            runs,
        )
    return G, (None if v is None else rhs)
