"""A cheap look at a dense design before a fit: one blocked pass in the design threads,
with no n-long temporary (a fresh n-vector costs page faults on its first touch)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from glmx.design.parallel import map_slices, row_slices

Array = NDArray[np.float64]


def scan_dense(X: Array) -> tuple[bool, bool]:
    """One blocked pass over X, in the design threads: whether the sum of every row
    block is finite (a NaN or inf makes it NaN or inf), and whether a column is all ones
    (the candidates: columns of ones in the first rows).  No n-long temporary."""
    n, p = X.shape
    candidates = np.flatnonzero(np.all(X[:64] == 1.0, axis=0)) if n else np.zeros(0, int)
    block = max(256, 2**17 // max(p, 1))  # 1 MB of X

    def part(lo: int, hi: int) -> tuple[bool, Any]:
        finite, ones = True, np.ones(candidates.shape[0], dtype=bool)
        with np.errstate(over="ignore", invalid="ignore"):
            for a in range(lo, hi, block):
                blk = X[a : min(a + block, hi)]
                finite &= bool(np.isfinite(blk.sum()))
                ones &= np.all(blk[:, candidates] == 1.0, axis=0)
        return finite, ones

    parts = map_slices(part, row_slices(n, p, align=block))
    return all(f for f, _ in parts), bool(np.logical_and.reduce([o for _, o in parts]).any())
