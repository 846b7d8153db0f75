"""A chunk's model rows built with numpy alone: the fast path of
:func:`~glmx.outofcore.chunkdesign.chunk_data`.

Most formulas fitted out of core are products of plain columns: numeric columns used as
they are, factors with R's treatment contrasts, their interactions, an intercept, offset
and weights columns.  Every design column is then a product of parts

    value of a numeric column  |  indicator of one level of a factor column

(none: the intercept, a column of ones), in the order formulaic multiplies them (the
term's factors left to right; within a term the first factor's columns vary fastest, R's
``model.matrix`` order).  :func:`fast_design` reads that recipe off formulaic's model
spec, or returns None when a term is anything else (a transform, other contrasts, a
stateful term, a many-level factor kept as codes).  A chunk then costs one read of its
columns (Arrow buffers straight to numpy; factor codes by a hash lookup in the level
list, not a pandas Categorical per chunk) and one product per design column.

The recipe is an assumption about formulaic's output, so the plan keeps it only after it
gave, on a probe frame, exactly the rows and values of the formula route
(:mod:`glmx.outofcore.chunkdesign`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from formulaic.transforms.contrasts import TreatmentContrasts
from formulaic.utils.sentinels import UNSET
from numpy.typing import NDArray

from glmx.design.categorical_terms import C_CALL
from glmx.design.formula import _numeric
from glmx.errors import DataError
from glmx.outofcore.sources import Chunk, arrow_kind, arrow_missing
from glmx.solvers.state import Array

# a design column: (column, level index) parts, level -1 for a numeric column's value
Part = tuple[str, int]
Product = tuple[Part, ...]

PROBE_ROWS = 4096  # rows of the probe frame that checks the recipe


@dataclass(frozen=True)
class FastDesign:
    """The recipe of a chunk's model rows (see module doc)."""

    response: str
    weights: str | None
    offsets: tuple[str, ...]  # offset(column) terms, then the offset= column
    numeric: tuple[str, ...]  # the numeric data columns read
    factors: dict[str, list[Any]]  # the factor data columns and their levels
    products: tuple[Product, ...]  # one per design column


@dataclass(frozen=True)
class FastRows:
    """A chunk's complete rows: y, X, prior weights, offset, and their positions in the
    chunk (None: all rows)."""

    y: Array
    X: Array
    weights: Array
    offset: Array
    rows: NDArray[np.intp] | None


def fast_design(
    spec: Any,
    n_columns: int,
    response: str,
    weights: str | None,
    offset: str | None,
    offset_terms: Sequence[str],
    columns: Sequence[str],
    levels: dict[str, list[Any]],
    example: pd.DataFrame,
) -> FastDesign | None:
    """The recipe of the design formulaic's ``spec`` builds (``n_columns`` columns), or
    None when some part is not a plain column (see module doc)."""
    numeric = [c for c in columns if c not in levels and _plain_number(example[c])]
    if set(numeric) | set(levels) != set(columns):
        return None  # a boolean or other column: the formula route knows its coding
    offsets = [t.strip() for t in offset_terms] + ([offset] if offset is not None else [])
    if not {response, *offsets, *([weights] if weights else [])} <= set(numeric):
        return None  # cbind(), a transformed response or offset, a factor response
    structure = getattr(spec, "structure", None)
    contrasts = {str(k): v for k, v in getattr(spec, "factor_contrasts", {}).items()}
    if structure is None:
        return None  # glmx's categorical block: a sparse design
    products: list[Product] = []
    for term in structure:
        n_before = len(products)
        for scoped in term.scoped_terms:
            if scoped.scale != 1:
                return None
            choices = [_factor_parts(sf, numeric, levels, contrasts) for sf in scoped.factors]
            if any(c is None for c in choices):
                return None
            # formulaic's product: the first factor's columns vary fastest
            for combo in itertools.product(*reversed(choices)):  # type: ignore[arg-type]
                products.append(tuple(combo[::-1]))
        if len(products) - n_before != len(term.columns):
            return None
    if len(products) != n_columns:
        return None
    return FastDesign(
        response=response,
        weights=weights,
        offsets=tuple(offsets),
        numeric=tuple(numeric),
        factors={c: list(v) for c, v in levels.items()},
        products=tuple(products),
    )


def _plain_number(column: pd.Series) -> bool:
    """Integers or floats (not booleans, which formulaic codes as a factor)."""
    dtype = column.dtype
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _factor_parts(
    scoped_factor: Any,
    numeric: list[str],
    levels: dict[str, list[Any]],
    contrasts: dict[str, Any],
) -> list[Part] | None:
    """The parts one factor of a term contributes: its value, or one indicator per
    level kept (treatment contrasts: all but the first when the term is reduced)."""
    factor = scoped_factor.factor.factor
    expr = str(factor.expr)
    method = getattr(factor.eval_method, "name", "")
    call = C_CALL.fullmatch(expr)
    name = expr if method == "LOOKUP" else (call.group(1) if call else None)
    if name is None:
        return None
    if name in numeric and method == "LOOKUP":
        return [(name, -1)]
    if name not in levels:
        return None
    state = contrasts.get(expr)
    if state is None or list(state.levels) != list(levels[name]):
        return None
    coding = state.contrasts
    if not isinstance(coding, TreatmentContrasts) or coding.base is not UNSET:
        return None  # other contrasts, or another base level
    first = 1 if scoped_factor.reduced else 0
    return [(name, k) for k in range(first, len(levels[name]))]


def fast_rows(fast: FastDesign, chunk: Chunk) -> FastRows | None:
    """The chunk's model rows after R's na.omit over its columns (None when no row is
    left); a factor level not in the plan's list raises DataError naming the row."""
    values, codes, missing = _read_columns(fast, chunk)
    rows = None
    if missing.any():
        keep = ~missing
        if not keep.any():
            return None
        rows = np.flatnonzero(keep)
        values = {c: v[rows] for c, v in values.items()}
        codes = {c: v[rows] for c, v in codes.items()}
    for col, code in codes.items():  # the only -1 left: a level not seen in the first pass
        unseen = code < 0
        if unseen.any():
            i = int(np.flatnonzero(unseen)[0])
            raise DataError(
                f"column {col!r} has a level not seen in the first pass at "
                f"{chunk.where(i if rows is None else int(rows[i]))}: the source must yield "
                "the same data at every pass"
            )
    n = int(missing.shape[0] if rows is None else rows.shape[0])
    X = np.empty((n, len(fast.products)), order="F")
    for j, product in enumerate(fast.products):
        _fill_product(X[:, j], product, values, codes)
    off = np.zeros(n)
    for name in fast.offsets:  # summed in the formula route's order
        off = off + values[name]
    w = np.ones(n) if fast.weights is None else np.array(values[fast.weights], dtype=float)
    y = np.array(values[fast.response], dtype=float)  # a copy: the batch's buffers are read-only
    return FastRows(y, X, w, off, rows)


def _fill_product(
    out: Array, product: Product, values: dict[str, Array], codes: dict[str, NDArray[Any]]
) -> None:
    """out = the product's parts multiplied left to right (formulaic's order)."""
    if not product:
        out[:] = 1.0
        return
    parts = [values[c] if k < 0 else codes[c] == k for c, k in product]
    out[:] = parts[0]
    for part in parts[1:]:
        np.multiply(out, part, out=out)


def _read_columns(
    fast: FastDesign, chunk: Chunk
) -> tuple[dict[str, Array], dict[str, NDArray[Any]], NDArray[np.bool_]]:
    """The numeric columns as floats, the factor columns as level codes (-1: missing or
    unseen) and the rows missing a value in any of them (pandas' isna)."""
    batch = chunk.batch
    missing = np.zeros(chunk.n_rows, dtype=bool)
    values: dict[str, Array] = {}
    for name in fast.numeric:
        if batch is not None and arrow_kind(batch.column(name).type) == "number":
            v = np.asarray(batch.column(name).to_numpy(zero_copy_only=False), dtype=float)
        else:
            v = _numeric(chunk.frame[name], f"column {name!r}")
        missing |= np.isnan(v)
        values[name] = v
    codes: dict[str, NDArray[Any]] = {}
    for name, levels in fast.factors.items():
        if batch is not None and arrow_kind(batch.column(name).type) == "string":
            codes[name] = _arrow_codes(batch.column(name), levels)
            missing |= arrow_missing(batch.column(name))
        else:
            column = chunk.frame[name]
            codes[name] = np.asarray(pd.Categorical(column, categories=levels).codes)
            missing |= np.asarray(column.isna())
    return values, codes, missing


def _arrow_codes(column: Any, levels: list[Any]) -> NDArray[Any]:
    """Positions of an Arrow string column's values in the level list (-1: a value not
    in the list; anything for a null), by Arrow's hash lookup, of the dictionary's
    values only for a dictionary column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    value_set = pa.array(levels)
    if not pa.types.is_dictionary(column.type):
        return np.asarray(pc.index_in(column, value_set=value_set).fill_null(-1).to_numpy())
    lookup = pc.index_in(column.dictionary, value_set=value_set).fill_null(-1).to_numpy()
    indices = column.indices if column.null_count == 0 else column.indices.fill_null(0)
    if len(lookup) == 0:  # every value null
        return np.full(len(column), -1)
    return np.asarray(lookup[indices.to_numpy()])


def probe_frame(columns: Sequence[str], fast: FastDesign) -> pd.DataFrame:
    """Rows to check the recipe on: random numbers in every numeric column, factor levels
    in every combination the rows allow (mixed radix, then random), and one missing value
    per column."""
    rng = np.random.default_rng(20261124)
    sizes = [len(v) for v in fast.factors.values()]
    n = int(min(PROBE_ROWS, max(64, 2 * np.prod(sizes, dtype=float) + len(columns))))
    frame: dict[str, Any] = {}
    stride = 1
    for (name, levels), size in zip(fast.factors.items(), sizes, strict=True):
        code = (np.arange(n) // stride) % size if stride < n else rng.integers(0, size, n)
        stride *= size
        frame[name] = pd.Series(np.asarray(levels, dtype=object)[code], dtype=object)
    for name in fast.numeric:
        frame[name] = rng.uniform(0.25, 2.0, n)
    out = pd.DataFrame(frame)[list(columns)]
    for i, name in enumerate(columns):  # row i misses column i (R's na.omit drops it)
        out.loc[i, name] = np.nan if name in fast.numeric else None
    return out


__all__ = ["FastDesign", "FastRows", "fast_design", "fast_rows", "probe_frame"]
