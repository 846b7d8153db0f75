"""glmx.sklearn: scikit-learn's estimator checks, agreement with R through the estimators,
frequency-weight semantics, D^2 scores as sklearn.metrics, and model-selection tools.

R reference numbers: R 4.2.2, ``ctl <- glm.control(epsilon = 1e-12)``; each call is in the
comment above its numbers.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sklearn")

import scipy.sparse as sp  # noqa: E402
from scipy import stats  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.metrics import d2_log_loss_score, d2_tweedie_score, make_scorer  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import glmx  # noqa: E402
from glmx.datasets import load  # noqa: E402
from glmx.sklearn import GLMClassifier, GLMRegressor  # noqa: E402

# --- scikit-learn's estimator checks --------------------------------------------------

# Exclusions, each with its reason.  Not listed here because they are not run at all:
# - canonical-link inverse_gaussian (1/mu^2): the checks' data drive 1/mu^2 negative, and
#   R's glm stops as glmx does ("no valid set of coefficients"); the log link is checked.
# - binomial GLMRegressor: a proportion response lies in [0, 1], which no tag can state.
_SEPARATED = (
    "the check fits 30 features to 15 rows: the classes are completely separated, the "
    "binomial MLE is infinite, and where the diverging IRLS iterates stop depends on "
    "floating-point summation order; on data with a finite MLE, weights equal repeated "
    "rows (test_sample_weight_is_frequency_weight_classifier)"
)
_EXPECTED_FAILURES = {
    "GLMClassifier": {
        "check_sample_weight_equivalence_on_dense_data": _SEPARATED,
        "check_sample_weight_equivalence_on_sparse_data": _SEPARATED,
    }
}


@pytest.mark.filterwarnings("ignore::glmx.GlmxWarning")  # separation on tiny random data
@parametrize_with_checks(
    [
        GLMRegressor(),
        GLMRegressor(family="poisson"),
        # the checks' targets show no overdispersion: theta diverges (a warning) and the
        # fit is the Poisson limit
        GLMRegressor(family="negative_binomial"),
        GLMRegressor(family="gamma"),
        GLMRegressor(family="inverse_gaussian", link="log"),
        GLMRegressor(family=glmx.families.tweedie(power=1.5)),
        GLMRegressor(fit_intercept=False),
        GLMClassifier(),
        GLMClassifier(link="cloglog"),
    ],
    expected_failed_checks=lambda est: _EXPECTED_FAILURES.get(type(est).__name__, {}),
)
def test_sklearn_estimator_checks(estimator, check):  # noqa: ANN001
    check(estimator)


def test_tags_follow_the_family() -> None:
    # poisson and gamma refuse negative y: the checks then give them positive targets
    assert GLMRegressor(family="poisson").__sklearn_tags__().target_tags.positive_only
    assert GLMRegressor(family="gamma").__sklearn_tags__().target_tags.positive_only
    assert not GLMRegressor().__sklearn_tags__().target_tags.positive_only
    assert GLMRegressor().__sklearn_tags__().input_tags.sparse
    assert not GLMClassifier().__sklearn_tags__().classifier_tags.multi_class


# --- agreement with R through the estimators -----------------------------------------


def _mtcars() -> pd.DataFrame:
    return load("mtcars")


@pytest.mark.filterwarnings("ignore::glmx.BoundaryWarning")  # R: "fitted probabilities ... 0 or 1"
def test_classifier_matches_r_logit_and_probit() -> None:
    mt = _mtcars()
    X, y = mt[["hp", "wt"]], mt["am"]
    # coef(glm(am ~ hp + wt, family = binomial, data = mtcars, control = ctl))
    logit = GLMClassifier().fit(X, y)
    np.testing.assert_allclose(logit.intercept_, [18.8662987172041312], rtol=1e-7)
    np.testing.assert_allclose(logit.coef_, [[0.0362555960822166, -8.0834751824446371]], rtol=1e-7)
    # deviance(f), f$null.deviance: 10.0591104722670 43.2297332768578
    assert logit.result_.deviance == pytest.approx(10.0591104722670, rel=1e-9)
    # score on the training rows is 1 - deviance / null deviance (an intercept model)
    assert logit.score(X, y) == pytest.approx(1 - 10.0591104722670 / 43.2297332768578, rel=1e-9)
    # binomial(link = "probit"): 10.4055496266822196 0.0212590589437896 -4.5422074337743288
    probit = GLMClassifier(link="probit").fit(X, y)
    np.testing.assert_allclose(
        np.r_[probit.intercept_, probit.coef_.ravel()],
        [10.4055496266822196, 0.0212590589437896, -4.5422074337743288],
        rtol=1e-6,
    )
    assert list(logit.feature_names_in_) == ["hp", "wt"]
    assert list(logit.result_.coef.index) == ["Intercept", "hp", "wt"]
    assert logit.n_features_in_ == 2 and logit.n_iter_ == logit.result_.n_iter >= 5


def test_regressor_negative_binomial_matches_r_glm_nb() -> None:
    quine = load("quine")
    X = pd.get_dummies(quine[["Eth", "Sex", "Age", "Lrn"]], drop_first=True, dtype=float)
    reg = GLMRegressor(family="negative_binomial").fit(X, quine["Days"])
    # glm.nb(Days ~ Eth + Sex + Age + Lrn, data = quine, control = ctl)
    ref = {
        "Eth_N": -0.569371697357511, "Sex_M": 0.082320284147829, "Age_F1": -0.448428149878191,
        "Age_F2": 0.088080152114466, "Age_F3": 0.356900971431694, "Lrn_SL": 0.292109157035048,
    }  # fmt: skip
    assert reg.intercept_ == pytest.approx(2.894579990247101, rel=1e-6)
    np.testing.assert_allclose(pd.Series(reg.coef_, index=X.columns)[list(ref)], list(ref.values()), rtol=1e-5)  # fmt: skip
    # f$theta = 1.274892645053540: predict and score use the fitted theta
    assert reg.family_.theta == pytest.approx(1.274892645053540, rel=1e-5)
    assert reg.score(X, quine["Days"]) == pytest.approx(
        1 - reg.result_.deviance / reg.result_.null_deviance, rel=1e-10
    )


def test_regressor_gamma_score_is_r_deviance_explained() -> None:
    clot = load("clotting")
    X = np.log(clot[["u"]].to_numpy(dtype=float))
    reg = GLMRegressor(family="gamma").fit(X, clot["lot1"])
    # glm(lot1 ~ log(u), family = Gamma, control = ctl): -0.0165543817262003 0.0153431149103247
    assert reg.intercept_ == pytest.approx(-0.0165543817262003, rel=1e-8)
    assert reg.coef_[0] == pytest.approx(0.0153431149103247, rel=1e-8)
    # 1 - deviance(f) / f$null.deviance = 0.9952375341329148
    assert reg.score(X, clot["lot1"]) == pytest.approx(0.9952375341329148, rel=1e-9)


# --- sample_weight: frequency weights ---------------------------------------------------


def test_sample_weight_is_frequency_weight_matches_r_on_repeated_rows() -> None:
    mt = _mtcars()
    w = np.tile([1, 2, 0, 3], 8)
    X, y = mt[["wt", "hp"]], mt["mpg"]
    reg = GLMRegressor().fit(X, y, sample_weight=w)
    # d <- mtcars[rep(1:32, w), ]; f <- glm(mpg ~ wt + hp, data = d, control = ctl)
    np.testing.assert_allclose(
        np.r_[reg.intercept_, reg.coef_],
        [39.4503967739849841, -4.0231910912140449, -0.0417099114407112],
        rtol=1e-9,
    )
    # sqrt(diag(vcov(f))), AIC(f), df.residual(f), summary(f)$dispersion: inference is that
    # of the repeated rows, which R's prior weights would not give (df would count rows)
    np.testing.assert_allclose(
        reg.result_.se, [1.24124762801331645, 0.52509373448456476, 0.00885949963638007], rtol=1e-8
    )
    assert reg.result_.aic == pytest.approx(229.95142825572390, rel=1e-10)
    assert reg.result_.df_resid == 45
    assert reg.result_.dispersion == pytest.approx(6.36395184324435, rel=1e-9)
    prior = glmx.glm_fit(np.column_stack([np.ones(32), X]), y, weights=w)
    np.testing.assert_allclose(prior.coef, reg.result_.coef, rtol=1e-9)  # same estimates
    assert prior.df_resid == 21  # 24 rows with w > 0: prior weights differ in inference


def test_sample_weight_is_frequency_weight_classifier() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 3))
    y = rng.random(80) < 1 / (1 + np.exp(-(X @ [1.0, -0.5, 0.25])))
    w = rng.integers(0, 4, size=80)
    weighted = GLMClassifier(link="probit").fit(X, y, sample_weight=w)
    repeated = GLMClassifier(link="probit").fit(X.repeat(w, axis=0), y.repeat(w))
    np.testing.assert_allclose(weighted.coef_, repeated.coef_, rtol=1e-10)
    np.testing.assert_allclose(weighted.result_.se, repeated.result_.se, rtol=1e-10)
    assert weighted.result_.aic == pytest.approx(repeated.result_.aic, rel=1e-12)
    assert weighted.result_.nobs == repeated.result_.nobs == w.sum()
    # zero weights: the rows are left out, so result_ describes the others
    assert weighted.result_.fitted.shape[0] == int((w > 0).sum())


def test_sample_weight_errors_name_the_problem() -> None:
    X, y = np.arange(8.0).reshape(4, 2), np.array([0.0, 1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="zero"):
        GLMRegressor().fit(X, y, sample_weight=np.zeros(4))
    with pytest.raises(ValueError, match="Negative"):
        GLMRegressor().fit(X, y, sample_weight=[1, -1, 1, 1])
    with pytest.raises(ValueError, match="1 class"):  # one class keeps a positive weight
        GLMClassifier().fit(X, y, sample_weight=[1, 0, 1, 0])


# --- D^2 equals sklearn.metrics ---------------------------------------------------------


@pytest.mark.filterwarnings("ignore::glmx.DataWarning")  # poisson on non-integer y
@pytest.mark.parametrize(
    ("family", "power"),
    [
        ("gaussian", 0),
        ("poisson", 1),
        ("gamma", 2),
        ("inverse_gaussian", 3),
        (glmx.families.tweedie(power=1.5), 1.5),
    ],
)
def test_score_is_d2_tweedie_score(family: object, power: float) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 2))
    y = rng.gamma(3.0, np.exp(0.3 + X @ [0.2, -0.3]) / 3.0)
    w = rng.uniform(0.5, 2.0, size=120)
    reg = GLMRegressor(family=family, link="log").fit(X[:80], y[:80])  # type: ignore[arg-type]
    # held-out rows, weighted: D^2 with the null mean of the scored rows, as sklearn
    expected = d2_tweedie_score(y[80:], reg.predict(X[80:]), power=power, sample_weight=w[80:])
    assert reg.score(X[80:], y[80:], sample_weight=w[80:]) == pytest.approx(expected, rel=1e-10)
    assert 0.0 < expected < 1.0 or power == 0  # the fit explains some deviance


def test_classifier_score_is_d2_log_loss_score() -> None:
    mt = _mtcars()
    clf = GLMClassifier().fit(mt[["hp"]].iloc[:20], mt["am"].iloc[:20])
    X_test, y_test = mt[["hp"]].iloc[20:], mt["am"].iloc[20:]
    w = np.linspace(0.5, 2.0, 12)
    expected = d2_log_loss_score(y_test, clf.predict_proba(X_test), sample_weight=w)
    assert clf.score(X_test, y_test, sample_weight=w) == pytest.approx(expected, rel=1e-10)


# --- classifier interface -------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::glmx.BoundaryWarning")  # as R's glm on these data
def test_classifier_labels_probabilities_and_decision() -> None:
    mt = _mtcars()
    X = mt[["hp", "wt"]].to_numpy()
    labels = np.where(mt["am"] == 1, "manual", "automatic")
    clf = GLMClassifier(link="cloglog").fit(X, labels)
    assert list(clf.classes_) == ["automatic", "manual"]
    ref = glmx.glm("am ~ hp + wt", mt, family="binomial", link="cloglog")
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba[:, 1], ref.fitted, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # cloglog: g(1/2) = log(log 2) != 0, and decision_function is eta - g(1/2)
    eta = ref.linear_predictor
    np.testing.assert_allclose(clf.decision_function(X), eta - np.log(np.log(2.0)), rtol=1e-8)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[(proba[:, 1] > 0.5).astype(int)])
    with pytest.raises(ValueError, match="Only binary classification"):
        GLMClassifier().fit(X[:9], np.repeat(["a", "b", "c"], 3))


def test_aliased_columns_predict_with_zero_coefficients() -> None:
    mt = _mtcars()
    X = np.column_stack([mt["wt"], 2 * mt["wt"], mt["hp"]])
    reg = GLMRegressor(family="gamma", link="log").fit(X, mt["mpg"])
    assert np.isnan(reg.result_.coef.iloc[2])  # R's NA for the duplicate column
    assert reg.coef_[1] == 0.0
    ref = GLMRegressor(family="gamma", link="log").fit(X[:, [0, 2]], mt["mpg"])
    np.testing.assert_allclose(reg.predict(X), ref.predict(X[:, [0, 2]]), rtol=1e-10)


def test_sparse_and_dense_fits_agree() -> None:
    rng = np.random.default_rng(2)
    X = rng.poisson(0.4, size=(200, 5)).astype(float)
    y = rng.poisson(np.exp(0.2 + X @ [0.3, -0.2, 0.1, 0.0, 0.25]))
    dense = GLMRegressor(family="poisson").fit(X, y)
    sparse = GLMRegressor(family="poisson").fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-10)
    np.testing.assert_allclose(sparse.predict(sp.csc_matrix(X)), dense.predict(X), rtol=1e-10)


def test_family_errors_and_glmx_warnings_pass_through() -> None:
    X = np.arange(10.0).reshape(-1, 1)
    with pytest.raises(glmx.FamilyError, match="unknown family"):
        GLMRegressor(family="poison").fit(X, np.ones(10))
    with pytest.raises(glmx.DataError, match="poisson"):
        GLMRegressor(family="poisson").fit(X, np.r_[-1.0, np.ones(9)])
    with pytest.warns(glmx.SeparationWarning, match="'x0'"):
        GLMClassifier().fit(X, (X[:, 0] > 4.5).astype(int))


def test_params_clone_and_pickle_with_family_objects() -> None:
    fam = glmx.families.tweedie(power=1.3)
    reg = GLMRegressor(family=fam, tol=1e-12)
    copy = clone(reg)
    assert copy.get_params()["family"] is not fam and copy.get_params()["tol"] == 1e-12
    clot = load("clotting")
    X, y = clot[["u"]], clot["lot1"]
    copy.set_params(family="gamma", link="log").fit(X, y)
    again = pickle.loads(pickle.dumps(copy))
    np.testing.assert_array_equal(again.predict(X), copy.predict(X))
    assert str(again.result_.summary()) == str(copy.result_.summary())


# --- Pipeline, cross_val_score, GridSearchCV -------------------------------------------


def _gamma_data(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 3))
    mu = np.exp(0.5 + X @ [0.6, -0.4, 0.2])
    return X, rng.gamma(1.5, mu / 1.5)


def test_pipeline_scaling_leaves_the_glm_fit_unchanged() -> None:
    X, y = _gamma_data()
    X = X * [1.0, 100.0, 0.01] + 5.0
    pipe = make_pipeline(StandardScaler(), GLMRegressor(family="gamma", link="log")).fit(X, y)
    raw = GLMRegressor(family="gamma", link="log").fit(X, y)
    # an affine change of the columns is absorbed by the intercept and the slopes
    np.testing.assert_allclose(pipe.predict(X), raw.predict(X), rtol=1e-9)
    np.testing.assert_allclose(pipe[-1].coef_, raw.coef_ * X.std(axis=0), rtol=1e-8)


def _probit_data(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(n, 3))
    p = stats.norm.cdf(0.3 + X @ [0.8, -0.6, 0.3])
    return X, np.where(rng.random(n) < p, "yes", "no")


def test_cross_val_score_equals_a_manual_loop() -> None:
    X, y = _probit_data()
    cv = KFold(4, shuffle=True, random_state=0)
    scores = cross_val_score(GLMClassifier(link="probit"), X, y, cv=cv)
    manual = [
        GLMClassifier(link="probit").fit(X[tr], y[tr]).score(X[te], y[te]) for tr, te in cv.split(X)
    ]
    np.testing.assert_allclose(scores, manual, rtol=1e-12)
    assert 0.1 < min(scores)  # out-of-sample deviance explained
    accuracy = cross_val_score(GLMClassifier(), X, y, cv=cv, scoring="accuracy")
    assert 0.7 < accuracy.mean() < 1.0


@pytest.mark.filterwarnings("ignore::glmx.DataWarning")  # poisson on non-integer y
def test_grid_search_over_family() -> None:
    X, y = _gamma_data()
    cv = KFold(3, shuffle=True, random_state=1)
    # D^2 of different families is measured in different deviances: compare the
    # candidates on one scale, here the gamma deviance (power 2)
    d2_gamma = make_scorer(d2_tweedie_score, power=2)
    grid = {"family": ["poisson", "gamma", "inverse_gaussian"], "link": ["log"]}
    search = GridSearchCV(GLMRegressor(), grid, scoring=d2_gamma, cv=cv, error_score="raise")
    search.fit(X, y)
    manual = {
        p["family"]: cross_val_score(GLMRegressor(**p), X, y, cv=cv, scoring=d2_gamma).mean()
        for p in search.cv_results_["params"]
    }
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], list(manual.values()), rtol=1e-12)  # fmt: skip
    assert search.best_params_["family"] == max(manual, key=manual.__getitem__) == "gamma"
    direct = GLMRegressor(family="gamma", link="log").fit(X, y)
    np.testing.assert_allclose(search.best_estimator_.coef_, direct.coef_, rtol=1e-12)


def test_grid_search_over_link() -> None:
    # every binomial link is valid for any data, and the default score (D^2 on the
    # binomial deviance) is comparable across links of one family
    X, y = _probit_data()
    cv = KFold(4, shuffle=True, random_state=0)
    grid = {"link": ["logit", "probit", "cloglog", "cauchit"]}
    search = GridSearchCV(GLMClassifier(), grid, cv=cv, error_score="raise").fit(X, y)
    manual = [cross_val_score(GLMClassifier(link=k), X, y, cv=cv).mean() for k in grid["link"]]
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], manual, rtol=1e-12)
    assert search.best_params_["link"] == grid["link"][int(np.argmax(manual))]
    assert np.ptp(manual) > 1e-3  # the links do give different fits


def test_grid_search_over_family_objects() -> None:
    X, y = _gamma_data(150)
    powers = [glmx.families.tweedie(power=p) for p in (1.2, 1.8)]
    search = GridSearchCV(GLMRegressor(), {"family": powers}, cv=3, scoring=make_scorer(d2_tweedie_score, power=2))  # fmt: skip
    search.fit(X, y)
    assert search.best_estimator_.family_.power in (1.2, 1.8)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
