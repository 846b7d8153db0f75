"""Bounded minimization of a mixed model's deviance, its derivatives and lme4's checks.

Without a gradient the optimizer is BOBYQA (Powell's derivative-free bounded trust-region
method, from NLopt, as lme4 and MixedModels.jl use it): a quadratic model of the deviance
built from its values, a few dozen evaluations for a handful of parameters.  With an
analytic gradient (GLMMs with a canonical link) it is L-BFGS-B, followed by a few
projected Newton steps with a Hessian from differences of the gradient, which take the
optimum to the accuracy of the deviance itself.  The derivatives at the end are lme4's
``deriv12`` (central differences, delta 1e-4, one-sided at a bound) and feed lme4's
convergence checks (``checkConv``): a scaled gradient above 0.002 or a Hessian that is not
positive definite warns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize as so
from numpy.typing import NDArray

Array = NDArray[np.float64]
Objective = Callable[[Array], float]
Gradient = Callable[[Array], Array]
Progress = Callable[[int, float], None]

SINGULAR_TOL = 1e-4  # lme4's isSingular tolerance
GRAD_TOL = 0.002  # lme4's check.conv.grad
HESS_TOL = 1e-6  # lme4's check.conv.hess
UNIDENTIFIABLE = "model is nearly unidentifiable"  # a warning that leaves `converged` as is


@dataclass
class OptimizeResult:
    x: Array
    fun: float
    n_iter: int
    n_feval: int
    converged: bool
    message: str
    gradient: Array | None = None
    hessian: Array | None = None
    history: list[float] = field(default_factory=list)


# BOBYQA's stopping rule: the trust region's radius below XTOL (parameters of order one),
# or a step that changes the deviance by less than FTOL_REL of its size or by FTOL_ABS
# (a deviance falling towards 0, as under separation, changes by ever smaller amounts)
BOBYQA_XTOL = 1e-7
BOBYQA_FTOL_REL = 1e-13
BOBYQA_FTOL_ABS = 1e-10
BOBYQA_ROUGH_XTOL = 1e-5  # a start for a later fit (a GLMM's stage one)


def bobyqa(
    fun: Objective,
    x0: Array,
    lower: Array,
    step: Array | None = None,
    max_eval: int = 10_000,
    progress: Progress | None = None,
    xtol: float = BOBYQA_XTOL,
) -> OptimizeResult:
    """Minimize fun over x >= lower by NLopt's BOBYQA from x0; ``step`` is the initial
    trust-region radius per parameter (0.2, or a fifth of |x0| where that is larger)."""
    import nlopt

    counted = fun if isinstance(fun, _Counted) else _Counted(fun)
    n_start = counted.n
    lower = np.asarray(lower, dtype=float)
    x0 = np.maximum(np.asarray(x0, dtype=float), lower)
    if step is None:
        step = np.maximum(0.2, 0.2 * np.abs(x0))
    history: list[float] = []

    def objective(x: Array, grad: Array) -> float:
        f = counted(x)
        history.append(f)
        if progress is not None:
            progress(len(history), f)
        return f

    opt = nlopt.opt(nlopt.LN_BOBYQA, x0.size)
    opt.set_min_objective(objective)
    opt.set_lower_bounds(lower)
    opt.set_upper_bounds(np.full(x0.size, np.inf))
    opt.set_initial_step(np.asarray(step, dtype=float))
    opt.set_xtol_abs(xtol)
    opt.set_ftol_rel(BOBYQA_FTOL_REL)
    opt.set_ftol_abs(BOBYQA_FTOL_ABS)
    opt.set_maxeval(max_eval)
    converged, message = True, "BOBYQA: the trust region shrank to its tolerance"
    try:
        opt.optimize(x0)
        code = opt.last_optimize_result()
        if code == nlopt.MAXEVAL_REACHED:
            converged, message = False, f"BOBYQA: {max_eval} evaluations reached"
    except nlopt.RoundoffLimited:
        message = "BOBYQA: stopped by rounding errors"
    except (RuntimeError, ValueError) as e:  # NLopt's generic failure: keep the best point
        converged, message = False, f"BOBYQA failed: {e}"
    x = counted.best_x if counted.best_x is not None else x0
    return OptimizeResult(
        x=np.asarray(x, dtype=float),
        fun=float(counted.best_f),
        n_iter=len(history),
        n_feval=counted.n - n_start,
        converged=converged,
        message=message,
        history=history,
    )


class _Counted:
    """The objective with an evaluation count, the best point seen and a progress hook."""

    def __init__(self, fun: Objective) -> None:
        self.fun = fun
        self.n = 0
        self.best_x: Array | None = None
        self.best_f = np.inf

    def __call__(self, x: Array) -> float:
        self.n += 1
        f = float(self.fun(np.asarray(x, dtype=float)))
        if not np.isfinite(f):
            return 1e300  # outside the region where the deviance exists
        if f < self.best_f:
            self.best_f, self.best_x = f, np.array(x, dtype=float)
        return f


def _steps(x: Array, lower: Array, h: Array) -> tuple[Array, Array]:
    """Forward and backward steps; the backward one shrinks to stay above the bound."""
    down = np.minimum(h, np.maximum(x - lower, 0.0))
    return h, down


def deriv12(fun: Objective, x: Array, lower: Array, delta: float = 1e-4) -> tuple[Array, Array]:
    """Gradient and Hessian by central differences, lme4's ``deriv12`` (step ``delta``,
    shortened to the bound where x is within delta of it)."""
    nx = x.size
    fx = fun(x)
    up, down = _steps(x, lower, np.full(nx, delta))
    xadd, xsub = x + up, x - down
    g = np.empty(nx)
    H = np.empty((nx, nx))

    def at(pairs: list[tuple[int, Array]]) -> float:
        z = x.copy()
        for i, src in pairs:
            z[i] = src[i]
        return fun(z)

    for j in range(nx):
        fadd, fsub = at([(j, xadd)]), at([(j, xsub)])
        uj, lj = up[j], down[j]
        if lj > 0:
            H[j, j] = fadd / uj**2 - 2.0 * fx / (uj * lj) + fsub / lj**2
        else:  # at the bound: forward second difference
            H[j, j] = (at([(j, x + 2 * up)]) - 2.0 * fadd + fx) / uj**2
        g[j] = (fadd - fsub) / (uj + lj)
        for i in range(j):
            ui, li = up[i], down[i]
            H[i, j] = H[j, i] = (
                at([(i, xadd), (j, xadd)]) / (ui + uj) ** 2
                - at([(i, xadd), (j, xsub)]) / (ui + lj) ** 2
                - at([(i, xsub), (j, xadd)]) / (li + uj) ** 2
                + at([(i, xsub), (j, xsub)]) / (li + lj) ** 2
            )
    return g, H


def hessian_from_gradient(grad: Gradient, x: Array, lower: Array, delta: float = 1e-4) -> Array:
    """Hessian by central differences of an analytic gradient (forward at a bound)."""
    nx = x.size
    H = np.empty((nx, nx))
    g0 = None
    for j in range(nx):
        e = np.zeros(nx)
        e[j] = delta
        if x[j] - delta >= lower[j]:
            H[:, j] = (grad(x + e) - grad(x - e)) / (2.0 * delta)
        else:
            g0 = grad(x) if g0 is None else g0
            H[:, j] = (grad(x + e) - g0) / delta
    return (H + H.T) / 2.0


def _newton_polish(
    fun: Objective, grad: Gradient, x: Array, fx: float, lower: Array, max_steps: int = 3
) -> tuple[Array, float, Array | None]:
    """Projected Newton steps with one finite-difference Hessian (taken at the start and
    returned, for the checks at the optimum): parameters at their bound with a gradient
    pushing outwards stay fixed.  A step is kept only if it lowers f."""
    H = None
    for _ in range(max_steps):
        g = grad(x)
        free = ~((x <= lower) & (g > 0))
        if not free.any():
            break
        if H is None:
            H = hessian_from_gradient(grad, x, lower)
        try:
            step = np.zeros_like(x)
            step[free] = -np.linalg.solve(H[np.ix_(free, free)], g[free])
        except np.linalg.LinAlgError:
            break
        for _halving in range(10):
            xn = np.maximum(x + step, lower)
            fn = fun(xn)
            if fn <= fx:
                break
            step /= 2.0
        else:
            break
        done = fx - fn < 1e-12 * (abs(fx) + 1.0)
        x, fx = xn, fn
        if done:
            break
    return x, fx, H


def _off_boundary(fun: Objective, x: Array, fx: float, lower: Array) -> Array | None:
    """A better point next to a variance parameter stuck at zero, if there is one.

    The deviance depends on a standard deviation theta_i through theta_i^2 near zero,
    so its derivative vanishes at the bound and a gradient method stops there even when
    the bound is a maximum along theta_i; lme4's derivative-free BOBYQA does not."""
    at_zero = np.flatnonzero((lower == 0) & (x < SINGULAR_TOL))
    for i in at_zero:
        for delta in (0.1, 0.5, 0.01):
            z = x.copy()
            z[i] = delta
            if fun(z) < fx - 1e-10 * (abs(fx) + 1.0):
                return z
    return None


def minimize_bounded(
    fun: Objective,
    x0: Array,
    lower: Array,
    jac: Gradient | None = None,
    progress: Progress | None = None,
    max_iter: int = 1000,
    polish: bool = True,
    rough: bool = False,
) -> OptimizeResult:
    """Minimize fun over x >= lower (entries -inf are free): L-BFGS-B with the analytic
    gradient ``jac``, BOBYQA without one (finite-difference gradients would cost 2 n
    evaluations a step); ``rough``: a start for a later fit, to a looser tolerance."""
    if jac is None:
        xtol = BOBYQA_ROUGH_XTOL if rough else BOBYQA_XTOL
        return bobyqa(fun, x0, lower, max_eval=max(max_iter, 10), progress=progress, xtol=xtol)
    counted = _Counted(fun)
    lower = np.asarray(lower, dtype=float)
    x0 = np.maximum(np.asarray(x0, dtype=float), lower)
    history: list[float] = []

    def grad(x: Array) -> Array:
        return np.asarray(jac(x), dtype=float)

    def callback(intermediate_result: so.OptimizeResult) -> None:
        history.append(float(intermediate_result.fun))
        if progress is not None:
            progress(len(history), float(intermediate_result.fun))

    bounds = so.Bounds(lower, np.full(x0.size, np.inf))
    n_iter = 0
    f_start = np.inf
    for _restart in range(3):
        res = so.minimize(
            counted,
            x0,
            jac=grad,
            method="L-BFGS-B",
            bounds=bounds,
            callback=callback,
            options={
                "maxiter": max_iter,
                # the relative-reduction test can stop L-BFGS-B after one short step:
                # off for the final fit, which stops on the projected gradient
                "ftol": 1e-9 if rough else 1e-16,
                "gtol": 1e-4 if rough else 1e-6,
                "maxcor": 20,
            },
        )
        n_iter += int(res.nit)
        x, fx = np.asarray(res.x, dtype=float), float(res.fun)
        if counted.best_x is not None and counted.best_f < fx:
            x, fx = counted.best_x, counted.best_f
        restart = _off_boundary(counted, x, fx, lower)
        if restart is None and not rough and fx < f_start - 1e-9 * (abs(fx) + 1.0):
            g = grad(x)
            projected = np.where((x <= lower) & (g > 0), 0.0, g)
            restart = x if np.max(np.abs(projected), initial=0.0) > 1e-3 else None
        if restart is None:
            break
        x0, f_start = restart, fx
    hessian = None
    if polish:
        x, fx, hessian = _newton_polish(counted, grad, x, fx, lower)
    converged = bool(res.success) or res.status == 2  # 2: no further progress possible
    return OptimizeResult(
        x=x,
        fun=fx,
        n_iter=n_iter,
        n_feval=counted.n,
        converged=converged and bool(n_iter < max_iter),
        message=str(res.message),
        hessian=hessian,
        history=history,
    )


def is_singular(theta: Array, lower: Array, tol: float = SINGULAR_TOL) -> bool:
    """lme4's isSingular: a diagonal element of a relative covariance factor at zero."""
    diag = lower == 0
    return bool(np.any(theta[diag] < tol))


def convergence_messages(
    gradient: Array, hessian: Array, n_theta: int, tol: float = GRAD_TOL
) -> list[str]:
    """lme4's checkConv on a non-singular fit: the scaled gradient and the Hessian."""
    out: list[str] = []
    try:
        R = np.linalg.cholesky(hessian).T  # H = R'R, R upper (R's chol)
        scaled = np.linalg.solve(R, gradient)
        worst = np.minimum(np.abs(scaled), np.abs(gradient))
        if np.max(worst) > tol:
            out.append(
                f"model failed to converge with max|grad| = {np.max(worst):.3g} "
                f"(tol = {tol}, component {int(np.argmax(worst)) + 1})"
            )
    except np.linalg.LinAlgError:
        out.append("unable to evaluate the scaled gradient (Hessian not positive definite)")
    blocks = [("", hessian)]
    if hessian.shape[0] > n_theta:
        blocks.insert(0, ("fixed-effect ", hessian[n_theta:, n_theta:]))
    for what, H in blocks:
        ev = np.linalg.eigvalsh((H + H.T) / 2.0)
        if ev[0] < -HESS_TOL:
            out.append(
                f"{what}Hessian is not positive definite ({int(np.sum(ev < -HESS_TOL))} "
                "negative eigenvalue(s)): the optimum may be a saddle point"
            )
        elif ev[0] / ev[-1] < HESS_TOL:
            out.append(
                f"{UNIDENTIFIABLE}: very large {what}Hessian eigenvalue ratio "
                f"({ev[-1] / max(ev[0], 1e-300):.3g})"
            )
    return out


CONVERGENCE_ADVICE = (
    "; try rescaling the predictors (centre and scale continuous variables), more "
    "iterations (control={'max_iter': ...}), or different starting values (start=...)"
)


def minimize_scaled(
    fun: Objective,
    x0: Array,
    lower: Array,
    scale: Array,
    jac: Gradient | None = None,
    **kwargs: object,
) -> OptimizeResult:
    """:func:`minimize_bounded` over z = x * scale: with a covariate's standard deviation
    as the scale of its coefficient, a unit step moves the linear predictor by about one
    unit, so that L-BFGS-B's first steps stay where the deviance can be evaluated."""
    scale = np.asarray(scale, dtype=float)

    def f(z: Array) -> float:
        return fun(z / scale)

    def g(z: Array) -> Array:
        assert jac is not None
        return np.asarray(jac(z / scale)) / scale

    res = minimize_bounded(
        f,
        np.asarray(x0) * scale,
        np.asarray(lower) * scale,
        jac=g if jac else None,
        **kwargs,  # type: ignore[arg-type]
    )
    res.x = res.x / scale
    if res.hessian is not None:
        res.hessian = res.hessian * np.outer(scale, scale)
    return res
