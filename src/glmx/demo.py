"""``python -m glmx.demo``: fit classic GLMs on the bundled datasets and print R-style
summaries (the same models as the examples of R's ``glm`` and ``MASS``), then two of
lme4's classic mixed models with lme4-style summaries."""

from __future__ import annotations

import importlib.util
from typing import Any

import glmx
from glmx.datasets import load

MODELS: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "Dobson's randomized trial: Poisson counts",
        "dobson",
        "counts ~ outcome + treatment",
        {"family": "poisson"},
    ),
    (
        "Budworm mortality: binomial proportions, trials as weights",
        "budworm",
        "prop ~ sex * ldose",
        {"family": "binomial", "weights": "total"},
    ),
    (
        "Blood clotting times: Gamma with the inverse link",
        "clotting",
        "lot1 ~ log(u)",
        {"family": "gamma"},
    ),
    (
        "Car insurance claims: Poisson rates with an offset",
        "insurance",
        "Claims ~ District + Group + Age + offset(log_holders)",
        {"family": "poisson"},
    ),
    (
        "School absences: negative binomial, theta by ML (MASS::glm.nb)",
        "quine",
        "Days ~ Eth + Sex + Age + Lrn",
        {"family": "negative_binomial"},
    ),
]


MIXED_MODELS: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "Sleep deprivation: random intercepts and slopes by subject (lme4::lmer, REML)",
        "sleepstudy",
        "Reaction ~ Days + (Days | Subject)",
        {},
    ),
    (
        "Contagious bovine pleuropneumonia: binomial GLMM, herd effects (lme4::glmer)",
        "cbpp",
        "prop ~ period + (1 | herd)",
        {"family": "binomial", "weights": "size"},
    ),
]


def main(plot_dir: str = "demo_output") -> None:
    for title, data, formula, kwargs in MODELS:
        print("=" * 78)
        print(title)
        fit = glmx.glm(formula, load(data), **kwargs)
        print(fit.summary())
    for title, data, formula, kwargs in MIXED_MODELS:
        print("=" * 78)
        print(title)
        print(glmx.glmm(formula, load(data), **kwargs).summary())
    if importlib.util.find_spec("matplotlib") is None:  # plots are an optional extra
        print("(install glmx[plot] for the diagnostic plots)")
        return
    from glmx.diagnostics.plots import save_demo_plots

    print("=" * 78)
    for path in save_demo_plots(plot_dir):
        print(f"diagnostic plot written: {path}")


if __name__ == "__main__":
    main()
