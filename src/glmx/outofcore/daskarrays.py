"""``glm_fit`` on dask arrays: R's ``glm.fit`` streamed over the row blocks of X.

X is a two-dimensional dask array (its column blocks are joined, so that a task holds
whole rows), y and the optional prior weights and offset are dask arrays with the same
rows (rechunked to X's row blocks when theirs differ) or numpy vectors, which are cut
into X's row blocks once and kept on the cluster for the fit (``persist``; the results
keep the vectors themselves, not the copies on the cluster).  Every pass
of the streamed IRLS (:mod:`glmx.outofcore.streaming`) is one task per row block on the
active Dask scheduler, reduced in a tree (:class:`~glmx.outofcore.daskbackend.BlockPasses`):
the blocks are computed where the scheduler puts them, once per pass, and only the p x p
sums come back.  What X, y, weights and offset share (one array they are all sliced
from) is computed once per block and pass.

As ``glm_fit`` in memory, X is used as given (a column of all ones is taken to be the
intercept, found in the first pass), the coefficients are named ``x0, x1, ...`` unless
``column_names`` are given, and a missing or infinite value is an error, not a dropped
row: the first pass checks every block and raises :class:`glmx.errors.DataError`
naming the column, the block, the row in X and in the block, and the value.

The results' per-row outputs (``fitted``, ``residuals(type)``, ...) are lazy dask
vectors in X's row blocks, one task per block when computed.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from glmx.errors import DataError
from glmx.families import Family, get_family
from glmx.families.exponential import Binomial
from glmx.families.links import Link
from glmx.fitting import _as_vector
from glmx.outofcore.chunkdesign import ChunkData
from glmx.outofcore.daskbackend import BlockPasses, block_value
from glmx.outofcore.finish import (
    check_options,
    finish,
    full_design,
    r_mustart,
    refuse_in_memory_options,
    reissue,
    saved_fit,
)
from glmx.outofcore.results import ChunkedGLM
from glmx.outofcore.streaming import S, streaming_irls
from glmx.progress import Progress
from glmx.solvers.state import Array

CALL = "glmx.glm_fit(X, y)"


def is_dask_collection(value: Any) -> bool:
    """Whether ``value`` is a dask collection (False without importing dask when it was
    never imported)."""
    if "dask" not in sys.modules:
        return False
    import dask

    return bool(dask.is_dask_collection(value))


def glm_fit_dask(
    X: Any,
    y: Any,
    family: str | Family = "gaussian",
    link: str | Link | None = None,
    weights: Any | None = None,
    freq_weights: Any | None = None,
    offset: Any | None = None,
    start: Any | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
    column_names: list[str] | None = None,
    intercept: bool | None = None,
    method: str = "irls",
    cov_type: str | None = None,
    cluster: Any | None = None,
    progress: bool | None = None,
) -> ChunkedGLM:
    """``glmx.glm_fit`` for a dask array X (see module doc): the estimates and fit
    statistics of the in-memory fit, as a :class:`~glmx.outofcore.ChunkedGLM`.
    ``freq_weights``, ``start``, ``cov_type``, ``cluster`` and ``method="firth"`` need the
    rows in memory and are refused."""
    options = dict(freq_weights=freq_weights, start=start, cov_type=cov_type, cluster=cluster)
    refuse_in_memory_options(
        "dask arrays", options, method, "load the data into memory (numpy arrays) for those"
    )
    fam = get_family(family, link)
    check_options(fam, tol, max_iter)
    blocks = _row_blocks(X, y, weights, offset)
    p = blocks.X.shape[1]
    names = [f"x{j}" for j in range(p)] if column_names is None else list(column_names)
    if len(names) != p:
        raise DataError(f"column_names has {len(names)} names but X has {p} columns")
    plan = ArrayPlan(fam, names, blocks.row_starts(), weights is not None, offset is not None)
    kept = blocks.persisted()  # held until the fit ends: the graphs name its keys only
    rows = ArrayPasses(kept, plan)
    with (
        warnings.catch_warnings(record=True) as caught,
        Progress("glmx.glm_fit", enabled=progress, unit="pass") as bar,
    ):
        warnings.simplefilter("always")
        res = streaming_irls(rows, full_design, fam, r_mustart, tol, max_iter, bar)
        has_intercept = bool(rows.found.ones.any()) if intercept is None else bool(intercept)
        done = finish(rows, fam, res, has_intercept, plan.has_offset, tol, max_iter)
    fit = saved_fit(fam, plan.column_names, res, done, has_intercept, tol, max_iter, call=CALL)
    fit = dataclasses.replace(fit, warnings=reissue(caught))
    passes = res.n_passes + done.passes
    return ChunkedGLM(fit, passes, ArrayPasses(blocks, plan))


@dataclass(frozen=True)
class RowBlocks:
    """X and the vectors (dask arrays), all with X's row blocks."""

    X: Any
    y: Any
    weights: Any | None
    offset: Any | None
    in_memory: frozenset[str] = frozenset()  # the vectors given as numpy vectors

    def persisted(self) -> RowBlocks:
        """The vectors given in memory cut once and kept on the cluster (for a fit's
        passes: the graph does not carry them at every pass), under keys of their own:
        the results' graphs use the keys of the vectors not kept, which must not name
        other tasks on a scheduler that may still hold the fit's."""
        kept = {
            name: getattr(self, name).map_blocks(np.array, dtype=float).persist()
            for name in self.in_memory
        }
        return dataclasses.replace(self, **kept)

    def row_starts(self) -> NDArray[np.int64]:
        """The row of X each block starts at."""
        return np.concatenate([[0], np.cumsum(self.X.chunks[0][:-1])]).astype(np.int64)

    def delayed(self) -> list[Any]:
        """Each row block as one delayed matrix: the columns of X, then y, the weights and
        the offset (those given).  One array, so that what they share (an array they are
        all sliced from) is computed once per block and pass: the graph optimizer would
        copy it into each of several arrays."""
        import dask.array as da

        vectors = [v[:, None] for v in (self.y, self.weights, self.offset) if v is not None]
        joined = da.concatenate([a.astype(float) for a in (self.X, *vectors)], axis=1)
        return list(joined.rechunk({1: -1}).to_delayed().ravel())


def _row_blocks(X: Any, y: Any, weights: Any, offset: Any) -> RowBlocks:
    """X and the vectors aligned to its row blocks; a DataError for what cannot be
    streamed."""
    import dask.array as da

    if not isinstance(X, da.Array):
        if is_dask_collection(X):
            raise DataError(
                f"X is a {type(X).__name__}, not a dask array: fit a Dask DataFrame with "
                "glmx.glm(formula, ddf), or give X.to_dask_array(lengths=True)"
            )
        raise DataError(
            f"glm_fit streams over the row blocks of a dask array X, but X is a "
            f"{type(X).__name__} while y, weights or offset is a dask collection: give X "
            "as a dask array (dask.array.from_array) or every argument in memory"
        )
    if X.ndim != 2:
        raise DataError(f"X must be a two-dimensional matrix (rows x columns), got shape {X.shape}")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise DataError(f"X must be numeric, got {X.dtype}")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise DataError(
            "X has row blocks of unknown size (as from a Dask DataFrame's to_dask_array()); "
            "call X.compute_chunk_sizes() or use to_dask_array(lengths=True)"
        )
    n = int(X.shape[0])
    if n == 0:
        raise DataError("there are no observations to fit")
    given = {"y": ("response", y), "weights": ("weights", weights), "offset": ("offset", offset)}
    vectors = {
        field: None if v is None else _aligned_vector(v, name, n, X.chunks[0])
        for field, (name, v) in given.items()
    }
    if vectors["y"] is None:
        raise DataError("y is required")
    in_memory = frozenset(
        f for f, (_, v) in given.items() if v is not None and not is_dask_collection(v)
    )
    return RowBlocks(X, vectors["y"], vectors["weights"], vectors["offset"], in_memory)


def _aligned_vector(v: Any, name: str, n: int, row_chunks: tuple[int, ...]) -> Any:
    """A dask vector of length n in X's row blocks: rechunked when its blocks differ,
    cut into them when it is an in-memory vector."""
    import dask.array as da

    if not isinstance(v, da.Array):
        if is_dask_collection(v):
            raise DataError(
                f"{name} is a {type(v).__name__}; give a dask array (e.g. series.to_dask_array"
                "(lengths=True)) or a numpy vector"
            )
        return da.from_array(_as_vector(v, name, n), chunks=(row_chunks,))
    if v.ndim == 2 and v.shape[1] == 1:
        v = v[:, 0]
    if v.ndim != 1:
        raise DataError(f"{name} must be one-dimensional, got shape {v.shape}")
    if not (np.issubdtype(v.dtype, np.number) or v.dtype == bool):
        raise DataError(f"{name} must be numeric, got {v.dtype}")
    if any(np.isnan(c) for c in v.chunks[0]):
        raise DataError(
            f"{name} has blocks of unknown size; call compute_chunk_sizes() on it first"
        )
    if v.shape[0] != n:
        raise DataError(f"{name} has length {v.shape[0]} but X has {n} rows")
    return v if v.chunks[0] == row_chunks else v.rechunk((row_chunks,))


@dataclass(frozen=True)
class ArrayPlan:
    """What a block's task needs besides its arrays."""

    family: Family
    column_names: list[str]
    row_starts: NDArray[np.int64]
    has_weights: bool
    has_offset: bool


@dataclass
class BlockFacts:
    """What the first pass learns from the values: the columns that are all ones
    (the intercept) and whether any row has a positive weight; ``+`` combines blocks."""

    ones: NDArray[np.bool_]
    any_weight: bool

    def __add__(self, other: BlockFacts) -> BlockFacts:
        return BlockFacts(self.ones & other.ones, self.any_weight or other.any_weight)


class ArrayPasses(BlockPasses):
    """The passes over the row blocks (a :class:`~glmx.outofcore.streaming.RowPasses`)."""

    found: BlockFacts

    def __init__(self, blocks: RowBlocks, plan: ArrayPlan) -> None:
        super().__init__(blocks.delayed(), plan, _block_value)
        self._row_counts = [int(n) for n in blocks.X.chunks[0]]

    def row_counts(self) -> list[int]:
        return self._row_counts

    def map_sum(self, fn: Callable[[ChunkData], S]) -> S | None:
        total = super().map_sum(fn)
        if self.passes == 1 and not self.found.any_weight:
            raise DataError("every observation has zero weight; there is nothing to fit")
        return total


def _block_value(
    block: Any, k: int, plan: ArrayPlan, check: bool, fn: Callable[[ChunkData], S]
) -> Any:
    """The task of a pass on row block k: its model rows, then the pass's function."""
    return block_value(partial(_block_data, block, k, plan), check, fn, _block_facts)


def _block_facts(data: ChunkData) -> BlockFacts:
    """Block facts of the first pass (see BlockFacts)."""
    return BlockFacts(np.all(data.X == 1.0, axis=0), bool(np.any(data.weights > 0)))


def _block_data(block: Any, k: int, plan: ArrayPlan, check: bool) -> ChunkData | None:
    """Block k's model rows (None when it has none); ``check`` validates the values."""
    M = np.asarray(block, dtype=float)
    n, p = M.shape[0], len(plan.column_names)
    if n == 0:
        return None
    X, y = M[:, :p], M[:, p]
    w = M[:, p + 1] if plan.has_weights else np.ones(n)
    off = M[:, -1] if plan.has_offset else np.zeros(n)
    if check:
        _check_block(plan, k, X, y, w, off)
    if isinstance(plan.family, Binomial):
        y = np.where(w > 0, y, 0.0)  # R: y[weights == 0] <- 0
    return ChunkData(np.ascontiguousarray(X), y, w, off, plan.has_offset)


def _at(plan: ArrayPlan, k: int, bad: NDArray[np.bool_], values: Array) -> str:
    """Where the first flagged row of block k is, and its value, for an error."""
    i = int(np.flatnonzero(bad)[0])
    return (
        f"{int(bad.sum())} in block {k}, first at row {plan.row_starts[k] + i} of X "
        f"(row {i} of the block): {float(values[i])!r}"
    )


def _check_block(plan: ArrayPlan, k: int, X: Array, y: Array, w: Array, off: Array) -> None:
    """glm_fit's checks on one block, in its order: X, y, weights, offset, the family's
    support."""
    finite = np.isfinite(X)
    if not finite.all():
        j = int(np.flatnonzero(~finite.all(axis=0))[0])
        raise DataError(
            f"column {plan.column_names[j]!r} of X has missing or non-finite value(s): "
            f"{_at(plan, k, ~finite[:, j], X[:, j])}; glm_fit does not drop rows"
        )
    for name, v in (("response 'y'", y), ("weights", w), ("offset", off)):
        if not np.isfinite(v).all():
            raise DataError(
                f"{name} has missing or non-finite value(s): {_at(plan, k, ~np.isfinite(v), v)}"
            )
    if np.any(w < 0):
        raise DataError(f"weights must be non-negative; negative: {_at(plan, k, w < 0, w)}")
    fam = plan.family
    problem = fam.invalid_response(y, w)
    if problem is not None and problem[0].any():
        bad, need = problem
        raise DataError(
            f"the {fam.name} family needs {need}; response 'y' has invalid value(s): "
            f"{_at(plan, k, bad, y)}"
        )
    fam.warn_response(y, w, "y")


__all__ = ["ArrayPasses", "glm_fit_dask", "is_dask_collection"]
