"""Predictions of a fitted mixed model: the linear predictor for new data, with or
without the random effects."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from numpy.typing import NDArray

from glmx.design.formula import TermState, new_design
from glmx.design.frames import to_pandas
from glmx.errors import DataError
from glmx.mixed.problem import HIDDEN as _HIDDEN
from glmx.mixed.record import MixedFit

Array = NDArray[np.float64]


def predict_eta(fit: MixedFit, newdata: Any = None, re: bool = True, offset: Any = None) -> Array:
    """Linear predictor for new data, with (``re=True``) or without the random effects;
    levels the fit never saw (and missing grouping values) contribute zero."""
    if newdata is None:
        return fit.linear_predictor if re else fit.linear_predictor_fixed
    df = to_pandas(newdata)
    terms = fit.fixed_terms
    if terms.offset_column is not None and terms.offset_column.startswith(_HIDDEN):
        if offset is None:
            raise DataError(
                "the model was fitted with an offset array; give the offset for the new "
                "data with offset="
            )
        terms = dataclasses.replace(terms, offset_column=None, offset_array=False)
    X, off = new_design(terms, df, offset=offset)
    X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    all_names = _design_names(terms, X.shape[1])
    if all_names is not None and len(all_names) != len(fit.fixed_columns):
        X = X[:, [all_names.index(c) for c in fit.fixed_columns]]
    eta = X @ fit.coef.to_numpy() + off
    if not re:
        return np.asarray(eta)
    rt = fit.reterms
    for i, t in enumerate(rt.terms):
        codes = t.new_codes(df)
        Xt = t.new_X(df)
        bt = fit.b[rt.u_offsets[i] : rt.u_offsets[i + 1]].reshape(t.n_levels, t.k)
        seen = codes >= 0
        contrib = np.zeros(len(df))
        contrib[seen] = np.einsum("ij,ij->i", Xt[seen], bt[codes[seen]])
        eta = eta + contrib
    return np.asarray(eta)


def _design_names(terms: TermState, width: int) -> list[str] | None:
    names = getattr(terms.model_spec, "column_names", None)
    return [str(c) for c in names] if names is not None and len(names) == width else None
