"""Iteratively reweighted least squares, as R's ``glm.fit``, with a certified answer.

Each iteration solves the normal equations of a step from the current point

    C delta = U,   U = X'W r,   W = w mu_eta^2 / V(mu),   r = (y - mu) / mu_eta,

where U is the score (times the dispersion) and C the curvature: Fisher's information
X'WX (Fisher scoring, R's iteration), or for a non-canonical link the observed
information X'W_obs X (Newton's method, see :func:`observed_weights`) when it is
positive definite, so that the last steps converge quadratically for every link.  The
step is halved when the deviance is not finite, when eta or mu leave their valid range
(both as R), and when the deviance increases (as ``glm2``).

Convergence (:mod:`glmx.solvers.certify`) needs R's criterion
|dev - dev_old| / (|dev| + 0.1) < tol and a small Newton decrement U' C^{-1} U of the
last step (the score scaled by the information: free of the units of X and y), so the
coefficients have stopped moving.  A fit that stops short of that (iteration cap,
exhausted halving, a failed factorization) or ends worse than the nested null model is
restarted from the null model's coefficients, from R's ``mustart`` and from a damped
start; a likelihood that is not concave in eta is fitted from every start (with
least-squares starts and perturbations of the estimate) on problems up to 2e6 elements.
The best fit is kept, and ``converged`` is True only for a certified one that no other
start improves on.  The iteration, certificate and restarts live in
:mod:`glmx.solvers.driver` (shared with streamed fits); this module is the in-memory fit.
"""

from __future__ import annotations

import numpy as np

from glmx.solvers.driver import Run, final_equations, solve
from glmx.solvers.points import Evaluator
from glmx.solvers.state import IRLSInputs, IRLSResult


def irls(inp: IRLSInputs) -> IRLSResult:
    """Fit by IRLS; see the module docstring for the iteration, its certificate and the
    restarts."""
    ev = Evaluator(inp)
    return _result(ev, solve(ev))


def _result(ev: Evaluator, run: Run) -> IRLSResult:
    """The fit's estimates; as R's, the covariance and working weights are those of the
    last step, i.e. at the point that step started from (Fisher's information there)."""
    pt = run.point
    eq = final_equations(ev, run)
    assert pt.beta is not None and eq.W is not None
    fac = ev.fisher(eq)
    coef = np.where(fac.aliased, np.nan, pt.beta)
    return IRLSResult(
        coef=coef,
        aliased=fac.aliased,
        eta=pt.eta,
        mu=pt.mu,
        deviance=pt.deviance,
        working_weights=eq.W,
        cov_unscaled=fac.inverse(),  # (X'WX)^{-1} of the last step
        n_iter=run.n_iter if coef.size else 0,  # R: an empty model takes no iteration
        converged=run.converged,
        boundary=run.boundary,
        log=run.log,
    )
