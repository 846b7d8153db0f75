"""Sandwich (heteroskedasticity- and cluster-robust) covariances, as R's ``sandwich``.

For a GLM the score of one case is

    psi_i = x_i w_i (y_i - mu_i) / (V(mu_i) g'(mu_i)) = x_i W_i r_i

with W_i the working weight (prior weight included) and r_i = (y_i - mu_i) g'(mu_i) the
working residual.  The sandwich is

    V = B M B,   B = (X'WX)^{-1},   M = sum_i omega_i x_i x_i'

(``sandwich::vcovHC`` writes it as 1/n (n B)(M/n)(n B) and divides the scores by a
dispersion that it multiplies back into the bread: both cancel, so the dispersion
estimate plays no part).  ``omega_i`` is (W_i r_i)^2 for HC0, times n/(n-k) for HC1,
divided by (1 - h_i) for HC2 and (1 - h_i)^2 for HC3, with h_i the hat values of the
weighted fit.  The cluster sandwich (``sandwich::vcovCL``) sums the scores within each
cluster first: M = G/(G-1) sum_g S_g S_g', S_g = sum_{i in g} psi_i.

Frequency weights: a row with frequency f stands for f identical cases, each with the
score u_i = psi_i / f and the hat value h_i / f, so the meat of that row is
f omega(u_i, h_i / f); in a cluster the f cases add up to f u_i = psi_i.  Everything then
equals the fit on the expanded data (n = sum f).  Rows with zero prior weight are left
out, as if the fit had been made without them (R's sandwich 3.0-2 still counts them in
n and drops them from the hat values, which shrinks HC0 by (n_used / n)^2 and breaks
HC2 and HC3).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray

from glmx.design.matrix import DenseDesign, DesignMatrix, SparseDesign
from glmx.errors import DataError, GlmxWarning

if TYPE_CHECKING:
    from glmx.results.glm import GLMResults

Array = NDArray[np.float64]

HC_TYPES = ("HC0", "HC1", "HC2", "HC3")
COV_TYPES = (*HC_TYPES, "cluster")


def robust_vcov(fit: GLMResults, cov_type: str, cluster: Any = None) -> Array:
    """Sandwich covariance of the non-aliased coefficients (rank x rank).

    ``cov_type`` "HC0".."HC3" is R's ``sandwich::vcovHC(fit, type = cov_type)``;
    "cluster" is ``sandwich::vcovCL(fit, cluster = cluster)`` with its defaults for a glm
    (type "HC0" with the cluster adjustment G/(G-1)).  ``cluster`` holds one label per
    row used by the fit; None takes the labels given at fit time."""
    if cov_type in HC_TYPES:
        return hc_vcov(fit, cov_type)
    if cov_type == "cluster":
        labels = fit._fit.cluster if cluster is None else cluster
        if labels is None:
            raise DataError("cov_type='cluster' needs cluster labels: pass cluster=")
        return cluster_vcov(fit, labels)
    raise DataError(f"cov_type must be one of {COV_TYPES}, got {cov_type!r}")


def hc_vcov(fit: GLMResults, cov_type: str = "HC0") -> Array:
    """Heteroskedasticity-consistent sandwich, R's ``sandwich::vcovHC(fit, type)``."""
    if cov_type not in HC_TYPES:
        raise DataError(f"cov_type must be one of {HC_TYPES}, got {cov_type!r}")
    s = _Scores(fit)
    omega = s.u**2  # HC0: squared score of one case
    if cov_type == "HC1":
        n, k = s.n, s.C.shape[0]
        omega = omega * (n / (n - k))
    elif cov_type in ("HC2", "HC3"):
        h = s.hat_per_case()
        _warn_high_leverage(h, cov_type)
        with np.errstate(divide="ignore", invalid="ignore"):
            # HC2: u^2 / (1 - h);  HC3: u^2 / (1 - h)^2
            omega = omega / (1.0 - h) ** (1 if cov_type == "HC2" else 2)
        # a hat value of 1 to rounding (R: exactly 1, then 0/0): not estimable
        omega[h > 1.0 - np.sqrt(np.finfo(float).eps)] = np.nan
        omega[s.f == 0] = 0.0
    # M = sum_i f_i omega_i x_i x_i' over every column, then the kept block (NaN where a
    # hat value is 1, as R)
    with np.errstate(invalid="ignore"):
        meat = fit._fit.X.gram(s.f * omega)[np.ix_(s.kept, s.kept)]
        return _sandwich(s.C, meat)


def cluster_vcov(
    fit: GLMResults,
    cluster: Any,
    type: str = "HC0",  # noqa: A002 - sandwich's argument name
    cadjust: bool = True,
) -> Array:
    """Cluster-robust sandwich, R's ``sandwich::vcovCL(fit, cluster, type, cadjust)``.

    ``type`` "HC0" (vcovCL's default for a glm) or "HC1" (adds (n-1)/(n-k), vcovCL's
    default for an lm and Stata's choice); ``cadjust`` multiplies by G/(G-1)."""
    if type not in ("HC0", "HC1"):
        raise DataError(f"cluster type must be 'HC0' or 'HC1', got {type!r}")
    s = _Scores(fit)
    codes = _cluster_codes(cluster, len(s.u))
    used = s.f > 0
    n_groups = len(np.unique(codes[used]))
    if n_groups < 2:
        raise DataError(
            f"cluster-robust covariance needs at least 2 clusters, got {n_groups} "
            "among the rows used"
        )
    # S_g = sum_{i in g} f_i u_i x_i: a (clusters x rows) sparse sum times X
    n_rows = len(codes)
    summer = sp.csr_matrix(
        (s.f * s.u, (codes, np.arange(n_rows))), shape=(int(codes.max()) + 1, n_rows)
    )
    S = summer @ s.X_kept()
    S = S.toarray() if sp.issparse(S) else np.asarray(S)
    meat = S.T @ S  # sum_g S_g S_g'
    if cadjust:
        meat *= n_groups / (n_groups - 1.0)
    if type == "HC1":
        n, k = s.n, s.C.shape[0]
        meat *= (n - 1.0) / (n - k)
    return _sandwich(s.C, meat)


# --- ingredients ------------------------------------------------------------------------
class _Scores:
    """Per-case scores u_i = W_i r_i / f_i, frequencies f_i (0 on rows left out), the
    bread C = (X'WX)^{-1} on the kept columns, and n = sum f (R's nobs)."""

    def __init__(self, fit: GLMResults) -> None:
        raw = fit._fit
        self.X: DesignMatrix = raw.X
        self.kept = np.flatnonzero(~raw.aliased)
        self.C: Array = np.asarray(raw.cov_unscaled, dtype=float)
        W = np.asarray(raw.working_weights, dtype=float)
        r = fit.residuals("working")
        # cases per row; rows with zero prior weight are left out (f = 0)
        self.f: Array = np.where(raw.weights > 0, raw.freq_weights, 0.0)
        pos = (self.f > 0) & (W > 0)
        self.W1 = np.zeros_like(W)  # working weight of one case, W_i / f_i
        self.W1[pos] = W[pos] / self.f[pos]
        self.u: Array = np.zeros_like(W)
        self.u[pos] = self.W1[pos] * r[pos]  # score of one case (without x_i)
        self.n = float(fit.nobs)

    def X_kept(self) -> Array | sp.csr_matrix:
        """The design on the kept columns: numpy, or CSR for a sparse design."""
        X, kept = self.X, self.kept
        if isinstance(X, DenseDesign):
            return X.X if len(kept) == X.shape[1] else X.X[:, kept]
        if isinstance(X, SparseDesign):
            return X.X if len(kept) == X.shape[1] else X.X[:, kept]
        return X.rows(np.arange(X.shape[0]))[:, kept]

    def hat_per_case(self) -> Array:
        """h_i / f_i = (W_i / f_i) x_i' C x_i, row by row (no n x n matrix)."""
        Xk = self.X_kept()
        XC = np.asarray(Xk @ self.C)
        if isinstance(Xk, np.ndarray):
            quad = np.einsum("ij,ij->i", XC, Xk)
        else:
            quad = np.asarray(Xk.multiply(XC).sum(axis=1)).ravel()
        return self.W1 * quad


def _sandwich(C: Array, meat: Array) -> Array:
    """B M B with B = C, symmetrized against rounding."""
    V = C @ meat @ C
    return (V + V.T) / 2.0


def _cluster_codes(cluster: Any, n_rows: int) -> NDArray[np.intp]:
    """Integer codes 0..G-1 of the cluster labels, one per row used by the fit."""
    if isinstance(cluster, str):
        raise DataError(
            f"cluster={cluster!r}: a column name works in glmx.glm(..., cluster=); "
            "here pass the labels, one per row used"
        )
    labels = np.asarray(cluster, dtype=object).ravel()
    if labels.shape[0] != n_rows:
        raise DataError(f"cluster has length {labels.shape[0]} but the fit used {n_rows} rows")
    codes, _ = pd.factorize(pd.Series(labels), use_na_sentinel=True)
    if (codes < 0).any():
        raise DataError(
            f"cluster has {int((codes < 0).sum())} missing labels; drop those rows first"
        )
    return np.asarray(codes, dtype=np.intp)


def _warn_high_leverage(h: Array, cov_type: str) -> None:
    high = np.flatnonzero(h > 1.0 - np.sqrt(np.finfo(float).eps))
    if len(high):
        rows = ", ".join(str(i) for i in high[:10]) + (", ..." if len(high) > 10 else "")
        warnings.warn(
            f"{cov_type} covariances become numerically unstable when hat values are close "
            f"to 1, as for rows {rows} (0-based)",
            GlmxWarning,
            stacklevel=5,
        )
