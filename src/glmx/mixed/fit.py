"""Fit a mixed model from an lme4 formula: the raw fit that the results layer builds on.

``fit_mixed`` reads the formula and data (rows with a missing value in any column the
fixed or random part uses are dropped), sorts the rows by the levels of the first
random-effect term (so per-level sums are contiguous), fits an LMM (profiled deviance,
REML by default) or a GLMM (two stages, Laplace or adaptive Gauss-Hermite), checks the
optimum as lme4 does, and returns a :class:`MixedFit` whose row-level arrays are in the
order of the data's rows used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.typing import NDArray

from glmx.allocator import reuse_freed_memory
from glmx.errors import ConvergenceError, DataError, FamilyError, shown
from glmx.families import get_family
from glmx.families.base import Family
from glmx.mixed.certify import Layout, certified_minimum
from glmx.mixed.fit_glmm import fit_glmm
from glmx.mixed.lmm import LinearMixedModel
from glmx.mixed.optimize import OptimizeResult, Progress, bobyqa, deriv12
from glmx.mixed.problem import Problem, build_problem, check_dense_block
from glmx.mixed.record import MixedFit, assemble
from glmx.mixed.starts import moment_start

Array = NDArray[np.float64]


def fit_mixed(
    formula: str,
    data: Any,
    family: str | Family = "gaussian",
    weights: Any = None,
    offset: Any = None,
    reml: bool | None = None,
    nagq: int = 1,
    start: dict[str, Any] | Array | None = None,
    control: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> MixedFit:
    """Fit ``formula`` (lme4 syntax) as ``lmer`` (gaussian) or ``glmer`` would.

    ``reml`` defaults to True for gaussian (ignored otherwise); ``nagq`` is 1 for the
    Laplace approximation, more for adaptive Gauss-Hermite quadrature (one scalar term),
    0 for lme4's nAGQ = 0 fit.  ``start`` is theta (array) or a dict with ``theta`` and
    ``beta``; ``control`` takes ``max_iter``; ``progress(iteration, deviance)`` is called
    by the optimizer."""
    fam = get_family(family)
    lmm = fam.name == "gaussian"
    if lmm and fam.link.name != "identity":
        raise FamilyError(
            f"a gaussian mixed model with the {fam.link.name} link is not available; "
            "use the identity link"
        )
    if isinstance(nagq, bool) or not isinstance(nagq, int | np.integer) or nagq < 0:
        raise DataError(f"nagq must be a non-negative integer, got {shown(nagq)}")
    if nagq > MAX_NAGQ:
        raise DataError(
            f"nagq = {int(nagq)} is more quadrature points than glmx (and lme4) allow: "
            f"use nagq between 1 and {MAX_NAGQ} (1 is the Laplace approximation)"
        )
    control = dict(control or {})
    max_iter = int(control.pop("max_iter", 1000))
    if control:
        raise DataError(f"unknown control option(s): {', '.join(sorted(control))}")
    prob = build_problem(formula, data, fam, weights, offset, lmm)
    if not lmm:
        _check_nagq(prob, int(nagq))
    theta0, beta0 = _start(start, prob)
    start_label = "default" if start is None else "user"

    reuse_freed_memory()  # temporaries of the data's size reused, not faulted in
    dense, slow = check_dense_block(prob)
    # the engines test every value they use for finiteness: numpy's own floating-point
    # warnings along the way (an overflow at a trial point) say nothing to a user
    with _single_threaded_blas(dense < _THREADED_BLAS_MIN), np.errstate(all="ignore"):
        try:
            if lmm:
                reml = True if reml is None else bool(reml)
                fit = _fit_lmm(formula, prob, fam, reml, theta0, progress, max_iter, start_label)
            else:
                fit = fit_glmm(
                    formula, prob, fam, int(nagq), theta0, beta0, progress, max_iter, start_label
                )
        except np.linalg.LinAlgError:
            raise ConvergenceError(_NO_FIT) from None
    if not (np.isfinite(fit.loglik) and np.all(np.isfinite(fit.coef.to_numpy()))):
        raise ConvergenceError(_NO_FIT)
    return dataclasses.replace(fit, warnings=(*slow, *fit.warnings)) if slow else fit


_NO_FIT = (
    "the mixed model could not be fitted: its likelihood is not finite at any point the "
    "optimizer reached; check the response, weights and offset for extreme values"
)


MAX_NAGQ = 25  # lme4's cap on nAGQ: more nodes add nothing but rounding


# below this size of the dense block, BLAS threads cost more than they save: numpy and
# scipy each bring an OpenBLAS thread pool, and on few cores they compete
_THREADED_BLAS_MIN = 1000


@contextmanager
def _single_threaded_blas(active: bool) -> Iterator[None]:
    """Limit BLAS to one thread (threadpoolctl, where installed) for small dense blocks."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        active = False
    if not active:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _check_nagq(prob: Problem, nagq: int) -> None:
    if nagq > 1:
        terms = prob.reterms.terms
        if len(terms) > 1 or terms[0].k > 1:
            raise DataError(
                f"nagq = {nagq} (adaptive Gauss-Hermite quadrature) needs a single scalar "
                "random-effect term such as (1 | g); use nagq = 1 (Laplace)"
            )


def _start(start: Any, prob: Problem) -> tuple[Array, Array | None]:
    rt = prob.structure.reterms
    theta, beta = rt.theta_start, None
    if start is None:
        return theta, None
    spec = start if isinstance(start, dict) else {"theta": start}
    if spec.get("theta") is not None:
        theta = np.asarray(spec["theta"], dtype=float).ravel()
        if theta.size != rt.n_theta:
            raise DataError(f"start theta needs {rt.n_theta} values, got {theta.size}")
    if spec.get("beta") is not None:
        beta = np.asarray(spec["beta"], dtype=float).ravel()
        if beta.size != prob.X.shape[1]:
            raise DataError(f"start beta needs {prob.X.shape[1]} values, got {beta.size}")
    return np.maximum(theta, rt.lower), beta


def _fit_lmm(
    formula: str,
    prob: Problem,
    fam: Family,
    reml: bool,
    theta0: Array,
    progress: Progress | None,
    max_iter: int,
    start_label: str = "default",
) -> MixedFit:
    rt = prob.structure.reterms
    sc = prob.x_scale
    model = LinearMixedModel(
        prob.structure, prob.X_scaled, prob.y, prob.pw, prob.offset, reml=reml, x_scale=sc
    )
    lay = Layout.of(rt)

    def run(x: Array) -> OptimizeResult:
        return bobyqa(model.deviance, x, rt.lower, progress=progress, max_eval=max_iter)

    def derivatives(x: Array) -> tuple[Array, Array]:
        return deriv12(model.deviance, x, rt.lower)

    def other_starts(_best: Array) -> list[tuple[str, Array]]:
        out = [] if start_label == "default" else [("default", rt.theta_start)]
        m = moment_start(rt, prob.X_scaled, prob.y - prob.offset)
        return out if m is None else [*out, ("moment", m)]

    cert = certified_minimum(
        run,
        model.deviance,
        derivatives,
        theta0,
        rt.lower,
        lay,
        method="BOBYQA",
        start_label=start_label,
        other_starts=other_starts,
    )
    opt = cert.result
    est = model.estimates(opt.x)
    if cert.gradient is not None and cert.hessian is not None:
        g, H = cert.gradient, cert.hessian
    else:
        g, H = deriv12(model.deviance, est.theta, rt.lower)
    beta = est.beta / sc
    eta = prob.X @ beta + prob.offset + prob.structure.Zt_u(est.theta, est.u)
    return assemble(
        formula,
        prob,
        fam,
        reml=reml,
        nagq=1,
        theta=est.theta,
        beta=beta,
        u=est.u,
        sigma=est.sigma,
        factor=est.factor,
        vcov=est.sigma**2 * est.factor.fixed_cov_unscaled() / np.outer(sc, sc),
        m2ll=est.objective,
        eta=eta,
        mu=eta,
        opt=opt,
        n_feval=cert.info.n_feval,
        gradient=g,
        hessian=H,
        devfun=model.deviance,
        info=cert.info,
    )
