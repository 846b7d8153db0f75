"""The Dask backend of out-of-core fits: the partitions of a ``dask.dataframe.DataFrame``
are the chunks, and every pass is a map over them and a tree reduction of the sums.

A pass builds one task per partition (the partition's model rows by
:func:`~glmx.outofcore.chunkdesign.chunk_data`, then the pass's function: the survey,
:func:`~glmx.outofcore.streaming.chunk_partials` or the final statistics), adds the
results up in a tree of ``FAN_IN``-way sums, and computes the root with
``dask.compute``, so it runs on the active scheduler: a ``distributed.Client`` when one
is the default, the threaded scheduler otherwise.  Each pass reads every partition once
(nothing is persisted) and only the sums (p x p at most) come back to the client.

An invalid value raises :class:`glmx.errors.DataError` inside the partition's task,
naming the column, the partition and the row in it; Dask passes a task's exception to
the client (distributed does not retry a task that raised, only one whose worker died).

dask is imported only when a Dask DataFrame is fitted: glmx imports without it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from glmx.design.frames import to_pandas
from glmx.outofcore.chunkdesign import ChunkData, ModelPlan, chunk_data
from glmx.outofcore.sources import Chunk, Survey, SurveyPart, finish_survey, survey_chunk
from glmx.outofcore.streaming import S

FAN_IN = 8  # partial sums added per reduction task


def is_dask_dataframe(data: Any) -> bool:
    """Whether ``data`` is a dask DataFrame (False without importing dask when it was
    never imported: then no object can be one)."""
    if "dask.dataframe" not in sys.modules:
        return False
    import dask.dataframe as dd

    return isinstance(data, dd.DataFrame)


class DaskSource:
    """A dask DataFrame as the data of an out-of-core fit (see module doc)."""

    def __init__(self, ddf: Any) -> None:
        self.ddf = ddf

    def column_names(self) -> list[str]:
        return [str(c) for c in self.ddf.columns]

    def survey(self, columns: Sequence[str]) -> Survey:
        """The first pass (rows, missing values, factor levels), one task per partition."""
        import dask

        parts = [
            dask.delayed(_partition_survey)(part, list(columns))
            for part in self.ddf[list(columns)].to_delayed()
        ]
        (total,) = dask.compute(_tree_sum(parts))
        return finish_survey(total, columns)

    def passes(self, plan: ModelPlan) -> DaskPasses:
        return DaskPasses(self.ddf, plan)


class DaskPasses:
    """The IRLS and statistics passes over the partitions (a
    :class:`~glmx.outofcore.streaming.RowPasses`); the first checks the values."""

    def __init__(self, ddf: Any, plan: ModelPlan) -> None:
        import dask

        self._partitions = ddf[plan.columns].to_delayed()
        self._plan = dask.delayed(plan)  # one key in the graph, shared by the tasks
        self.passes = 0

    def map_sum(self, fn: Callable[[ChunkData], S]) -> S | None:
        import dask

        check = self.passes == 0
        self.passes += 1
        shared_fn = dask.delayed(fn)
        parts = [
            dask.delayed(_partition_value)(part, k, self._plan, check, shared_fn)
            for k, part in enumerate(self._partitions)
        ]
        (total,) = dask.compute(_tree_sum(parts))
        return total  # type: ignore[no-any-return]


def _partition_chunk(frame: Any, k: int, columns: list[str]) -> Chunk:
    """Partition k as a chunk (labelled for the errors, rows counted from 0 in it)."""
    df = to_pandas(frame)[columns].reset_index(drop=True)
    return Chunk(df, f"partition {k}", 0)


def _partition_survey(frame: Any, columns: list[str]) -> SurveyPart | None:
    df = to_pandas(frame)[columns]
    return survey_chunk(df, columns) if len(df) else None


def _partition_value(
    frame: Any, k: int, plan: ModelPlan, check: bool, fn: Callable[[ChunkData], S]
) -> S | None:
    """The task of a pass on partition k: its model rows, then the pass's function
    (None for a partition with no complete row)."""
    data = chunk_data(plan, _partition_chunk(frame, k, plan.columns), check)
    return None if data is None else fn(data)


def _sum_present(*parts: Any) -> Any:
    """The sum of the partial sums that are not None, in order (None if all are)."""
    total = None
    for part in parts:
        if part is not None:
            total = part if total is None else total + part
    return total


def _tree_sum(parts: list[Any]) -> Any:
    """The delayed sum of delayed partial sums: a tree of FAN_IN-way additions, which
    keeps the partitions' order (the survey's first complete row and category order)."""
    import dask

    if len(parts) == 1:
        return dask.delayed(_sum_present)(parts[0])
    while len(parts) > 1:
        parts = [
            dask.delayed(_sum_present)(*parts[i : i + FAN_IN]) for i in range(0, len(parts), FAN_IN)
        ]
    return parts[0]


__all__ = ["DaskPasses", "DaskSource", "is_dask_dataframe"]
