"""Load the R reference fixtures (datasets and R's results) shipped in tests/fixtures."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
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


def assert_close(actual, expected, rtol: float, atol=0.0, err_msg: str = "") -> None:
    """``|actual - expected| <= atol + rtol |expected|`` elementwise (NaN matches NaN), as
    numpy's assert_allclose but with ``atol`` an array (a floor per coefficient, e.g.
    1e-8 x its standard error)."""
    a = np.asarray(actual, dtype=float)
    e = np.asarray(expected, dtype=float)
    atol = np.broadcast_to(np.asarray(atol, dtype=float), np.broadcast_shapes(a.shape, e.shape))
    ok = np.isclose(a, e, rtol=rtol, atol=0.0, equal_nan=True) | (
        np.abs(a - e) <= atol + rtol * np.abs(e)
    )
    if not ok.all():
        bad = np.flatnonzero(~ok.ravel())
        a_b, e_b = np.broadcast_to(a, ok.shape).ravel(), np.broadcast_to(e, ok.shape).ravel()
        rel = np.abs(a_b - e_b) / np.abs(e_b)
        rows = "\n".join(
            f"  [{i}] actual {a_b[i]!r} expected {e_b[i]!r} rel {rel[i]:.2e} "
            f"allowed {atol.ravel()[i] + rtol * abs(e_b[i]):.2e}"
            for i in bad[:10]
        )
        raise AssertionError(
            f"{err_msg}\n{len(bad)} of {ok.size} values differ beyond rtol={rtol}:\n{rows}"
        )


R_FAMILY = {
    "Gamma": "gamma",
    "inverse.gaussian": "inverse_gaussian",
    "negbin": "negative_binomial",
}
R_LINK = {"1/mu^2": "inverse_squared"}


def fit_case(case: dict, **kwargs):
    """Fit a reference case with glmx as R was called, at glmx's default settings.

    The references are R's fully converged fits (fixtures/make_polished_cases.R), so no
    tolerance is passed unless a test asks for one (``tol=...``, ``max_iter=...``), e.g. to
    follow R's own iteration path."""
    import glmx

    c = case["case"]
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
        **kwargs,
    )
