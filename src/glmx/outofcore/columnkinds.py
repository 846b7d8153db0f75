"""What kind of values a column holds in one chunk of a streamed source, and the check
that every chunk agrees.

A streamed fit learns the model from chunks read one at a time, each typed on its own (a
Parquet file's schema, a Dask partition's frame).  Integers in one chunk and floats in
another are both numbers and are read as floats; but a column of numbers in one chunk
and strings in another would be a covariate in some chunks and a factor in others, so
the first pass refuses it, naming the column and both chunks.
"""

from __future__ import annotations

import pandas as pd

from glmx.errors import DataError


def is_factor(col: pd.Series) -> bool:
    """Whether formulaic treats the column as a factor (strings, categoricals, booleans)."""
    return isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(col)


def value_kind(col: pd.Series) -> str | None:
    """The kind of a column's values in a chunk, as the survey treats them (None when
    every value is missing: no kind to compare)."""
    values = col.dropna()
    if not len(values):
        return None
    if pd.api.types.is_bool_dtype(values.dtype):
        return "booleans"
    if not is_factor(values):
        return "numbers"
    if isinstance(values.dtype, pd.CategoricalDtype):
        return "strings"  # a categorical's levels join the strings' (the survey's order)
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    if inferred == "boolean":
        return "booleans"
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        return "numbers stored as Python objects"  # a factor to the survey, as in memory
    return "strings"


def same_kinds(
    first: dict[str, tuple[str, str]], later: dict[str, tuple[str, str]]
) -> dict[str, tuple[str, str]]:
    """The columns' kinds of values and where each was first seen (``first``, then a
    later chunk's); a DataError names a column whose kind differs between chunks."""
    kinds = dict(first)
    for c, (kind, where) in later.items():
        seen, at = kinds.setdefault(c, (kind, where))
        if seen != kind:
            raise DataError(
                f"column {c!r} holds {seen} in {at} but {kind} in {where}: give it one "
                "type in every part of the data (numbers, or strings for a factor)"
            )
    return kinds


__all__ = ["is_factor", "same_kinds", "value_kind"]
