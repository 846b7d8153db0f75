"""A GLMM's fit: lme4's two stages (nAGQ = 0 for a start, then Laplace or adaptive
quadrature over theta and beta), the certified optimum, and lme4's covariance of the fixed
effects from the Hessian of the deviance."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from glmx.families.base import Family
from glmx.mixed.blocked import BlockedFactor, Structure
from glmx.mixed.certify import Layout, certified_minimum
from glmx.mixed.glmm import GeneralizedLinearMixedModel
from glmx.mixed.optimize import (
    OptimizeResult,
    Progress,
    deriv12,
    hessian_from_gradient,
    minimize_bounded,
    minimize_scaled,
)
from glmx.mixed.pirls import PirlsResult, RowModel
from glmx.mixed.problem import Problem
from glmx.mixed.record import MixedFit, assemble
from glmx.mixed.reterms import ReTerms

Array = NDArray[np.float64]


def fit_glmm(
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

    return assemble(
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
