"""Turn the data frames users bring (pandas, polars, pyarrow, dict) into pandas."""

from __future__ import annotations

from typing import Any

import pandas as pd

from glmx.errors import DataError


def to_pandas(data: Any) -> pd.DataFrame:
    """A pandas DataFrame from pandas, polars (eager or lazy), pyarrow, or a dict of arrays.

    Categorical/enum columns keep their level order (they become pandas categoricals).
    """
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
        return data.to_pandas()
    if module.startswith("pyarrow"):
        import pyarrow as pa

        # dictionary order in Arrow is storage order, not a level order: use strings
        for i, field in enumerate(data.schema):
            if pa.types.is_dictionary(field.type):
                data = data.set_column(i, field.name, data.column(i).cast(field.type.value_type))
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
