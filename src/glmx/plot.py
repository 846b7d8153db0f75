"""Plots of a fitted GLM: coefficients with intervals, component + residual plots, and
the four diagnostic panels (:func:`diagnostic_plots`, also ``fit.plot()``).

matplotlib is an optional dependency (``pip install glmx[plot]``), imported when a plot is
drawn; every function returns a matplotlib Figure, built on the Agg canvas and saved to
``path`` when one is given.

    >>> import glmx, glmx.plot
    >>> fit = glmx.glm("lot1 ~ log(u)", glmx.datasets.load("clotting"), family="gamma")
    >>> fig = glmx.plot.coef(fit, intercept=True)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from glmx.diagnostics.plots import (
    _POINT,
    _REFERENCE,
    _SMOOTH,
    diagnostic_plots,
    lowess,
    new_figure,
    save_figure,
)
from glmx.errors import DataError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from glmx.results.glm import GLMResults

__all__ = ["coef", "diagnostic_plots", "partial_residuals", "partial_residual_data"]

Array = NDArray[np.float64]
_INTERCEPT_NAMES = ("Intercept", "(Intercept)")


def coef(
    fit: GLMResults,
    *,
    level: float = 0.95,
    method: Literal["wald", "profile"] = "wald",
    exponentiate: bool = False,
    intercept: bool = False,
    ax: Axes | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Coefficient plot: each estimate with its confidence interval (``fit.confint``:
    Wald by default, ``method="profile"`` for profile likelihood), first coefficient at
    the top, a reference line at 0.  ``exponentiate`` shows exp(estimate) (odds or rate
    ratios for logit and log links) on a log axis with the reference at 1.  The
    intercept is left out unless ``intercept=True``; aliased coefficients are left out.
    Draws into ``ax`` if given, else a new Figure."""
    est = fit.coef
    ci = fit.confint(level, method=method)
    names = [
        n for n in est.index if np.isfinite(est[n]) and (intercept or n not in _INTERCEPT_NAMES)
    ]
    if not names:
        raise DataError("no coefficients to plot (only an intercept, or all aliased)")
    b = est[names].to_numpy(dtype=float)
    lo = ci.loc[names, "lower"].to_numpy(dtype=float)
    hi = ci.loc[names, "upper"].to_numpy(dtype=float)
    if exponentiate:
        b, lo, hi = np.exp(b), np.exp(lo), np.exp(hi)
    if ax is None:
        fig = new_figure(6.5, max(2.6, 0.34 * len(names) + 1.3))
        ax = fig.subplots()
    else:
        fig = ax.get_figure()  # type: ignore[assignment]
    pos = np.arange(len(names))[::-1]  # first coefficient at the top
    err = np.vstack([b - lo, hi - b])
    ax.errorbar(b, pos, xerr=err, fmt="o", color="#1f4e79", ms=4.5, capsize=2.5, lw=1.2)
    ax.axvline(1.0 if exponentiate else 0.0, **_REFERENCE)
    ax.set_yticks(pos, names)
    ax.set_ylim(-0.7, len(names) - 0.3)
    if exponentiate:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    kind = "profile likelihood" if method == "profile" else "Wald"
    ax.set_title(f"Coefficients with {level:.0%} {kind} intervals", fontsize=11)
    ax.set_xlabel("exp(estimate)" if exponentiate else "Estimate")
    ax.grid(axis="x", color="0.9", lw=0.8)
    ax.set_axisbelow(True)
    save_figure(fig, path)
    return fig


def _numeric_columns(fit: GLMResults) -> list[str]:
    """Design columns that are a numeric predictor on their own: single-column main
    effects of numeric variables (``x``, ``log(x)``, ``I(x**2)``), not factors or
    interactions.  Without a formula: the columns with more than two distinct values."""
    f = fit._fit
    names = list(f.X.column_names)
    if f.terms is None:
        return [n for j, n in enumerate(names) if np.unique(_column(fit, j)).size > 2]
    spec = f.terms.model_spec
    kinds = {
        name: getattr(state[0], "value", str(state[0]))
        for name, state in getattr(spec, "encoder_state", {}).items()
    }
    out = []
    for term, cols in spec.term_slices.items():
        factors = list(term.factors)
        width = cols.stop - cols.start
        if width == 1 and len(factors) == 1 and kinds.get(str(factors[0])) == "numerical":
            out.append(names[cols.start])
    return out


def _column(fit: GLMResults, j: int) -> Array:
    X = fit._fit.X
    if hasattr(X, "column"):
        col = X.column(j)
        return np.asarray(col.toarray() if hasattr(col, "toarray") else col, dtype=float).ravel()
    return np.asarray(X.rows(np.arange(X.shape[0]))[:, j], dtype=float)


def partial_residual_data(fit: GLMResults, columns: list[str] | None = None) -> pd.DataFrame:
    """Partial residuals of numeric predictors, R's ``residuals(fit, type = "partial")``:
    r_j = working residual + beta_j (x_j - mean(x_j)), one column per predictor (the
    centring is R's ``predict(type = "terms")``); rows with prior weight 0 are NaN."""
    f = fit._fit
    names = list(f.X.column_names)
    available = _numeric_columns(fit)
    if columns is None:
        columns = available
        if not columns:
            raise DataError(
                "the model has no numeric predictor to plot partial residuals for "
                f"(columns: {', '.join(names)})"
            )
    unknown = [c for c in columns if c not in names]
    if unknown:
        raise DataError(
            f"unknown column(s) {', '.join(map(repr, unknown))}; numeric predictors of "
            f"this model: {', '.join(map(repr, available)) or 'none'}"
        )
    work = np.where(f.weights > 0, fit.residuals("working"), np.nan)
    out = {}
    for name in columns:
        j = names.index(name)
        if f.aliased[j]:
            raise DataError(f"coefficient {name!r} is aliased: it has no partial residuals")
        x = _column(fit, j)
        out[name] = work + f.coef[j] * (x - x.mean())  # working residual + centred term
    return pd.DataFrame(out)


def partial_residuals(
    fit: GLMResults,
    *,
    columns: list[str] | None = None,
    path: str | Path | None = None,
    smoother: bool = True,
) -> Figure:
    """Component + residual plots: for each numeric predictor x_j (or the design columns
    named in ``columns``), the partial residuals of :func:`partial_residual_data` against
    x_j, with the fitted linear component beta_j (x_j - mean x_j) (dashed) and a lowess
    smoother (red): curvature of the smoother away from the line suggests a transform of
    x_j.  Returns the Figure; saved to ``path`` if given."""
    data = partial_residual_data(fit, columns)
    f = fit._fit
    names = list(f.X.column_names)
    k = data.shape[1]
    ncols = min(3, k)
    nrows = math.ceil(k / ncols)
    fig = new_figure(max(5.5, 4.0 * ncols + 0.4), 3.5 * nrows + 0.7)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for i, (ax, name) in enumerate(zip(axes, data.columns)):
        j = names.index(name)
        x = _column(fit, j)
        r = data[name].to_numpy()
        ax.plot(x, r, **_POINT, gid="points")
        order = np.argsort(x, kind="stable")
        ax.plot(x[order], f.coef[j] * (x[order] - x.mean()), color="#1f4e79", lw=1.3, ls="--")
        if smoother and np.sum(np.isfinite(r)) >= 3:
            gx, gy = lowess(x, r)
            ax.plot(gx, gy, **_SMOOTH)
        ax.set_xlabel(name)
        if i % ncols == 0:
            ax.set_ylabel("Partial residual")
        ax.margins(x=0.04, y=0.08)
    for ax in axes[k:]:
        ax.remove()
    formula = f.terms.formula if f.terms is not None else "glm_fit"
    fig.suptitle(
        f"Component + residual plots\n{fit.family.name}({fit.link}):  {formula}", fontsize=10
    )
    save_figure(fig, path)
    return fig
