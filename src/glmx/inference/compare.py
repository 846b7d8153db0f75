"""Comparing fitted models: whether they can be compared (same rows, response, weights,
offset, family; nested designs), and the AIC model-selection table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from glmx.design.matrix import DenseDesign, SparseDesign
from glmx.errors import DataError, FamilyError
from glmx.families.negbin import NegativeBinomial

if TYPE_CHECKING:
    from glmx.results.glm import GLMResults

# relative residual norm below which a column lies in another design's column space
SPAN_TOL = 1e-7


def estimated_theta(fit: GLMResults) -> bool:
    """A negative binomial fit whose theta was estimated (``MASS::glm.nb``)."""
    fam = fit.family
    return isinstance(fam, NegativeBinomial) and fam.estimate_theta


def _family_label(fit: GLMResults) -> str:
    return f"{fit.family.name}({fit.family.link.name})"


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-10, atol=1e-12))


def _check_types(fits: Sequence[GLMResults]) -> None:
    from glmx.results.glm import GLMResults

    if not fits:
        raise DataError("no models given to compare")
    for i, m in enumerate(fits, 1):
        if not isinstance(m, GLMResults):
            raise DataError(f"model {i} is a {type(m).__name__}, not a fitted glmx GLM")


def check_same_data(fits: Sequence[GLMResults]) -> None:
    """Raise :class:`glmx.DataError` unless every fit used the same rows and response."""
    _check_types(fits)
    first = fits[0]
    for i, m in enumerate(fits[1:], 2):
        n1, n2 = len(first.y), len(m.y)
        if n1 != n2 or first.nobs != m.nobs:
            raise DataError(
                f"models were not fitted to the same rows: model 1 uses {n1} rows "
                f"(nobs {first.nobs}) and model {i} uses {n2} (nobs {m.nobs}); missing values "
                "in a column only one model uses drop different rows"
            )
        if not _same(first.y, m.y):
            raise DataError(f"model 1 and model {i} have different responses")


def check_comparable(fits: Sequence[GLMResults], nested: bool) -> None:
    """Raise :class:`glmx.DataError` unless the fits share rows, response, prior and
    frequency weights, offset, family and link, and (``nested``) each design's column
    space contains the one of the model with more residual df before it."""
    check_same_data(fits)
    first = fits[0]
    for i, m in enumerate(fits[1:], 2):
        for what in ("weights", "freq_weights", "offset"):
            if not _same(getattr(first._fit, what), getattr(m._fit, what)):
                label = {"weights": "prior weights", "freq_weights": "frequency weights"}
                raise DataError(
                    f"model 1 and model {i} have different {label.get(what, what)}: "
                    "nested models must be fitted with the same ones"
                )
        fa, fb = first.family, m.family
        same_family = (
            type(fa) is type(fb) and fa.link.name == fb.link.name
            if estimated_theta(first) and estimated_theta(m)
            else fa == fb and fa.link.name == fb.link.name
        )
        if not same_family:
            raise DataError(
                f"model 1 is {_family_label(first)} and model {i} is {_family_label(m)}: "
                "nested models need the same family and link"
            )
    if nested:
        for i in range(len(fits) - 1):
            a, b = fits[i], fits[i + 1]
            small, big = (a, b) if a.df_resid >= b.df_resid else (b, a)
            if not _contained(small, big):
                ia, ib = (i + 1, i + 2) if small is a else (i + 2, i + 1)
                raise DataError(
                    f"models {ia} and {ib} are not nested: the design of model {ia} "
                    f"({', '.join(small._names)}) is not contained in the column space of "
                    f"model {ib} ({', '.join(big._names)})"
                )


def _kept_names(fit: GLMResults) -> list[str]:
    return [n for n, a in zip(fit._names, fit._fit.aliased) if not a]


def _dense(fit: GLMResults, names: list[str]) -> np.ndarray:
    X = fit._fit.X
    idx = [fit._names.index(n) for n in names]
    if isinstance(X, DenseDesign):
        return X.X[:, idx]
    if isinstance(X, SparseDesign):
        return np.asarray(X.X[:, idx].toarray())
    return np.asarray(X.rows(np.arange(X.shape[0]))[:, idx])


def _contained(small: GLMResults, big: GLMResults) -> bool:
    """Whether the small design's columns lie in the big design's column space: by
    column names when both come from formulas, else by least squares, with
    ||a - B (B^+ a)|| <= SPAN_TOL ||a|| for each column a."""
    names_s, names_b = _kept_names(small), _kept_names(big)
    if small._fit.terms is not None and big._fit.terms is not None:
        if set(names_s) <= set(names_b):
            return True
    if not names_s:
        return True
    A, B = _dense(small, names_s), _dense(big, names_b)
    if B.shape[1] == 0:
        return False
    Q, _ = np.linalg.qr(B)
    resid = A - Q @ (Q.T @ A)
    norms = np.linalg.norm(A, axis=0)
    return bool(np.all(np.linalg.norm(resid, axis=0) <= SPAN_TOL * np.maximum(norms, 1e-300)))


def compare_models(*fits: GLMResults, names: list[str] | None = None) -> pd.DataFrame:
    """Model selection table, sorted by AIC: ``df`` (parameters counted by AIC),
    ``loglik``, ``aic``, ``bic``, ``deviance``, ``delta_aic`` = AIC - min AIC and the
    Akaike weights ``aic_weight`` = exp(-delta/2) / sum exp(-delta/2).

    The fits must share rows and response (family and link may differ).  Quasi fits
    have no likelihood, hence no AIC: they raise :class:`glmx.FamilyError`."""
    check_same_data(fits)
    if names is None:
        formulas = [m._fit.terms.formula if m._fit.terms is not None else None for m in fits]
        unique = None not in formulas and len(set(formulas)) == len(formulas)
        names = (
            [str(f) for f in formulas]
            if unique
            else [f"model {i}" for i in range(1, len(fits) + 1)]
        )
    names = [str(n) for n in names]
    if len(names) != len(fits):
        raise DataError(f"{len(names)} names given for {len(fits)} models")
    if len(set(names)) != len(names):
        raise DataError(f"model names must be unique, got {names}")
    for name, m in zip(names, fits):
        if not np.isfinite(m.aic):
            raise FamilyError(
                f"model {name!r} ({_family_label(m)}) has no likelihood, so no AIC: "
                "quasi families cannot be ranked by AIC; compare nested quasi fits with "
                "glmx.anova(..., test='F')"
            )
    aic = np.array([m.aic for m in fits])
    delta = aic - aic.min()
    weight = np.exp(-delta / 2.0)  # Akaike weights
    table = pd.DataFrame(
        {
            "df": [m.n_params for m in fits],
            "loglik": [m.loglik for m in fits],
            "aic": aic,
            "bic": [m.bic for m in fits],
            "deviance": [m.deviance for m in fits],
            "delta_aic": delta,
            "aic_weight": weight / weight.sum(),
        },
        index=pd.Index(names, name="model"),
    )
    return table.sort_values("aic", kind="stable")
