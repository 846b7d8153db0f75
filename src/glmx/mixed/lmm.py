"""The profiled deviance of a linear mixed model (Bates et al. 2015, JSS 67(1), sec. 3).

For theta, factor ``[ZLambda X y]'W[ZLambda X y] + diag(I, 0, 0) = L L'`` (blocked, see
:mod:`glmx.mixed.blocked`); with r2 the penalized residual sum of squares (L's last
diagonal squared), n rows and p fixed effects::

    ML:    -2 l(theta)   = log|L_theta|^2 + n (1 + log(2 pi r2 / n)) - sum log w
    REML:  -2 l_R(theta) = log|L_theta|^2 + log|R_X|^2 + (n-p) (1 + log(2 pi r2 / (n-p)))
                           - sum log w

beta and u come from back substitution, sigma^2 = r2 / n (ML) or r2 / (n - p) (REML).
The cross-products [Z X y]'W[Z X y] are computed once (:mod:`glmx.mixed.crossprod`): an
evaluation rescales them by Lambda(theta) and refactors, at a cost that does not depend
on n (small Cholesky factors per level, sparse products, one dense tail).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from glmx.mixed.blocked import BlockedFactor, Structure

Array = NDArray[np.float64]

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class LmmEstimates:
    """Everything at one theta: the factor, beta, u, sigma and the criterion."""

    theta: Array
    beta: Array
    u: Array
    sigma: float
    factor: BlockedFactor
    objective: float  # -2 log-likelihood (ML) or the REML criterion


class LinearMixedModel:
    """y = X beta + Z Lambda u + e with prior weights w, rows sorted by term 1's levels."""

    def __init__(
        self,
        structure: Structure,
        X: Array,
        y: Array,
        weights: Array | None = None,
        offset: Array | None = None,
        reml: bool = True,
        x_scale: Array | None = None,
    ) -> None:
        """``x_scale``: X's columns were divided by it; the REML criterion's log|R_X|^2
        is then that of the unscaled X (it gains 2 sum log x_scale)."""
        self.structure = structure
        n, self.p = X.shape
        self.reml = reml
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
        r = y - (offset if offset is not None else 0.0)
        positive = w > 0  # a row of weight zero is no observation: it adds nothing
        self.gram = structure.gram(w, np.vstack([X.T, r]))
        self.n = int(np.sum(positive))
        self.sum_log_w = float(np.sum(np.log(w[positive])))
        self.logdet_scale = 0.0 if x_scale is None else 2.0 * float(np.sum(np.log(x_scale)))

    def factor(self, theta: Array) -> BlockedFactor:
        return BlockedFactor(self.structure, np.asarray(theta, dtype=float), self.gram)

    def criterion(self, f: BlockedFactor) -> float:
        """-2 log-likelihood (ML) or the REML criterion from a factor."""
        if f.r2 <= 0.0:
            return float("inf")
        nu = self.n - self.p if self.reml else self.n
        dev = f.logdet_L + nu * (1.0 + np.log(2.0 * np.pi * f.r2 / nu)) - self.sum_log_w
        return float(dev + (f.logdet_RX + self.logdet_scale if self.reml else 0.0))

    def deviance(self, theta: Array) -> float:
        """The profiled deviance (or REML criterion) at theta: lme4's devfun."""
        try:
            return self.criterion(self.factor(theta))
        except np.linalg.LinAlgError:
            return float("inf")

    def estimates(self, theta: Array) -> LmmEstimates:
        f = self.factor(theta)
        u, beta = f.solve()
        nu = self.n - self.p if self.reml else self.n
        return LmmEstimates(
            theta=np.asarray(theta, dtype=float),
            beta=beta,
            u=u,
            sigma=float(np.sqrt(f.r2 / nu)),
            factor=f,
            objective=self.criterion(f),
        )
