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
        if hasattr(data, "collect"):  # LazyFrame
            data = data.collect()
        return data.to_pandas()
    if module.startswith("pyarrow"):
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
