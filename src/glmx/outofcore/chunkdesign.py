"""The model of an out-of-core fit, learned once, and each chunk's y, X, weights and offset.

glmx's formula machinery builds the design state (:class:`~glmx.design.formula.TermState`)
on a prototype frame: one complete row of the data, repeated, with every factor column
cycling through all the levels the first pass found.  Every chunk is then built with
:func:`~glmx.design.formula.new_design` and the factors given the full level set, so all
chunks have the same columns, in R's ``model.matrix`` order, as the in-memory fit.
Stateful transforms (``scale(x)``, splines) would learn their state from the prototype,
not the data, and are refused.

That formula route costs pandas and formulaic work per chunk.  For the common formula
(plain numeric columns, treatment-coded factors, their products, offset and weights
columns) the plan also holds the design's recipe (:mod:`glmx.outofcore.fastdesign`),
which builds the same rows with numpy alone; the plan keeps it only after both routes
gave identical rows on a probe frame, and every chunk then takes it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray

from glmx.design.formula import (
    TermState,
    _column_or_array,
    _response,
    _variables,
    build_model_frame,
    new_design,
    split_formula,
    split_offsets,
)
from glmx.errors import DataError, FormulaError
from glmx.families.base import Family
from glmx.families.exponential import Binomial
from glmx.outofcore.fastdesign import FastDesign, FastRows, fast_design, fast_rows, probe_frame
from glmx.outofcore.sources import Chunk, Survey
from glmx.solvers.state import Array


def model_columns(formula: str, weights: str | None, offset: str | None) -> list[str]:
    """The data columns the model reads: the formula's variables, weights and offset."""
    lhs, rhs_full = split_formula(formula)
    rhs, offset_terms = split_offsets(rhs_full)
    cbind = lhs.startswith("cbind")
    needed = _variables(rhs if cbind else f"{lhs} ~ {rhs}", "formula")
    for expr in offset_terms:
        needed |= _variables(f"{expr} ~ 1", "offset")
    if cbind:
        for arg in lhs[lhs.index("(") + 1 : lhs.rindex(")")].split(","):
            needed |= _variables(f"{arg} ~ 1", "response")
    for name, col in (("weights", weights), ("offset", offset)):
        if col is not None and not isinstance(col, str):
            raise DataError(
                f"{name} must name a column of the data in an out-of-core fit, got "
                f"{type(col).__name__}"
            )
        if col is not None:
            needed.add(col)
    return sorted(needed)


@dataclass(frozen=True)
class ModelPlan:
    """Everything that turns a chunk into y, X, weights and offset."""

    formula: str
    response: str
    columns: list[str]  # data columns read
    column_names: list[str]  # design columns
    terms: TermState
    levels: dict[str, list[Any]]
    weights: str | None
    offset: str | None
    family: Family
    has_intercept: bool
    fast: FastDesign | None = None  # the numpy route's recipe, when it was verified


@dataclass(frozen=True)
class ChunkData:
    """One chunk's model rows: ``weights`` are R's prior weights (trials included)."""

    X: Any  # numpy array or scipy.sparse CSR
    y: Array
    weights: Array
    offset: Array
    has_offset: bool


def plan_model(
    formula: str,
    family: Family,
    weights: str | None,
    offset: str | None,
    columns: list[str],
    found: Survey,
) -> ModelPlan:
    """The design state from a prototype frame holding every level (see module doc)."""
    k = max([3] + [len(v) for v in found.levels.values()])
    proto = found.example.iloc[np.zeros(k, dtype=np.intp)].reset_index(drop=True)
    for col, lev in found.levels.items():
        proto[col] = pd.Categorical([lev[i % len(lev)] for i in range(k)], categories=lev)
    mf = build_model_frame(
        formula, proto, weights=weights, offset=offset, binomial=isinstance(family, Binomial)
    )
    spec = mf.terms.model_spec
    formulaic_spec = getattr(spec, "spec", spec)  # glmx's CategoricalSpec wraps formulaic's
    if getattr(formulaic_spec, "transform_state", None):
        names = ", ".join(map(repr, formulaic_spec.transform_state))
        raise FormulaError(
            f"stateful transform(s) {names} learn from all the data at once, which an "
            "out-of-core fit cannot give them; compute the column(s) beforehand"
        )
    for factor in spec.factor_contrasts:
        bare = str(factor) in found.levels  # a column named e.g. `grp-1`, not an expression
        if not bare and not _variables(f"{factor} ~ 1", "factor") <= found.levels.keys():
            raise FormulaError(
                f"factor {str(factor)!r} is a numeric column made a factor in the formula; in "
                "an out-of-core fit the column must hold strings or categories"
            )
    plan = ModelPlan(
        formula=formula,
        response=mf.terms.response,
        columns=columns,
        column_names=list(mf.X.column_names),
        terms=mf.terms,
        levels=found.levels,
        weights=weights,
        offset=offset,
        family=family,
        has_intercept="Intercept" in mf.X.column_names,
    )
    fast = fast_design(
        spec, len(plan.column_names), plan.response, weights, offset,
        mf.terms.offset_terms, columns, found.levels, found.example,
    )  # fmt: skip
    if fast is None or not _same_rows(plan, fast):
        return plan
    return dataclasses.replace(plan, fast=fast)


def _same_rows(plan: ModelPlan, fast: FastDesign) -> bool:
    """Whether the recipe gives the formula route's rows, exactly, on a probe frame (as
    a pandas frame, and as an Arrow record batch with strings and with dictionaries)."""
    frame = probe_frame(plan.columns, fast)
    chunks = [Chunk(frame, "the probe frame", 0)]
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pyarrow comes with the Parquet sources
        pass
    else:
        batch = pa.RecordBatch.from_pandas(frame, preserve_index=False)
        coded = [
            col.dictionary_encode() if pa.types.is_string(col.type) else col
            for col in batch.columns
        ]
        chunks.append(Chunk(batch=batch))
        chunks.append(Chunk(batch=pa.RecordBatch.from_arrays(coded, names=batch.schema.names)))
    quick_plan = dataclasses.replace(plan, fast=fast)
    for chunk in chunks:
        try:
            slow = _formula_chunk(plan, chunk)
            quick = _fast_chunk(quick_plan, chunk)
        except Exception:  # noqa: BLE001 - any failure: the formula route stays
            return False
        if slow is None or quick is None or not _identical(slow, quick):
            return False
    return True


def _identical(a: tuple[ChunkData, Any], b: tuple[ChunkData, Any]) -> bool:
    """Same arrays (shapes and values), offset flag and row positions."""
    (da, rows_a), (db, rows_b) = a, b
    arrays = [(da.X, db.X), (da.y, db.y), (da.weights, db.weights), (da.offset, db.offset)]
    return (
        all(isinstance(x, np.ndarray) and x.shape == y.shape for x, y in arrays)
        and all(np.array_equal(x, y) for x, y in arrays)
        and da.has_offset == db.has_offset
        and np.array_equal(_positions(rows_a, da), _positions(rows_b, db))
    )


def _positions(rows: NDArray[np.intp] | None, data: ChunkData) -> NDArray[np.intp]:
    return np.arange(data.y.shape[0]) if rows is None else rows


def chunk_data(plan: ModelPlan, chunk: Chunk, check: bool) -> ChunkData | None:
    """The chunk's model rows after R's na.omit (None when no row is left); ``check``
    validates the response, weights and design values, naming the chunk and row."""
    built = _fast_chunk(plan, chunk) if plan.fast is not None else _formula_chunk(plan, chunk)
    if built is None or built[0].y.shape[0] == 0:
        return None
    data, rows = built
    if check:
        _check_chunk(plan, data, chunk, rows)
    return data


def _fast_chunk(plan: ModelPlan, chunk: Chunk) -> tuple[ChunkData, NDArray[np.intp] | None] | None:
    """The numpy route (see module doc): the rows and their positions in the chunk
    (None: every row)."""
    assert plan.fast is not None
    built: FastRows | None = fast_rows(plan.fast, chunk)
    if built is None:
        return None
    y = _binomial_zero_weight_y(plan, built.y, built.weights)
    return ChunkData(built.X, y, built.weights, built.offset, _has_offset(plan)), built.rows


def _formula_chunk(plan: ModelPlan, chunk: Chunk) -> tuple[ChunkData, NDArray[np.intp]] | None:
    """The formula route: pandas and formulaic's model spec on the chunk."""
    df = chunk.frame
    keep = ~np.asarray(df.isna().any(axis=1))
    if not keep.any():
        return None
    dfk = df.loc[keep].copy() if not keep.all() else df.copy()
    rows = np.flatnonzero(keep)  # positions in the chunk, for errors
    for col, lev in plan.levels.items():
        dfk[col] = pd.Categorical(dfk[col], categories=lev)
        if dfk[col].isna().any():
            i = int(np.flatnonzero(np.asarray(dfk[col].isna()))[0])
            raise DataError(
                f"column {col!r} has a level not seen in the first pass at {chunk.where(rows[i])}: "
                "the source must yield the same data at every pass"
            )
    y, trials = _response(plan.response, dfk, isinstance(plan.family, Binomial))
    X, off = new_design(plan.terms, dfk)
    w, _ = _column_or_array(plan.weights, dfk, "weights")
    w = np.ones(len(dfk)) if w is None else w
    if trials is not None:  # cbind(s, f): trials multiply the prior weights, as R
        w = w * trials
    y = _binomial_zero_weight_y(plan, y, w)
    return ChunkData(X, y, w, off, _has_offset(plan)), rows


def _binomial_zero_weight_y(plan: ModelPlan, y: Array, w: Array) -> Array:
    if isinstance(plan.family, Binomial):
        return np.where(w > 0, y, 0.0)  # R: y[weights == 0] <- 0
    return y


def _has_offset(plan: ModelPlan) -> bool:
    return bool(plan.terms.offset_terms) or plan.offset is not None


def _check_chunk(
    plan: ModelPlan, data: ChunkData, chunk: Chunk, rows: NDArray[np.intp] | None
) -> None:
    rows = _positions(rows, data)
    checks = [
        (f"response {plan.response!r}", data.y),
        (f"weights column {plan.weights!r}", data.weights),
        ("offset", data.offset),
    ]
    for what, v in checks:
        bad = ~np.isfinite(v)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{what} is not finite at {chunk.where(rows[i])}: {float(v[i])!r}")
    if np.any(data.weights < 0):
        i = int(np.flatnonzero(data.weights < 0)[0])
        raise DataError(
            f"weights must be non-negative; {int((data.weights < 0).sum())} negative in "
            f"{chunk.label}, first at {chunk.where(rows[i])}: {float(data.weights[i])!r}"
        )
    values = data.X.data if sp.issparse(data.X) else data.X
    if not np.all(np.isfinite(values)):
        dense = data.X.toarray() if sp.issparse(data.X) else data.X
        j = int(np.flatnonzero(~np.isfinite(dense).all(axis=0))[0])
        i = int(np.flatnonzero(~np.isfinite(dense[:, j]))[0])
        raise DataError(
            f"design column {plan.column_names[j]!r} is not finite at "
            f"{chunk.where(rows[i])}: {float(dense[i, j])!r}"
        )
    fam = plan.family
    problem = fam.invalid_response(data.y, data.weights)
    if problem is not None and problem[0].any():
        bad, need = problem
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"the {fam.name} family needs {need}; response {plan.response!r} has "
            f"{int(bad.sum())} invalid value(s) in {chunk.label}, first at "
            f"{chunk.where(rows[i])}: {float(data.y[i])!r}"
        )
    fam.warn_response(data.y, data.weights, plan.response)


__all__ = ["ChunkData", "ModelPlan", "chunk_data", "model_columns", "plan_model"]
