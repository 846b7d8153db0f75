"""Saved models: ``fit.save(path)`` / ``glmx.load(path)`` (glmx.io.modelfile).

Every R reference case (fixtures/glm_cases.json, glm_extra_cases.json: every family and
link, offsets, weights, cbind and factor responses, aliased columns; and the bs()/cr()
cases of glm_spline_cases.json) is saved and loaded: the loaded model predicts bit for
bit what the fitted one does, agrees with R's ``predict(fit, newdata, se.fit = TRUE)``
(recorded by make_extra_cases.R and its siblings) and prints the same summary.  Then the
format itself: tampered, malformed, newer and hostile files are refused, and a formula
from a file is never evaluated unless the safe-formula check accepts it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import glmx
from glmx.io.modelfile import FORMAT_VERSION, checksum
from glmx.results.loaded import LoadedGLM
from refdata import FIXTURES, R_FAMILY, R_LINK, dataset, fit_case, glm_cases

CORE = glm_cases()
EXTRA = glm_cases("glm_extra_cases.json")
CASES = {**{("core", k): v for k, v in CORE.items()}, **{("extra", k): v for k, v in EXTRA.items()}}
SPLINES = json.loads((FIXTURES / "glm_spline_cases.json").read_text())


def fit_reference(kind: str, ref: dict):
    """The glmx fit of an R reference case, as tests/test_r_reference.py and
    test_r_extra.py fit them (R's glm.control(epsilon = 1e-12))."""
    c = ref["case"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", glmx.GlmxWarning)
        if kind == "core":
            return fit_case(ref)
        link = R_LINK.get(c["link"], c["link"])
        fam = {
            "tweedie": lambda: glmx.families.tweedie(c.get("tweedie_power", 1.5), link),
            "quasi": lambda: glmx.families.quasi(link, c.get("quasi_variance", "constant")),
            "negative.binomial": lambda: glmx.families.negative_binomial(c.get("theta"), link),
        }.get(
            c["family"],
            lambda: glmx.families.get_family(R_FAMILY.get(c["family"], c["family"]), link),
        )()
        return glmx.glm(
            c["formula"], dataset(c["data"]), family=fam, weights=c.get("weights"),
            offset=c.get("offset"), start=c.get("start"), tol=1e-12,
        )  # fmt: skip


def round_trip(fit, tmp_path: Path, name: str = "model.json") -> LoadedGLM:
    path = tmp_path / name
    fit.save(path)
    return glmx.load(path)


def assert_same_model(fit, loaded, newdata) -> dict[str, pd.DataFrame]:
    """Estimates, statistics, predictions (with SEs) and summary text identical; returns
    the loaded model's predictions by type."""
    pd.testing.assert_series_equal(loaded.coef, fit.coef, check_exact=True)
    pd.testing.assert_frame_equal(loaded.vcov, fit.vcov, check_exact=True)
    pd.testing.assert_frame_equal(loaded.coef_table, fit.coef_table, check_exact=True)
    for stat in ("deviance", "null_deviance", "dispersion", "aic", "bic", "loglik", "df_resid"):
        np.testing.assert_array_equal(getattr(loaded, stat), getattr(fit, stat), err_msg=stat)
    assert (loaded.nobs, loaded.n_iter, loaded.converged) == (fit.nobs, fit.n_iter, fit.converged)
    got = {}
    for type_ in ("link", "response"):
        got[type_] = loaded.predict(newdata, type=type_, se=True)
        expected = fit.predict(newdata, type=type_, se=True)
        np.testing.assert_array_equal(got[type_].to_numpy(), expected.to_numpy())  # bit for bit
    assert str(loaded.summary()) == str(fit.summary())
    return got


# --- every R reference case ---------------------------------------------------------------
@pytest.mark.parametrize("key", sorted(CASES), ids=lambda k: k[1])
def test_reference_case_round_trip(key, tmp_path):
    ref = CASES[key]
    fit = fit_reference(key[0], ref)
    loaded = round_trip(fit, tmp_path)
    data = dataset(ref["case"]["data"])
    rows = ref.get("predict_rows", list(range(min(len(data), 8))))
    got = assert_same_model(fit, loaded, data.iloc[rows])
    if "predict_rows" in ref and ref["case"].get("expect") != "separation":
        # R: predict(fit, data[rows, ], type = "link" / "response", se.fit = TRUE); under
        # separation the estimates diverge and R's are where its iteration happened to stop
        for type_ in ("link", "response"):
            fit_, se = got[type_]["fit"], got[type_]["se"]
            np.testing.assert_allclose(fit_, ref[f"predict_{type_}"], rtol=1e-6, atol=1e-10)
            np.testing.assert_allclose(se, ref[f"predict_{type_}_se"], rtol=1e-5, atol=1e-10)


@pytest.mark.parametrize("name", ["gaussian_bs", "poisson_bs", "binomial_bs5", "poisson_cr_ns"])
def test_spline_round_trip_matches_r(name, tmp_path):
    # R: glm(y ~ bs(x, df = 4), family, d); predict(fit, data.frame(x = new_x), "response")
    # (cr(x, df = 5) spans ns(x, knots = 3 interior quantiles), see tests/test_splines.py)
    case = SPLINES["cases"][name]
    fit = glmx.glm(case["formula"], pd.DataFrame(SPLINES["data"]), family=case["family"], tol=1e-12)
    loaded = round_trip(fit, tmp_path)
    new = pd.DataFrame({"x": SPLINES["new_x"]})
    assert_same_model(fit, loaded, new)
    np.testing.assert_allclose(loaded.predict(new), case["predict_new"], rtol=1e-6)
    # beyond the boundary knots: bs() refuses (both alike), cr() extrapolates (both alike)
    out = pd.DataFrame({"x": SPLINES["out_x"]})
    outcomes = []
    for model in (fit, loaded):
        try:
            outcomes.append(model.predict(out).tolist())
        except glmx.GlmxError as exc:
            outcomes.append([type(exc).__name__, str(exc)])
    assert outcomes[0] == outcomes[1]
    assert isinstance(outcomes[0][0], str) == ("bs" in name)


# --- formula features, options, design-matrix fits ----------------------------------------
@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 120
    df = pd.DataFrame(
        {
            "x": rng.uniform(1, 9, n),
            "my col": rng.uniform(0.5, 2.0, n),
            "t": rng.integers(1, 20, n).astype(float),
            "g": pd.Categorical(rng.choice(["lo", "mid", "hi"], n), ["lo", "mid", "hi"]),
            "h": rng.choice(["a", "b"], n),
        }
    )
    mu = np.exp(0.3 + 0.1 * df["x"] + 0.4 * (df["g"] == "hi") + np.log(df["t"]) - 1)
    df["y"] = rng.negative_binomial(2, 2 / (2 + mu))  # overdispersed counts, theta = 2
    df["w"] = rng.uniform(0.5, 2, n)
    df["f"] = rng.integers(1, 3, n).astype(float)
    return df


FEATURES = (
    "y ~ log(x) + I(x**2) + C(g):`my col` + g*h + bs(x, df=4) + cr(`my col`, df=3)"
    " + poly(x, degree=2) + center(x) + scale(`my col`) + C(h, contr.sum) + offset(log(t))"
)


def test_formula_features_predict_new_rows_bit_for_bit(frame, tmp_path):
    fit = glmx.glm(FEATURES, frame, family="poisson")
    loaded = round_trip(fit, tmp_path)
    rng = np.random.default_rng(8)
    new = frame.sample(30, random_state=3).reset_index(drop=True)
    new["x"] = rng.uniform(1.5, 8.5, 30)  # new values inside the spline range
    assert_same_model(fit, loaded, new)
    assert loaded.formula == FEATURES
    # a level the model never saw: the same refusal as the original's
    bad = new.assign(h=["zz"] + list(new["h"][1:]))
    with pytest.raises(glmx.DataError, match="factor levels"):
        loaded.predict(bad)
    with pytest.raises(glmx.DataError, match="'my col'"):
        loaded.predict(new.drop(columns="my col"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"family": "gaussian", "weights": "w", "freq_weights": "f"},
        {"family": "poisson", "cov_type": "HC1"},
        {"family": "binomial", "method": "firth"},
        {"family": "poisson", "link": glmx.links.Power(0.5)},
        {"family": glmx.families.negative_binomial()},
        {"family": glmx.families.tweedie(power=1.3)},
        {"family": glmx.families.quasi(link="log", variance="mu")},
    ],
    ids=["weights", "HC1", "firth", "power-link", "negbin", "tweedie", "quasi"],
)
def test_fit_options_round_trip(kwargs, frame, tmp_path):
    df = frame.copy()
    df.loc[[3, 17], "x"] = np.nan  # two rows dropped: the summary says so
    formula = "I(y > 5) ~ x + g" if kwargs.get("method") == "firth" else "I(y + 1) ~ x + g + log(t)"
    fit = glmx.glm(formula, df, **kwargs)
    loaded = round_trip(fit, tmp_path)
    assert loaded.n_dropped == 2
    assert_same_model(fit, loaded, df.iloc[20:40])
    if isinstance(kwargs["family"], glmx.families.NegativeBinomial):
        assert (loaded.theta, loaded.theta_se) == (fit.theta, fit.theta_se)
        assert loaded.family.name == fit.family.name != "Negative Binomial"


def test_many_level_factor_block_round_trip(tmp_path):
    # a factor with more than 100 levels is kept as codes (glmx's CategoricalSpec)
    rng = np.random.default_rng(5)
    n = 1500
    df = pd.DataFrame({"g": rng.integers(0, 120, n).astype(str), "x": rng.normal(size=n)})
    df["y"] = rng.poisson(np.exp(0.2 * df["x"]))
    fit = glmx.glm("y ~ x + g", df, family="poisson")
    assert type(fit._fit.terms.model_spec).__name__ == "CategoricalSpec"
    loaded = round_trip(fit, tmp_path)
    assert_same_model(fit, loaded, df.sample(40, random_state=1))
    assert (
        len(
            json.loads((tmp_path / "model.json").read_text())["design"]["categorical_block"][
                "levels"
            ]
        )
        == 120
    )


def test_small_residual_df_prints_every_residual(tmp_path):
    # df_resid <= 5: the summary lists each deviance residual, as R's summary.glm
    d = glmx.datasets.load("dobson")
    fit = glmx.glm("counts ~ outcome + treatment", d, family="poisson")
    assert fit.df_resid == 4
    loaded = round_trip(fit, tmp_path)
    assert_same_model(fit, loaded, d)
    assert len(loaded._fit.residual_values) == 9


def test_prediction_intervals_match(frame, tmp_path):
    fit = glmx.glm("y ~ x + g", frame, family="poisson")
    loaded = round_trip(fit, tmp_path)
    new = frame.iloc[:10]
    for kw in ({"interval": "confidence"}, {"interval": "prediction", "seed": 4, "n_sim": 300}):
        pd.testing.assert_frame_equal(loaded.predict(new, **kw), fit.predict(new, **kw))


def test_glm_fit_model_predicts_from_a_matrix(tmp_path):
    rng = np.random.default_rng(1)
    X = np.column_stack([np.ones(60), rng.normal(size=60), rng.normal(size=60)])
    y = rng.poisson(np.exp(X @ [0.5, 0.3, -0.2]))
    fit = glmx.glm_fit(X, y, family="poisson", column_names=["Intercept", "a", "b"])
    loaded = round_trip(fit, tmp_path)
    assert loaded.formula is None
    assert_same_model(fit, loaded, X[:7])
    off = np.linspace(0, 1, 7)
    np.testing.assert_array_equal(loaded.predict(X[:7], offset=off), fit.predict(X[:7], offset=off))
    with pytest.raises(glmx.DataError, match="3 columns"):
        loaded.predict(X[:, :2])


def test_loaded_model_without_data(frame, tmp_path):
    fit = glmx.glm("y ~ x + g", frame, family="poisson")
    loaded = round_trip(fit, tmp_path)
    pd.testing.assert_frame_equal(loaded.confint(method="wald"), fit.confint(method="wald"))
    with pytest.raises(glmx.GlmxError, match="method='wald'"):
        loaded.confint()
    with pytest.raises(AttributeError, match="refit with glmx.glm"):
        loaded.residuals()
    with pytest.raises(glmx.DataError, match="newdata"):
        loaded.predict(None)
    with pytest.raises(AttributeError, match="immutable"):
        loaded.coef = None
    assert repr(loaded).startswith("<LoadedGLM poisson(log) n=120 rank=4")


# --- the file -----------------------------------------------------------------------------
@pytest.fixture()
def saved(frame, tmp_path) -> Path:
    path = tmp_path / "m.json"
    glmx.glm("y ~ x + g + offset(log(t))", frame, family="poisson").save(path)
    return path


def test_file_is_documented_plain_json(saved, tmp_path):
    def no_nan(name):
        raise AssertionError(f"{name} in the file")

    doc = json.loads(saved.read_text(), parse_constant=no_nan)
    assert doc["format"] == "glmx-model" and doc["format_version"] == FORMAT_VERSION == 1
    assert doc["glmx_version"] == glmx.__version__
    assert doc["checksum"] == checksum(doc) and doc["checksum"].startswith("sha256:")
    assert doc["family"] == {"name": "poisson", "link": {"name": "log"}}
    assert doc["columns"] == ["Intercept", "x", "g[T.mid]", "g[T.hi]"]
    assert doc["design"]["offset_terms"] == ["log(t)"]
    assert doc["design"]["encoder_state"]["g"]["state"]["categories"] == ["lo", "mid", "hi"]
    assert len(doc["summary"]["residuals"]) == 5
    # saving the loaded model writes the same file again
    glmx.load(saved).save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == saved.read_text()


def test_aliased_coefficients_are_null(tmp_path):
    ref = EXTRA["poisson_aliased_factor"]
    fit = fit_reference("extra", ref)
    fit.save(tmp_path / "a.json")
    doc = json.loads((tmp_path / "a.json").read_text())
    assert [c is None for c in doc["coef"]] == doc["aliased"] == list(fit.aliased)
    assert sum(doc["aliased"]) == 1


def rewrite(path: Path, change, *, fix_checksum: bool = True) -> Path:
    doc = json.loads(path.read_text())
    change(doc)
    if fix_checksum:
        doc["checksum"] = checksum(doc)
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("change", "fix", "message"),
    [
        (lambda d: d.update(format="other-model"), True, "not a glmx model file"),
        (lambda d: d.update(format_version=2), True, "format_version 2, newer"),
        (lambda d: d.update(format_version="1"), True, "positive integer"),
        (lambda d: d["coef"].__setitem__(1, 5.0), False, "checksum"),
        (lambda d: d.pop("vcov"), True, "'vcov' is missing"),
        (lambda d: d.update(coef=["a"] * 4), True, "'coef' must be a list of numbers"),
        (lambda d: d.update(aliased=[False] * 3), True, "'aliased' must be a list of 4"),
        (lambda d: d["family"].update(name="bogus"), True, "'name' must be one of"),
        (lambda d: d["family"]["link"].update(name="power", power=None), True, "power link"),
        (lambda d: d["fit"].update(nobs=-1), True, "'nobs' must be a non-negative"),
        (lambda d: d["design"]["structure"][1].update(columns=["z"]), True, "columns"),
        (lambda d: d["design"]["structure"][0].update(term=99), True, "'term' must be an index"),
        (
            lambda d: d["design"]["encoder_state"]["g"]["state"].update(
                contrasts={"$contrasts": "os.system", "fields": {}}
            ),
            True,
            "malformed tagged value",
        ),
    ],
)
def test_malformed_files_are_refused(saved, change, fix, message):
    rewrite(saved, change, fix_checksum=fix)
    with pytest.raises(glmx.DataError, match=message):
        glmx.load(saved)


def test_unreadable_files_are_refused(saved, tmp_path):
    text = saved.read_text()
    saved.write_text(text[: len(text) // 2])
    with pytest.raises(glmx.DataError, match="not valid JSON"):
        glmx.load(saved)
    saved.write_text(text.replace('"deviance": ', '"deviance": NaN, "x": ', 1))
    with pytest.raises(glmx.DataError, match="NaN is not valid JSON"):
        glmx.load(saved)
    with pytest.raises(glmx.DataError, match="cannot read model file"):
        glmx.load(tmp_path / "missing.json")


# --- formulas from a file go through the safe evaluator ----------------------------------
def hostile_changes(canary: Path) -> list:
    """Edits that put code in every place a model file holds an expression."""
    write = f"open({str(canary)!r}, 'w').write('x')"
    boom = f"__import__('os').system('touch {canary}')"

    def factor(expr, method="python"):
        return lambda d: d["design"]["terms"][1][0].update(expr=expr, eval_method=method)

    def structure_and_factor(expr):
        def change(d):
            factor(expr)(d)
            d["design"]["structure"][1]["scoped_terms"][0]["factors"][0][0] = expr

        return change

    return [
        lambda d: d.update(formula=f"y ~ x + I({write})"),
        lambda d: d.update(formula=f"y ~ {boom}"),
        structure_and_factor(f"I({write})"),
        structure_and_factor(boom),
        structure_and_factor("x.__class__.__bases__[0].__subclasses__()"),
        structure_and_factor("(lambda: 1)()"),
        structure_and_factor(f"log({write})"),
        factor("__builtins__", "lookup"),
        factor(f"{write}", "literal"),
        lambda d: d["design"].update(offset_terms=[write]),
        lambda d: d["design"].update(offset_terms=["np.log(t)"]),
        lambda d: d["design"].update(offset_terms=["t) + open('f') + (t"]),
    ]


@pytest.mark.parametrize("i", range(12))
def test_hostile_file_is_refused_before_evaluation(saved, tmp_path, i):
    canary = tmp_path / "canary.txt"
    rewrite(saved, hostile_changes(canary)[i])
    with pytest.raises(glmx.FormulaError, match="refused|not a column name|not a number"):
        glmx.load(saved)
    assert not canary.exists()


def test_saving_refuses_formulas_a_file_cannot_hold(frame, tmp_path):
    fit = glmx.glm("y ~ np.log(x) + g", frame, family="poisson")
    with pytest.raises(glmx.FormulaError, match="cannot save this model.*np.log"):
        fit.save(tmp_path / "np.json")
    assert not (tmp_path / "np.json").exists()

    class MyPoisson(glmx.families.Poisson):
        name = "my-poisson"

    fit = glmx.glm("y ~ x", frame, family=MyPoisson())
    with pytest.raises(glmx.FamilyError, match="custom family MyPoisson"):
        fit.save(tmp_path / "custom.json")
