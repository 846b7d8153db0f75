"""glmx: generalized linear models with R's numbers.

Public API: :func:`glm`, :func:`glm_fit`, the error and warning classes, and the
``families`` and ``links`` modules.
"""

from glmx import families
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
from glmx.results.glm import GLMResults

__version__ = "0.1.0"

__all__ = [
    "glm",
    "glm_fit",
    "GLMResults",
    "families",
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
