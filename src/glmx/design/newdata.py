"""New data against a fit's design state: the checks that run before a design is
rebuilt for prediction, with messages in glmx's words.

Every front end that rebuilds a design for new rows (``predict`` of a fitted, loaded or
mixed model, the command line) goes through :func:`check_new_data`, so a missing column,
a column of the wrong kind or a factor level the fit never saw reads the same
everywhere, names the column and shows values as Python prints them (``-1.0``, not
``np.float64(-1.0)``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from glmx.errors import DataError, shown

# a factor written C(name) or C(name, ...): group 1 is the column name
_C_CALL = re.compile(r"C\(\s*([A-Za-z_][A-Za-z0-9_.]*)\s*[,)]")


def show_values(values: Iterable[Any], limit: int = 5) -> str:
    """Up to ``limit`` values, comma-separated, '...' when there are more."""
    items = list(values)
    text = ", ".join(shown(v) for v in items[:limit])
    return text + (", ..." if len(items) > limit else "")


def missing_columns_error(missing: Iterable[str], formula: str | None) -> DataError:
    """The error for new data without a column the model reads."""
    names = ", ".join(repr(m) for m in sorted(missing))
    where = f" (formula {formula!r})" if formula else ""
    return DataError(f"new data lack the column(s) {names} that the model reads{where}")


def model_variables(spec: Any) -> set[str]:
    """Data columns the right-hand side of a model spec reads (formulaic's ModelSpec or
    glmx's CategoricalSpec around one)."""
    names = {str(v) for v in getattr(spec, "required_variables", set()) or set()}
    inner = getattr(spec, "spec", None)
    if inner is not None:
        names |= {str(v) for v in getattr(inner, "required_variables", set()) or set()}
        names.add(str(spec.variable))
    return names


def check_new_data(spec: Any, df: pd.DataFrame, variables: set[str], formula: str) -> pd.DataFrame:
    """Refuse new data the design cannot be rebuilt from, naming the column: a column
    the model reads is absent; a factor column holds numbers where the fit had text
    levels, or levels the fit never saw; a numeric column holds text.  Returns the
    data with numeric columns held as Python objects (numbers and None) as floats."""
    missing = variables - {str(c) for c in df.columns}
    if missing:
        raise missing_columns_error(missing, formula)
    block = getattr(spec, "variable", None) if getattr(spec, "spec", None) is not None else None
    for expr, (kind, state) in dict(getattr(spec, "encoder_state", {})).items():
        column = _factor_column(str(expr), df)
        if column is None:
            continue
        kind_name = getattr(kind, "value", str(kind))
        if kind_name == "categorical":
            levels = list(spec.levels) if column == block else _levels(state)
            if levels is not None:
                _check_levels(df[column], column, levels)
        elif (
            kind_name == "numerical" and str(expr) == column and _check_numeric(df[column], column)
        ):
            df = df.assign(**{column: pd.to_numeric(df[column]).astype(float)})
    return df


def _factor_column(expr: str, df: pd.DataFrame) -> str | None:
    """The data column a factor expression reads when it is a name or ``C(name, ...)``."""
    if expr in df.columns:
        return expr
    m = _C_CALL.match(expr)
    if m and m.end() and m.group(1) in df.columns and expr.endswith(")"):
        return m.group(1)
    return None


def _levels(state: Any) -> list[Any] | None:
    if not isinstance(state, dict):
        return None
    if "categories" in state:
        return list(state["categories"])
    contrasts = state.get("contrasts")
    levels = getattr(contrasts, "levels", None)
    return None if levels is None else list(levels)


def _check_levels(col: pd.Series, name: str, levels: list[Any]) -> None:
    values = col[col.notna()]
    if values.empty:
        return
    textual = any(isinstance(v, str) for v in levels)
    if textual and (
        pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype)
    ):
        raise DataError(
            f"column {name!r} holds {values.dtype} values in the new data, but the model was "
            f"fitted with it as a factor with levels {show_values(levels)}"
        )
    try:
        found = pd.Index(levels).get_indexer(pd.Index(pd.unique(values.to_numpy(dtype=object))))
    except (TypeError, ValueError):
        return  # formulaic decides; its refusal is reworded by the caller
    unseen = pd.unique(values.to_numpy(dtype=object))[found < 0]
    if len(unseen):
        raise DataError(
            f"new data have factor levels the model was not fitted with: column {name!r} "
            f"has {show_values(unseen)} (levels {show_values(levels, 10)})"
        )


def _check_numeric(col: pd.Series, name: str) -> bool:
    """Whether a column the fit read as numbers needs converting to floats (numbers and
    missing values held as objects); an error when it holds anything else."""
    if pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
        return False
    values = col[col.notna()]
    if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values):
        return True
    raise DataError(
        f"column {name!r} was numeric in the fit but holds {col.dtype} values in the new "
        f"data (e.g. {shown(values.iloc[0])})"
    )


__all__ = ["check_new_data", "missing_columns_error", "model_variables", "show_values"]
