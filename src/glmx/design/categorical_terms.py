"""From a formula with a many-level factor to a CategoricalDesign, without a dense one-hot.

The formula is materialized by formulaic on the data with the factor's column replaced by a
three-level stand-in (every row at the second level).  That gives, at the cost of a design
with a few columns for the factor, everything formulaic would decide for the real factor:
the term order, the coding (treatment contrasts, reduced rank or not), the column names
(a template with the level in it), the other terms' columns with their stateful
transforms, and for an interaction ``C(g):x`` the row values of ``x``.  The factor's own
term becomes the categorical block: the codes of the rows' levels, and the values.  Column
names and order are those of ``formulaic.model_matrix`` on the real data (R's
``model.matrix`` order).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any

import formulaic
import numpy as np
import pandas as pd
import scipy.sparse as sp
from formulaic.transforms.contrasts import TreatmentContrasts
from formulaic.utils.sentinels import UNSET
from numpy.typing import NDArray

from glmx.design.categorical import CategoricalDesign
from glmx.design.contrasts import MATERIALIZER
from glmx.design.parsing import parse
from glmx.design.scan import scan_dense
from glmx.errors import DataError, FormulaError, shown

Array = NDArray[np.float64]

# a factor with more levels than this is kept as codes (the categorical block)
CATEGORICAL_MIN_LEVELS = 100
# rows of the data formulaic sees to lay out the design when the data's own columns fill it
PROTOTYPE_ROWS = 64
# the stand-in levels; every row gets the second, which no coding drops
_TOKENS = ("glmxlevel0x", "glmxlevel1x", "glmxlevel2x")
# a factor written C(name): group 1 is the column name
C_CALL = re.compile(r"C\(\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\)")


@dataclass(frozen=True)
class CategoricalSpec:
    """Plays formulaic's ModelSpec for a design with a categorical block: the term
    slices, factor contrasts and encoder state of the real design, and
    :meth:`get_model_matrix` for new data (a scipy.sparse CSR matrix)."""

    spec: Any  # formulaic's ModelSpec of the formula on the stand-in data
    variable: str  # the factor's data column
    levels: tuple[Any, ...]
    reduced: bool  # treatment coding without the first level
    stand_in: slice  # the factor's term in the stand-in design
    column_names: tuple[str, ...]
    term_slices: dict[Any, slice]

    @property
    def start(self) -> int:
        return self.stand_in.start

    @property
    def n_columns(self) -> int:
        return len(self.levels) - int(self.reduced)

    @property
    def terms(self) -> Any:
        return self.spec.terms

    @property
    def formula(self) -> Any:
        return self.spec.formula

    @property
    def encoder_state(self) -> dict[str, Any]:
        return dict(self.spec.encoder_state)

    @property
    def factor_contrasts(self) -> dict[Any, Any]:
        """formulaic's contrast states, with the real levels for the factor."""
        out = dict(self.spec.factor_contrasts)
        for factor, state in out.items():
            if list(state.levels) == list(_TOKENS):
                out[factor] = type(state)(state.contrasts, list(self.levels))
        return out

    def codes(self, column: pd.Series) -> NDArray[np.intp]:
        """Block column of each row (-1: none), -2 for a missing value; an error for a
        level the model was not fitted with."""
        values = pd.Series(column).reset_index(drop=True)
        code = np.asarray(pd.Index(self.levels).get_indexer(values), dtype=np.intp)
        unseen = np.asarray(values.notna()) & (code < 0)
        if unseen.any():
            new = list(pd.unique(values[unseen]))[:5]
            raise DataError(
                f"new data have factor levels the model was not fitted with: column "
                f"{self.variable!r} has {new!r}"
            )
        code = code - int(self.reduced)  # the reference level -> -1
        code[np.asarray(values.isna())] = -2
        return code

    def get_model_matrix(
        self, data: pd.DataFrame, na_action: str = "ignore", context: Any = None
    ) -> sp.csr_matrix:
        """The design for new data: the other terms through formulaic (with the fit's
        transforms and levels), the factor's term from its codes."""
        if self.variable not in data.columns:
            raise DataError(f"new data lack the column {self.variable!r}")
        code = self.codes(data[self.variable])
        mm = self.spec.get_model_matrix(
            _with_stand_in(data, self.variable), na_action=na_action, context=context
        )
        dense, v = _split(mm, self.stand_in, self.reduced)
        # a missing level: a NaN entry in the block's first column makes the row's eta NaN
        v = np.where(code == -2, np.nan, v)
        code = np.where(code == -2, 0, code)
        design = CategoricalDesign(dense, code, self.n_columns, self.start, v)
        return design.to_sparse()


def categorical_model_matrix(
    rhs: str, df: pd.DataFrame, context: Any = None
) -> tuple[CategoricalDesign, CategoricalSpec] | None:
    """The design of ``rhs`` on ``df`` (no missing values) with its largest factor as a
    categorical block, or None when no single-term factor has more than
    CATEGORICAL_MIN_LEVELS levels (or the formula uses it in a way this does not cover:
    several terms, other contrasts, interactions with other factors' columns)."""
    found = _many_level_factor(rhs, df)
    if found is None:
        return None
    variable, cat = found
    # the layout from the first rows; all rows through formulaic only when a term needs it
    mm = _stand_in_matrix(rhs, df.iloc[:PROTOTYPE_ROWS], variable, context)
    if mm is None:
        return None
    direct = _direct_columns(mm.model_spec, df, variable)
    if direct is None:
        mm = _stand_in_matrix(rhs, df, variable, context)
        if mm is None:
            return None
    spec = mm.model_spec
    layout = _block_layout(spec, variable)
    if layout is None:
        return None
    term, sl, template, reduced = layout
    levels = list(cat.categories)
    names_in = [str(c) for c in mm.columns]
    level_names = [template.replace(_TOKENS[1], str(lev)) for lev in levels[int(reduced) :]]
    names = names_in[: sl.start] + level_names + names_in[sl.stop :]
    width = len(level_names)
    delta = width - (sl.stop - sl.start)
    term_slices = {}
    for t, s in spec.term_slices.items():
        if t == term:
            term_slices[t] = slice(s.start, s.start + width)
        elif s.start >= sl.stop:
            term_slices[t] = slice(s.start + delta, s.stop + delta)
        else:
            term_slices[t] = s
    if direct is None:
        dense, v = _split(mm, sl, reduced)
    else:
        columns, v = direct
        dense = _assemble(columns, len(df))
    del mm
    _check_finite(dense, [n for j, n in enumerate(names_in) if not sl.start <= j < sl.stop], df)
    _check_finite(v[:, None], [f"{term} (values of its numeric part)"], df)
    code = np.asarray(cat.codes, dtype=np.intp) - int(reduced)
    design = CategoricalDesign(
        dense, code, width, sl.start, None if np.all(v == 1.0) else v, column_names=names
    )
    out_spec = CategoricalSpec(
        spec=spec,
        variable=variable,
        levels=tuple(levels),
        reduced=reduced,
        stand_in=sl,
        column_names=tuple(names),
        term_slices=term_slices,
    )
    return design, out_spec


def _stand_in_matrix(rhs: str, df: pd.DataFrame, variable: str, context: Any) -> Any:
    """formulaic's design of ``rhs`` on ``df`` with the factor's stand-in (None when
    formulaic fails: the dense path then builds the formula and reports the error)."""
    try:
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore")
            return formulaic.model_matrix(
                parse(rhs),
                _with_stand_in(df, variable),
                na_action="raise",
                context=context,
                materializer=MATERIALIZER,
            )
    except Exception:  # noqa: BLE001 - reported by the dense path
        return None


def _direct_columns(
    spec: Any, df: pd.DataFrame, variable: str
) -> tuple[list[Array | None], Array] | None:
    """The design's columns outside the factor's term read straight from the data (None
    for the intercept) and the row values of the factor's term, when each other term is
    the intercept or a numeric data column used as it is, and the factor's term is the
    factor alone or times one such column; None otherwise.  Materializing these columns
    through formulaic would copy every one of them, then copy them again into the dense
    block, which for a large frame costs more than the fit."""

    def plain(factor: Any) -> Array | None:
        name = str(factor.expr)
        if (
            getattr(factor.eval_method, "value", None) != "lookup"
            or name not in df.columns
            or factor in spec.factor_contrasts
        ):
            return None
        col = df[name]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            return None
        return np.asarray(col.to_numpy(dtype=float))

    columns: list[Array | None] = []
    values: Array | None = None
    for term, sl in spec.term_slices.items():
        uses_factor = variable in spec.term_variables.get(term, set())
        others = [f for f in term.factors if not (uses_factor and f in spec.factor_contrasts)]
        if uses_factor:
            if len(others) > 1 or len(others) == len(term.factors):
                return None
            values = np.ones(len(df)) if not others else plain(others[0])
            if values is None:
                return None
            continue
        if sl.stop - sl.start != 1:
            return None
        if str(term) == "1":
            columns.append(None)
            continue
        col = plain(term.factors[0]) if len(term.factors) == 1 else None
        if col is None:
            return None
        columns.append(col)
    return None if values is None else (columns, values)


def _many_level_factor(rhs: str, df: pd.DataFrame) -> tuple[str, Any] | None:
    """The column of the factor ``C(name)`` or ``name`` (a non-numeric column) with the
    most levels, if above CATEGORICAL_MIN_LEVELS, and its ``.cat`` accessor."""
    try:
        terms = list(parse(rhs))
    except FormulaError:
        return None
    best: tuple[str, Any] | None = None
    for factor in dict.fromkeys(f for term in terms for f in term.factors):
        expr = str(factor.expr).strip()
        m = C_CALL.fullmatch(expr)
        name = m.group(1) if m else expr
        if name not in df.columns:
            continue
        col = df[name]
        if m is None and (
            pd.api.types.is_numeric_dtype(col) and not isinstance(col.dtype, pd.CategoricalDtype)
        ):
            continue  # a bare numeric column is not a factor
        if pd.api.types.is_bool_dtype(col) or (
            isinstance(col.dtype, pd.CategoricalDtype) and col.dtype.ordered and m is None
        ):
            continue  # booleans; ordered factors take polynomial contrasts
        # formulaic's levels: pandas' categories (sorted unique values, or the categorical's)
        cat = pd.Series(col).astype("category").cat
        k = len(cat.categories)
        if k > CATEGORICAL_MIN_LEVELS and (best is None or k > len(best[1].categories)):
            if not np.any(np.asarray(cat.codes) < 0):
                best = (name, cat)
    return best


def _with_stand_in(df: pd.DataFrame, variable: str) -> pd.DataFrame:
    """``df`` with ``variable`` replaced by the three-level stand-in, all rows at level 2."""
    stand_in = pd.Categorical.from_codes(np.ones(len(df), dtype=np.int8), categories=_TOKENS)
    out = df.copy(deep=False)
    out[variable] = pd.Series(stand_in, index=df.index)
    return out


def _block_layout(spec: Any, variable: str) -> tuple[Any, slice, str, bool] | None:
    """The factor's term, its slice in the stand-in design, the column-name template and
    whether the coding is reduced; None unless exactly one term uses the variable and
    its columns are one per stand-in level (a one-hot, possibly times one numeric column)."""
    used = [t for t in spec.term_slices if variable in spec.term_variables.get(t, set())]
    if len(used) != 1:
        return None
    term = used[0]
    sl = spec.term_slices[term]
    names = list(spec.column_names[sl])
    tokens: tuple[str, ...]
    if len(names) == 2:
        tokens, reduced = _TOKENS[1:], True
    elif len(names) == 3:
        tokens, reduced = _TOKENS, False
    else:
        return None
    templates = set()
    for name, tok in zip(names, tokens):
        if name.count(tok) != 1 or any(t in name for t in _TOKENS if t != tok):
            return None
        templates.add(name.replace(tok, _TOKENS[1]))
    if len(templates) != 1:
        return None
    # treatment contrasts only: the one-hot (other contrasts have several entries per row)
    for state in spec.factor_contrasts.values():
        if list(state.levels) == list(_TOKENS) and (
            type(state.contrasts) is not TreatmentContrasts or state.contrasts.base is not UNSET
        ):
            return None
    return term, sl, templates.pop(), reduced


def _split(mm: Any, sl: slice, reduced: bool) -> tuple[Array, Array]:
    """Dense columns (all but the factor's, row-major) and the factor term's row values:
    the entry of the stand-in level every row has (the first column when reduced).  The
    dense block is assembled from formulaic's columns in row chunks: one n x q array."""
    p = mm.shape[1]
    cols = [np.asarray(mm.iloc[:, j].to_numpy(dtype=float)) for j in range(p)]
    v = cols[sl.start + (0 if reduced else 1)].copy()
    keep: list[Array | None] = [*cols[: sl.start], *cols[sl.stop :]]
    return _assemble(keep, mm.shape[0]), v


def _assemble(columns: list[Array | None], n: int) -> Array:
    """The row-major n x q block of the given columns (None: the intercept's ones),
    filled in chunks of rows (cache-sized), not single rows."""
    dense = np.empty((n, len(columns)))
    step = max(1, 2**18 // max(1, len(columns)))
    for a in range(0, n, step):
        b = min(a + step, n)
        for j, c in enumerate(columns):
            dense[a:b, j] = 1.0 if c is None else c[a:b]
    return dense


def _check_finite(X: Array, names: list[str], df: pd.DataFrame) -> None:
    if scan_dense(X)[0]:  # every block's sum is finite: no NaN or inf
        return
    bad = ~np.isfinite(X)
    if bad.any():
        j = int(np.flatnonzero(bad.any(axis=0))[0])
        i = int(np.flatnonzero(bad[:, j])[0])
        raise DataError(
            f"design column {names[j]!r} has {int(bad[:, j].sum())} non-finite value(s) "
            f"(first at row {shown(df.index[i])}: {float(X[i, j])!r})"
        )
