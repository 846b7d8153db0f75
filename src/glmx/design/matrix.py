"""The DesignMatrix protocol: the only way a solver sees X.

Three operations suffice for every GLM solver: ``X @ b`` (:meth:`matvec`),
``X.T @ r`` (:meth:`rmatvec`) and the weighted Gram ``X.T @ diag(w) @ X``
(:meth:`gram`).  Backends (dense, sparse; categorical, chunked and Dask later)
implement these; families, solvers and results never change for a new backend.
"""

from __future__ import annotations

import sys
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from glmx.design.parallel import map_slices, row_slices

Array = NDArray[np.float64]

# rows per block for the chunked Gram: block * p doubles stay in the L2/L3 cache
# (measured on the 2-core dev machine: 1.6 MB blocks run the pass at the BLAS floor)
_TARGET_BLOCK_BYTES = 1600 * 2**10
# designs of at most this many columns form their Gram by the Numba kernel of
# glmx.design.dense_gram (faster than syrk there; see its table) when it has at least
# this many multiply-adds: below, syrk is as fast
_NARROW_COLUMNS = 32
_NARROW_MIN_PAIRS = 2_000_000
# loading Numba costs about 0.3 s the first time in a process; the kernel saves about
# half a syrk's time a Gram, so it loads Numba only for a Gram of this many multiply-adds
# (a syrk of about 0.2 s: the fit's five or so Grams repay the load); once loaded, every
# narrow Gram above _NARROW_MIN_PAIRS uses it
_NARROW_LOAD_PAIRS = 500_000_000


@runtime_checkable
class DesignMatrix(Protocol):
    """What a solver needs of X (n rows, p columns)."""

    shape: tuple[int, int]
    column_names: list[str]

    def matvec(self, b: Array) -> Array:
        """X @ b, length n."""
        ...

    def rmatvec(self, r: Array) -> Array:
        """X.T @ r, length p."""
        ...

    def gram(self, w: Array) -> Array:
        """X.T @ diag(w) @ X, p x p, for non-negative w."""
        ...

    def rows(self, index: NDArray[np.intp]) -> Array:
        """Dense copy of the given rows (for diagnostics on a few rows)."""
        ...


class DenseDesign:
    """Dense float64 design.  The Gram is a chunked BLAS ``syrk`` of sqrt(w)-scaled row
    blocks (a Numba kernel for narrow designs), so memory beyond X is O(block * p + p^2)
    and X is never copied."""

    def __init__(self, X: NDArray[np.floating], column_names: list[str] | None = None) -> None:
        arr: Array = np.asarray(X, dtype=np.float64)
        if arr.ndim != 2:
            raise ValueError("a design matrix must be two-dimensional")
        self.X = arr
        self.shape = (int(arr.shape[0]), int(arr.shape[1]))
        self.column_names = (
            list(column_names)
            if column_names is not None
            else [f"x{j}" for j in range(arr.shape[1])]
        )
        self._block = max(256, _TARGET_BLOCK_BYTES // (8 * max(1, self.shape[1])))

    # Products in the same row-parallel threads as the Gram (not BLAS's own threads:
    # those spin for a while after a call and would take the cores from the next Gram)
    def matvec(self, b: Array, out: Array | None = None) -> Array:
        """X @ b, written into ``out`` when given."""
        n = self.shape[0]
        slices = row_slices(n, self.shape[1])
        if out is None:
            out = np.empty(n)
        if len(slices) == 1:
            return np.matmul(self.X, b, out=out)

        def part(lo: int, hi: int) -> None:
            np.matmul(self.X[lo:hi], b, out=out[lo:hi])

        map_slices(part, slices)
        return out

    def rmatvec(self, r: Array) -> Array:
        slices = row_slices(self.shape[0], self.shape[1])
        if len(slices) == 1:
            return self.X.T @ r
        parts = map_slices(lambda lo, hi: self.X[lo:hi].T @ r[lo:hi], slices)
        return np.sum(parts, axis=0)  # type: ignore[no-any-return]

    def gram(self, w: Array) -> Array:
        return self.gram_rmatvec(w, None)[0]

    def gram_rmatvec(self, w: Array, v: Array | None) -> tuple[Array, Array | None]:
        """X'WX and, in the same pass over X, X'v (None when v is None)."""
        n, p = self.shape
        pairs = n * p * (p + 1) // 2
        loaded = "glmx.design.dense_gram" in sys.modules
        if p <= _NARROW_COLUMNS and pairs >= (_NARROW_MIN_PAIRS if loaded else _NARROW_LOAD_PAIRS):
            try:
                from glmx.design.dense_gram import narrow_gram
            except ImportError:  # no Numba for this Python: the syrk below
                pass
            else:
                return narrow_gram(self.X, w, v)
        if n and p > _NARROW_COLUMNS and float(np.min(w)) == float(np.max(w)):
            # equal weights (gaussian, identity link): w X'X, a BLAS syrk over each
            # thread's rows (BLAS itself is held to one thread during a fit)
            grams = map_slices(lambda lo, hi: self.X[lo:hi].T @ self.X[lo:hi], row_slices(n, p))
            G = grams[0] if len(grams) == 1 else np.sum(grams, axis=0)
            G *= float(w[0])
            return G, (None if v is None else self.rmatvec(v))
        if n <= self._block:
            G = self.X.T @ (self.X * w[:, None])
            return (G + G.T) / 2.0, (None if v is None else self.X.T @ v)
        slices = row_slices(n, p, align=self._block)
        parts = map_slices(lambda lo, hi: self._gram_part(w, v, lo, hi), slices)
        c = np.sum([part[0] for part in parts], axis=0)
        rhs = None if v is None else np.sum([part[1] for part in parts], axis=0)  # type: ignore[arg-type]
        return (c + c.T) / 2.0, rhs

    def _gram_part(self, w: Array, v: Array | None, lo: int, hi: int) -> tuple[Array, Array | None]:
        """The rows lo:hi's X'WX (and their X'v) by chunked syrk."""
        p = self.shape[1]
        c = np.zeros((p, p))
        rhs = None if v is None else np.zeros(p)
        fortran = self.X.flags.f_contiguous and not self.X.flags.c_contiguous
        # the block buffer is laid out so that each copy reads X along its memory order;
        # numpy runs B'B as a BLAS syrk and releases the GIL meanwhile (scipy's wrapper
        # would hold it, serializing the threads)
        buf = np.empty((p, self._block)) if fortran else np.empty((self._block, p))
        sw = np.empty(self._block)
        for start in range(lo, hi, self._block):
            stop = min(start + self._block, hi)
            # rows scaled by sqrt(w): (sqrt(w) X)'(sqrt(w) X) = X' W X
            swb = np.sqrt(w[start:stop], out=sw[: stop - start])
            if fortran:
                blk = buf[:, : stop - start]  # p x b: the block's transpose
                np.multiply(self.X.T[:, start:stop], swb, out=blk)
                c += blk @ blk.T
            else:
                blk = buf[: stop - start]
                np.multiply(self.X[start:stop], swb[:, None], out=blk)
                c += blk.T @ blk
            if rhs is not None:
                assert v is not None
                rhs += self.X[start:stop].T @ v[start:stop]  # the block is still in cache
        return c, rhs

    def rows(self, index: NDArray[np.intp]) -> Array:
        return self.X[index]

    def column(self, j: int) -> Array:
        return self.X[:, j]


class SparseDesign:
    """scipy.sparse design, kept in CSR; the Gram is formed by the sparse kernel of
    :mod:`glmx.design.sparse_gram` into a dense p x p matrix, which suits designs with many
    rows and a moderate number of columns."""

    def __init__(self, X: sp.spmatrix | sp.sparray, column_names: list[str] | None = None) -> None:
        self.X = sp.csr_matrix(X, dtype=np.float64)
        self.shape = (int(self.X.shape[0]), int(self.X.shape[1]))
        self.column_names = (
            list(column_names)
            if column_names is not None
            else [f"x{j}" for j in range(self.shape[1])]
        )
        # the Gram kernel's X and G's blocks (sparse_gram.GramBlocks), made at the first Gram
        self._gram_plan: (
            tuple[sp.csr_matrix, tuple[NDArray[np.intp], list[tuple[int, int]]]] | None
        ) = None

    def matvec(self, b: Array) -> Array:
        return np.asarray(self.X @ b).ravel()

    def rmatvec(self, r: Array) -> Array:
        return np.asarray(self.X.T @ r).ravel()

    def gram(self, w: Array) -> Array:
        return self.gram_rmatvec(w, None)[0]

    def gram_rmatvec(self, w: Array, v: Array | None) -> tuple[Array, Array | None]:
        """X'WX and, in the same pass over X, X'v (None when v is None)."""
        try:
            from glmx.design import sparse_gram
        except ImportError:  # no Numba for this Python: scipy's sparse products
            return self._gram_spgemm(w), (None if v is None else self.rmatvec(v))
        if self._gram_plan is None:
            # the kernel's X (a sorted copy only if X's rows are not) and its blocks of G
            Xc = sparse_gram.canonical_csr(self.X)
            blocks = sparse_gram.gram_blocks(sparse_gram.column_pairs(Xc), self.shape[0])
            self._gram_plan = (Xc, blocks)
        return sparse_gram.sparse_gram(self._gram_plan[0], w, v, self._gram_plan[1])

    def _gram_spgemm(self, w: Array) -> Array:
        """(sqrt(w) X)'(sqrt(w) X), the row slices' sparse products summed densely (scipy
        releases the GIL in the product, so the slices run in parallel)."""
        sw = np.sqrt(w)

        def part(lo: int, hi: int) -> Array:
            Xw = sp.diags(sw[lo:hi]) @ self.X[lo:hi]
            return np.asarray((Xw.T @ Xw).toarray())

        G = np.sum(map_slices(part, row_slices(self.shape[0], self.shape[1])), axis=0)
        return (G + G.T) / 2.0

    def rows(self, index: NDArray[np.intp]) -> Array:
        return self.X[index].toarray()

    def column(self, j: int) -> Array:
        return self.X[:, j].toarray().ravel()


def ones_column(X: DesignMatrix) -> int | None:
    """The index of X's column of ones (the intercept), or None: candidates from the
    first rows, each then checked on all rows (by its min and max: no n-long temporary)."""
    n, p = X.shape
    if n == 0:
        return None
    probe = X.rows(np.arange(min(n, 64)))
    dense = None
    for j in np.flatnonzero(np.all(probe == 1.0, axis=0)):
        if hasattr(X, "column"):
            col = X.column(int(j))
        else:
            dense = X.rows(np.arange(n)) if dense is None else dense
            col = dense[:, j]
        if np.min(col) == np.max(col) == 1.0:
            return int(j)
    return None


def as_design(X: object, column_names: list[str] | None = None) -> DesignMatrix:
    """Wrap a numpy array, scipy.sparse matrix or an existing DesignMatrix."""
    if isinstance(X, (DenseDesign, SparseDesign)):
        return X
    if sp.issparse(X):
        return SparseDesign(X, column_names)  # type: ignore[arg-type]
    if isinstance(X, DesignMatrix) and not isinstance(X, np.ndarray):
        return X
    return DenseDesign(np.asarray(X), column_names)
