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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from glmx.allocator import reuse_freed_memory
from glmx.design.formula import TermState
from glmx.errors import ConvergenceError, DataError, FamilyError, shown
from glmx.families import get_family
from glmx.families.base import Family
from glmx.mixed.blocked import BlockedFactor, Structure
from glmx.mixed.certify import Layout, OptimizerInfo, certified_minimum
from glmx.mixed.checks import check_fitted, check_optimum
from glmx.mixed.glmm import GeneralizedLinearMixedModel
from glmx.mixed.lmm import LinearMixedModel
from glmx.mixed.optimize import (
    OptimizeResult,
    Progress,
    bobyqa,
    deriv12,
    hessian_from_gradient,
    minimize_bounded,
    minimize_scaled,
)
from glmx.mixed.pirls import PirlsResult, RowModel
from glmx.mixed.problem import (
    Problem,
    build_problem,
    check_dense_block,
    condvar_by_group,
    unsort,
)
from glmx.mixed.reterms import ReTerms, r_column_name
from glmx.mixed.starts import moment_start

Array = NDArray[np.float64]


@dataclass(frozen=True)
class MixedFit:
    """Everything a fitted mixed model knows, in lme4's terms and order.

    Row-level arrays (``fitted``, ``linear_predictor``...) follow the rows used
    (``row_index``: their positions in the data).  ``coef`` and ``vcov`` are indexed by
    glmx's design column names; theta, varcorr and ranef use lme4's names."""

    formula: str
    family: Family
    reml: bool
    nagq: int
    coef: pd.Series
    vcov: pd.DataFrame
    theta: Array
    theta_names: tuple[str, ...]
    lower: Array
    sigma: float
    varcorr: pd.DataFrame
    ranef: dict[str, pd.DataFrame]
    ranef_condvar: dict[str, Array]
    loglik: float
    aic: float
    bic: float
    deviance: float | None  # -2 loglik; None for REML fits
    reml_criterion: float | None
    df: int  # parameters counted as lme4 does (beta, theta, and sigma for an LMM)
    nobs: int
    n_dropped: int
    n_groups: dict[str, int]
    singular: bool
    converged: bool
    n_iter: int
    n_feval: int
    warnings: tuple[str, ...]
    y: Array
    prior_weights: Array
    offset: Array
    fitted: Array  # mu
    linear_predictor: Array  # X beta + offset + Z b
    linear_predictor_fixed: Array  # X beta + offset
    u: Array  # spherical random effects
    b: Array  # b = Lambda u, lme4's layout
    row_index: NDArray[np.intp]
    fixed_terms: TermState
    fixed_columns: tuple[str, ...]  # design columns kept (rank-deficient ones dropped)
    coef_names_r: tuple[str, ...]  # the same as R's model.matrix names them ("(Intercept)")
    reterms: ReTerms
    gradient: Array | None = None
    hessian: Array | None = None
    optimizer: OptimizerInfo | None = None  # what the optimizer tried; lme4's optinfo
    structure: str = ""  # the blocks of the Cholesky factor (Problem.describe)
    # lme4's devFunOnly: theta -> deviance (LMM: ML or REML criterion), (theta, beta) ->
    # -2 log-likelihood (GLMM); and its analytic gradient where there is one
    deviance_function: Callable[[Array], float] | None = field(default=None, repr=False)
    gradient_function: Callable[[Array], Array] | None = field(default=None, repr=False)

    @property
    def is_lmm(self) -> bool:
        return self.family.name == "gaussian"


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
                fit = _fit_glmm(
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


def _assemble(
    formula: str,
    prob: Problem,
    fam: Family,
    *,
    reml: bool,
    nagq: int,
    theta: Array,
    beta: Array,
    u: Array,
    sigma: float,
    factor: BlockedFactor,
    vcov: Array,
    m2ll: float,
    eta: Array,
    mu: Array,
    opt: OptimizeResult,
    n_feval: int,
    gradient: Array | None,
    hessian: Array | None,
    devfun: Callable[[Array], float],
    gradfun: Callable[[Array], Array] | None = None,
    info: OptimizerInfo | None = None,
) -> MixedFit:
    """The fit's record; ``gradient`` and ``hessian`` are over the parameters the optimizer
    saw (fixed effects of X / x_scale), as are lme4's checks; the record keeps them, and the
    deviance function, over the fixed effects of X itself."""
    s = prob.structure
    rt = s.reterms  # sorted rows: the same terms, levels and u layout as prob.reterms
    n, p = prob.X.shape
    checks = check_optimum(
        theta, rt.lower, gradient, hessian, rt.n_theta, opt.converged, rt=rt, info=info
    )
    edge = check_fitted(fam, prob.y, prob.pw, mu, prob.fixed_terms.response)
    pscale = np.concatenate([np.ones(rt.n_theta), prob.x_scale])
    if gradient is not None:
        gradient = gradient * pscale[: gradient.size]
    if hessian is not None:
        k = hessian.shape[0]
        hessian = hessian * np.outer(pscale[:k], pscale[:k])
    b = rt.b_from_u(theta, u)
    df = p + rt.n_theta + (1 if fam.name == "gaussian" else 0)
    loglik = -0.5 * m2ll
    names = prob.columns
    return MixedFit(
        formula=formula,
        family=fam,
        reml=reml,
        nagq=nagq,
        coef=pd.Series(beta, index=names, name="estimate"),
        vcov=pd.DataFrame(vcov, index=names, columns=names),
        theta=theta,
        theta_names=rt.theta_names,
        lower=rt.lower,
        sigma=sigma,
        varcorr=rt.varcorr(theta, sigma, residual=fam.name == "gaussian"),
        ranef=rt.ranef(b),
        ranef_condvar=condvar_by_group(rt, factor, theta, sigma),
        loglik=loglik,
        aic=-2.0 * loglik + 2.0 * df,
        bic=-2.0 * loglik + np.log(n) * df,
        deviance=None if reml else m2ll,
        reml_criterion=m2ll if reml else None,
        df=df,
        nobs=n,
        n_dropped=prob.n_dropped,
        n_groups=rt.n_groups,
        singular=checks.singular,
        converged=checks.converged and edge.converged,
        n_iter=opt.n_iter,
        n_feval=n_feval,
        warnings=checks.messages + edge.messages,
        y=unsort(prob.y, prob.order),
        prior_weights=unsort(prob.pw, prob.order),
        offset=unsort(prob.offset, prob.order),
        fitted=unsort(mu, prob.order),
        linear_predictor=unsort(eta, prob.order),
        linear_predictor_fixed=unsort(prob.X @ beta + prob.offset, prob.order),
        u=u,
        b=b,
        row_index=prob.row_index,
        fixed_terms=prob.fixed_terms,
        fixed_columns=tuple(names),
        coef_names_r=tuple(r_column_name(c) for c in names),
        reterms=prob.reterms,
        gradient=gradient,
        hessian=hessian,
        deviance_function=devfun,
        gradient_function=gradfun,
        optimizer=info,
        structure=prob.describe(),
    )


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
    return _assemble(
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


def _fit_glmm(
    formula: str,
    prob: Problem,
    fam: Family,
    nagq: int,
    theta0: Array,
    beta0: Array | None,
    progress: Progress | None,
    max_iter: int,
    start_label: str = "default",
) -> MixedFit:
    s = prob.structure
    rt = s.reterms
    sc = prob.x_scale
    Xs = prob.X_scaled
    rows = RowModel(fam, prob.y, prob.pw)
    model = GeneralizedLinearMixedModel(s, Xs, rows, prob.offset, nagq=max(nagq, 1))
    opt_res = model.fit(
        theta0,
        rt.lower,
        None if beta0 is None else beta0 * sc,
        progress=progress,
        max_iter=max_iter,
        stage0_only=nagq == 0,
    )
    lay = Layout.of(rt)
    p = Xs.shape[1]
    lo = np.concatenate([rt.lower, np.full(p, -np.inf)])
    if nagq == 0:  # lme4's nAGQ = 0: theta alone, beta at its joint mode with u
        jac0 = model.gradient0 if rows.canonical else None

        def run0(x: Array) -> OptimizeResult:
            return minimize_bounded(
                model.deviance0,
                x,
                rt.lower,
                jac=jac0,
                progress=progress,
                max_iter=max_iter,
                polish=False,
            )

        cert = certified_minimum(
            run0,
            model.deviance0,
            None,
            opt_res.theta,
            rt.lower,
            lay,
            method=_method(jac0 is not None),
            start_label=start_label,
            other_starts=lambda _x: _default_start(rt, start_label, None),
            first=opt_res.stage0,
        )
        theta = cert.result.x
        beta = model.joint_modes(theta).beta
    else:
        sd = np.std(Xs, axis=0)
        scale = np.concatenate([np.ones(rt.n_theta), np.where(sd > 0, sd, 1.0)])
        jac = model.gradient if model.has_gradient else None

        def run(x: Array) -> OptimizeResult:
            return minimize_scaled(
                model.deviance, x, lo, scale, jac=jac, progress=progress, max_iter=max_iter
            )

        first = opt_res.stage1
        first.x = np.concatenate([opt_res.theta, opt_res.beta])

        def derivatives(x: Array) -> tuple[Array, Array]:
            if model.has_gradient:
                H = first.hessian  # the Newton polish's, where the first run ended
                if H is None or not np.array_equal(x, first.x):
                    H = hessian_from_gradient(model.gradient, x, lo)
                return model.gradient(x), H
            return deriv12(model.deviance, x, lo)

        cert = certified_minimum(
            run,
            model.deviance,
            derivatives,
            first.x,
            lo,
            lay,
            method=_method(jac is not None),
            start_label=start_label,
            other_starts=lambda best: _default_start(rt, start_label, best[rt.n_theta :]),
            first=first,
        )
        theta, beta = cert.result.x[: rt.n_theta], cert.result.x[rt.n_theta :]
    res = model.modes(theta, beta)
    deviance = model.deviance_at(res, theta)
    x = np.concatenate([theta, beta])
    g: Array | None = None
    H: Array | None = None
    if nagq == 0:  # no derivatives at lme4's nAGQ = 0 fit: vcov from R_X, as lme4
        pass
    elif cert.gradient is not None and cert.hessian is not None:
        g, H = cert.gradient, cert.hessian
    elif model.has_gradient:
        g = model.gradient(x)
        H = cert.result.hessian
        if H is None:
            H = hessian_from_gradient(model.gradient, x, lo)
    else:
        g, H = deriv12(model.deviance, x, lo)
    model.modes(theta, beta)  # leave the warm start at the optimum
    vcov = _glmm_vcov(H, rt.n_theta, s, rows, Xs, theta, res) / np.outer(sc, sc)
    opt = cert.result
    pscale = np.concatenate([np.ones(rt.n_theta), sc])

    def devfun(x: Array) -> float:
        return model.deviance(np.asarray(x, dtype=float) * pscale)

    def gradfun(x: Array) -> Array:
        return model.gradient(np.asarray(x, dtype=float) * pscale) * pscale

    return _assemble(
        formula,
        prob,
        fam,
        reml=False,
        nagq=nagq,
        theta=theta,
        beta=beta / sc,
        u=res.u,
        sigma=1.0,
        factor=res.factor,
        vcov=vcov,
        m2ll=deviance,
        eta=res.eta,
        mu=res.mu,
        opt=opt,
        n_feval=(opt_res.stage0.n_feval if nagq > 0 else 0) + cert.info.n_feval,
        gradient=g,
        hessian=H,
        devfun=devfun,
        gradfun=gradfun if model.has_gradient else None,
        info=cert.info,
    )


def _method(gradient: bool) -> str:
    """The GLMM optimizer (glmx.mixed.optimize.minimize_bounded)."""
    return "L-BFGS-B (analytic gradient)" if gradient else "BOBYQA"


def _default_start(rt: ReTerms, start_label: str, beta: Array | None) -> list[tuple[str, Array]]:
    """lme4's default theta as a restart, where the first run started elsewhere."""
    x = rt.theta_start if beta is None else np.concatenate([rt.theta_start, beta])
    return [("default theta", x)]


def _glmm_vcov(
    H: Array | None,
    n_theta: int,
    s: Structure,
    rows: RowModel,
    X: Array,
    theta: Array,
    res: PirlsResult,
) -> Array:
    """lme4's vcov.merMod: 2 (H^-1)[beta, beta] from the finite-difference Hessian of the
    deviance over (theta, beta); (R_X'R_X)^-1 at the modes if that is not positive."""
    try:
        if H is None:
            raise np.linalg.LinAlgError("no Hessian")
        V = np.linalg.inv(H)[n_theta:, n_theta:]
        V = V + V.T
        if V.size == 0 or (np.all(np.isfinite(V)) and np.linalg.eigvalsh(V)[0] > 0):
            return np.asarray(V, dtype=np.float64)
    except np.linalg.LinAlgError:
        pass
    _, w, _ = rows.working(res.eta)
    DT = np.vstack([X.T, np.zeros(X.shape[0])])
    return BlockedFactor(s, theta, s.gram(w, DT)).fixed_cov_unscaled()
