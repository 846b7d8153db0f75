"""Bad inputs raise the right glmx exception with a message naming what is at fault;
valid but unusual inputs give the documented warnings; every data-frame flavour gives
the same fit, and rows with missing values are dropped and counted."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import glmx
from glmx import families

# --- data ------------------------------------------------------------------------------


def _df(**cols):
    base = {
        "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        "y": [1.0, 0.0, 2.0, 3.0, 1.0, 4.0, 3.0, 5.0],
        "g": ["a", "a", "b", "b", "a", "b", "a", "b"],
    }
    base.update(cols)
    return pd.DataFrame(base)


DF = _df()
N = len(DF)
X = np.column_stack([np.ones(N), DF["x"].to_numpy()])
Y = DF["y"].to_numpy()


def _with(col, i, value, df=None):
    """A copy of df with df[col][i] = value."""
    out = (DF if df is None else df).copy()
    out[col] = out[col].astype(object if isinstance(value, str) else float)
    out.loc[i, col] = value
    return out


def glm(*args, **kw):
    return glmx.glm(*args, **kw)


# --- error cases: (id, thunk, exception class, regex the message must match) ------------

ERROR_CASES = [
    # response outside the family's support
    (
        "poisson-negative-count",
        lambda: glm("y ~ x", _with("y", 3, -2.0), family="poisson"),
        glmx.DataError,
        r"(?s)negative.*'y'.*row 3.*-2",
    ),
    (
        "negbin-negative-count",
        lambda: glm("y ~ x", _with("y", 3, -2.0), family="negative_binomial"),
        glmx.DataError,
        r"(?s)negative.*'y'.*row 3.*-2",
    ),
    (
        "negbin-fixed-theta-negative-count",
        lambda: glm("y ~ x", _with("y", 3, -2.0), family=families.negative_binomial(2.0)),
        glmx.DataError,
        r"(?s)negative.*'y'.*row 3.*-2",
    ),
    (
        "binomial-proportion-above-1",
        lambda: glm("y ~ x", _with("y", 5, 1.5, _df(y=[0.1] * 8)), family="binomial"),
        glmx.DataError,
        r"(?s)binomial.*\[0, 1\].*'y'.*row 5.*1\.5",
    ),
    (
        "binomial-proportion-below-0",
        lambda: glm("y ~ x", _with("y", 2, -0.25, _df(y=[0.5] * 8)), family="binomial"),
        glmx.DataError,
        r"(?s)binomial.*'y'.*row 2.*-0\.25",
    ),
    (
        "binomial-counts-not-0-1",
        lambda: glm("y ~ x", _df(y=[1.0, 2.0] * 4), family="binomial"),
        glmx.DataError,
        r"(?s)binomial.*'y'.*4 invalid value\(s\).*2\.0",
    ),
    (
        "gamma-zero-response",
        lambda: glm("y ~ x", DF, family="gamma"),
        glmx.DataError,
        r"(?s)Gamma.*positive.*'y'.*row 1.*0\.0",
    ),
    (
        "gamma-negative-response",
        lambda: glm("y ~ x", _with("y", 6, -3.0, _df(y=[1.0] * 8)), family="gamma"),
        glmx.DataError,
        r"(?s)Gamma.*positive.*'y'.*row 6.*-3",
    ),
    (
        "inverse-gaussian-zero-response",
        lambda: glm("y ~ x", DF, family="inverse_gaussian"),
        glmx.DataError,
        r"(?s)inverse.gaussian.*positive.*'y'.*row 1.*0\.0",
    ),
    (
        "inverse-gaussian-negative-response",
        lambda: glm("y ~ x", _with("y", 4, -1.0, _df(y=[2.0] * 8)), family="inverse_gaussian"),
        glmx.DataError,
        r"(?s)inverse.gaussian.*positive.*'y'.*row 4.*-1",
    ),
    # non-finite values that survive NA handling
    (
        "log-of-zero-in-formula",
        lambda: glm("y ~ log(x)", _with("x", 0, 0.0)),
        glmx.DataError,
        r"(?s)'log\(x\)'.*1 non-finite.*-inf",
    ),
    (
        "inf-in-numeric-column",
        lambda: glm("y ~ x", _with("x", 2, np.inf)),
        glmx.DataError,
        r"(?s)'x'.*1 non-finite.*row 2.*inf",
    ),
    (
        "inf-in-response",
        lambda: glm("y ~ x", _with("y", 4, np.inf)),
        glmx.DataError,
        r"(?s)'y'.*1 .*non-finite.*row 4.*inf",
    ),
    (
        "log-of-zero-in-response",
        lambda: glm("log(y) ~ x", DF),
        glmx.DataError,
        r"(?s)'log\(y\)'.*non-finite.*row 1.*-inf",
    ),
    (
        "log-of-zero-in-offset-term",
        lambda: glm("y ~ x + offset(log(x))", _with("x", 0, 0.0), family="poisson"),
        glmx.DataError,
        r"(?s)offset.*non-finite.*-inf",
    ),
    (
        "inf-in-offset",
        lambda: glm("y ~ x", DF, offset=[0, 0, np.inf, 0, 0, 0, 0, 0]),
        glmx.DataError,
        r"(?s)offset.*non-finite.*row 2.*inf",
    ),
    (
        "inf-in-weights",
        lambda: glm("y ~ x", DF, weights=[1, 1, 1, 1, 1, np.inf, 1, 1]),
        glmx.DataError,
        r"(?s)weights.*non-finite.*row 5.*inf",
    ),
    (
        "glm_fit-nan-in-X",
        lambda: glmx.glm_fit(np.column_stack([X, [1, 2, np.nan, 4, 5, 6, 7, 8]]), Y),
        glmx.DataError,
        r"(?s)'x2'.*1 missing or non-finite",
    ),
    (
        "glm_fit-inf-in-X-named-column",
        lambda: glmx.glm_fit(pd.DataFrame({"one": 1.0, "dose": [1, 2, np.inf, 4, 5, 6, 7, 8]}), Y),
        glmx.DataError,
        r"(?s)'dose'.*1 missing or non-finite",
    ),
    (
        "glm_fit-nan-in-sparse-X",
        lambda: glmx.glm_fit(sp.csr_matrix(np.column_stack([X, [1, 2, np.nan, 4, 5, 6, 7, 8]])), Y),
        glmx.DataError,
        r"(?s)'x2'.*1 missing or non-finite",
    ),
    (
        "glm_fit-nan-in-y",
        lambda: glmx.glm_fit(X, np.where(np.arange(N) == 3, np.nan, Y)),
        glmx.DataError,
        r"(?s)'y'.*1 missing or non-finite.*row 3.*nan",
    ),
    (
        "glm_fit-inf-in-y",
        lambda: glmx.glm_fit(X, np.where(np.arange(N) == 6, np.inf, Y)),
        glmx.DataError,
        r"(?s)'y'.*1 missing or non-finite.*row 6.*inf",
    ),
    (
        "glm_fit-nan-in-weights",
        lambda: glmx.glm_fit(X, Y, weights=np.where(np.arange(N) == 1, np.nan, 1.0)),
        glmx.DataError,
        r"(?s)weights.*1 missing or non-finite.*row 1",
    ),
    (
        "glm_fit-nan-in-offset",
        lambda: glmx.glm_fit(X, Y, offset=np.where(np.arange(N) == 7, np.nan, 0.0)),
        glmx.DataError,
        r"(?s)offset.*1 missing or non-finite.*row 7",
    ),
    # weights
    (
        "negative-weights-array",
        lambda: glm("y ~ x", DF, weights=[1, 1, -1, 1, 1, 1, 1, 1]),
        glmx.DataError,
        r"(?s)weights.*non-negative.*1 negative.*row 2.*-1",
    ),
    (
        "negative-weights-column",
        lambda: glm("y ~ x", _df(w=[1, 1, 1, 1, -0.5, 1, 1, 1]), weights="w"),
        glmx.DataError,
        r"(?s)weights.*non-negative.*1 negative.*row 4.*-0\.5",
    ),
    (
        "negative-freq-weights",
        lambda: glm("y ~ x", DF, freq_weights=[1, 1, 1, -2, 1, 1, 1, 1]),
        glmx.DataError,
        r"(?s)freq_weights.*non-negative.*1 negative.*row 3.*-2",
    ),
    (
        "glm_fit-negative-freq-weights",
        lambda: glmx.glm_fit(X, Y, freq_weights=[1, 1, 1, 1, 1, 1, -1, 1]),
        glmx.DataError,
        r"(?s)freq_weights.*non-negative.*row 6",
    ),
    (
        "all-weights-zero",
        lambda: glm("y ~ x", DF, weights=np.zeros(N)),
        glmx.DataError,
        r"zero weight",
    ),
    (
        "all-freq-weights-zero",
        lambda: glm("y ~ x", DF, freq_weights=np.zeros(N)),
        glmx.DataError,
        r"zero weight",
    ),
    (
        "weights-column-not-in-data",
        lambda: glm("y ~ x", DF, weights="wt"),
        glmx.DataError,
        r"weights column 'wt' is not in the data",
    ),
    (
        "weights-column-not-numeric",
        lambda: glm("y ~ x", DF, weights="g"),
        glmx.DataError,
        r"weights column 'g' must be numeric",
    ),
    (
        "weights-array-not-numeric",
        lambda: glm("y ~ x", DF, weights=list("abcdefgh")),
        glmx.DataError,
        r"weights.*numeric",
    ),
    # lengths
    (
        "weights-wrong-length",
        lambda: glm("y ~ x", DF, weights=[1.0, 2.0, 3.0]),
        glmx.DataError,
        r"weights has length 3 but the data have 8 rows",
    ),
    (
        "freq-weights-wrong-length",
        lambda: glm("y ~ x", DF, freq_weights=np.ones(10)),
        glmx.DataError,
        r"freq_weights has length 10 but the data have 8 rows",
    ),
    (
        "offset-wrong-length",
        lambda: glm("y ~ x", DF, offset=np.zeros(5)),
        glmx.DataError,
        r"offset has length 5 but the data have 8 rows",
    ),
    (
        "glm_fit-weights-wrong-length",
        lambda: glmx.glm_fit(X, Y, weights=np.ones(2)),
        glmx.DataError,
        r"weights has length 2 .*8",
    ),
    (
        "glm_fit-offset-wrong-length",
        lambda: glmx.glm_fit(X, Y, offset=np.ones(9)),
        glmx.DataError,
        r"offset has length 9 .*8",
    ),
    (
        "glm_fit-y-wrong-length",
        lambda: glmx.glm_fit(X, Y[:5]),
        glmx.DataError,
        r"length 5 .*8 rows",
    ),
    (
        "start-wrong-length",
        lambda: glm("y ~ x", DF, start=[0.0, 1.0, 2.0]),
        glmx.DataError,
        r"start has length 3 but the design has 2 columns \(Intercept, x\)",
    ),
    (
        "glm_fit-start-wrong-length",
        lambda: glmx.glm_fit(X, Y, start=[0.0]),
        glmx.DataError,
        r"start has length 1 but the design has 2 columns",
    ),
    (
        "start-not-numeric",
        lambda: glm("y ~ x", DF, start=["a", "b"]),
        glmx.DataError,
        r"start must be numeric",
    ),
    # glm_fit's X
    (
        "glm_fit-X-one-dimensional",
        lambda: glmx.glm_fit(DF["x"].to_numpy(), Y),
        glmx.DataError,
        r"two-dimensional",
    ),
    (
        "glm_fit-X-not-numeric",
        lambda: glmx.glm_fit(np.array([["a", "b"]] * N), Y),
        glmx.DataError,
        r"X.*numeric",
    ),
    (
        "glm_fit-y-not-numeric",
        lambda: glmx.glm_fit(X, list("abcdefgh")),
        glmx.DataError,
        r"y must be numeric",
    ),
    (
        "glm_fit-zero-rows",
        lambda: glmx.glm_fit(np.zeros((0, 2)), np.zeros(0)),
        glmx.DataError,
        r"no observations",
    ),
    # formula and data frame
    (
        "formula-names-missing-column",
        lambda: glm("y ~ x + dose", DF),
        glmx.FormulaError,
        r"'dose' not in the data",
    ),
    (
        "formula-names-missing-response",
        lambda: glm("counts ~ x", DF),
        glmx.FormulaError,
        r"'counts' not in the data",
    ),
    (
        "formula-without-tilde",
        lambda: glm("y x", DF),
        glmx.FormulaError,
        r"'y x'.*'~'",
    ),
    (
        "formula-without-response",
        lambda: glm("~ x", DF),
        glmx.FormulaError,
        r"no response",
    ),
    (
        "formula-with-two-tildes",
        lambda: glm("y ~ x ~ g", DF),
        glmx.FormulaError,
        r"exactly one '~'",
    ),
    (
        "formula-not-a-string",
        lambda: glm(None, DF),
        glmx.FormulaError,
        r"formula must be a string.*NoneType",
    ),
    (
        "empty-after-na-removal",
        lambda: glm(
            "y ~ x",
            _df(
                x=[np.nan, 1, np.nan, 1, np.nan, 1, np.nan, 1],
                y=[1, np.nan, 1, np.nan, 1, np.nan, 1, np.nan],
            ),
        ),
        glmx.DataError,
        r"no rows left after removing 8 row\(s\) with missing values in x, y",
    ),
    (
        "empty-after-na-removal-one-column-all-na",
        lambda: glm("y ~ x + g", _df(g=[None] * 8)),
        glmx.DataError,
        r"no rows left after removing 8 row\(s\).*\bg\b",
    ),
    (
        "data-frame-with-zero-rows",
        lambda: glm("y ~ x", DF.iloc[:0]),
        glmx.DataError,
        r"no rows",
    ),
    (
        "data-not-a-frame",
        lambda: glm("y ~ x", [1, 2, 3]),
        glmx.DataError,
        r"data must be .*got list",
    ),
    (
        "dict-columns-of-unequal-length",
        lambda: glm("y ~ x", {"x": [1.0, 2.0, 3.0], "y": [1.0, 2.0]}),
        glmx.DataError,
        r"dict.*same length",
    ),
    (
        "factor-with-one-level",
        lambda: glm("y ~ x + g", _df(g=["a"] * 8)),
        glmx.DataError,
        r"factor 'g' has a single level \['a'\] in the 8 rows",
    ),
    (
        "factor-with-one-level-after-na-drop",
        lambda: glm(
            "y ~ x + g",
            _df(
                g=["a", "a", "b", "a", "a", "a", "a", "a"],
                y=[1.0, 0.0, np.nan, 3.0, 1.0, 4.0, 3.0, 5.0],
            ),
        ),
        glmx.DataError,
        r"factor 'g' has a single level \['a'\] in the 7 rows",
    ),
    (
        "categorical-factor-with-one-level-after-na-drop",
        lambda: glm(
            "y ~ x + g",
            _df(
                g=pd.Categorical(["a", "a", "b", "a", "a", "a", "a", "a"]),
                y=[1.0, 0.0, np.nan, 3.0, 1.0, 4.0, 3.0, 5.0],
            ),
        ),
        glmx.DataError,
        r"(?s)'g'.*single level.*7 rows",
    ),
    (
        "categorical-factor-with-one-used-level",
        lambda: glm("y ~ x + g", _df(g=pd.Categorical(["a"] * 8, categories=["a", "b"]))),
        glmx.DataError,
        r"(?s)'g'.*single level",
    ),
    (
        "string-response-gaussian",
        lambda: glm("g ~ x", DF),
        glmx.DataError,
        r"response 'g' is not numeric.*only binomial",
    ),
    (
        "string-response-poisson",
        lambda: glm("g ~ x", DF, family="poisson"),
        glmx.DataError,
        r"response 'g' is not numeric.*only binomial",
    ),
    (
        "categorical-response-gamma",
        lambda: glm("g ~ x", _df(g=pd.Categorical(DF["g"])), family="gamma"),
        glmx.DataError,
        r"response 'g' is not numeric",
    ),
    (
        "binomial-factor-response-three-levels",
        lambda: glm("g ~ x", _df(g=list("abcabcab")), family="binomial"),
        glmx.DataError,
        r"'g' must have two levels, has 3",
    ),
    (
        "cbind-response-non-binomial",
        lambda: glm("cbind(s, f) ~ x", _df(s=[1.0] * 8, f=[2.0] * 8), family="poisson"),
        glmx.FormulaError,
        r"cbind.*binomial",
    ),
    # families and links
    (
        "unknown-family",
        lambda: glm("y ~ x", DF, family="poison"),
        glmx.FamilyError,
        r"unknown family 'poison'",
    ),
    (
        "family-wrong-type",
        lambda: glm("y ~ x", DF, family=3),
        glmx.FamilyError,
        r"family must be .*int",
    ),
    (
        "unknown-link",
        lambda: glm("y ~ x", DF, family="poisson", link="lgo"),
        glmx.FamilyError,
        r"unknown link 'lgo'",
    ),
    (
        "poisson-logit",
        lambda: glm("y ~ x", DF, family="poisson", link="logit"),
        glmx.FamilyError,
        r"link 'logit' is not available for the poisson family",
    ),
    (
        "gamma-probit",
        lambda: glm("y ~ x", _df(y=np.arange(1.0, 9.0)), family="gamma", link="probit"),
        glmx.FamilyError,
        r"link 'probit' is not available for the Gamma family",
    ),
    (
        "binomial-inverse",
        lambda: glm("y ~ x", _df(y=[0.0, 1.0] * 4), family="binomial", link="inverse"),
        glmx.FamilyError,
        r"link 'inverse' is not available for the binomial family",
    ),
    (
        "negbin-logit",
        lambda: glm("y ~ x", DF, family="negative_binomial", link="logit"),
        glmx.FamilyError,
        r"link 'logit' is not available",
    ),
    (
        "negbin-constructor-logit",
        lambda: families.negative_binomial(2.0, link="logit"),
        glmx.FamilyError,
        r"link 'logit' is not available",
    ),
    (
        "family-object-link-mismatch",
        lambda: glm("y ~ x", DF, family=families.poisson(), link="sqrt"),
        glmx.FamilyError,
        r"link='sqrt' disagrees",
    ),
    (
        "tweedie-power-0.5",
        lambda: families.tweedie(0.5),
        glmx.FamilyError,
        r"tweedie power .*0\.5",
    ),
    (
        "tweedie-power-nan",
        lambda: families.tweedie(float("nan")),
        glmx.FamilyError,
        r"tweedie power .*nan",
    ),
    (
        "tweedie-power-not-a-number",
        lambda: families.tweedie("1.5"),
        glmx.FamilyError,
        r"tweedie power",
    ),
    (
        "negbin-theta-zero",
        lambda: families.negative_binomial(0.0),
        glmx.FamilyError,
        r"theta must be a positive number, got 0\.0",
    ),
    (
        "negbin-theta-negative",
        lambda: families.negative_binomial(-1.5),
        glmx.FamilyError,
        r"theta must be a positive number, got -1\.5",
    ),
    (
        "negbin-theta-inf",
        lambda: families.negative_binomial(float("inf")),
        glmx.FamilyError,
        r"theta must be a positive number, got inf",
    ),
    (
        "negbin-theta-not-a-number",
        lambda: families.negative_binomial("2"),
        glmx.FamilyError,
        r"theta",
    ),
    # control arguments
    (
        "max-iter-zero",
        lambda: glm("y ~ x", DF, max_iter=0),
        glmx.GlmxError,
        r"max_iter",
    ),
    (
        "tol-zero",
        lambda: glm("y ~ x", DF, tol=0.0),
        glmx.GlmxError,
        r"tol",
    ),
]


@pytest.mark.parametrize(
    ("thunk", "cls", "pattern"),
    [pytest.param(t, c, p, id=i) for i, t, c, p in ERROR_CASES],
)
def test_bad_input_raises(thunk, cls, pattern):
    with pytest.raises(cls, match=pattern):
        thunk()


def test_bad_input_errors_are_glmx_errors_and_value_errors():
    """Every data/formula/family error is also a ValueError, as documented."""
    for cls in (glmx.DataError, glmx.FormulaError, glmx.FamilyError):
        assert issubclass(cls, glmx.GlmxError)
        assert issubclass(cls, ValueError)


def test_response_error_names_the_data_row_after_na_drop():
    """Row numbers in messages refer to the user's data, not to the rows left after
    dropping missing values: the bad count is in row 5 of the data."""
    df = _df(
        x=[np.nan, 2, 3, 4, 5, 6, 7, 8],
        y=[1.0, 2.0, 3.0, 4.0, 5.0, -1.0, 2.0, 3.0],
    )
    with pytest.raises(glmx.DataError, match=r"(?s)'y'.*row 5\b.*-1"):
        glm("y ~ x", df, family="poisson")


def test_design_error_names_the_data_row_after_na_drop():
    df = _df(y=[np.nan, 2, 3, 4, 5, 6, 7, 8], x=[1.0, 2, 3, 4, 5, np.inf, 7, 8])
    with pytest.raises(glmx.DataError, match=r"(?s)'x'.*row 5\b.*inf"):
        glm("y ~ x", df)


# --- warnings for valid but unusual inputs -----------------------------------------------


def test_binomial_non_integer_successes_warns():
    df = _df(y=[0.1, 0.5, 0.3, 0.2, 0.7, 0.9, 0.4, 0.6])
    with pytest.warns(glmx.DataWarning, match=r"non-integer.*successes.*'y'"):
        fit = glm("y ~ x", df, family="binomial")
    assert np.all(np.isfinite(fit.coef))


def test_binomial_non_integer_successes_with_trials_warns():
    df = _df(y=[0.1, 0.5, 0.3, 0.2, 0.7, 0.9, 0.4, 0.6])
    with pytest.warns(glmx.DataWarning, match=r"non-integer"):
        glm("y ~ x", df, family="binomial", weights=np.full(N, 3.0))


def test_binomial_integer_successes_do_not_warn():
    df = _df(y=[1 / 3, 2 / 3, 0.0, 1.0, 1 / 3, 2 / 3, 1.0, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", glmx.DataWarning)
        glm("y ~ x", df, family="binomial", weights=np.full(N, 3.0))


def test_quasibinomial_non_integer_successes_do_not_warn():
    df = _df(y=[0.1, 0.5, 0.3, 0.2, 0.7, 0.9, 0.4, 0.6])
    with warnings.catch_warnings():
        warnings.simplefilter("error", glmx.DataWarning)
        glm("y ~ x", df, family="quasibinomial")


def test_max_iter_one_warns_and_is_not_converged():
    with pytest.warns(glmx.ConvergenceWarning, match=r"did not converge in 1 iteration"):
        fit = glm("y ~ x", DF, family="poisson", max_iter=1)
    assert fit.converged is False
    assert fit.n_iter == 1
    assert any("did not converge" in m for m in fit.warnings)


def test_glm_fit_max_iter_one_warns_and_is_not_converged():
    with pytest.warns(glmx.ConvergenceWarning):
        fit = glmx.glm_fit(X, Y, family="poisson", max_iter=1)
    assert fit.converged is False


SEP = pd.DataFrame(
    {
        "x": [-2.0, -1.5, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0],
        "y": [0, 0, 0, 0, 1, 1, 1, 1],
    }
)


def test_separation_warns_naming_the_predictor():
    with pytest.warns(glmx.SeparationWarning, match=r"separation.*'x'"):
        fit = glm("y ~ x", SEP, family="binomial")
    assert any("separation" in m for m in fit.warnings)


def test_separation_warns_naming_the_predictor_glm_fit():
    Xs = np.column_stack([np.ones(8), SEP["x"]])
    with pytest.warns(glmx.SeparationWarning, match=r"separation.*'dose'"):
        glmx.glm_fit(Xs, SEP["y"], family="binomial", column_names=["(Intercept)", "dose"])


def test_complete_separation_is_called_complete():
    """x = 0 separates every observation: this is complete separation (b = (0, 1) gives
    x'b > 0 for every y = 1 and < 0 for every y = 0), not quasi-complete."""
    with pytest.warns(glmx.SeparationWarning) as rec:
        glm("y ~ x", SEP, family="binomial")
    msgs = [str(w.message) for w in rec if issubclass(w.category, glmx.SeparationWarning)]
    assert msgs and msgs[0].startswith("complete separation"), msgs


def test_quasi_complete_separation_warns():
    df = pd.DataFrame(
        {
            "x": [-2.0, -1.5, -1.0, 0.0, 0.0, 1.0, 1.5, 2.0],
            "y": [0, 0, 0, 0, 1, 1, 1, 1],
        }
    )
    with pytest.warns(glmx.SeparationWarning, match=r"quasi-complete separation.*'x'"):
        glm("y ~ x", df, family="binomial")


def test_no_separation_no_warning():
    df = pd.DataFrame(
        {
            "x": [-2.0, -1.5, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0],
            "y": [0, 0, 1, 0, 1, 0, 1, 1],
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", glmx.GlmxWarning)
        fit = glm("y ~ x", df, family="binomial")
    assert fit.converged


# --- data frame flavours and missing values ---------------------------------------------


def _na_frame():
    rng = np.random.default_rng(7)
    n = 40
    df = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "z": rng.normal(size=n),
            "g": rng.choice(["lo", "mid", "hi"], size=n),
            "unused": rng.normal(size=n),
        }
    )
    df["y"] = rng.poisson(np.exp(0.3 + 0.5 * df["x"])).astype(float)
    df.loc[[1, 5], "x"] = np.nan
    df.loc[7, "y"] = np.nan
    df.loc[9, "g"] = None
    df.loc[[11, 12], "z"] = np.nan
    df.loc[[1, 20, 21], "unused"] = np.nan  # not in the model: must not drop rows 20, 21
    return df


def _all_flavours(df):
    pl = pytest.importorskip("polars")
    pa = pytest.importorskip("pyarrow")
    return {
        "pandas": df,
        "polars": pl.from_pandas(df),
        "polars-lazy": pl.from_pandas(df).lazy(),
        "pyarrow": pa.Table.from_pandas(df, preserve_index=False),
        "dict-lists": {k: df[k].tolist() for k in df.columns},
        "dict-arrays": {k: df[k].to_numpy() for k in df.columns},
    }


def test_data_flavours_give_identical_fits():
    df = _na_frame()
    ref = glm("y ~ x + z + g", df, family="poisson")
    assert ref.n_dropped == 6  # rows 1, 5, 7, 9, 11, 12
    assert ref.nobs == 34
    for name, data in _all_flavours(df).items():
        fit = glm("y ~ x + z + g", data, family="poisson")
        assert list(fit.coef.index) == list(ref.coef.index), name
        np.testing.assert_allclose(fit.coef, ref.coef, rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(fit.se, ref.se, rtol=1e-12, err_msg=name)
        assert fit.deviance == pytest.approx(ref.deviance, rel=1e-12), name
        assert fit.n_dropped == 6, name
        assert fit.nobs == 34, name


def test_categorical_columns_give_the_same_fit_as_strings():
    """An unordered categorical (polars Categorical, arrow dictionary) has no level order
    of its own; like R's factor() and like a string column, its levels are sorted, so the
    reference level and coefficients match the string-column fit."""
    pl = pytest.importorskip("polars")
    pa = pytest.importorskip("pyarrow")
    df = pd.DataFrame(
        {
            "x": [1.0, 2, 3, 4, 5, 6, 7, 8, 9],
            "y": [1.0, 3, 2, 5, 4, 6, 5, 8, 7],
            "g": ["b", "a", "c", "b", "a", "c", "a", "b", "c"],
        }
    )
    ref = glm("y ~ x + g", df)
    pl_cat = pl.from_pandas(df).with_columns(pl.col("g").cast(pl.Categorical))
    tbl = pa.Table.from_pandas(df, preserve_index=False)
    arrow_dict = tbl.set_column(2, "g", pa.compute.dictionary_encode(tbl["g"]))
    for name, data in {
        "pandas-category": df.astype({"g": "category"}),
        "polars-categorical": pl_cat,
        "arrow-dictionary": arrow_dict,
    }.items():
        fit = glm("y ~ x + g", data)
        assert list(fit.coef.index) == list(ref.coef.index), name
        np.testing.assert_allclose(fit.coef, ref.coef, rtol=1e-10, err_msg=name)


def test_na_rows_dropped_and_counted():
    df = _na_frame()
    fit = glm("y ~ x + z + g", df, family="poisson")
    complete = df.drop(columns="unused").dropna()
    ref = glm("y ~ x + z + g", complete.reset_index(drop=True), family="poisson")
    assert fit.n_dropped == len(df) - len(complete) == 6
    assert ref.n_dropped == 0
    assert fit.nobs == ref.nobs == len(complete)
    assert fit.df_resid == ref.df_resid
    np.testing.assert_allclose(fit.coef, ref.coef, rtol=1e-12)
    assert fit.deviance == pytest.approx(ref.deviance, rel=1e-12)
    assert len(fit.fitted) == len(complete)


def test_na_in_unused_column_does_not_drop_rows():
    df = _df(unused=[np.nan] * N)
    fit = glm("y ~ x", df)
    assert fit.n_dropped == 0
    assert fit.nobs == N


def test_na_in_weights_and_offset_columns_drops_rows():
    df = _df(
        w=[1.0, np.nan, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0],
        o=[0.0, 0.0, 0.0, np.nan, 0.0, 0.0, 0.0, 0.0],
    )
    fit = glm("y ~ x", df, weights="w", offset="o")
    assert fit.n_dropped == 2
    assert fit.nobs == N - 2


def test_na_dropped_with_freq_weights_counts_cases():
    df = _df(y=[1.0, np.nan, 2.0, 3.0, 1.0, 4.0, 3.0, 5.0])
    fit = glm("y ~ x", df, family="poisson", freq_weights=[2, 5, 1, 1, 1, 1, 1, 3])
    assert fit.n_dropped == 1
    assert fit.nobs == 2 + 1 + 1 + 1 + 1 + 1 + 3


def test_na_in_polars_nulls_counted():
    pl = pytest.importorskip("polars")
    data = pl.DataFrame(
        {
            "x": [1.0, None, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
            "y": [1, 2, None, 4, 2, 1, 3, 5],
            "g": ["a", "b", "a", None, "b", "a", "b", "a"],
        }
    )
    fit = glm("y ~ x + g", data, family="poisson")
    assert fit.n_dropped == 3
    assert fit.nobs == 5


def test_glm_fit_sparse_and_dense_agree():
    fit_d = glmx.glm_fit(X, Y, family="poisson")
    fit_s = glmx.glm_fit(sp.csr_matrix(X), Y, family="poisson")
    np.testing.assert_allclose(fit_s.coef, fit_d.coef, rtol=1e-10)
    assert fit_s.deviance == pytest.approx(fit_d.deviance, rel=1e-12)


def test_boundary_fit_keeps_estimable_coefficients_finite():
    # R: glm(am ~ wt, binomial(link = "log"), mtcars, start = c(-0.5, -0.5)) stops with a
    # fitted probability at 1 (wt = -0.709, not converged); an extreme working weight must
    # not make glmx call wt aliased (NaN)
    from glmx.datasets import load

    with pytest.warns(glmx.BoundaryWarning):
        fit = glmx.glm("am ~ wt", load("mtcars"), family="binomial", link="log", start=[-0.5, -0.5])
    assert not fit.aliased.any()
    assert np.isfinite(fit.coef).all() and np.isfinite(fit.se).all()
    assert -0.75 < fit.coef["wt"] < -0.65
