"""Analysis of deviance: sequential (R's ``anova.glm``), single-term deletions
(``drop1.glm``) and nested models (``anova.glmlist``), with R's tests.

Sub-models are refitted by IRLS with the full model's family, prior and frequency weights
and offset.  A negative binomial sub-model keeps the full model's theta, as
``MASS::anova.negbin`` for one model, with a warning saying so; nested negative binomial
fits with estimated theta are compared, as ``anova.negbin`` does, by the likelihood
ratio of the fits, each with its own maximum likelihood theta (``lr_stat``).  Tests
(R's ``stat.anova``), with D the deviance drop on ``df`` degrees of freedom and phi the
dispersion of the biggest model:

    Chisq (LRT):  D / phi ~ chi^2_df
    F:            (D / df) / phi ~ F(df, df_resid)     (df_resid = Inf when phi = 1)
    Rao:          S / phi ~ chi^2_df,  S = the score statistic (a weighted regression of
                  the smaller model's working residuals on the bigger design)
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from glmx.design.matrix import DenseDesign, DesignMatrix, SparseDesign, ones_column
from glmx.errors import ConvergenceError, DataError, FamilyError, GlmxWarning
from glmx.families.negbin import NegativeBinomial
from glmx.inference.compare import check_comparable, estimated_theta
from glmx.solvers.elementwise import working_weights_and_residuals
from glmx.solvers.irls import irls
from glmx.solvers.linalg import factorize
from glmx.solvers.state import Array, IRLSInputs

if TYPE_CHECKING:
    from glmx.results.glm import GLMResults

_TESTS = {"chisq": "Chisq", "lrt": "Chisq", "f": "F", "rao": "Rao", "none": None}


@dataclasses.dataclass(frozen=True)
class Term:
    """A model term: R's label, its design columns and the variables it involves."""

    label: str
    columns: tuple[int, ...]
    variables: frozenset[str]


@dataclasses.dataclass(frozen=True)
class SubFit:
    """What the tables need of a refitted sub-model."""

    deviance: float
    rank: int
    working_residuals: Array
    working_weights: Array


def resolve_test(fit: GLMResults, test: str | None) -> str | None:
    """'Chisq', 'F', 'Rao' or None; the default is Chisq for fixed-dispersion families
    (binomial, poisson, negative binomial) and F otherwise."""
    if test is None:
        return "Chisq" if fit.family.fixed_dispersion else "F"
    key = str(test).lower()
    if key not in _TESTS:
        raise DataError(f"test must be 'Chisq' (or 'LRT'), 'F', 'Rao' or 'none', got {test!r}")
    return _TESTS[key]


def model_terms(fit: GLMResults) -> tuple[tuple[int, ...], list[Term]]:
    """The intercept's columns and the terms in formula order (R's ``assign``).

    Formula fits use formulaic's term slices; for ``glm_fit`` fits every column is a
    term, except an all-ones intercept column."""
    f = fit._fit
    names = f.X.column_names
    if f.terms is not None:
        icpt: tuple[int, ...] = ()
        terms = []
        for term, sl in f.terms.model_spec.term_slices.items():
            cols = tuple(range(sl.start, sl.stop))
            factors = frozenset(str(v) for v in term.factors) - {"1"}
            if not factors:
                icpt += cols
            elif cols:
                terms.append(Term(str(term), cols, factors))
        return icpt, terms
    ones = ones_column(f.X) if f.has_intercept else None
    icpt = () if ones is None else (ones,)
    terms = [Term(n, (j,), frozenset([n])) for j, n in enumerate(names) if j != ones]
    return icpt, terms


def columns_of(X: DesignMatrix, cols: list[int] | tuple[int, ...]) -> DesignMatrix:
    """The design restricted to some columns, in the same backend."""
    idx = list(cols)
    names = [X.column_names[j] for j in idx]
    if isinstance(X, SparseDesign):
        return SparseDesign(X.X[:, idx], names)
    if isinstance(X, DenseDesign):
        return DenseDesign(X.X[:, idx], names)
    return DenseDesign(X.rows(np.arange(X.shape[0]))[:, idx], names)


def refit(fit: GLMResults, cols: list[int] | tuple[int, ...], r_path: bool = False) -> SubFit:
    """Refit the model on some design columns, as R's ``glm.fit`` in ``anova.glm``:
    same family (and theta), weights, offset, tolerance and method.  IRLS starts from the
    full fit's mu (or the family's start should that be invalid for the sub-model); with
    ``r_path`` from the family's start as R, so that the working weights of the last
    step, which the score tests use, are R's to the last digits."""
    f = fit._fit
    inp = IRLSInputs(
        X=columns_of(f.X, cols), y=f.y, weights=f.weights, freq_weights=f.freq_weights,
        offset=f.offset, family=f.family, mustart=None if r_path else f.mu, tol=f.tol,
        max_iter=f.max_iter,
    )  # fmt: skip
    if not cols:  # R's EMPTY model: eta = offset
        eta = f.offset
        mu = f.family.link.inverse(eta)
        W, r = working_weights_and_residuals(inp, eta, mu)
        return SubFit(f.family.deviance(f.y, mu, inp.total_weights), 0, r, W)
    solve = irls
    if f.method == "firth":  # as brglm2: sub-models by the same bias-reduced fit
        solve = importlib.import_module("glmx.solvers.firth").firth
    try:
        res = solve(inp)
    except ConvergenceError:
        res = solve(dataclasses.replace(inp, mustart=None))
    _, r = working_weights_and_residuals(inp, res.eta, res.mu)
    rank = int((~res.aliased).sum())
    return SubFit(res.deviance, rank, r, res.working_weights)


def score_statistic(X: DesignMatrix, r: Array, w: Array, intercept: bool) -> float:
    """R's ``glm.fit(X, r, w, intercept)$null.deviance - $deviance``: the weighted
    regression sum of squares of working residuals r on X, S = r'WX (X'WX)^- X'Wr - (the
    weighted mean part when there is an intercept)."""
    fac = factorize(X.gram(w))
    b = fac.solve(X.rmatvec(w * r))
    rss = float(np.sum(w * (r - X.matvec(b)) ** 2))
    centre = float(np.sum(w * r) / np.sum(w)) if intercept else 0.0
    return float(np.sum(w * (r - centre) ** 2)) - rss


def stat_anova(
    table: pd.DataFrame, test: str | None, scale: float, df_scale: float, column: str
) -> pd.DataFrame:
    """R's ``stat.anova``: p-values from the change ``column`` on ``df`` (signed) degrees
    of freedom, scaled by the dispersion; NaN where df = 0 or the change is negative."""
    if test is None:
        return table
    dfs = table["df"].to_numpy(dtype=float)
    change = table[column].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        if test == "F":
            # F = (D / df) / phi on (|df|, df_scale)
            val = change / dfs / scale
            val[(dfs == 0) | (val < 0)] = np.nan
            p = (
                stats.chi2.sf(val * np.abs(dfs), np.abs(dfs))
                if np.isinf(df_scale)
                else stats.f.sf(val, np.abs(dfs), df_scale)
            )
            table["statistic"] = val
        else:
            # chi^2 = D / phi (or S / phi for Rao), signed as the df
            val = change / scale * np.sign(dfs)
            val[(dfs == 0) | (val < 0)] = np.nan
            p = stats.chi2.sf(val, np.abs(dfs))
    table["p_value"] = p
    return table


def _warn_f(fit: GLMResults) -> None:
    fam = fit.family.name
    if fam in ("binomial", "poisson"):
        msg = f"using F test with a '{fam}' family is inappropriate"
    else:
        msg = "using F test with a fixed dispersion is inappropriate"
    warnings.warn(msg, GlmxWarning, stacklevel=4)


def _warn_theta_held(fit: GLMResults) -> None:
    """Say that sub-models of a negative binomial fit keep its estimated theta, as
    ``MASS::anova.negbin`` does for one model."""
    if estimated_theta(fit):
        warnings.warn(
            "anova: tests made without re-estimating theta (every sub-model keeps the "
            f"full model's theta = {float(fit.theta):.6g}, as MASS); glmx.anova(fit1, fit2) "
            "compares negative binomial fits each with its own theta",
            GlmxWarning,
            stacklevel=4,
        )


def anova_sequential(fit: GLMResults, test: str | None = None) -> pd.DataFrame:
    """Sequential analysis of deviance, R's ``anova.glm``: the NULL model (intercept and
    offset) then each term added in formula order.  Columns ``df, deviance, resid_df,
    resid_dev`` and with a test ``p_value`` (``statistic`` for F, ``rao`` for Rao).
    The dispersion for the tests is the full model's (R's ``summary`` dispersion)."""
    test = resolve_test(fit, test)
    _warn_theta_held(fit)
    f = fit._fit
    icpt, terms = model_terms(fit)
    nobs = fit.nobs
    resid_df, resid_dev = [float(fit.df_null)], [fit.null_deviance]
    rao = [np.nan]
    cols = list(icpt)
    rao_test = test == "Rao"
    prev = refit(fit, cols, rao_test) if rao_test else None
    for k, term in enumerate(terms):
        cols = cols + list(term.columns)
        last = k == len(terms) - 1
        sub = None if last else refit(fit, cols, rao_test)
        if prev is not None:
            # score test of term k against the model before it
            X = f.X if last else columns_of(f.X, cols)
            rao.append(score_statistic(X, prev.working_residuals, prev.working_weights, bool(icpt)))
            prev = sub
        if sub is not None:
            resid_df.append(float(nobs - sub.rank))
            resid_dev.append(sub.deviance)
    if terms:
        resid_df.append(float(fit.df_resid))
        resid_dev.append(fit.deviance)
    rdf, rdev = np.array(resid_df), np.array(resid_dev)
    table = pd.DataFrame(
        {
            "df": np.r_[np.nan, -np.diff(rdf)] + 0.0,  # + 0.0: no -0.0
            "deviance": np.r_[np.nan, np.maximum(0.0, -np.diff(rdev))],
            "resid_df": rdf,
            "resid_dev": rdev,
        },
        index=["NULL", *(t.label for t in terms)],
    )
    if test == "Rao":
        table["rao"] = rao
    scale = fit.dispersion
    df_scale = np.inf if scale == 1.0 else float(fit.df_resid)
    if test == "F" and np.isinf(df_scale):
        _warn_f(fit)
    return stat_anova(table, test, scale, df_scale, "rao" if test == "Rao" else "deviance")


def droppable(terms: list[Term]) -> list[Term]:
    """R's ``drop.scope``: terms not contained in another term (marginality)."""
    if len(terms) <= 1:
        return list(terms)
    return [t for t in terms if all(not t.variables <= u.variables for u in terms if u is not t)]


def drop1(fit: GLMResults, test: str | None = None) -> pd.DataFrame:
    """R's ``drop1.glm``: the full model (``<none>``) and each term that can be dropped
    (respecting marginality) refitted without it.  Columns ``df, deviance, aic`` and
    with a test ``statistic, p_value``.  The default test is Chisq for fixed-dispersion
    families and F otherwise ('none' for no test), and as R:

        Chisq: LRT = (D_drop - D) / phi   (gaussian: n log(D_drop / D))
        F:     ((D_drop - D) / df) / (D / df_resid)   on (df, df_resid)
        Rao:   score statistic / phi

    A negative binomial fit's sub-models keep its theta, as R's ``drop1`` (MASS's
    ``dropterm`` does the same).
    """
    test = resolve_test(fit, test)
    f = fit._fit
    icpt, terms = model_terms(fit)
    scope = droppable(terms)
    all_cols = set(range(f.X.shape[1]))
    fits = [refit(fit, sorted(all_cols - set(t.columns)), test == "Rao") for t in scope]
    ranks = np.array([fit.rank] + [s.rank for s in fits], dtype=float)
    dev = np.array([fit.deviance] + [s.deviance for s in fits])
    phi = fit.dispersion
    n = float(np.sum(f.freq_weights))  # R: nrow(x)
    loglik = n * np.log(dev / n) if fit.family.name == "gaussian" else dev / phi
    aic = loglik + 2.0 * ranks
    # R: shifted so that <none> is extractAIC(fit); MASS's negbin version counts no theta
    base = (
        -2.0 * fit.loglik + 2.0 * fit.rank if isinstance(fit.family, NegativeBinomial) else fit.aic
    )
    aic = aic + (base - aic[0])
    dfs = np.r_[np.nan, ranks[0] - ranks[1:]]
    table = pd.DataFrame(
        {"df": dfs, "deviance": dev, "aic": aic}, index=["<none>", *(t.label for t in scope)]
    )
    if test is None:
        return table
    with np.errstate(invalid="ignore", divide="ignore"):
        if test == "Chisq":
            stat = np.maximum(0.0, loglik - loglik[0])
            p = stats.chi2.sf(stat, dfs)
        elif test == "Rao":
            scores = [
                score_statistic(f.X, s.working_residuals, s.working_weights, True) for s in fits
            ]
            stat = np.maximum(0.0, np.r_[np.nan, scores]) / phi
            p = stats.chi2.sf(stat, dfs)
        else:
            if fit.family.name in ("binomial", "poisson"):
                warnings.warn(
                    f"F test assumes 'quasi{fit.family.name}' family", GlmxWarning, stacklevel=3
                )
            rdf = float(fit.df_resid)
            rms = dev[0] / rdf  # the residual mean deviance, not the Pearson dispersion
            stat = np.maximum(0.0, dev - dev[0]) / dfs / rms
            stat[dfs < 1e-4] = np.nan
            p = stats.f.sf(stat, dfs, rdf)
    stat[0] = np.nan
    p = np.where(dfs > 0, p, np.nan)
    table["statistic"] = stat
    table["p_value"] = p
    return table


def anova_models(*fits: GLMResults, test: str | None = None) -> pd.DataFrame:
    """Compare nested models, R's ``anova(m1, m2, ...)`` (``anova.glmlist``): one row per
    model, ``resid_df, resid_dev, df, deviance`` (the changes from the row before) and
    with a test ``p_value`` (``statistic`` for F, ``rao`` for Rao).  F uses the
    dispersion of the biggest model on its residual df.  The models must be nested and
    fitted to the same rows, response, weights, offset, family and link.

    Negative binomial fits with estimated theta are compared as ``MASS::anova.negbin``
    (see :func:`anova_negbin`)."""
    if len(fits) == 1:
        return anova_sequential(fits[0], test)
    check_comparable(fits, nested=True)
    test = resolve_test(fits[0], test)
    if estimated_theta(fits[0]):
        return anova_negbin(fits, test)
    rdf = np.array([float(m.df_resid) for m in fits])
    rdev = np.array([m.deviance for m in fits])
    table = pd.DataFrame(
        {"resid_df": rdf, "resid_dev": rdev, "df": np.r_[np.nan, -np.diff(rdf)]},
        index=pd.RangeIndex(1, len(fits) + 1, name="model"),
    )
    table["deviance"] = np.r_[np.nan, -np.diff(rdev)]
    if test == "Rao":
        rao = [np.nan]
        for small, big, d in zip(fits[:-1], fits[1:], table["df"].to_numpy()[1:]):
            if d < 0:
                small, big = big, small
            s = score_statistic(
                big._fit.X,
                small.residuals("working"),
                small._fit.working_weights,
                small._fit.has_intercept,
            )
            rao.append(-s if d < 0 else s)
        table["rao"] = rao
    big = fits[int(np.argmin(rdf))]
    scale = big.dispersion
    df_scale = np.inf if scale == 1.0 else float(rdf.min())
    if test == "F" and np.isinf(df_scale):
        _warn_f(big)
    return stat_anova(table, test, scale, df_scale, "rao" if test == "Rao" else "deviance")


def anova_negbin(fits: tuple[GLMResults, ...], test: str | None) -> pd.DataFrame:
    """``MASS::anova.negbin`` for several fits: likelihood ratio tests of negative
    binomial models, theta re-estimated by maximum likelihood for each model.

    Rows in order of decreasing residual df (as MASS), numbered 1, 2, ...; columns
    ``formula``, ``theta`` (each model's own), ``resid_df``, ``twologlik`` (2 x log-lik.),
    ``test`` ("1 vs 2"), ``df``, ``lr_stat`` = twologlik_i - twologlik_{i-1} (MASS's
    "LR stat.") and with the Chisq test ``p_value``.  ``attrs["heading"]`` holds MASS's
    heading."""
    if test not in ("Chisq", None):
        raise FamilyError(
            "negative binomial models with estimated theta are compared by likelihood "
            f"ratio tests only (test='Chisq'), not {test!r}"
        )
    order = sorted(range(len(fits)), key=lambda i: -float(fits[i].df_resid))
    ms = [fits[i] for i in order]
    rdf = np.array([float(m.df_resid) for m in ms])
    twologlik = np.array([2.0 * m.loglik for m in ms])
    formulas = [
        str(m._fit.terms.formula) if m._fit.terms is not None else f"model {i + 1} (arrays)"
        for i, m in zip(order, ms)
    ]
    table = pd.DataFrame(
        {
            "formula": formulas,
            "theta": [float(m.theta) for m in ms],
            "resid_df": rdf,
            "twologlik": twologlik,
            "test": [""] + [f"{k} vs {k + 1}" for k in range(1, len(ms))],
            "df": np.r_[np.nan, -np.diff(rdf)],
            "lr_stat": np.r_[np.nan, np.diff(twologlik)],
        },
        index=pd.RangeIndex(1, len(ms) + 1, name="model"),
    )
    table.attrs["heading"] = (
        "Likelihood ratio tests of negative binomial models (theta re-estimated by "
        "maximum likelihood for each model)"
    )
    return stat_anova(table, test, 1.0, np.inf, "lr_stat")
