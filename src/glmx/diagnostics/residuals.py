"""GLM residuals as R's ``residuals.glm``, one value per row (frequency weights are not
applied: a row standing for three cases has the residual of each of them)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from glmx.families.base import Family

Array = NDArray[np.float64]

RESIDUAL_TYPES = ("deviance", "pearson", "working", "response")


def residuals(kind: str, family: Family, y: Array, mu: Array, eta: Array, weights: Array) -> Array:
    """Residuals of one type; ``weights`` are the prior weights."""
    if kind == "response":
        return y - mu
    if kind == "working":
        # (y - mu) / (d mu / d eta)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (y - mu) / family.link.mu_eta(eta)
    if kind == "pearson":
        # (y - mu) sqrt(w) / sqrt(V(mu))
        with np.errstate(divide="ignore", invalid="ignore"):
            return (y - mu) * np.sqrt(weights) / np.sqrt(family.variance(mu))
    if kind == "deviance":
        # sign(y - mu) sqrt(w d(y, mu))
        d = family.deviance_residuals_sq(y, mu, weights)
        return np.sign(y - mu) * np.sqrt(np.maximum(d, 0.0))
    raise ValueError(f"unknown residual type {kind!r}; choose one of {', '.join(RESIDUAL_TYPES)}")
