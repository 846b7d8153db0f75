"""predict(): offsets on new data, confidence intervals, new factor levels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import glmx
from glmx.datasets import load


@pytest.fixture(scope="module")
def insurance():
    return load("insurance")


def test_offset_column_formula_offset_and_array_offset_predict_alike(insurance):
    by_column = glmx.glm(
        "Claims ~ District + Group + Age", insurance, family="poisson", offset="log_holders"
    )
    in_formula = glmx.glm(
        "Claims ~ District + Group + Age + offset(log_holders)", insurance, family="poisson"
    )
    arr = insurance["log_holders"].to_numpy()
    by_array = glmx.glm("Claims ~ District + Group + Age", insurance, family="poisson", offset=arr)
    new = insurance.iloc[[3, 10, 40]]
    want = by_column.fitted[[3, 10, 40]]
    np.testing.assert_allclose(by_column.predict(new), want, rtol=1e-12)
    np.testing.assert_allclose(in_formula.predict(new), want, rtol=1e-12)
    np.testing.assert_allclose(by_array.predict(new, offset=arr[[3, 10, 40]]), want, rtol=1e-12)
    with pytest.raises(glmx.DataError, match="offset array"):
        by_array.predict(new)


def test_confidence_interval_is_the_link_interval_mapped(insurance):
    fit = glmx.glm(
        "Claims ~ District + Group + Age + offset(log_holders)", insurance, family="poisson"
    )
    new = insurance.iloc[:5]
    link = fit.predict(new, type="link", se=True)
    resp = fit.predict(new, type="response", interval="confidence", level=0.9)
    q = stats.norm.ppf(0.95)
    np.testing.assert_allclose(resp["lower"], np.exp(link["fit"] - q * link["se"]), rtol=1e-12)
    np.testing.assert_allclose(resp["upper"], np.exp(link["fit"] + q * link["se"]), rtol=1e-12)
    # delta method: se(mu) = mu * se(eta) for the log link
    np.testing.assert_allclose(resp["se"], resp["fit"] * link["se"], rtol=1e-12)


def test_unseen_factor_level_is_an_error(insurance):
    fit = glmx.glm("Claims ~ Group + offset(log_holders)", insurance, family="poisson")
    new = insurance.iloc[:2].astype({"Group": object}).assign(Group=["<1l", "huge"])
    with pytest.raises(glmx.GlmxError, match="huge"):
        fit.predict(new)


def test_missing_values_in_new_data_give_nan():
    d = load("clotting")
    fit = glmx.glm("lot1 ~ log(u)", d, family="gamma")
    new = d.iloc[:3].copy()
    new.loc[new.index[1], "u"] = np.nan
    pred = fit.predict(new)
    assert np.isnan(pred[1]) and np.isfinite(pred[[0, 2]]).all()


def test_missing_factor_value_in_new_data_gives_nan():
    # R: predict(fit, newdata, se.fit = TRUE) with NA in a factor: NA fit and se (na.pass)
    d = load("dobson")
    fit = glmx.glm("counts ~ outcome + treatment", d, family="poisson")
    new = d.head(4).astype({"outcome": object})
    new.loc[1, "outcome"] = np.nan
    pred = fit.predict(new, se=True)
    assert np.isnan(pred.loc[1, "fit"]) and np.isnan(pred.loc[1, "se"])
    full = fit.predict(d.head(4), se=True)
    np.testing.assert_allclose(pred.drop(index=1), full.drop(index=1), rtol=1e-14)
