"""From formula and data to the sorted arrays of a mixed model, and shared checks."""

from __future__ import annotations

import dataclasses
import os
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
from glmx.errors import DataError, DataWarning, FormulaError, GlmxWarning
from glmx.families.base import Family
from glmx.mixed.blocked import BlockedFactor, Structure
from glmx.mixed.reformula import parse_mixed_formula
from glmx.mixed.reterms import ReTerms, build_reterms
from glmx.solvers.qr import weighted_qr

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
    """Columns of X kept when it is rank deficient (lme4 drops the others, with a warning).

    The decision is scale-free, as lme4's (which scales X before its QR): each column is
    divided by its largest absolute value, then R's ``dqrdc2`` rule (the GLM's, in
    :mod:`glmx.solvers.qr`) drops a column whose residual after the kept earlier columns
    is below 1e-7 of its own norm.  An all-zero column is dropped too."""
    p = X.shape[1]
    if p == 0:
        return np.arange(0)
    big = np.max(np.abs(X), axis=0)
    if not np.all(np.isfinite(big)):
        j = int(np.flatnonzero(~np.isfinite(big))[0])
        raise DataError(f"fixed-effect column {names[j]!r} has infinite values")
    Xs = X / _column_scale(X)
    fac, _, _ = weighted_qr(Xs, np.ones(X.shape[0]), np.zeros(X.shape[0]), 1e-7, None)
    keep = np.flatnonzero(fac.kept).astype(np.intp)
    if keep.size < p:
        dropped = [names[j] for j in range(p) if not fac.kept[j]]
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


def _check_finite(values: Array, what: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{what} has {int(bad.sum())} infinite value(s), first at row {i}: {float(values[i])}"
        )


# a response beyond these magnitudes has a variance (its square) outside floating point
_RESPONSE_RANGE = (1e-150, 1e150)


def _check_lmm_response(r: Array, X: Array, w: Array, response: str) -> None:
    """A linear mixed model needs a response the fixed effects do not fit exactly: at a
    zero residual sum of squares the likelihood is unbounded (sigma -> 0).  Its magnitude
    must leave room for its square."""
    pos = w > 0
    r, X, sw = r[pos], X[pos], np.sqrt(w[pos] / np.max(w[pos]))
    big = float(np.max(np.abs(r)))
    lo, hi = _RESPONSE_RANGE
    if big > hi or 0 < big < lo:
        raise DataError(
            f"the response {response!r} reaches {big:.3g} in absolute value (less any "
            f"offset): a linear mixed model needs a response between {lo:g} and {hi:g} in "
            "size, whose variance fits in floating point; rescale it (say, in other units)"
        )
    if np.ptp(r) == 0 and (X.shape[1] > 0 or r[0] == 0):
        raise DataError(
            f"the response {response!r} is constant ({float(r[0]):g} in every row, less any "
            "offset): a linear mixed model needs variation in the response"
        )
    A = X / _column_scale(X) * sw[:, None]
    b = r / np.max(np.abs(r)) * sw
    r_norm = float(np.linalg.norm(b))
    if A.shape[1]:
        coef, *_ = np.linalg.lstsq(A, b, rcond=None)
        b = b - A @ coef
    if np.linalg.norm(b) <= 1e-10 * r_norm:
        raise DataError(
            f"the fixed effects fit the response {response!r} exactly (no residual "
            "variation): a linear mixed model cannot estimate the residual variance"
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
    x_scale: Array  # largest |value| of each column of X: the fit works on X / x_scale

    def describe(self) -> str:
        """The blocks of the model's Cholesky factor: types, sizes, nonzeros, fill-in and
        the work of one evaluation (see :meth:`Structure.describe`)."""
        return self.structure.describe(p=self.X.shape[1])

    @property
    def X_scaled(self) -> Array:
        """X with every column on the unit scale, so that the optimizer, PIRLS and the
        convergence checks behave the same for a covariate in any unit."""
        return self.X / self.x_scale


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
    if not np.any(pw > 0):
        raise DataError(f"every weight is zero in the {n} rows used: there is nothing to fit")
    family.check_response(frame.y, pw, name=frame.terms.response)
    reterms = build_reterms(parsed.terms, used)
    _check_levels(reterms, n, lmm)
    order = np.argsort(reterms.terms[0].codes, kind="stable").astype(np.intp)
    sorted_terms = ReTerms(
        [dataclasses.replace(t, codes=t.codes[order], X=t.X[order]) for t in reterms.terms]
    )
    off = np.zeros(n) if frame.offset is None else np.asarray(frame.offset, dtype=float)
    y = np.asarray(frame.y, dtype=float)
    _check_finite(y, f"the response {frame.terms.response!r}")
    _check_finite(off, "the offset")
    if lmm:
        _check_lmm_response(y - off, X, pw, frame.terms.response)
    return Problem(
        y=y[order],
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
        x_scale=_column_scale(X),
    )


# a dense block whose Cholesky takes more than this many flops (about 4 s at 50 GFLOPS)
# makes every evaluation slow: the fit warns, naming the block
SLOW_DENSE_FLOPS = 2e11
# copies of the dense block alive at once (the block, its factor's workspace, the inverse
# of its random-effect part for the gradient and conditional variances)
DENSE_COPIES = 3


def check_dense_block(prob: Problem) -> tuple[int, tuple[str, ...]]:
    """The side of the dense block of L (crossed terms, X and the right-hand side), after
    refusing a block that cannot fit in memory and warning about one so large that each
    evaluation is slow (the warning's message returned, for the fit's record); both
    messages name the terms in the block."""
    s = prob.structure
    p = prob.X.shape[1]
    side = s.q_tail + p + 1
    if s.q_tail == 0:
        return side, ()
    labels = ", ".join(str(t.spec) for t in s.reterms.terms[s.n_stages :])
    size = 8.0 * side * side
    what = (
        f"the random-effect term(s) {labels} make a dense block of {side:,} x {side:,} "
        f"({size / 1e9:.3g} GB) in the model's Cholesky factor (their levels are crossed "
        f"with those of the terms before them)"
    )
    memory = _physical_memory()
    if memory is not None and DENSE_COPIES * size > memory:
        raise DataError(
            f"{what}; it needs about {DENSE_COPIES * size / 1e9:.3g} GB, more than this "
            f"machine's {memory / 1e9:.3g} GB. Fewer levels in those terms (rare levels "
            "pooled) or a model without them can be fitted"
        )
    flops = side**3 / 3.0
    if flops <= SLOW_DENSE_FLOPS:
        return side, ()
    msg = (
        f"{what}; each evaluation of the likelihood factors it ({flops:.2g} flops), and a "
        "fit takes a few dozen evaluations: expect a long fit (see fit.structure and "
        "glmx.mixed.problem.describe_structure)"
    )
    warnings.warn(msg, GlmxWarning, stacklevel=4)
    return side, (msg,)


def _physical_memory() -> float | None:
    """The machine's memory in bytes (None where the system does not say)."""
    try:
        return float(os.sysconf("SC_PHYS_PAGES")) * float(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def describe_structure(formula: str, data: Any, family: Family, weights: Any = None) -> str:
    """The blocked Cholesky layout of a mixed model before it is fitted: where a crossed
    model's time and memory go (a large dense block is the cost of crossed factors)."""
    lmm = family.name == "gaussian"
    return build_problem(formula, data, family, weights, None, lmm).describe()


def _column_scale(X: Array) -> Array:
    big = np.max(np.abs(X), axis=0, initial=0.0)
    return np.where(big > 0, big, 1.0)


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
