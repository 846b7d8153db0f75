"""Tidy data frames of a fitted GLM, as R's ``broom::tidy.glm`` and ``broom::glance.glm``.

Presentation only: every number comes from the results object.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from glmx.errors import DataError, GlmxWarning

if TYPE_CHECKING:
    from glmx.results.glm import GLMResults

# links whose exp(coefficient) is a ratio: rate (log), odds (logit), hazard (cloglog)
RATIO_LINKS = ("log", "logit", "cloglog")

TIDY_COLUMNS = ["term", "estimate", "std_error", "statistic", "p_value", "conf_low", "conf_high"]
GLANCE_COLUMNS = [
    "null_deviance", "df_null", "loglik", "aic", "bic", "deviance", "df_resid", "nobs",
    "dispersion", "converged", "n_iter", "family", "link",
]  # fmt: skip


def tidy(
    fit: GLMResults,
    exponentiate: bool = False,
    conf_int: bool = True,
    conf_level: float = 0.95,
    conf_method: str = "profile",
) -> pd.DataFrame:
    """One row per estimated coefficient, as ``broom::tidy(fit, conf.int = TRUE)``.

    Columns ``term, estimate, std_error, statistic, p_value`` (the coefficient table,
    robust when the fit has a ``cov_type``) and, with ``conf_int``, ``conf_low,
    conf_high``: the profile-likelihood interval (``conf_method="profile"``,
    ``MASS::confint.glm`` as broom uses) or the Wald interval (``"wald"``, which uses the
    robust standard errors when the fit has a ``cov_type``; the profile interval is always
    model-based, and says so with a warning on a robust fit).  Aliased coefficients have no row, as in broom (R's
    ``summary(fit)$coefficients`` leaves them out).

    ``exponentiate=True`` reports exp(estimate) and exp of the interval ends (rate, odds
    or hazard ratios), and, as broom does, leaves ``std_error``, ``statistic`` and
    ``p_value`` on the link scale.  It warns for a link other than log, logit or cloglog,
    where exp(coefficient) is no ratio of the usual kind."""
    if conf_method not in ("profile", "wald"):
        raise DataError(f"conf_method must be 'profile' or 'wald', got {conf_method!r}")
    if exponentiate and fit.link not in RATIO_LINKS:
        warnings.warn(
            f"exponentiate=True with the {fit.link} link: exp(coefficient) is a rate, odds "
            f"or hazard ratio only for the {', '.join(RATIO_LINKS)} links",
            GlmxWarning,
            stacklevel=3,
        )
    if conf_int and conf_method == "profile" and fit.cov_type != "model":
        warnings.warn(
            f"profile intervals are model-based while std_error uses cov_type="
            f"{fit.cov_type!r}; conf_method='wald' gives intervals from the robust errors",
            GlmxWarning,
            stacklevel=3,
        )
    kept = ~fit.aliased.to_numpy()
    ct = fit.coef_table.loc[kept]
    out = pd.DataFrame(
        {
            "term": list(ct.index),
            "estimate": ct["estimate"].to_numpy(dtype=float),
            "std_error": ct["std_error"].to_numpy(dtype=float),
            "statistic": ct["statistic"].to_numpy(dtype=float),
            "p_value": ct["p_value"].to_numpy(dtype=float),
        }
    )
    if conf_int:
        method: Literal["profile", "wald"] = "wald" if conf_method == "wald" else "profile"
        ci = fit.confint(level=conf_level, method=method).loc[kept]
        out["conf_low"] = ci["lower"].to_numpy(dtype=float)
        out["conf_high"] = ci["upper"].to_numpy(dtype=float)
    if exponentiate:
        # ratios: exp of the estimate and of the interval ends; std_error stays on the
        # link scale (broom's exponentiate() touches estimate, conf.low, conf.high only)
        for col in ("estimate", "conf_low", "conf_high"):
            if col in out:
                out[col] = np.exp(out[col])
    return out


def glance(fit: GLMResults) -> pd.DataFrame:
    """One row of fit statistics: broom's ``glance.glm`` columns (null_deviance, df_null,
    loglik, aic, bic, deviance, df_resid, nobs) and dispersion, converged, n_iter, family
    and link."""
    row = {
        "null_deviance": fit.null_deviance,
        "df_null": fit.df_null,
        "loglik": fit.loglik,
        "aic": fit.aic,
        "bic": fit.bic,
        "deviance": fit.deviance,
        "df_resid": fit.df_resid,
        "nobs": fit.nobs,
        "dispersion": fit.dispersion,
        "converged": fit.converged,
        "n_iter": fit.n_iter,
        "family": fit.family.name,
        "link": fit.link,
    }
    return pd.DataFrame([row], columns=GLANCE_COLUMNS)
