"""The nested null model of a GLM (R's null deviance): intercept-only, refitted with the
offset when there is one, or offset-only without an intercept.  Its deviance is R's
``null.deviance``; its coefficients in the full design are where IRLS restarts from when
a fit stalls, and a fit must do no worse (glmx.solvers.driver)."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from glmx.design.matrix import DenseDesign, ones_column
from glmx.errors import ConvergenceError
from glmx.solvers.elementwise import total_deviance
from glmx.solvers.irls import irls
from glmx.solvers.state import Array, IRLSInputs
from glmx.vectors import constant


def null_model(inp: IRLSInputs, has_intercept: bool) -> tuple[float, Array | None]:
    """R's null deviance: of the intercept-only model (refitted when there is an offset),
    or of mu = g^{-1}(offset) without an intercept; and that nested model's coefficients
    in the full design (None when not available), from which IRLS may restart.  A Firth
    fit's null model is fitted by Firth too, as brglm2's (after the fit: see glmx.fitting)."""
    fam = inp.family
    n, p = inp.X.shape
    if not has_intercept:
        with np.errstate(all="ignore"):
            mu0 = fam.link.inverse(inp.offset)
            ok = fam.link.valid_eta(inp.offset) and fam.valid_mu(mu0)
        return total_deviance(inp, mu0), (np.zeros(p) if ok else None)
    column = ones_column(inp.X)
    if not np.any(inp.offset != 0):
        wt = inp.total_weights
        wtdmu = float(np.dot(wt, inp.y) / np.sum(wt))
        deviance = total_deviance(inp, constant(n, wtdmu))
        with np.errstate(all="ignore"):
            b0 = float(fam.link.link(np.array([wtdmu]))[0])
        ok = np.isfinite(b0) and fam.link.valid_eta(np.array([b0]))
    else:
        deviance, b0 = intercept_only_fit(inp)
        ok = np.isfinite(deviance)
    if column is None or not ok:
        return deviance, None
    start = np.zeros(p)
    start[column] = b0
    return deviance, start


def intercept_only_fit(inp: IRLSInputs) -> tuple[float, float]:
    """The intercept-only model with the offset (R refits it): the better of IRLS from
    R's mustart and from the intercept g(weighted mean of y), since with a non-concave
    link either can stall; its deviance and intercept."""
    n = inp.y.shape[0]
    ones = DenseDesign(np.ones((n, 1)), ["Intercept"])
    wt = inp.total_weights
    with np.errstate(all="ignore"):
        b0 = inp.family.link.link(np.array([float(np.dot(wt, inp.y) / np.sum(wt))]))
    starts = [None] + ([b0] if np.all(np.isfinite(b0)) else [])
    best = (np.inf, np.nan)
    for start in starts:
        null_inp = dataclasses.replace(inp, X=ones, start=start, mustart=None)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                null = irls(null_inp)
        except ConvergenceError:
            continue
        if null.deviance < best[0]:
            best = (null.deviance, float(null.coef[0]))
    if not np.isfinite(best[0]):
        raise ConvergenceError(
            "cannot fit the intercept-only model with the offset (R's null deviance); "
            "check the offset and the link"
        )
    return best


def firth_null_deviance(inp: IRLSInputs) -> float:
    """The null deviance of a Firth fit: the intercept-only model fitted by Firth."""
    from glmx.solvers.firth import firth

    ones = DenseDesign(np.ones((inp.y.shape[0], 1)), ["Intercept"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        null_mu = firth(dataclasses.replace(inp, X=ones, start=None, mustart=None)).mu
    return total_deviance(inp, null_mu)
