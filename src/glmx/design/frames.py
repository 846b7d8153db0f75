"""Turn the data frames users bring (pandas, polars, pyarrow, dict) into pandas."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from glmx.errors import DataError


def to_pandas(data: Any) -> pd.DataFrame:
    """A pandas DataFrame from pandas, polars (eager or lazy), pyarrow, or a dict of arrays.

    Categorical/enum columns keep their level order (they become pandas categoricals).
    Every column of strings is a factor, as in R: pandas ``string`` columns (Python or
    Arrow storage) and Arrow string columns become plain object columns, which the
    formula reads as factors with sorted levels.  Numbers narrower than float64 (float32,
    float16) and Arrow decimals become float64, so that transforms are computed in double
    precision as R's are.  Duplicate column names are refused.
    """
    return _strings_as_factors(_as_float64(_unique_names(_as_pandas(data))))


def _as_pandas(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    module = type(data).__module__
    if module.startswith("polars"):
        import polars as pl

        if hasattr(data, "collect"):  # LazyFrame
            data = data.collect()
        # a polars Categorical has no declared level order (an Enum has): treat it as
        # strings, whose levels sort as R's do; Enum columns keep their order
        cats = [c for c, t in data.schema.items() if t == pl.Categorical]
        if cats:
            data = data.with_columns([pl.col(c).cast(pl.Utf8) for c in cats])
        decimals = [c for c, t in data.schema.items() if isinstance(t, pl.Decimal)]
        if decimals:
            data = data.with_columns([pl.col(c).cast(pl.Float64) for c in decimals])
        return data.to_pandas()
    if module.startswith("pyarrow"):
        import pyarrow as pa

        # dictionary order in Arrow is storage order, not a level order: use strings;
        # decimals are numbers (pandas would make Python Decimal objects of them)
        for i, field in enumerate(data.schema):
            if pa.types.is_dictionary(field.type):
                data = data.set_column(i, field.name, data.column(i).cast(field.type.value_type))
            elif pa.types.is_decimal(field.type):
                data = data.set_column(i, field.name, data.column(i).cast(pa.float64()))
        return data.to_pandas()
    if isinstance(data, dict):
        try:
            return pd.DataFrame(data)
        except ValueError as exc:
            raise DataError(f"could not build a data frame from the dict: {exc}") from None
    if hasattr(data, "to_pandas"):
        return data.to_pandas()
    raise DataError(
        f"data must be a pandas or polars DataFrame, a pyarrow Table or a dict of arrays, "
        f"got {type(data).__name__}"
    )


def _unique_names(df: pd.DataFrame) -> pd.DataFrame:
    """``df``, or a DataError naming the column names that occur more than once."""
    if df.columns.is_unique:
        return df
    dup = list(dict.fromkeys(df.columns[df.columns.duplicated()]))
    names = ", ".join(repr(str(c)) for c in dup[:10])
    raise DataError(
        f"the data have more than one column named {names}; give each column its own name"
    )


def is_string_like(dtype: Any) -> bool:
    """Whether a column of this dtype holds strings in a form that is not plain
    ``object`` or pandas' default ``str``: pandas ``string`` (NA-valued, Python or
    Arrow storage) and pandas columns of Arrow strings or dictionaries."""
    if isinstance(dtype, pd.StringDtype):
        return getattr(dtype, "na_value", pd.NA) is pd.NA
    if isinstance(dtype, pd.ArrowDtype):
        import pyarrow as pa

        t = dtype.pyarrow_dtype
        return bool(
            pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or getattr(pa.types, "is_string_view", lambda _: False)(t)
            or pa.types.is_dictionary(t)
        )
    return False


def _narrow_or_decimal(dtype: Any) -> bool:
    """Whether a column of this dtype holds numbers in less than double precision
    (float32, float16) or as Arrow decimals."""
    if isinstance(dtype, np.dtype):
        return dtype.kind == "f" and dtype.itemsize < 8
    if isinstance(dtype, pd.ArrowDtype):
        import pyarrow as pa

        t = dtype.pyarrow_dtype
        return bool(pa.types.is_decimal(t) or (pa.types.is_floating(t) and t.bit_width < 64))
    if isinstance(dtype, pd.Float32Dtype):
        return True
    return False


def _as_float64(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its narrow-float and decimal columns as float64 (missing values NaN)."""
    cols = [c for c, dtype in df.dtypes.items() if _narrow_or_decimal(dtype)]
    if not cols:
        return df
    out = df.copy(deep=False)
    for c in cols:
        # to_numpy with NaN for missing values (pandas' to_numeric drops the missing
        # entries of an Arrow decimal column and fails on the length)
        values = df[c].to_numpy(dtype="float64", na_value=np.nan)
        out[c] = pd.Series(values, index=df.index, name=c)
    return out


def _strings_as_factors(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its string-like columns (:func:`is_string_like`) as object columns,
    missing values as None, so that the formula sees factors; other columns untouched."""
    cols = [c for c, dtype in df.dtypes.items() if is_string_like(dtype)]
    if not cols:
        return df
    out = df.copy(deep=False)
    for c in cols:
        values = df[c].astype(object)
        out[c] = values.where(values.notna(), None).astype(object)
    return out
