"""From formula and data to the sorted arrays of a mixed model, and shared checks."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg as sla
from numpy.typing import NDArray

from glmx.design.formula import TermState, build_model_frame
from glmx.design.frames import to_pandas
from glmx.design.matrix import DenseDesign
from glmx.errors import BoundaryWarning, ConvergenceWarning, DataError, DataWarning, FormulaError
from glmx.families.base import Family
from glmx.mixed.blocked import BlockedFactor, Structure
from glmx.mixed.reformula import parse_mixed_formula
from glmx.mixed.reterms import ReTerms, build_reterms

Array = NDArray[np.float64]

HIDDEN = "__glmx_mixed_"  # prefix of columns holding array weights/offsets


def _hidden_column(df: pd.DataFrame, spec: Any, name: str) -> Any:
    """An array weights/offset goes into a hidden column, so that dropping rows keeps it
    aligned; a column name stays as it is."""
    if spec is None or isinstance(spec, str):
        return spec
    arr = np.asarray(spec, dtype=float).ravel()
    if arr.shape[0] != len(df):
        raise DataError(f"{name} has length {arr.shape[0]} but the data have {len(df)} rows")
    df[HIDDEN + name] = arr
    return HIDDEN + name


def _full_rank_columns(X: Array, names: list[str]) -> NDArray[np.intp]:
    """Columns of X kept when it is rank deficient (lme4 drops the others)."""
    if X.shape[1] == 0:
        return np.arange(0)
    _, R, piv = sla.qr(X, mode="economic", pivoting=True)
    d = np.abs(np.diag(R))
    rank = int(np.sum(d > 1e-7 * d[0])) if d.size and d[0] > 0 else 0
    keep = np.sort(piv[:rank])
    if rank < X.shape[1]:
        dropped = [names[j] for j in sorted(set(range(X.shape[1])) - set(keep))]
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} "
            f"column(s): {', '.join(dropped)}",
            DataWarning,
            stacklevel=4,
        )
    return keep


def _check_levels(rt: ReTerms, n: int, lmm: bool) -> None:
    for t in rt.terms:
        if t.n_levels < 2:
            raise DataError(
                f"grouping factor {t.group!r} has {t.n_levels} level in the {n} rows used; "
                "a grouping factor needs two or more levels"
            )
        if (t.n_levels >= n) if lmm else (t.n_levels > n):
            raise DataError(
                f"grouping factor {t.group!r} has {t.n_levels} levels for {n} observations; "
                "the random effects are unidentifiable (lme4's check.nobs.vs.nlev)"
            )
    if lmm and rt.q >= n:
        raise DataError(
            f"{n} observations for {rt.q} random effects: the random-effect variances and "
            "the residual variance are unidentifiable (lme4's check.nobs.vs.nRE)"
        )


@dataclass
class Problem:
    """The model's arrays, rows sorted by the first term's levels (``order``)."""

    y: Array
    X: Array
    pw: Array
    offset: Array
    structure: Structure
    order: NDArray[np.intp]
    reterms: ReTerms  # in the data's row order
    fixed_terms: TermState
    columns: list[str]
    n_dropped: int
    row_index: NDArray[np.intp]


def build_problem(
    formula: str, data: Any, family: Family, weights: Any, offset: Any, lmm: bool
) -> Problem:
    parsed = parse_mixed_formula(formula)
    df = to_pandas(data).reset_index(drop=True)
    missing = sorted(v for v in parsed.variables if v not in df.columns)
    if missing:
        raise FormulaError(
            f"random-effect terms of {formula!r} name column(s) "
            f"{', '.join(repr(m) for m in missing)} not in the data "
            f"(columns: {', '.join(map(str, df.columns[:20]))})"
        )
    df = df.copy(deep=False)
    weights = _hidden_column(df, weights, "weights")
    offset = _hidden_column(df, offset, "offset")
    re_na = np.asarray(df[sorted(parsed.variables)].isna().any(axis=1))
    kept = df.loc[~re_na].reset_index(drop=True)
    positions = np.flatnonzero(~re_na)
    if len(df) == 0:
        raise DataError("the data have no rows")
    if len(kept) == 0:
        raise DataError(
            "no rows left after removing rows with missing values in the random-effect "
            f"columns {', '.join(map(repr, sorted(parsed.variables)))}"
        )
    frame = build_model_frame(
        parsed.fixed, kept, weights=weights, offset=offset, binomial=family.name == "binomial"
    )
    rows = np.asarray(frame.row_index, dtype=np.intp)
    used = kept.iloc[rows].reset_index(drop=True)
    n = len(used)
    design = frame.X
    X = design.X if isinstance(design, DenseDesign) else design.rows(np.arange(n))
    names = list(design.column_names)
    keep = _full_rank_columns(np.asarray(X), names)
    X = np.ascontiguousarray(np.asarray(X)[:, keep])
    pw = np.ones(n) if frame.weights is None else np.asarray(frame.weights, dtype=float)
    if frame.trials is not None:
        pw = pw * frame.trials
    bad = ~np.isfinite(pw) | (pw < 0)
    if bad.any():
        named = isinstance(weights, str) and not weights.startswith(HIDDEN)
        what = f"column {weights!r}" if named else "array"
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"weights ({what}) must be finite and non-negative: {int(bad.sum())} value(s) "
            f"are not (first at row {i}: {float(pw[i])})"
        )
    family.check_response(frame.y, pw, name=frame.terms.response)
    reterms = build_reterms(parsed.terms, used)
    _check_levels(reterms, n, lmm)
    order = np.argsort(reterms.terms[0].codes, kind="stable").astype(np.intp)
    sorted_terms = ReTerms(
        [dataclasses.replace(t, codes=t.codes[order], X=t.X[order]) for t in reterms.terms]
    )
    off = np.zeros(n) if frame.offset is None else np.asarray(frame.offset, dtype=float)
    return Problem(
        y=np.asarray(frame.y, dtype=float)[order],
        X=X[order],
        pw=pw[order],
        offset=off[order],
        structure=Structure(sorted_terms),
        order=order,
        reterms=reterms,
        fixed_terms=frame.terms,
        columns=[names[j] for j in keep],
        n_dropped=int(re_na.sum()) + frame.n_dropped,
        row_index=positions[rows],
    )


def condvar_by_group(
    reterms: ReTerms, factor: BlockedFactor, theta: Array, sigma: float
) -> dict[str, Array]:
    """Conditional covariances of b per level: sigma^2 Lambda_g (A^-1)_g Lambda_g'."""
    out = {}
    Ts = reterms.Ts(theta)
    for g, ix in reterms.groups.items():
        pos = reterms.group_positions(g)
        cov_u = factor.inverse_entries(pos[:, :, None], pos[:, None, :])
        Lam = sla.block_diag(*[Ts[i] for i in ix])
        out[g] = sigma**2 * (Lam @ cov_u @ Lam.T)
    return out


def unsort(values: Array, order: NDArray[np.intp]) -> Array:
    out = np.empty_like(values)
    out[order] = values
    return out


def warn_checks(
    theta: Array,
    lower: Array,
    gradient: Array | None,
    hessian: Array | None,
    n_theta: int,
    converged: bool,
) -> tuple[bool, list[str]]:
    """lme4's checkConv: singular fits warn (and skip the rest), else gradient/Hessian
    (skipped when there are no derivatives, as for nagq = 0)."""
    from glmx.mixed.optimize import CONVERGENCE_ADVICE, convergence_messages, is_singular

    messages: list[str] = []
    singular = is_singular(theta, lower)
    if singular:
        msg = (
            "boundary (singular) fit: a random-effect variance is estimated as zero (or a "
            "correlation as +-1); consider simplifying the random-effect structure"
        )
        warnings.warn(msg, BoundaryWarning, stacklevel=3)
        messages.append(msg)
    elif gradient is not None and hessian is not None:
        for m in convergence_messages(gradient, hessian, n_theta):
            warnings.warn(m + CONVERGENCE_ADVICE, ConvergenceWarning, stacklevel=3)
            messages.append(m)
    if not converged:
        msg = "the optimizer stopped before convergence" + CONVERGENCE_ADVICE
        warnings.warn(msg, ConvergenceWarning, stacklevel=3)
        messages.append(msg)
    return singular, messages
