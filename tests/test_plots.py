"""Diagnostic, coefficient and component + residual plots.

References:

- R's ``lowess(x, y, delta = 0)`` (R 4.2.2) for the smoother, numbers in the comments
  (of a glm fit: fixtures/polished_inline_numbers.R).
- fixtures/quantile_residuals.json (fixtures/make_quantile_residuals.R):
  ``residuals(fit, type = "partial")`` for the partial residuals, of R's fit polished
  to the MLE (glmx at its default settings).
- The panels' points are checked against glmx's own diagnostics (tested against R in
  test_influence.py and test_quantile_residuals.py).
"""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

matplotlib = pytest.importorskip("matplotlib")

import glmx  # noqa: E402
import glmx.plot  # noqa: E402
from glmx.datasets import load  # noqa: E402
from glmx.diagnostics.influence import cooks_distance, hat_values, rstandard  # noqa: E402
from glmx.diagnostics.plots import diagnostic_plots, lowess, save_demo_plots  # noqa: E402
from refdata import FIXTURES, fit_case  # noqa: E402

TITLES = ["Residuals vs Linear predictor", "Normal Q-Q", "Scale-Location", "Residuals vs Leverage"]
XLABELS = ["Linear predictor", "Theoretical quantiles", "Linear predictor", "Leverage"]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def points(ax) -> np.ndarray:
    """The (x, y) of a panel's data points (the line drawn with gid "points")."""
    (line,) = [ln for ln in ax.lines if ln.get_gid() == "points"]
    return np.asarray(line.get_xydata())


@pytest.fixture(scope="module")
def insurance() -> glmx.GLMResults:
    return glmx.glm(
        "Claims ~ District + Group + Age + offset(log_holders)", load("insurance"), family="poisson"
    )


@pytest.fixture(scope="module")
def clotting() -> glmx.GLMResults:
    return glmx.glm("lot1 ~ log(u)", load("clotting"), family="gamma")


def test_diagnostic_plots_file_and_panels(insurance, tmp_path):
    path = tmp_path / "diag.png"
    fig = diagnostic_plots(insurance, path)
    assert path.exists() and png_size(path) == (1000, 850)
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == TITLES
    assert [ax.get_xlabel() for ax in fig.axes] == XLABELS
    ylabels = [ax.get_ylabel() for ax in fig.axes]
    assert ylabels[0] == "Deviance residuals" and ylabels[1] == "Quantile residuals"
    assert "Std.\\ deviance\\ residuals" in ylabels[2] and ylabels[3] == "Std. Pearson residuals"
    assert "Claims ~ District" in fig.get_suptitle()
    # the method on the results draws the same panels
    fig2 = insurance.plot(tmp_path / "method.png", label_n=0, smoother=False)
    assert [ax.get_title() for ax in fig2.axes] == TITLES
    assert all(len(ax.texts) == 0 for ax in fig2.axes[:3])


def test_panels_show_the_diagnostics(insurance):
    fig = diagnostic_plots(insurance, seed=3)
    ax1, ax2, ax3, ax4 = fig.axes
    eta, dev = insurance.linear_predictor, insurance.residuals("deviance")
    np.testing.assert_allclose(points(ax1), np.column_stack([eta, dev]))
    # QQ: sorted quantile residuals against R's ppoints (n > 10: (i - 1/2) / n)
    q = np.sort(insurance.residuals("quantile", seed=3))
    theo = stats.norm.ppf((np.arange(1, q.size + 1) - 0.5) / q.size)
    np.testing.assert_allclose(points(ax2), np.column_stack([theo, q]))
    root = np.sqrt(np.abs(rstandard(insurance, "deviance")))
    np.testing.assert_allclose(points(ax3)[:, 1], root)
    h, r = hat_values(insurance), rstandard(insurance, "pearson")
    np.testing.assert_allclose(points(ax4), np.column_stack([h, r]))
    # the 3 labels of panel 1 are the 3 largest |deviance residuals|, by row position
    top = sorted(str(i) for i in np.argsort(-np.abs(dev))[:3])
    assert sorted(t.get_text() for t in ax1.texts) == top
    # panel 4 labels the largest Cook's distances (and the contour levels)
    cook_top = {str(i) for i in np.argsort(-cooks_distance(insurance))[:3]}
    assert cook_top <= {t.get_text() for t in ax4.texts}


def test_cooks_contours_are_at_half_and_one(clotting):
    ax4 = diagnostic_plots(clotting).axes[3]
    curves = [ln for ln in ax4.lines if ln.get_linestyle() == ":" and len(ln.get_xdata()) > 0]
    assert len(curves) == 4
    levels = []
    for ln in curves:
        h, r = np.asarray(ln.get_xdata()), np.asarray(ln.get_ydata())
        d = r**2 * h / (clotting.rank * (1 - h))  # Cook's D = r^2 h / (p (1 - h))
        np.testing.assert_allclose(d, d[0], rtol=1e-12)
        levels.append(round(float(d[0]), 12))
    assert sorted(levels) == [0.5, 0.5, 1.0, 1.0]
    assert {"0.5", "1"} <= {t.get_text() for t in ax4.texts}


def test_quasi_family_falls_back_to_standardized_residuals():
    fit = glmx.glm("Days ~ Eth + Sex + Age", load("quine"), family="quasipoisson")
    ax2 = diagnostic_plots(fit).axes[1]
    assert ax2.get_ylabel() == "Std. deviance residuals"
    np.testing.assert_allclose(np.sort(points(ax2)[:, 1]), np.sort(rstandard(fit, "deviance")))


def test_zero_weight_rows_are_left_out_and_glm_fit_works():
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(30), rng.normal(size=30)])
    y = X @ [1.0, 2.0] + rng.normal(size=30)
    w = np.ones(30)
    w[[3, 7]] = 0.0
    fig = diagnostic_plots(glmx.glm_fit(X, y, weights=w))
    assert points(fig.axes[0]).shape == (28, 2)
    assert "glm_fit" in fig.get_suptitle()


def test_save_demo_plots(tmp_path):
    paths = save_demo_plots(tmp_path / "demo")
    assert [p.name for p in paths] == [
        "insurance_poisson_diagnostics.png",
        "clotting_gamma_diagnostics.png",
    ]
    for p in paths:
        assert p.exists() and png_size(p) == (1000, 850)
        assert p.stat().st_size > 20_000  # a drawn figure, not an empty canvas


# R: set.seed(1); x <- round(runif(60), 6); y <- round(sin(4 * x) + rnorm(60, sd = .3), 6)
# y[5] <- 6 (an outlier the robustness passes discount)
LOWESS_X = [0.265509, 0.372124, 0.572853, 0.908208, 0.201682, 0.89839, 0.944675, 0.660798]
LOWESS_X += [0.629114, 0.061786, 0.205975, 0.176557, 0.687023, 0.384104, 0.769841, 0.497699]
LOWESS_X += [0.717619, 0.991906, 0.380035, 0.777445, 0.934705, 0.212143, 0.651674, 0.125555]
LOWESS_X += [0.267221, 0.386114, 0.01339, 0.382388, 0.869691, 0.340349, 0.48208, 0.599566]
LOWESS_X += [0.493541, 0.186218, 0.827373, 0.668467, 0.79424, 0.107944, 0.723711, 0.411274]
LOWESS_X += [0.820946, 0.64706, 0.782933, 0.553036, 0.52972, 0.789356, 0.023331, 0.47723]
LOWESS_X += [0.732314, 0.692732, 0.47762, 0.861209, 0.438097, 0.244797, 0.070679, 0.099466]
LOWESS_X += [0.316272, 0.518634, 0.662005, 0.40683]
LOWESS_Y = [1.280952, 0.965779, 0.8677, -0.48786, 6, -0.561233, -0.713161, 0.460228]
LOWESS_Y += [0.915216, 0.47359, 0.684443, 0.572959, 0.592513, 1.166408, -0.14444, 0.70084]
LOWESS_Y += [0.377184, -0.504688, 0.965013, 0.296139, -0.442921, 0.566728, 0.612089, 0.142564]
LOWESS_Y += [1.306571, 1.593773, -0.056631, 0.685909, -0.159903, 0.937639, 1.657251, 0.664971]
LOWESS_Y += [1.126666, 0.686277, -0.390095, 0.507495, -0.576847, 0.85815, 0.290229, 1.649024]
LOWESS_Y += [0.000939, 0.312558, 0.193079, 0.52106, 0.477435, 0.071602, -0.039798, 0.94371]
LOWESS_Y += [0.233048, 0.18538, 0.77226, -0.339173, 1.336984, 0.372975, 0.457149, 0.487336]
LOWESS_Y += [1.272564, 0.784528, 0.584781, 1.078533]


def test_lowess_matches_r():
    # R: lowess(x, y, delta = 0)$y, first five and last three of the 60 sorted points
    gx, gy = lowess(np.array(LOWESS_X), np.array(LOWESS_Y))
    np.testing.assert_array_equal(gx, np.sort(LOWESS_X))
    head = [0.27791403134333242, 0.29818276846786052, 0.37520924467227679]
    head += [0.39272709254153076, 0.44871397290124609]
    tail = [-0.50753868640888788, -0.54318419510867133, -0.71251322110523940]
    np.testing.assert_allclose(gy[:5], head, rtol=1e-12)
    np.testing.assert_allclose(gy[-3:], tail, rtol=1e-12)
    assert gy[np.searchsorted(gx, 0.201682)] < 1.0  # the outlier y = 6 is discounted


def test_lowess_of_clotting_residuals_matches_r(clotting):
    # R: fit <- glm(lot1 ~ log(u), Gamma, clotting), polished to the MLE (restarted with
    #    start = coef(fit), epsilon = 1e-12, until the coefficients stop changing:
    #    fixtures/polished_inline_numbers.R; the default-epsilon fit's are ~1e-10 off)
    #    lowess(fit$linear.predictors, residuals(fit), delta = 0)$y
    expected = [-0.03802782509978942, 0.00683423052575124, 0.04820625484276857]
    expected += [0.03246939758237873, 0.01190389244814853, -0.00247581569300815]
    expected += [-0.02033590888008232, -0.02942395396774821, -0.03577963598625141]
    gx, gy = lowess(clotting.linear_predictor, clotting.residuals("deviance"))
    np.testing.assert_allclose(gy, expected, rtol=0, atol=1e-9)


def test_lowess_large_n_is_evaluated_on_a_grid():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 3, 20_000)
    y = 1.0 + 2.0 * x + rng.normal(scale=0.2, size=x.size)
    y[:50] += 30.0  # outliers, discounted by the robustness passes
    gx, gy = lowess(x, y)
    assert gx.size == 100 and x.min() <= gx[0] < gx[-1] <= x.max()
    np.testing.assert_array_equal(lowess(x, y)[1], gy)  # the subsample is seeded
    np.testing.assert_allclose(gy, 1.0 + 2.0 * gx, atol=0.03)  # a local line is unbiased


# --- glmx.plot ----------------------------------------------------------------------


def test_coef_plot(insurance, tmp_path):
    path = tmp_path / "coef.png"
    fig = glmx.plot.coef(insurance, path=path)
    assert path.exists() and png_size(path) == (650, 436)  # 0.34 in per row (9) + 1.3 in
    (ax,) = fig.axes
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert names == list(insurance.coef.index[1:])  # no intercept
    assert list(ax.get_yticks()) == list(range(len(names)))[::-1]  # the first at the top
    ci = insurance.confint(method="wald")
    marks = ax.lines[0].get_xydata()  # errorbar's markers, in coefficient order
    np.testing.assert_allclose(marks[:, 0], insurance.coef.to_numpy()[1:])
    bars = ax.collections[0].get_segments()
    np.testing.assert_allclose([s[0][0] for s in bars], ci["lower"].to_numpy()[1:])
    np.testing.assert_allclose([s[1][0] for s in bars], ci["upper"].to_numpy()[1:])
    assert ax.get_title() == "Coefficients with 95% Wald intervals"
    assert ax.get_xlabel() == "Estimate"


def test_coef_plot_exponentiated_with_intercept_into_given_axes(clotting):
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.subplots()
    out = glmx.plot.coef(clotting, exponentiate=True, intercept=True, level=0.9, ax=ax)
    assert out is fig
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "exp(estimate)"
    np.testing.assert_allclose(ax.lines[0].get_xdata(), np.exp(clotting.coef.to_numpy()))
    assert ax.get_title() == "Coefficients with 90% Wald intervals"
    only_intercept = glmx.glm("lot1 ~ 1", load("clotting"), family="gamma")
    with pytest.raises(glmx.DataError, match="no coefficients to plot"):
        glmx.plot.coef(only_intercept)


def test_coef_plot_profile_intervals(clotting):
    fig = glmx.plot.coef(clotting, method="profile", intercept=True)
    ci = clotting.confint()
    bars = fig.axes[0].collections[0].get_segments()
    np.testing.assert_allclose([s[0][0] for s in bars], ci["lower"].to_numpy())
    assert "profile likelihood" in fig.axes[0].get_title()


REF = json.loads((FIXTURES / "quantile_residuals.json").read_text())
PARTIAL = sorted(n for n in REF if "partial" in REF[n])


@pytest.mark.parametrize("name", PARTIAL)
def test_partial_residuals_match_r(name):
    # R: residuals(fit, type = "partial")[, term]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", glmx.GlmxWarning)
        fit = fit_case(REF[name])  # R's polished fit: the MLE
    data = glmx.plot.partial_residual_data(fit)
    assert list(data.columns) == list(REF[name]["partial"])
    for col, expected in REF[name]["partial"].items():
        np.testing.assert_allclose(data[col], expected, rtol=1e-9, atol=1e-12)


def test_partial_residuals_figure(tmp_path):
    fit = glmx.glm("mpg ~ log(wt) + hp + C(cyl) + wt:hp + I(hp**2) + qsec", load("mtcars"))
    path = tmp_path / "partial.png"
    fig = glmx.plot.partial_residuals(fit, path=path)
    assert path.exists() and png_size(path) == (1240, 770)
    # numeric main effects only: not the factor C(cyl) nor the interaction wt:hp
    assert [ax.get_xlabel() for ax in fig.axes] == ["log(wt)", "hp", "I(hp ** 2)", "qsec"]
    assert [ax.get_ylabel() for ax in fig.axes] == ["Partial residual", "", "", "Partial residual"]
    # each panel: the points and the linear component beta_j (x_j - mean x_j)
    ax = fig.axes[1]
    x = load("mtcars")["hp"].to_numpy(dtype=float)
    data = glmx.plot.partial_residual_data(fit, ["hp"])
    np.testing.assert_allclose(points(ax), np.column_stack([x, data["hp"]]))
    comp = ax.lines[1].get_xydata()
    np.testing.assert_allclose(comp[:, 1], fit.coef["hp"] * (comp[:, 0] - x.mean()))
    one = glmx.plot.partial_residuals(fit, columns=["qsec"])
    assert len(one.axes) == 1


def test_partial_residuals_errors():
    fit = glmx.glm("mpg ~ wt + C(cyl)", load("mtcars"))
    with pytest.raises(glmx.DataError, match="unknown column.*'weight'.*numeric predictors.*'wt'"):
        glmx.plot.partial_residuals(fit, columns=["weight"])
    factors_only = glmx.glm("mpg ~ C(cyl)", load("mtcars"))
    with pytest.raises(glmx.DataError, match="no numeric predictor"):
        glmx.plot.partial_residuals(factors_only)
