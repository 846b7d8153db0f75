"""The record of a fitted mixed model (:class:`MixedFit`) and its assembly from an
optimum: lme4's checks of the optimum and of the fitted values, the fit statistics and the
row-level arrays in the data's row order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from glmx.design.formula import TermState
from glmx.families.base import Family
from glmx.mixed.blocked import BlockedFactor
from glmx.mixed.certify import OptimizerInfo
from glmx.mixed.checks import check_fitted, check_optimum
from glmx.mixed.optimize import OptimizeResult
from glmx.mixed.problem import Problem, condvar_by_group, unsort
from glmx.mixed.reterms import ReTerms, r_column_name

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


def assemble(
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
