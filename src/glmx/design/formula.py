"""From a formula and a data frame to y, X, weights, offset and the term state.

Formulaic parses and materializes the right-hand side (R's ``model.matrix`` column
order).  glmx handles the parts R users expect beyond it: ``offset(...)`` terms,
``cbind(successes, failures)`` and factor responses for binomial models, NA rows
dropped and counted (R's ``na.omit``), and clear errors naming the column at fault.
The :class:`TermState` keeps what is needed to rebuild X for new data.
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
from formulaic.errors import DataMismatchWarning, FormulaicError
from formulaic.transforms.contrasts import TreatmentContrasts
from formulaic.utils.variables import Variable
from numpy.typing import NDArray

from glmx.design.categorical_terms import categorical_model_matrix
from glmx.design.contrasts import MATERIALIZER
from glmx.design.frames import to_pandas
from glmx.design.matrix import DenseDesign, DesignMatrix
from glmx.design.newdata import check_new_data, model_variables
from glmx.design.parsing import (
    check_functions,
    check_no_bars,
    formulaic_message,
    known_functions,
    parse,
)
from glmx.errors import DataError, FormulaError, shown

Array = NDArray[np.float64]

# numpy functions that safe formulas allow (glmx.design.safe) and formulaic's transforms
# lack, and ``Treatment`` as a contrasts class (``C(g, Treatment)``, as Sum, Helmert, Poly
# and Diff are in formulaic); passed as formulaic's evaluation context (so no local
# variable of this module is visible to a formula either)
EXTRA_TRANSFORMS: dict[str, Any] = {
    "sqrt": np.sqrt,
    "abs": np.abs,
    "log1p": np.log1p,
    "expm1": np.expm1,
    "Treatment": TreatmentContrasts,
}


@dataclass(frozen=True)
class TermState:
    """What rebuilds the design for new data: formulaic's model spec and the offsets."""

    formula: str
    response: str
    model_spec: Any
    offset_terms: tuple[str, ...]
    offset_column: str | None
    offset_array: bool = False  # the fit's offset= was an array: predict needs offset=


@dataclass(frozen=True)
class ModelFrame:
    y: Array
    X: DesignMatrix
    weights: Array | None
    freq_weights: Array | None
    offset: Array | None
    terms: TermState
    n_dropped: int
    row_index: pd.Index
    # binomial cbind(s, f): trials per row, to multiply into the prior weights
    trials: Array | None = None
    cluster: NDArray[Any] | None = None  # cluster labels of the rows used


def split_offsets(rhs: str) -> tuple[str, list[str]]:
    """Remove top-level ``offset(expr)`` terms from a right-hand side; return them apart."""
    offsets: list[str] = []
    out = []
    i = 0
    for m in re.finditer(r"\boffset\s*\(", rhs):
        if m.start() < i:
            continue
        depth, j = 1, m.end()
        while j < len(rhs) and depth:
            depth += {"(": 1, ")": -1}.get(rhs[j], 0)
            j += 1
        if depth:
            raise FormulaError(f"unbalanced parentheses in offset term of {rhs!r}")
        offsets.append(rhs[m.end() : j - 1].strip())
        out.append(rhs[i : m.start()])
        i = j
    out.append(rhs[i:])
    rest = "".join(out)
    # tidy the '+' left behind: "a +  + b", "+ b", "a +"
    rest = re.sub(r"\+\s*(?=\+|$)", "", rest.strip())
    rest = re.sub(r"^\s*\+", "", rest).strip()
    return (rest if rest else "1"), offsets


def split_formula(formula: str) -> tuple[str, str]:
    """The two sides of ``lhs ~ rhs``, stripped; FormulaError when malformed."""
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string like 'y ~ x', got {type(formula).__name__}")
    if formula.count("~") != 1:
        raise FormulaError(
            f"formula {formula!r} needs exactly one '~' with the response on its left"
        )
    lhs, rhs = (part.strip() for part in formula.split("~"))
    if not lhs:
        raise FormulaError(f"formula {formula!r} has no response on the left of '~'")
    if not rhs:
        raise FormulaError(f"formula {formula!r} has nothing on the right of '~' (use '~ 1')")
    return lhs, rhs


def _variables(expr: str, what: str) -> set[str]:
    """The data columns a formula reads: its variables, less the functions it calls."""
    parsed = parse(expr, what)
    functions = known_functions(EXTRA_TRANSFORMS)
    return {
        str(v)
        for v in parsed.required_variables
        if not (str(v) in functions and Variable.Role.CALLABLE in v.roles)
    } - EXTRA_TRANSFORMS.keys()


def _column_or_array(
    spec: str | Any | None, df: pd.DataFrame, name: str
) -> tuple[Array | None, str | None]:
    if spec is None:
        return None, None
    if isinstance(spec, str):
        if spec not in df.columns:
            raise DataError(f"{name} column {spec!r} is not in the data")
        return _numeric(df[spec], f"{name} column {spec!r}"), spec
    try:
        if isinstance(spec, pd.Series):
            arr = np.asarray(spec.to_numpy(dtype=float, na_value=np.nan))
        else:
            arr = np.asarray(spec, dtype=float).ravel()
    except (TypeError, ValueError):
        raise DataError(f"{name} must be numeric, got {np.asarray(spec).dtype}") from None
    if arr.shape[0] != len(df):
        raise DataError(f"{name} has length {arr.shape[0]} but the data have {len(df)} rows")
    return arr, None


def _numeric(col: pd.Series, what: str) -> Array:
    try:
        return np.asarray(col.to_numpy(dtype=float, na_value=np.nan))
    except (TypeError, ValueError):
        raise DataError(f"{what} must be numeric, got {col.dtype}") from None


def _eval_expr(expr: str, df: pd.DataFrame, what: str) -> Array:
    """Evaluate a one-column expression (a column name, ``log(x)``, ``I(a/b)``)."""
    if expr in df.columns:
        return _numeric(df[expr], f"{what} {expr!r}")
    try:
        # I(...) makes formulaic evaluate the expression as Python: "size - incidence" is
        # arithmetic here, not the removal of a term
        with np.errstate(divide="ignore", invalid="ignore"):
            mm = formulaic.model_matrix(
                f"I({expr}) ~ 1", df, na_action="ignore", context=EXTRA_TRANSFORMS
            )
    except FormulaicError as exc:
        raise FormulaError(f"cannot evaluate {what} {expr!r}: {exc}") from None
    except Exception as exc:  # errors raised by user transforms inside formulaic
        raise FormulaError(f"cannot evaluate {what} {expr!r}: {exc}") from None
    lhs = mm.lhs
    if lhs.shape[1] != 1:
        raise FormulaError(f"{what} {expr!r} must give one numeric column, got {lhs.shape[1]}")
    return np.asarray(lhs.iloc[:, 0].to_numpy(dtype=float, na_value=np.nan))


def _response(lhs: str, df: pd.DataFrame, binomial: bool) -> tuple[Array, Array | None]:
    """y and, for ``cbind(s, f)``, the number of trials (y is then s / (s + f))."""
    m = re.fullmatch(r"cbind\s*\((.*)\)", lhs)
    if m:
        args = [a.strip() for a in m.group(1).split(",")]
        if len(args) != 2 or not binomial:
            raise FormulaError(
                f"cbind(successes, failures) response {lhs!r} needs two columns and a "
                "binomial family"
            )
        s = _eval_expr(args[0], df, "successes")
        f = _eval_expr(args[1], df, "failures")
        n = s + f
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.where(n > 0, s / np.where(n > 0, n, 1.0), 0.0)
        y[np.isnan(n)] = np.nan
        return y, n
    if lhs in df.columns:
        col = df[lhs]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            return _factor_response(col, lhs, binomial), None
    return _eval_expr(lhs, df, "response"), None


def _factor_response(col: pd.Series, name: str, binomial: bool) -> Array:
    """A two-level factor response: first level (R's order) is failure, as R's binomial."""
    if pd.api.types.is_bool_dtype(col):
        return np.asarray(col.astype("float64"))
    if not binomial:
        raise DataError(
            f"response {name!r} is not numeric ({col.dtype}); only binomial models take a factor response"
        )
    cat = col.astype("category") if not isinstance(col.dtype, pd.CategoricalDtype) else col
    levels = list(cat.cat.categories)
    if len(levels) > 2 or len(levels) < 1:
        raise DataError(
            f"factor response {name!r} must have two levels, has {len(levels)}: {levels[:5]}"
        )
    y = np.array((cat != levels[0]).astype("float64"), dtype=float)  # a writable copy
    y[np.array(cat.isna())] = np.nan
    return y


def build_model_frame(
    formula: str,
    data: Any,
    *,
    weights: Any = None,
    freq_weights: Any = None,
    offset: Any = None,
    binomial: bool = False,
    cluster: Any = None,
) -> ModelFrame:
    """Evaluate the formula on the data; drop rows with NA in any used column."""
    df = to_pandas(data)
    lhs, rhs_full = split_formula(formula)
    rhs, offset_terms = split_offsets(rhs_full)
    check_no_bars(rhs, formula)
    check_functions(formula, df.columns, EXTRA_TRANSFORMS)

    # columns the model uses: every variable of the formula, plus named weights/offset
    needed = _variables(f"{lhs} ~ {rhs}" if not lhs.startswith("cbind") else rhs, "formula")
    needed |= (
        set().union(*(_variables(f"{o} ~ 1", "offset") for o in offset_terms))
        if offset_terms
        else set()
    )
    if lhs.startswith("cbind"):
        needed |= set().union(*(_variables(f"{a} ~ 1", "response") for a in lhs[6:-1].split(",")))
    missing = sorted(v for v in needed if v not in df.columns)
    if missing:
        raise FormulaError(
            f"formula {formula!r} names column(s) {', '.join(repr(m) for m in missing)} "
            f"not in the data (columns: {', '.join(map(str, df.columns[:20]))})"
        )
    if len(df) == 0:
        raise DataError("the data have no rows")
    timed = sorted(str(c) for c in needed if df[c].dtype.kind in "mM")
    if timed:  # numpy would count nanoseconds, or refuse with its own words
        raise DataError(
            f"column(s) {', '.join(map(repr, timed))} hold dates or durations; convert them "
            "to numbers first (e.g. .dt.total_seconds(), or days since a date)"
        )

    w, w_col = _column_or_array(weights, df, "weights")
    fw, fw_col = _column_or_array(freq_weights, df, "freq_weights")
    off, off_col = _column_or_array(offset, df, "offset")
    clusters = _cluster_labels(cluster, df)

    # R's na.omit over the used columns and the weights/offset
    used = [c for c in df.columns if c in needed]
    na = np.array(df[used].isna().any(axis=1)) if used else np.zeros(len(df), dtype=bool)
    for arr in (w, fw, off):
        if arr is not None:
            na |= np.isnan(arr)
    if clusters is not None:
        na |= np.array(pd.isna(clusters))
    keep = ~na
    n_dropped = int(na.sum())
    if not keep.any():
        raise DataError(
            f"no rows left after removing {n_dropped} row(s) with missing values in "
            f"{', '.join(used)}"
        )
    dfk = df.loc[keep] if n_dropped else df
    dfk = _drop_unused_levels(dfk, needed)

    y, trials = _response(lhs, dfk, binomial)
    design: DesignMatrix
    # a factor with many levels stays integer codes (no dense one-hot): CategoricalDesign
    built = categorical_model_matrix(rhs, dfk, context=EXTRA_TRANSFORMS)
    if built is not None:
        design, spec = built
    else:
        try:
            with np.errstate(divide="ignore", invalid="ignore"):  # inf/nan are reported below
                mm = formulaic.model_matrix(
                    parse(rhs),
                    dfk,
                    na_action="raise",
                    context=EXTRA_TRANSFORMS,
                    materializer=MATERIALIZER,
                )
        except FormulaError:
            raise
        except Exception as exc:  # formulaic's errors, user transforms failing inside it
            raise FormulaError(
                f"cannot build the design for {formula!r}: {formulaic_message(exc)}"
            ) from None
        spec = mm.model_spec
    for factor, state in spec.factor_contrasts.items():
        if len(state.levels) < 2:
            raise DataError(
                f"factor {str(factor)!r} has a single level {list(state.levels)!r} in the "
                f"{int(keep.sum())} rows used; a factor needs two or more levels"
            )
    if built is None:
        odd = [str(c) for c, t in getattr(mm, "dtypes", {}).items() if t.kind in "cmM"]
        if odd:  # numpy would drop imaginary parts or count nanoseconds silently
            raise DataError(
                f"design column(s) {', '.join(map(repr, odd))} hold complex numbers, dates or "
                "durations; convert them to real numbers first (e.g. .dt.total_seconds())"
            )
        X = (
            np.asarray(mm.to_numpy(dtype=float))
            if hasattr(mm, "to_numpy")
            else np.asarray(mm, dtype=float)
        )
        names = [str(c) for c in mm.columns]
        _check_finite(X, names, dfk.index)
        design = DenseDesign(X, names)

    total_offset = off[keep] if off is not None else None
    for expr in offset_terms:
        o = _eval_expr(expr, dfk, "offset")
        total_offset = o if total_offset is None else total_offset + o

    terms = TermState(
        formula=formula,
        response=lhs,
        model_spec=spec,
        offset_terms=tuple(offset_terms),
        offset_column=off_col,
        offset_array=off is not None and off_col is None,
    )
    return ModelFrame(
        y=y,
        X=design,
        weights=w[keep] if w is not None else None,
        freq_weights=fw[keep] if fw is not None else None,
        offset=total_offset,
        terms=terms,
        n_dropped=n_dropped,
        row_index=dfk.index,
        trials=trials,
        cluster=clusters[keep] if clusters is not None else None,
    )


def _cluster_labels(cluster: Any, df: pd.DataFrame) -> NDArray[Any] | None:
    """Cluster labels per data row, from a column name or an array."""
    if cluster is None:
        return None
    if isinstance(cluster, str):
        if cluster not in df.columns:
            raise DataError(f"cluster column {cluster!r} is not in the data")
        return np.asarray(df[cluster].to_numpy(dtype=object))
    arr = np.asarray(cluster, dtype=object).ravel()
    if arr.shape[0] != len(df):
        raise DataError(f"cluster has length {arr.shape[0]} but the data have {len(df)} rows")
    return arr


def _drop_unused_levels(df: pd.DataFrame, used: set[str]) -> pd.DataFrame:
    """R's model.frame(drop.unused.levels = TRUE): categories absent from the rows used
    are dropped, so a factor with one level left is caught and no column is all zero."""
    cols = [
        c
        for c in df.columns
        if c in used and isinstance(df[c].dtype, pd.CategoricalDtype) and _has_unused(df[c])
    ]
    if not cols:
        return df
    out = df.copy(deep=False)  # only the factor columns change: no copy of the others
    for c in cols:
        out[c] = out[c].cat.remove_unused_categories()
    return out


def _has_unused(col: pd.Series) -> bool:
    """Whether some category of a categorical column has no row."""
    codes = np.asarray(col.cat.codes)
    k = len(col.cat.categories)
    return bool(k and (np.bincount(codes[codes >= 0], minlength=k) == 0).any())


def _check_finite(X: Array, names: list[str], index: pd.Index) -> None:
    bad = ~np.isfinite(X)
    if bad.any():
        j = int(np.flatnonzero(bad.any(axis=0))[0])
        i = int(np.flatnonzero(bad[:, j])[0])
        raise DataError(
            f"design column {names[j]!r} has {int(bad[:, j].sum())} non-finite value(s) "
            f"(first at row {shown(index[i])}: {float(X[i, j])!r})"
        )


def new_design(terms: TermState, newdata: Any, offset: Any = None) -> tuple[Any, Array]:
    """X (numpy, or scipy.sparse CSR for a fit with a categorical block) and the offset
    for new data, with the fit's factor levels and transforms.

    Rows with missing values give NaN predictions (R's ``na.pass``)."""
    df = to_pandas(newdata)
    variables = _spec_variables(terms) | model_variables(terms.model_spec)
    df = check_new_data(terms.model_spec, df, variables, terms.formula)
    # rows with a missing value in a used column: built from a complete stand-in row,
    # then given a NaN offset, so that their prediction and its se are NaN (na.pass)
    used = [c for c in df.columns if c in variables]
    missing = np.array(df[used].isna().any(axis=1)) if used else np.zeros(len(df), bool)
    if missing.all() and len(df):
        return np.full((len(df), len(terms.model_spec.column_names)), np.nan), np.full(
            len(df), np.nan
        )
    if missing.any():
        df = df.copy()
        cols = [df.columns.get_loc(c) for c in used]
        stand_in = df.iloc[[int(np.flatnonzero(~missing)[0])], cols].to_numpy()
        df.iloc[np.flatnonzero(missing), cols] = np.repeat(stand_in, missing.sum(), axis=0)
    try:
        with warnings.catch_warnings():
            # formulaic would turn a level the fit never saw into NaN; R refuses it
            warnings.simplefilter("error", DataMismatchWarning)
            mm = terms.model_spec.get_model_matrix(df, na_action="ignore", context=EXTRA_TRANSFORMS)
    except DataMismatchWarning:
        raise DataError("new data have factor levels the model was not fitted with") from None
    except DataError:
        raise
    except FormulaicError as exc:
        raise FormulaError(f"cannot build the design for new data: {exc}") from None
    except Exception as exc:
        raise DataError(f"cannot build the design for new data: {exc}") from None
    X = mm if sp.issparse(mm) else np.asarray(mm.to_numpy(dtype=float))
    off = np.zeros(X.shape[0])
    for expr in terms.offset_terms:
        off = off + _eval_expr(expr, df, "offset")
    if offset is not None:
        arr, _ = _column_or_array(offset, df, "offset")
        assert arr is not None
        off = off + arr
    elif terms.offset_array:
        raise DataError(
            "the model was fitted with an offset array; give predict() the offset for "
            "the new data with offset="
        )
    elif terms.offset_column is not None:
        if terms.offset_column not in df.columns:
            raise DataError(f"new data lack the offset column {terms.offset_column!r}")
        off = off + _numeric(df[terms.offset_column], "offset")
    off[missing] = np.nan
    return X, off


def _spec_variables(terms: TermState) -> set[str]:
    """Names of the data columns the right-hand side and the offsets read."""
    names = {str(v) for v in getattr(terms.model_spec, "required_variables", set())}
    for expr in terms.offset_terms:
        names |= _variables(f"{expr} ~ 1", "offset")
    return names
