"""The block layout of L for a mixed model's penalized system, found once from the codes.

The system ``[Z Lambda, D]' W [Z Lambda, D] + diag(I_q, 0) = L L'`` (D = [X, r]) is split
into blocks by random-effect term, in lme4's term order (decreasing number of levels), as
in Bates et al. (2025, the MixedModels.jl algorithm).  A term whose diagonal block stays
block diagonal after the terms before it are eliminated is a *stage*: its block of L is
diagonal (scalar term) or block diagonal (k x k per level), and the blocks below it are
kept sparse.  A term is a stage when it is nested in the stages before it (each of their
levels meets one of its levels, after fill-in) and the terms from it on have more than
DENSE_TAIL_MAX random effects in all.  The first term that is not a stage starts the
*tail*: it, the terms after it and X are one dense block, the fill-in of crossed factors
making it dense (a small model is all tail: LAPACK factors it faster than sparse updates).

The symbolic elimination counts the fill-in of every block; :meth:`Structure.describe`
reports it, so that a user sees why a model is slow (a large dense tail).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from glmx.mixed.crossprod import Gram, PairPattern, compute_gram, pair_pattern
from glmx.mixed.reterms import ReTerms

Array = NDArray[np.float64]
IntArray = NDArray[np.intp]

_COUNT_LIMIT = 50_000_000  # symbolic products larger than this are not counted
# terms with at most this many random effects in all (from a term to the last) go to the
# dense tail: a factorization of so few is faster by LAPACK than by sparse stage updates
DENSE_TAIL_MAX = 128


@dataclass(frozen=True)
class BlockInfo:
    """One block of L: its rows and columns (term labels, or "X"), its storage type,
    shape, stored entries of L (``nnz``) and entries of the same block of A (``nnz_A``:
    the cross-products); ``nnz - nnz_A`` is the fill-in."""

    rows: str
    cols: str
    kind: str  # "diagonal", "block-diagonal", "sparse" or "dense"
    shape: tuple[int, int]
    nnz: int
    nnz_A: int


class Structure:
    """The random-effect layout of a model whose rows are sorted by term 1's levels."""

    def __init__(self, reterms: ReTerms) -> None:
        self.reterms = reterms
        terms = reterms.terms
        first = terms[0]
        if np.any(np.diff(first.codes) < 0):
            raise ValueError("rows must be sorted by the first term's levels")
        self.K = len(terms)
        self.n = int(first.X.shape[0])
        self.m = [t.n_levels for t in terms]
        self.k = [t.k for t in terms]
        self.offsets = [int(o) for o in reterms.u_offsets]
        self.X1 = first.X
        self.k1 = first.k
        self.m1 = first.n_levels
        self.q1 = self.m1 * self.k1
        self.q2 = reterms.q - self.q1
        self.counts = np.bincount(first.codes, minlength=self.m1)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.intp)
        self.pairs: dict[tuple[int, int], PairPattern] = {
            (i, j): pair_pattern(
                terms[i].codes, self.m[i], self.k[i], terms[j].codes, self.m[j], self.k[j]
            )
            for i in range(self.K)
            for j in range(i)
        }
        self.n_stages, self._fill = self._eliminate()
        self.q_stages = self.offsets[self.n_stages]
        self.q_tail = reterms.q - self.q_stages

    # --- symbolic elimination -------------------------------------------------------
    def _eliminate(self) -> tuple[int, dict[tuple[int, int], int]]:
        """Number of stages, and the level pairs stored in each sparse block (i, s) of L,
        s a stage, after fill-in."""
        K = self.K
        pat: dict[tuple[int, int], sp.csr_matrix | None] = {
            key: p.level_pattern() for key, p in self.pairs.items()
        }
        n_stages = 0
        for s in range(K):
            if self.offsets[K] - self.offsets[s] <= DENSE_TAIL_MAX:
                break  # a small rest is cheaper as one dense block than as sparse stages
            if s > 0 and any(_max_column_count(pat[(s, t)]) > 1 for t in range(s)):
                break
            n_stages = s + 1
            for i in range(s + 1, K):
                for j in range(s + 1, i):  # fill of block (i, j) from eliminating s
                    a, b, c = pat[(i, s)], pat[(j, s)], pat[(i, j)]
                    if (
                        a is None
                        or b is None
                        or c is None
                        or (_max_column_count(b) > 1 and _product_cost(a, b) > _COUNT_LIMIT)
                    ):
                        pat[(i, j)] = None  # too much fill to count: j is no stage
                    else:
                        pat[(i, j)] = ((c + a @ b.T) > 0).astype(np.float64)
        stored = {}
        for key, pk in pat.items():
            if key[1] < n_stages:
                assert pk is not None  # blocks left of a stage are never given up
                stored[key] = int(pk.nnz)
        return n_stages, stored

    def blocks(self, p: int) -> list[BlockInfo]:
        """The blocks of L for p fixed-effect columns (the right-hand side left out);
        diagonal blocks count their lower triangle."""
        out = []
        labels = [str(t.spec) for t in self.reterms.terms]
        S, K = self.n_stages, self.K
        for s in range(S):
            ks, ms = self.k[s], self.m[s]
            kind = "diagonal" if ks == 1 else "block-diagonal"
            nnz = ms * ks * (ks + 1) // 2
            out.append(BlockInfo(labels[s], labels[s], kind, (ms * ks, ms * ks), nnz, nnz))
            for i in range(s + 1, K):
                kk = self.k[i] * ks
                shape = (self.m[i] * self.k[i], ms * ks)
                n_a = self.pairs[(i, s)].n_pairs * kk
                out.append(
                    BlockInfo(labels[i], labels[s], "sparse", shape, self._fill[(i, s)] * kk, n_a)
                )
            if p:
                size = p * ms * ks
                out.append(BlockInfo("X", labels[s], "dense", (p, ms * ks), size, size))
        if S < K or p:
            qt = self.q_tail
            n_a = p * qt + p * (p + 1) // 2
            for i in range(S, K):
                n_a += self.m[i] * self.k[i] * (self.k[i] + 1) // 2
                n_a += sum(self.pairs[(i, j)].nnz for j in range(S, i))
            dense = (qt + p) * (qt + p + 1) // 2
            rows = ", ".join([*labels[S:], *(["X"] if p else [])])
            out.append(BlockInfo(rows, rows, "dense", (qt + p, qt + p), dense, n_a))
        return out

    def describe(self, p: int = 0) -> str:
        """A table of the blocks of L: type, size, stored entries and fill-in."""
        lines = [
            f"blocked Cholesky factor L: {self.K} random-effect term(s), q = "
            f"{self.reterms.q:,}, p = {p}, n = {self.n:,}"
        ]
        for b in self.blocks(p):
            fill = f", fill-in {b.nnz - b.nnz_A:,}"
            where = b.rows if b.rows == b.cols else f"{b.rows} x {b.cols}"
            lines.append(
                f"  {where}: {b.kind} {b.shape[0]:,} x {b.shape[1]:,}, nnz {b.nnz:,}{fill}"
            )
        update, dense = self.work(p)
        lines.append(
            f"  work per evaluation, about {update / 1e6:,.1f} Mflop in sparse updates, "
            f"{dense / 1e6:,.1f} Mflop in the dense Cholesky (independent of n)"
        )
        return "\n".join(lines)

    def work(self, p: int) -> tuple[float, float]:
        """Floating-point operations of one factorization: the stages' updates of the
        blocks to their right (products of column counts of the sparse blocks) and the
        dense tail's Cholesky, (q_tail + p)^3 / 3."""
        S, K = self.n_stages, self.K
        update = 0.0
        for s in range(S):
            cols = [
                np.diff(self.pairs[(i, s)].level_pattern().tocsc().indptr).astype(np.float64)
                * self.k[i]
                for i in range(s + 1, K)
            ]
            total = np.sum(cols, axis=0) if cols else np.zeros(1)
            update += float(np.dot(total, total)) * self.k[s] ** 2  # sum_l c_l^2 k_s^2
            update += float(self.m[s] * self.k[s] ** 3)
        return update, float(self.q_tail + p) ** 3 / 3.0

    # --- cross-products -------------------------------------------------------------
    def gram(self, w: Array, DT: Array) -> Gram:
        """Weighted cross-products for weights w (n,) and dense columns DT (pD, n)."""
        terms = self.reterms.terms
        return compute_gram(
            [t.codes for t in terms], [t.X for t in terms], self.m, self.pairs, w, DT, self.starts
        )

    # --- row-level helpers ----------------------------------------------------------
    def level_sums(self, M: Array) -> Array:
        """Per level of term 1, the sums of the rows of M (n,...) -> (m1,...)."""
        return np.add.reduceat(M, self.starts, axis=0)

    def expand(self, V: Array) -> Array:
        """Per-level values (m1,...) repeated to the rows (n,...)."""
        return np.repeat(V, self.counts, axis=0)

    def Zt_u(self, theta: Array, u: Array) -> Array:
        """Z Lambda u, length n: the first term's effects repeated over its runs of rows,
        the others gathered by level."""
        rt = self.reterms
        b = rt.b_from_u(theta, u)
        b1 = b[: self.q1].reshape(self.m1, self.k1)
        eta = self.X1[:, 0] * np.repeat(b1[:, 0], self.counts)
        for a in range(1, self.k1):
            eta += self.X1[:, a] * np.repeat(b1[:, a], self.counts)
        for i in range(1, self.K):
            t = rt.terms[i]
            bt = b[self.offsets[i] : self.offsets[i + 1]].reshape(t.n_levels, t.k)
            for a in range(t.k):
                eta += t.X[:, a] * bt[t.codes, a]
        return np.asarray(eta)


def _max_column_count(a: sp.csr_matrix | None) -> int:
    if a is None:
        return 2
    return int(np.max(np.diff(a.tocsc().indptr), initial=0))


def _product_cost(a: sp.csr_matrix | None, b: sp.csr_matrix) -> int:
    """Multiplications in a @ b.T: per column, the product of the two column counts."""
    if a is None:
        return _COUNT_LIMIT + 1
    ca = np.diff(a.tocsc().indptr)
    cb = np.diff(b.tocsc().indptr)
    return int(np.dot(ca.astype(np.int64), cb.astype(np.int64)))
