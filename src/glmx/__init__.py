"""glmx: generalized linear models with R's numbers.

Public API: :func:`glm`, :func:`glm_fit`, the error and warning classes, and the
``families`` and ``links`` modules.
"""

from typing import Any

from glmx import datasets, families
from glmx.errors import (
    BoundaryWarning,
    ConvergenceError,
    ConvergenceWarning,
    DataError,
    DataWarning,
    FamilyError,
    FormulaError,
    GlmxError,
    GlmxWarning,
    SeparationWarning,
)
from glmx.families import links
from glmx.fitting import glm, glm_fit
from glmx.mixed.api import glmm
from glmx.outofcore import glm_chunked
from glmx.results.glm import GLMResults
from glmx.results.mixed import MixedResults


def anova(*fits: Any, test: str | None = None):  # noqa: ANN201 - a DataFrame
    """Compare nested models fitted to the same rows (R's ``anova(m1, m2, ...)``).

    GLMs: a likelihood-ratio (Chisq) test, or F with the biggest model's dispersion.
    Mixed models (``glmx.glmm``, possibly with the GLM without random effects): lme4's
    likelihood-ratio tests, REML fits refitted by maximum likelihood first."""
    from glmx.results.mixed import MixedResults

    if any(isinstance(f, MixedResults) for f in fits):
        from glmx.inference.mixed_anova import anova_mixed

        return anova_mixed(*fits)
    from glmx.inference.anova import anova_models

    return anova_models(*fits, test=test)


def load(path: str):  # noqa: ANN201 - a loaded model
    """Read a model written by ``fit.save(path)``; it predicts exactly as the original."""
    from glmx.io.modelfile import load as _load

    return _load(path)


def compare(*fits: GLMResults, names: list[str] | None = None):  # noqa: ANN201
    """Model selection table: df, logLik, AIC, BIC, deviance and AIC weights, by AIC."""
    from glmx.inference.compare import compare_models

    return compare_models(*fits, names=names)


__version__ = "0.1.0"

__all__ = [
    "glm",
    "glmm",
    "glm_chunked",
    "MixedResults",
    "glm_fit",
    "anova",
    "compare",
    "load",
    "GLMResults",
    "families",
    "datasets",
    "links",
    "GlmxError",
    "DataError",
    "FormulaError",
    "FamilyError",
    "ConvergenceError",
    "GlmxWarning",
    "ConvergenceWarning",
    "SeparationWarning",
    "BoundaryWarning",
    "DataWarning",
]
