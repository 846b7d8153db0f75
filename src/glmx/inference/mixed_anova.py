"""Likelihood-ratio tests between mixed models (and GLMs), as lme4's ``anova.merMod``."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from glmx.errors import DataError, GlmxWarning


def anova_mixed(*fits: Any) -> pd.DataFrame:
    """One row per model, ordered by the number of parameters: ``npar, aic, bic, loglik,
    deviance`` (-2 loglik), and against the row before ``chisq, df, p_value``.

    As lme4, REML fits are refitted by maximum likelihood first (REML likelihoods of
    models with different fixed effects are not comparable), with a warning saying so.
    A GLM fitted with ``glmx.glm`` may be one of the models (the model without random
    effects)."""
    from glmx.results.mixed import MixedResults

    if len(fits) < 2:
        raise DataError("glmx.anova of mixed models compares two or more fitted models")
    refitted = []
    for fit in fits:
        if isinstance(fit, MixedResults) and fit.reml:
            refitted.append(fit.refit(reml=False))
        else:
            refitted.append(fit)
    if any(isinstance(f, MixedResults) and f.reml for f in fits):
        warnings.warn(
            "refitting REML model(s) with maximum likelihood (instead of REML) to compare "
            "them, as lme4's anova does",
            GlmxWarning,
            stacklevel=3,
        )
    _check_same_data(refitted)
    npar = np.array([_n_params(f) for f in refitted], dtype=float)
    order = np.argsort(npar, kind="stable")
    models = [refitted[i] for i in order]
    loglik = np.array([float(m.loglik) for m in models])
    npar = npar[order]
    nobs = float(models[0].nobs)
    dev = -2.0 * loglik
    chisq = np.r_[np.nan, np.maximum(dev[:-1] - dev[1:], 0.0)]
    df = np.r_[np.nan, np.diff(npar)]
    with np.errstate(invalid="ignore"):
        p = np.where(df > 0, special.chdtrc(np.where(df > 0, df, 1.0), chisq), np.nan)
    p[0] = np.nan
    return pd.DataFrame(
        {
            "npar": npar.astype(int), "aic": dev + 2 * npar, "bic": dev + np.log(nobs) * npar,
            "loglik": loglik, "deviance": dev, "chisq": chisq, "df": df, "p_value": p,
        },
        index=pd.Index([f"model {i + 1}" for i in order], name="model"),
    )  # fmt: skip


def _n_params(fit: Any) -> int:
    return int(fit.n_params)


def _check_same_data(fits: list[Any]) -> None:
    first = fits[0]
    for i, m in enumerate(fits[1:], 2):
        n1, n2 = len(first.y), len(m.y)
        if n1 != n2 or not np.allclose(m.y, first.y):
            raise DataError(
                f"models were not fitted to the same rows: model 1 has {n1} observations "
                f"and model {i} {n2} (or a different response)"
            )
