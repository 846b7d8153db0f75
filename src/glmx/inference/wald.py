"""Wald tests and intervals, as R's ``summary.glm`` and ``confint.default``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import special  # not scipy.stats: it would double glmx's import time

from glmx.errors import DataError, shown

Array = NDArray[np.float64]


def coef_table(coef: pd.Series, se: pd.Series, df_resid: float | None) -> pd.DataFrame:
    """Estimate, standard error, z or t statistic and two-sided p-value.

    ``df_resid=None`` means a fixed dispersion: z tests on the normal; otherwise t tests
    on ``df_resid`` degrees of freedom (NaN when there are none), as R."""
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = coef / se
    if df_resid is None:
        p = 2.0 * special.ndtr(-np.abs(stat))
    elif df_resid > 0:
        p = 2.0 * special.stdtr(df_resid, -np.abs(stat))
    else:
        p = np.full(len(stat), np.nan)
    return pd.DataFrame(
        {"estimate": coef, "std_error": se, "statistic": stat, "p_value": p}, index=coef.index
    )


def wald_confint(coef: pd.Series, se: pd.Series, level: float = 0.95) -> pd.DataFrame:
    """estimate -/+ z_{(1+level)/2} * se on the normal (R's ``confint.default``)."""
    if not 0 < level < 1:
        raise DataError(f"level must be in (0, 1), got {shown(level)}")
    q = special.ndtri(0.5 + level / 2.0)
    return pd.DataFrame({"lower": coef - q * se, "upper": coef + q * se}, index=coef.index)
