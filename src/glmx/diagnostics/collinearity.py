"""Collinearity diagnostics of a fitted GLM: (generalized) variance inflation factors and
the condition number of the design.

VIFs follow ``car::vif`` on a glm exactly (car 3.1, ``vif.default``): with R the
correlation matrix of the coefficient estimates (from (X'WX)^{-1}, intercept left out),
the generalized VIF of Fox & Monette (1992) of a term with columns S is

    GVIF_S = det(R_SS) det(R_TT) / det(R),   T = the other columns,

the ordinary VIF for a one-column term.  ``GVIF^(1/(2 Df))`` makes terms of different
sizes comparable (it is sqrt(VIF) for one column).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from glmx.errors import DataError, DataWarning

if TYPE_CHECKING:
    from glmx.results.glm import GLMResults

Array = NDArray[np.float64]

ADJUSTED = "GVIF^(1/(2*Df))"


def _is_ones(fit: GLMResults, j: int) -> bool:
    X = fit._fit.X
    col = X.column(j) if hasattr(X, "column") else X.rows(np.arange(X.shape[0]))[:, j]
    return bool(np.all(np.asarray(col) == 1.0))


def _terms(fit: GLMResults) -> tuple[int | None, list[tuple[str, list[int]]]]:
    """The intercept's column (or None) and (term name, columns) of the other terms: the
    formula's terms, or one term per column for a ``glm_fit`` design."""
    f = fit._fit
    if f.terms is not None:
        intercept = None
        out = []
        for term, cols in f.terms.model_spec.term_slices.items():
            idx = list(range(f.X.shape[1]))[cols]
            if str(term) == "1":
                intercept = idx[0]
            elif idx:
                out.append((str(term), idx))
        return intercept, out
    names = f.X.column_names
    intercept = None
    if f.has_intercept:
        intercept = next((j for j in range(len(names)) if _is_ones(fit, j)), None)
    return intercept, [(names[j], [j]) for j in range(len(names)) if j != intercept]


def vif_table(fit: GLMResults) -> pd.DataFrame:
    """car's printed table, one row per term: ``GVIF``, ``Df`` (columns of the term) and
    ``GVIF^(1/(2*Df))``.  Raises :class:`glmx.DataError` for aliased coefficients or
    fewer than two terms (as car); warns without an intercept (as car)."""
    f = fit._fit
    if f.aliased.any():
        bad = [n for n, a in zip(f.X.column_names, f.aliased) if a]
        raise DataError(
            f"VIFs are undefined with aliased coefficients ({', '.join(bad)}): "
            "remove the linearly dependent columns and refit"
        )
    intercept, terms = _terms(fit)
    if len(terms) < 2:
        named = ", ".join(name for name, _ in terms) or "none"
        raise DataError(
            f"VIFs need a model with at least 2 terms besides the intercept; "
            f"this one has {len(terms)} ({named})"
        )
    if intercept is None:
        warnings.warn(
            "no intercept: VIFs may not be sensible (car::vif warns the same)",
            DataWarning,
            stacklevel=3,
        )
    # model-based covariance, whatever cov_type: the correlation is that of car's vcov()
    cols = np.array([j for _, idx in terms for j in idx])
    V = f.cov_unscaled[np.ix_(cols, cols)]  # no aliased column, so indices match X's
    d = np.sqrt(np.diag(V))
    R = V / np.outer(d, d)  # cov2cor
    logdet_R = np.linalg.slogdet(R)[1]
    gvif, df = [], []
    pos = 0
    for _, idx in terms:
        s = np.zeros(len(cols), dtype=bool)
        s[pos : pos + len(idx)] = True
        pos += len(idx)
        # GVIF = det(R_SS) det(R_TT) / det(R)
        log_g = (
            np.linalg.slogdet(R[np.ix_(s, s)])[1]
            + np.linalg.slogdet(R[np.ix_(~s, ~s)])[1]
            - logdet_R
        )
        gvif.append(float(np.exp(log_g)))
        df.append(len(idx))
    g = np.array(gvif)
    k = np.array(df)
    return pd.DataFrame(
        {"GVIF": g, "Df": k, ADJUSTED: g ** (1.0 / (2.0 * k))},
        index=pd.Index([name for name, _ in terms], name="term"),
    )


def vif(fit: GLMResults) -> pd.Series:
    """Variance inflation factors by term, as ``car::vif``: the VIF of one-column terms
    and the generalized VIF (Fox & Monette) of terms of several columns (factors, splines).
    ``vif_table`` adds Df and GVIF^(1/(2 Df)).  Terms are the formula's (``C(cyl)``,
    ``wt:hp``); for a ``glm_fit`` design every column is a term and a column of ones is
    the intercept."""
    return vif_table(fit)["GVIF"].rename("GVIF")


def condition_number(fit: GLMResults) -> float:
    """Belsley's condition number: the ratio of the largest to the smallest singular
    value of the design with its columns scaled to unit length (intercept included, not
    centred).

    The working weights of the last IRLS step are used: the design is W^1/2 X, whose
    cross-product X'WX is the Fisher information that the estimates' precision rests on
    (Lesaffre & Marx 1993); for an unweighted gaussian identity fit this is the plain
    Belsley number of X.  Computed from the scaled cross-product (no copy of X), so it is
    accurate while it is well below 1e8.  Infinite when a coefficient is aliased.
    R: ``Xw <- sqrt(fit$weights) * model.matrix(fit)``,
    ``kappa(sweep(Xw, 2, sqrt(colSums(Xw^2)), "/"), exact = TRUE)``.
    """
    f = fit._fit
    if f.aliased.any():
        return float("inf")
    G = f.X.gram(f.working_weights)  # X'WX
    d = np.sqrt(np.diag(G))
    if np.any(d <= 0):
        return float("inf")
    ev = np.linalg.eigvalsh(G / np.outer(d, d))  # squared singular values of the scaled design
    if ev[0] <= 0:
        return float("inf")
    return float(np.sqrt(ev[-1] / ev[0]))
