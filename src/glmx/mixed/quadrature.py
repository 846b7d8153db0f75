"""Adaptive Gauss-Hermite quadrature for a GLMM with one scalar random-effect term.

With one scalar term the groups are independent: for group j with conditional mode
u_j and curvature A_j = L_jj^2 (from PIRLS), substitute u = u_j + sqrt(2) x / L_jj in the
integral over the standard normal u::

    L_j = int p(y_j | u) phi(u) du
        = sqrt(2) / L_jj * sum_k w_k exp(x_k^2) p(y_j | u_jk) phi(u_jk)

with (x_k, w_k) the Gauss-Hermite rule for exp(-x^2).  One node (x = 0, w = sqrt(pi)) is
the Laplace approximation.  Every constant is kept, so the log-likelihood is on the same
scale for every number of nodes (lme4's nAGQ > 1 drops constants: its issue 161).
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numpy.typing import NDArray
from scipy.special import logsumexp

from glmx.mixed.blocked import Structure
from glmx.mixed.pirls import PirlsResult, RowModel

Array = NDArray[np.float64]

_LOG_2PI = float(np.log(2.0 * np.pi))


@cache
def gauss_hermite(n: int) -> tuple[Array, Array]:
    """Nodes and log weights of the n-point rule for int exp(-x^2) f(x) dx."""
    x, w = np.polynomial.hermite.hermgauss(n)
    return x, np.log(w)


def agq_deviance(
    structure: Structure, rows: RowModel, theta: Array, modes: PirlsResult, nagq: int
) -> float:
    """-2 log-likelihood by adaptive Gauss-Hermite quadrature with ``nagq`` nodes."""
    s = structure
    u_hat = modes.u  # (m,), one scalar effect per group
    L = modes.factor.L11[:, 0, 0]  # sqrt(Lambda'Z'WZ Lambda + I), per group
    z = s.X1[:, 0] * float(theta[0])  # Z Lambda, per row
    eta_fixed = modes.eta - z * s.expand(u_hat)
    x, logw = gauss_hermite(nagq)
    terms = np.empty((s.m1, nagq))
    for k in range(nagq):  # a short loop over the nodes, vectorized over rows and groups
        u_k = u_hat + np.sqrt(2.0) * x[k] / L
        m2ll = s.level_sums(rows.minus2ll(eta_fixed + z * s.expand(u_k)))
        terms[:, k] = logw[k] + x[k] ** 2 - 0.5 * m2ll - 0.5 * u_k**2 - 0.5 * _LOG_2PI
    log_lik = np.log(np.sqrt(2.0) / L) + logsumexp(terms, axis=1)
    return float(-2.0 * np.sum(log_lik))
