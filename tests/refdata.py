"""Load the R reference fixtures (datasets and R's results) shipped in tests/fixtures."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pandas as pd

FIXTURES = Path(__file__).parent / "fixtures"


@cache
def _levels() -> dict:
    return json.loads((FIXTURES / "levels.json").read_text())


def dataset(name: str) -> pd.DataFrame:
    """A reference dataset read as R's ``read.csv(stringsAsFactors = TRUE)`` reads it:
    numeric-looking columns are numbers, the others factors with R's level order
    (recorded by fixtures/levels.R, since R's collation differs from Python's sort)."""
    df = pd.read_csv(FIXTURES / "data" / f"{name}.csv")
    for col, levels in _levels()[name].items():
        df[col] = pd.Categorical(df[col], categories=levels)
    return df


@cache
def glm_cases(filename: str = "glm_cases.json") -> dict:
    return json.loads((FIXTURES / filename).read_text())


R_FAMILY = {
    "Gamma": "gamma",
    "inverse.gaussian": "inverse_gaussian",
    "negbin": "negative_binomial",
}
R_LINK = {"1/mu^2": "inverse_squared"}


def fit_case(case: dict, **kwargs):
    """Fit a reference case with glmx as R was called (epsilon 1e-12 -> tol 1e-12)."""
    import glmx

    c = case["case"]
    # glm.nb ran with its default glm.control(epsilon = 1e-8); the others with 1e-12
    default_tol = 1e-8 if c["family"] == "negbin" else 1e-12
    family = R_FAMILY.get(c["family"], c["family"])
    link = R_LINK.get(c["link"], c["link"])
    return glmx.glm(
        c["formula"],
        dataset(c["data"]),
        family=family,
        link=link,
        weights=c.get("weights"),
        offset=c.get("offset"),
        start=c.get("start"),
        tol=kwargs.pop("tol", default_tol),
        **kwargs,
    )
