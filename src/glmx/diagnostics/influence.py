"""Influence diagnostics of a fitted GLM, with R's numbers.

R treats a GLM, for influence, as the weighted least squares problem of its last IRLS
step: rows sqrt(W_i) x_i with the final working weights W (``lm.influence`` on the
glm's QR).  With C = (X'WX)^{-1} on the non-aliased columns:

- leverage            h_i = W_i x_i' C x_i                         (``hatvalues``)
- deletion direction  b_i = sqrt(W_i) C x_i; dfbeta_i = b_i e_i / (1 - h_i), with e the
  deviance residuals (R's ``dfbeta``: the one-step approximation, residual as R takes it)
- leave-one-out sigma s_(i)^2 = (sum_j e_j^2 - e_i^2 / (1 - h_i)) / (df_resid - 1)
- Cook's distance     D_i = (r_P,i / (1 - h_i))^2 h_i / (phi p)    (``cooks.distance.glm``)
- standardized        r_i / sqrt(phi (1 - h_i))                      (``rstandard.glm``)
- studentized         sign(e_i) sqrt(e_i^2 + h_i r_P,i^2 / (1 - h_i)), divided by s_(i)
  unless the family is binomial or poisson                            (``rstudent.glm``)
- dffits = e_i sqrt(h_i) / (s_(i) (1 - h_i)); cov_ratio = (s_(i) / s)^(2p) / (1 - h_i),
  s^2 = sum e^2 / df_resid; dfbetas = dfbeta / (s_(i) sqrt(C_jj))   (``influence.measures``)

Here r_P are Pearson residuals, phi the dispersion of ``summary.glm`` and p the rank.
Leverages are computed block by block of rows (never an n x n matrix); hats within a
rounding bound of 1 are set to 1 as R does, and measures that divide by 1 - h = 0 are NaN.

Rows with prior weight 0 take no part in the fit: R leaves them out of its vectors; here
they stay, with the values of deleting a row that changes nothing (hat 0, residual
measures and dfbeta 0, leave-one-out sigma = s, cov_ratio 1, not influential).

Frequency weights: a row with frequency f stands for a group of f identical cases, and
every measure is that of the whole group: its hat is the sum of the f cases' hats, its
residuals are sqrt(f) times the per-case residuals, dfbeta is the change of deleting the
group (exact for a gaussian identity fit), and its leave-one-out sigma has
df_resid - f degrees of freedom.  With all f = 1 these are R's numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from glmx.design.matrix import DenseDesign, DesignMatrix, SparseDesign
from glmx.errors import DataError

if TYPE_CHECKING:
    from glmx.results.glm import GLMResults

Array = NDArray[np.float64]

_EPS = float(np.finfo(float).eps)
_BLOCK_DOUBLES = 2**19  # rows per block x columns: about 4 MB per block
_UNSCALED_FAMILIES = ("binomial", "poisson")  # rstudent.glm does not divide by sigma


def _row_blocks(X: DesignMatrix) -> Iterator[tuple[slice, Array]]:
    """Dense blocks of rows of X, a few MB each."""
    n, p = X.shape
    step = max(256, _BLOCK_DOUBLES // max(1, p))
    for start in range(0, n, step):
        rows = slice(start, min(start + step, n))
        if isinstance(X, DenseDesign):
            yield rows, X.X[rows]
        elif isinstance(X, SparseDesign):
            yield rows, X.X[rows].toarray()
        else:
            yield rows, X.rows(np.arange(rows.start, rows.stop))


def _hat_one_tol(C: Array) -> float:
    """How close to 1 a computed hat may be and still be 1: R's 10 eps, widened by the
    condition number of the (column-scaled) C, which bounds the rounding error of h."""
    d = np.sqrt(np.diag(C))
    if C.size == 0 or np.any(d <= 0):
        return 10 * _EPS
    ev = np.linalg.eigvalsh(C / np.outer(d, d))
    kappa = ev[-1] / ev[0] if ev[0] > 0 else np.inf
    return float(min(1e-6, 10 * _EPS * max(1.0, kappa)))


def _leverage(fit: GLMResults, directions: bool) -> tuple[Array, Array | None]:
    """h_i = W_i x_i' C x_i and, if asked, the rows b_i = sqrt(W_i) C x_i (n x rank)."""
    f = fit._fit
    kept = ~f.aliased
    C = f.cov_unscaled
    W = f.working_weights
    n = W.shape[0]
    h = np.zeros(n)
    B = np.zeros((n, C.shape[0])) if directions else None
    for rows, Xb in _row_blocks(f.X):
        Xk = Xb[:, kept]
        XC = Xk @ C  # rows: (C x_i)'
        h[rows] = W[rows] * np.einsum("ij,ij->i", XC, Xk)  # W_i x_i' C x_i
        if B is not None:
            B[rows] = XC * np.sqrt(W[rows])[:, None]
    h = np.clip(h, 0.0, None)
    h[h > 1.0 - _hat_one_tol(C)] = 1.0
    return h, B


@dataclass(frozen=True)
class _Core:
    """What every measure uses: leverages and the group residuals of the used rows."""

    hat: Array
    dev: Array  # sqrt(f) x deviance residuals, 0 on rows without weight
    pearson: Array  # sqrt(f) x Pearson residuals, 0 on rows without weight
    used: NDArray[np.bool_]  # rows with working weight > 0
    freq: Array
    dispersion: float
    df_resid: float
    rank: int
    directions: Array | None

    def sigma(self) -> Array:
        """Leave-one-out sigma: s_(i)^2 = (sum e^2 - e_i^2/(1 - h_i)) / (df_resid - f_i),
        as R's C code ``lminfl`` (sum e^2 when h_i = 1; the full-data s for unused rows)."""
        total = np.sum(self.dev**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            drop = np.where(self.hat < 1.0, self.dev**2 / (1.0 - self.hat), 0.0)
            s2 = (total - drop) / (self.df_resid - self.freq)
            s2 = np.where(self.used, s2, total / self.df_resid)
            return np.sqrt(s2)


def _core(fit: GLMResults, directions: bool = False) -> _Core:
    f = fit._fit
    h, B = _leverage(fit, directions)
    used = f.working_weights > 0
    root_f = np.sqrt(f.freq_weights)
    dev = np.where(used, root_f * fit.residuals("deviance"), 0.0)
    pearson = np.where(used, root_f * fit.residuals("pearson"), 0.0)
    # as lm.influence: deviance residuals below 100 eps x their median count as 0
    if used.any():
        dev[np.abs(dev) < 100 * _EPS * np.median(np.abs(dev[used]))] = 0.0
    return _Core(
        hat=h,
        dev=dev,
        pearson=pearson,
        used=used,
        freq=np.asarray(f.freq_weights, dtype=float),
        dispersion=fit.dispersion,
        df_resid=float(fit.df_resid),
        rank=fit.rank,
        directions=B,
    )


def _finite(a: Array) -> Array:
    """R's ``res[is.infinite(res)] <- NaN``."""
    return np.where(np.isinf(a), np.nan, a)


def hat_values(fit: GLMResults) -> Array:
    """Leverages, R's ``hatvalues``: the diagonal of W^1/2 X (X'WX)^-1 X' W^1/2 with the
    working weights W of the last IRLS step, computed row by row (no n x n matrix).
    Rows with weight 0 get 0; with frequency weights, a row's hat is its group's (the sum
    of the hats of the f cases it stands for)."""
    return _leverage(fit, directions=False)[0]


def _cooks(c: _Core) -> Array:
    # D_i = (r_P,i / (1 - h_i))^2 h_i / (phi p)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (c.pearson / (1.0 - c.hat)) ** 2 * c.hat / (c.dispersion * c.rank)
    return _finite(d)


def cooks_distance(fit: GLMResults) -> Array:
    """Cook's distances, R's ``cooks.distance.glm``: (r_P / (1 - h))^2 h / (phi p) with
    Pearson residuals r_P, the dispersion phi and the rank p."""
    return _cooks(_core(fit))


def _rstandard(c: _Core, kind: str) -> Array:
    if kind not in ("deviance", "pearson"):
        raise DataError(f"rstandard type must be 'deviance' or 'pearson', got {kind!r}")
    r = c.dev if kind == "deviance" else c.pearson
    # r_i / sqrt(phi (1 - h_i))
    with np.errstate(divide="ignore", invalid="ignore"):
        return _finite(r / np.sqrt(c.dispersion * (1.0 - c.hat)))


def rstandard(fit: GLMResults, type: str = "deviance") -> Array:  # noqa: A002
    """Standardized residuals, R's ``rstandard.glm``: r / sqrt(phi (1 - h)) with deviance
    (default) or Pearson residuals r; NaN where h = 1."""
    return _rstandard(_core(fit), type)


def _rstudent(c: _Core, family_name: str) -> Array:
    # sign(e_i) sqrt(e_i^2 + h_i r_P,i^2 / (1 - h_i))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.sign(c.dev) * np.sqrt(c.dev**2 + c.hat * c.pearson**2 / (1.0 - c.hat))
        r = _finite(r)
        if family_name in _UNSCALED_FAMILIES:
            return r
        return r / c.sigma()


def rstudent(fit: GLMResults) -> Array:
    """Studentized residuals, R's ``rstudent.glm``: the one-step deletion residual
    sign(e) sqrt(e^2 + h r_P^2 / (1 - h)), divided by the leave-one-out sigma s_(i) for
    families other than binomial and poisson (as R, also for quasi families and the
    negative binomial)."""
    return _rstudent(_core(fit), fit.family.name)


def _is_influential(
    dfbetas: Array, dffits: Array, cov_ratio: Array, cooks: Array, hat: Array, k: int
) -> NDArray[np.bool_]:
    """R's ``is.influential`` rule, any flag per row (NaN never flags, as
    ``apply(is.inf, 1, any, na.rm = TRUE)``)."""
    n = int(np.sum(hat > 0))
    if n <= k:
        raise DataError(
            f"influence measures need more cases with positive leverage than "
            f"coefficients: {n} cases, {k} coefficients"
        )
    with np.errstate(invalid="ignore"):
        flags = np.any(np.abs(dfbetas) > 1.0, axis=1)
        flags |= np.abs(dffits) > 3.0 * np.sqrt(k / (n - k))
        flags |= np.abs(1.0 - cov_ratio) > 3.0 * k / (n - k)
        flags |= stats.f.cdf(cooks, k, n - k) > 0.5
        flags |= hat > 3.0 * k / n
    return np.asarray(flags, dtype=bool)


def influence_measures(fit: GLMResults) -> pd.DataFrame:
    """R's ``influence.measures`` for a glm, one row per data row (RangeIndex).

    Columns: ``hat``, ``cooks``, ``rstandard`` (deviance), ``rstudent``, ``dffits``,
    ``cov_ratio``, then ``dfbeta_<coef>`` (R's ``dfbeta``) and ``dfbetas_<coef>`` for each
    non-aliased coefficient, and ``influential``: R's ``is.inf`` rule, any of
    |dfbetas| > 1, |dffits| > 3 sqrt(k/(n-k)), |1 - cov_ratio| > 3k/(n-k),
    F_(k, n-k)(cooks) > 0.5, hat > 3k/n, with k the rank and n the rows with h > 0.
    Infinite values are NaN, as R's.  See the module docstring for the formulas, rows
    with zero weight and frequency weights.
    """
    c = _core(fit, directions=True)
    assert c.directions is not None
    h, e, k = c.hat, c.dev, c.rank
    sigma = c.sigma()
    with np.errstate(divide="ignore", invalid="ignore"):
        # dfbeta_i = sqrt(W_i) C x_i e_i / (1 - h_i), 0 where h_i = 1 (R's ifelse)
        scale = np.where(h < 1.0, e / (1.0 - h), 0.0)
        dfbeta = c.directions * scale[:, None]
        # dfbetas_ij = dfbeta_ij / (s_(i) sqrt(C_jj))
        dfbetas = _finite(dfbeta / np.outer(sigma, np.sqrt(np.diag(fit._fit.cov_unscaled))))
        dffits = _finite(e * np.sqrt(h) / (sigma * (1.0 - h)))
        s = np.sqrt(np.sum(e**2) / c.df_resid)
        cov_ratio = _finite((sigma / s) ** (2 * k) / (1.0 - h))
    cooks = _cooks(c)
    kept = [name for name, a in zip(fit.coef.index, fit._fit.aliased) if not a]
    out = pd.DataFrame(
        {
            "hat": h,
            "cooks": cooks,
            "rstandard": _rstandard(c, "deviance"),
            "rstudent": _rstudent(c, fit.family.name),
            "dffits": dffits,
            "cov_ratio": cov_ratio,
        }
    )
    beta = pd.DataFrame(dfbeta, columns=[f"dfbeta_{name}" for name in kept])
    betas = pd.DataFrame(dfbetas, columns=[f"dfbetas_{name}" for name in kept])
    out = pd.concat([out, beta, betas], axis=1)
    out["influential"] = _is_influential(dfbetas, dffits, cov_ratio, cooks, h, k)
    return out
