"""When IRLS may stop: the Newton decrement of the last step, scaled by the dispersion.

At a point with score U (times the dispersion phi) and curvature C (Fisher's or the
observed information), the step delta = C^{-1} U has the decrement

    lambda^2 = U' C^{-1} U = delta' C delta,

the deviance a full step would still gain.  By Cauchy-Schwarz every coefficient moves by
at most sqrt(lambda^2 / phi) standard errors.  The fit stops after a step whose decrement
was at most

    tol * phi * (10 for a Newton step, 1e-7 for a Fisher step of a non-canonical link)

(1e-9 and 1e-17 of phi at the default tol).  A Newton step (Fisher scoring with the
canonical link, or the observed information) converges quadratically: from 3e-5
standard errors it lands within about 1e-9 of them.  A Fisher step with a non-canonical
link converges linearly, so it must itself be below about 3e-9 standard errors.  The
weights of the point a Newton step started from may then still differ from the optimum's
by more than 1e-8; the driver recomputes the covariance at the point reached
(:func:`glmx.solvers.driver.final_equations`).  The decrement needs no units: it is a
chi-square, free of the scales of X and y.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glmx.solvers.state import IRLSInputs

# the decrement allowed per unit of tol, after a Newton step and after a Fisher step
_NEWTON_PER_TOL = 10.0
_FISHER_PER_TOL = 1e-7
# when no step lowers the deviance any more, the point still counts as the optimum (to
# rounding) if its decrement is below this many dispersions (1e-4 standard errors)
_NOISE_FLOOR = 1e-8
# a deviance below this fraction of the null model's is an exact fit, to rounding
_EXACT_FIT = 1e-20


@dataclass(frozen=True)
class Certifier:
    tol: float
    fixed_dispersion: bool
    df_resid: float  # rows (with positive weight) less columns
    null_deviance: float = 0.0  # the nested null model's (0 when unknown)

    @classmethod
    def for_inputs(cls, inp: IRLSInputs) -> Certifier:
        n, p = inp.X.shape
        if not inp.all_weights_positive:
            n = int(np.count_nonzero(inp.total_weights > 0))
        return cls(
            tol=inp.tol,
            fixed_dispersion=inp.family.fixed_dispersion,
            df_resid=max(float(n - p), 1.0),
            null_deviance=abs(inp.null_deviance or 0.0),
        )

    def dispersion(self, deviance: float) -> float:
        """phi, or its estimate deviance / df for families that estimate it, floored at
        the rounding level of the null model's (an exact fit's deviance is rounding
        noise: its decrement could never be below a limit scaled by it)."""
        if self.fixed_dispersion:
            return 1.0
        return max(abs(deviance), _EXACT_FIT * self.null_deviance) / self.df_resid

    def small(self, decrement: float, deviance: float, exact_newton: bool) -> bool:
        """Whether a step of this decrement leaves a point exact to 1e-8 (module doc);
        with ``exact_newton`` False also whether the point it started from is."""
        limit = self.tol * (_NEWTON_PER_TOL if exact_newton else _FISHER_PER_TOL)
        return decrement <= limit * self.dispersion(deviance)

    def at_noise_floor(self, decrement: float, deviance: float) -> bool:
        """Whether a point where no step lowers the deviance is the optimum to rounding."""
        return decrement <= _NOISE_FLOOR * self.dispersion(deviance)
