"""Bad input to glmx.glmm: a glmx error naming the column or value, never a traceback
from numpy or a silent wrong answer."""

from __future__ import annotations

import io

import numpy as np
import pytest

import glmx
from glmx.datasets import load

SLEEP = load("sleepstudy")
CBPP = load("cbpp")
FORMULA = "Reaction ~ Days + (1 | Subject)"


@pytest.mark.parametrize(
    "call, error, needle",
    [
        (lambda: glmx.glmm(FORMULA, SLEEP, family="gamma"), glmx.FamilyError, "Gamma"),
        (lambda: glmx.glmm(FORMULA, SLEEP, link="log"), glmx.FamilyError, "identity"),
        (lambda: glmx.glmm(FORMULA, SLEEP, nagq=-1), glmx.DataError, "-1"),
        (lambda: glmx.glmm(FORMULA, SLEEP, control={"maxit": 3}), glmx.DataError, "maxit"),
        (lambda: glmx.glmm("Reaction ~ Days", SLEEP), glmx.FormulaError, "glmx.glm"),
        (lambda: glmx.glmm("Reaction ~ Days + (1 | )", SLEEP), glmx.FormulaError, "grouping"),
        (lambda: glmx.glmm("Reaction ~ Days + (1 | Sub)", SLEEP), glmx.FormulaError, "'Sub'"),
        (lambda: glmx.glmm("Reaction ~ Dayz + (1 | Subject)", SLEEP), glmx.FormulaError, "Dayz"),
        (lambda: glmx.glmm(FORMULA, SLEEP.iloc[:0]), glmx.DataError, "no rows"),
        (
            lambda: glmx.glmm(FORMULA, SLEEP.assign(w=-1.0), weights="w"),
            glmx.DataError,
            "'w'",
        ),
        (
            lambda: glmx.glmm("Reaction ~ Days + (1 | g)", SLEEP.assign(g="a")),
            glmx.DataError,
            "'g' has 1 level",
        ),
        (
            lambda: glmx.glmm(
                "Reaction ~ Days + (1 | i)", SLEEP.assign(i=[str(i) for i in range(len(SLEEP))])
            ),
            glmx.DataError,
            "180 levels for 180 observations",
        ),
        (
            lambda: glmx.glmm(FORMULA, SLEEP.assign(Days=SLEEP.Days.replace(3, np.inf))),
            glmx.DataError,
            "'Days'",
        ),
        (
            lambda: glmx.glmm("incidence ~ period + (1 | herd)", CBPP, family="binomial"),
            glmx.DataError,
            "'incidence'",
        ),
        (
            lambda: glmx.glmm(
                "Days ~ 1 + (1 | Subject)", SLEEP.assign(Days=SLEEP.Days - 5), family="poisson"
            ),
            glmx.DataError,
            "'Days'",
        ),
        (
            lambda: glmx.glmm(
                "y ~ Days + (Days | Subject)",
                SLEEP.assign(y=(SLEEP.Reaction > 300).astype(float)),
                family="binomial",
                nagq=5,
            ),
            glmx.DataError,
            "single scalar",
        ),
    ],
    ids=[
        "gamma", "gaussian-log", "negative-nagq", "control", "no-bar", "empty-group",
        "unknown-group", "unknown-fixed", "no-rows", "negative-weights", "one-level",
        "a-level-per-row", "infinite-covariate", "binomial-counts", "poisson-negative",
        "agq-with-slopes",
    ],
)  # fmt: skip
def test_bad_input_raises_a_named_glmx_error(call, error, needle):
    with pytest.raises(error, match=needle.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_missing_values_drop_rows_and_are_counted():
    data = SLEEP.copy()
    data.loc[[0, 5], "Reaction"] = np.nan
    data["Subject"] = data["Subject"].astype(object)
    data.loc[7, "Subject"] = None
    fit = glmx.glmm(FORMULA, data)
    assert fit.nobs == len(SLEEP) - 3


def test_progress_line_for_a_slow_fit(monkeypatch):
    """A fit longer than the delay shows its progress on stderr when asked."""
    import glmx.progress

    out = io.StringIO()
    original = glmx.progress.Progress.__init__

    def immediate(self, label, delay=2.0, enabled=None, stream=None):
        original(self, label, delay=0.0, enabled=enabled, stream=out)

    monkeypatch.setattr(glmx.progress.Progress, "__init__", immediate)
    glmx.glmm("Reaction ~ Days + (Days | Subject)", SLEEP, progress=True)
    text = out.getvalue()
    assert text.startswith("\rglmx.glmm: step 1, deviance ") and text.endswith("\n")
    out.truncate(0)
    glmx.glmm("Reaction ~ Days + (Days | Subject)", SLEEP, progress=False)
    assert out.getvalue() == ""
