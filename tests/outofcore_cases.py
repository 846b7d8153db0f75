"""Data and models shared by the out-of-core tests (local chunks and Dask partitions)."""

from __future__ import annotations

import numpy as np
import pandas as pd

RTOL = 1e-8

CASES = [
    ("count ~ x + g + offset(log_exposure)", "poisson", {}),
    ("event ~ x * g", "binomial", {}),
    ("prop ~ x + g", "binomial", {"weights": "trials"}),
    ("cost ~ x + g", "gamma", {"link": "log"}),
]


def make_data(n: int = 50_000, seed: int = 7) -> pd.DataFrame:
    """A factor, a covariate, and responses for each case; 4 rows with missing values."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    g = rng.choice(["north", "east", "South", "west"], size=n)
    exposure = rng.uniform(0.5, 3.0, size=n)
    bump = np.select([g == "east", g == "South"], [0.3, -0.2], 0.0)
    trials = rng.integers(1, 12, size=n).astype(float)
    p = 1.0 / (1.0 + np.exp(-(-0.4 + 0.6 * x + bump)))
    df = pd.DataFrame(
        {
            "x": x,
            "g": g,
            "log_exposure": np.log(exposure),
            "count": rng.poisson(exposure * np.exp(0.2 + 0.4 * x + bump)).astype(float),
            "event": rng.binomial(1, p).astype(float),
            "trials": trials,
            "prop": rng.binomial(trials.astype(int), p) / trials,
            "cost": rng.gamma(3.0, np.exp(1.0 + 0.3 * x + bump) / 3.0),
        }
    )
    # missing values in used columns: dropped and counted, as R's na.omit
    df.loc[[11, 12_345, 33_333], "x"] = np.nan
    df.loc[[40_001], "g"] = None
    return df


def rel(a: object, b: object) -> float:
    """Largest relative difference of a from b."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))
