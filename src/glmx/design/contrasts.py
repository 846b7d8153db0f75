"""R's default contrasts: treatment for factors, orthogonal polynomials for ordered factors.

R codes an ordered factor with ``contr.poly``: the columns are orthonormal polynomials in
the level index (linear, quadratic, cubic, ...), named ``x.L``, ``x.Q``, ``x.C``, ``x^4``,
``x^5``, ...  formulaic codes every factor it is not told otherwise about with treatment
contrasts.  :class:`GlmxMaterializer` is formulaic's pandas materializer with one change:
a bare ordered categorical column is coded with R's polynomial contrasts under R's names.
The choice is recorded in the factor's encoder state (formulaic's ``ContrastsState``), so
new data, whose column may be plain strings, get the same coding; a saved model keeps it
in its model spec.  ``C(x)`` and ``C(x, contr.treatment)`` choose treatment contrasts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from formulaic.materializers.pandas import PandasMaterializer
from formulaic.transforms.contrasts import ContrastsState, PolyContrasts, encode_contrasts
from formulaic.utils.cast import as_columns
from formulaic.utils.null_handling import drop_rows as drop_nulls
from interface_meta import override

# the name of glmx's materializer in formulaic's registry (a model spec's "materializer")
MATERIALIZER = "glmx"


class RPolyContrasts(PolyContrasts):
    """formulaic's polynomial contrasts (R's ``contr.poly``) with R's column names:
    ``x.L``, ``x.Q``, ``x.C``, ``x^4`` (``x`` followed by the coding's own name)."""

    FACTOR_FORMAT = "{name}{field}"
    FACTOR_FORMAT_REDUCED = "{name}{field}"


class GlmxMaterializer(PandasMaterializer):
    """formulaic's pandas materializer, with R's ``contr.poly`` for ordered factors."""

    REGISTER_NAME = MATERIALIZER
    REGISTER_INPUTS: Sequence[str] = ()  # chosen by name only, never for a data type

    @override
    def _encode_categorical(
        self,
        values: Any,
        metadata: Any,
        encoder_state: dict[str, Any],
        spec: Any,
        drop_rows: Sequence[int],
        reduced_rank: bool = False,
    ) -> Any:
        poly = _poly_coding(values, encoder_state)
        if poly is None:
            return super()._encode_categorical(
                values, metadata, encoder_state, spec, drop_rows, reduced_rank
            )
        if drop_rows:
            values = drop_nulls(values, indices=drop_rows)
        encoded = encode_contrasts(
            values,
            contrasts=RPolyContrasts(scores=poly.scores),
            reduced_rank=reduced_rank,
            _metadata=metadata,
            _state=encoder_state,
            _spec=spec,
        )
        # the state holds formulaic's own class (a saved model names only those)
        encoder_state["contrasts"] = ContrastsState(
            PolyContrasts(scores=poly.scores), encoder_state["categories"]
        )
        return as_columns(encoded)


def _poly_coding(values: Any, encoder_state: dict[str, Any]) -> PolyContrasts | None:
    """The polynomial contrasts a bare categorical factor takes, or None for formulaic's
    default: the coding recorded by the fit, else polynomial for an ordered column."""
    recorded = encoder_state.get("contrasts")
    if isinstance(recorded, ContrastsState):
        coding = recorded.contrasts
        return coding if isinstance(coding, PolyContrasts) else None
    dtype = getattr(values, "dtype", None)
    if isinstance(dtype, pd.CategoricalDtype) and dtype.ordered:
        return PolyContrasts()
    return None


__all__ = ["MATERIALIZER", "GlmxMaterializer", "RPolyContrasts"]
