"""Every ```python block of every docs/*.md page runs, in order, one namespace per page.

Warnings from glmx are errors unless a page silences them on purpose; the numbers the
prose quotes are checked against the namespace the page leaves behind.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

import glmx

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(DOCS.glob("*.md"))


def run_page(page: Path) -> dict:
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert blocks, f"{page.name} has no python blocks"
    ns: dict = {"__name__": "__docs__"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", glmx.GlmxWarning)
        for block in blocks:
            exec(compile(block, str(page), "exec"), ns)
    return ns


def test_pages_exist():
    assert {p.name for p in PAGES} >= {
        "index.md",
        "choosing-a-model.md",
        "families.md",
        "diagnostics.md",
        "mixed-models.md",
    }


def test_links_resolve():
    for page in PAGES:
        for target in re.findall(r"\]\(([\w\-./]+\.md)\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # plots are saved to the working directory
    ns = run_page(page)
    CHECKS[page.name](ns, tmp_path)


def check_index(ns: dict, tmp_path: Path) -> None:
    # R: deviance(glm(counts ~ outcome + treatment, poisson)) = 5.129141
    assert ns["fit"].deviance == pytest.approx(5.129141, abs=1e-6)


def check_choosing(ns: dict, tmp_path: Path) -> None:
    # R: glm(prop ~ ldose, binomial(link = "log"), weights = total, start = c(-3, 0.5))
    lb = ns["log_binomial"]
    assert round(lb.coef["ldose"], 4) == 0.3668
    assert round(np.exp(lb.coef["ldose"]), 2) == 1.44
    grouped, cases = ns["grouped"], ns["cases"]
    np.testing.assert_allclose(cases.coef.to_numpy(), grouped.coef.to_numpy(), rtol=1e-8)
    assert (grouped.nobs, cases.nobs) == (12, 240)
    assert round(grouped.deviance, 3) == 6.757
    assert round(cases.deviance, 2) == 213.24
    gof = ns["gof"]
    assert round(gof.loc["deviance", "p_value"], 2) == 0.66
    assert round(grouped.dispersion_test().ratio, 2) == 0.59
    assert round(grouped.link_test().p_value, 2) == 0.93
    assert any("quasi-complete separation" in str(w) for w in ns["ml"].warnings)
    assert round(ns["firth"].coef["gear_f[T.5]"], 2) == 5.83
    assert ns["ml"].coef["gear_f[T.5]"] > 40


def check_families(ns: dict, tmp_path: Path) -> None:
    gauss = ns["gauss"]
    assert round(gauss.dispersion, 2) == 6.73
    assert round(gauss.coef["wt"], 2) == -3.88
    assert round(ns["gauss"].vif()["wt"], 2) == 1.77
    bino = ns["bino"]
    assert round(np.exp(bino.coef["ldose"]), 2) == 2.90
    assert round(np.exp(bino.coef["sex[T.M]"]), 2) == 3.01
    binary = ns["binary"]
    assert round(binary.coef["wt"], 2) == -4.02
    assert round(np.exp(binary.coef["wt"] / 10), 2) == 0.67
    assert round(binary.link_test().p_value, 2) == 0.80
    # R: I <- MASS::Insurance; I$Group <- factor(I$Group, ordered = FALSE); the same for
    # I$Age; exp(confint(glm(Claims ~ District + Group + Age + offset(log(Holders)),
    # poisson, I))): Age>35 0.58 (0.51, 0.67), Group>2l 1.76
    rates = ns["rates"].set_index("term")
    assert rates.loc["Age[T.>35]", ["estimate", "conf_low", "conf_high"]].round(2).tolist() == [
        0.58,
        0.51,
        0.67,
    ]
    assert round(rates.loc["Group[T.>2l]", "estimate"], 2) == 1.76
    assert round(ns["gamma_inv"].dispersion, 5) == 0.00245
    assert (round(ns["gamma_inv"].aic, 2), round(ns["gamma_log"].aic, 2)) == (37.99, 58.48)
    assert round(ns["inv_gauss"].aic, 2) == 61.57
    nb = ns["nb"]
    assert (round(nb.theta, 2), round(nb.theta_se, 2)) == (1.27, 0.16)
    eth = ns["nb"].tidy(exponentiate=True).set_index("term").loc["Eth[T.N]"]
    assert [round(eth[c], 2) for c in ("estimate", "conf_low", "conf_high")] == [0.57, 0.41, 0.77]
    assert abs(nb.residuals("quantile", seed=1).var() - 1) < 0.1
    assert round(ns["qpois"].dispersion, 1) == 13.2
    assert round(ns["costs"]["cost"].eq(0).mean(), 2) == 0.31
    # statmod: glm(cost ~ x, tweedie(var.power = 4/3, link.power = 0)) gives x 0.7047738
    assert ns["tweedie"].coef["x"] == pytest.approx(0.7047738, abs=1e-6)
    assert [round(v, 2) for v in ns["other_p"].values()] == [0.71, 0.70, 0.69]


def check_diagnostics(ns: dict, tmp_path: Path) -> None:
    nb = ns["nb"]
    assert nb.converged
    assert round(nb.deviance / nb.df_resid, 2) == 1.21
    assert (tmp_path / "quine_nb.png").stat().st_size > 10_000
    assert ns["im"].shape[0] == 146


def check_mixed(ns: dict, tmp_path: Path) -> None:
    # lme4: lmer(Reaction ~ Days + (Days | Subject), sleepstudy); glmer(cbpp) Laplace
    lmm = ns["lmm"]
    assert lmm.reml_criterion == pytest.approx(1743.628272, abs=1e-4)
    np.testing.assert_allclose(lmm.coef, [251.405105, 10.467286], rtol=1e-6)
    np.testing.assert_allclose(lmm.se, [6.824597, 1.545790], rtol=1e-4)
    np.testing.assert_allclose(ns["subject_sd"], [24.740658, 5.922138], rtol=1e-4)
    assert ns["residual_sd"] == pytest.approx(25.591796, rel=1e-4)
    assert ns["table"]["chisq"].iloc[1] == pytest.approx(42.1393, abs=1e-3)
    assert list(ns["table"]["df"].iloc[1:]) == [2]
    assert ns["laplace"].loglik == pytest.approx(-92.0265664, abs=1e-3)
    assert ns["agq"].loglik == pytest.approx(-91.9833690, abs=1e-3)  # the exact integral
    assert ns["laplace"].varcorr["sdcor"].iloc[0] == pytest.approx(0.642064, rel=1e-2)


def check_formulas(ns: dict, tmp_path: Path) -> None:
    # R: coef(glm(Claims ~ District + Group + Age + offset(log(Holders)), poisson,
    #             MASS::Insurance)): Group.L 0.4297075387, Age.C -0.0167367565
    assert ns["poly"].coef["Group.L"] == pytest.approx(0.4297075387, abs=1e-9)
    assert ns["poly"].coef["Age.C"] == pytest.approx(-0.0167367565, abs=1e-9)
    # R: the same with C(Group, contr.treatment): C(Group, contr.treatment)4 0.56341234112
    assert ns["treatment"].coef.iloc[6] == pytest.approx(0.56341234112, abs=1e-9)


CHECKS = {
    "index.md": check_index,
    "choosing-a-model.md": check_choosing,
    "families.md": check_families,
    "diagnostics.md": check_diagnostics,
    "mixed-models.md": check_mixed,
    "formulas.md": check_formulas,
}
