"""The Dask backend of out-of-core fits: the partitions of a ``dask.dataframe.DataFrame``
are the chunks, and every pass is a map over them and a tree reduction of the sums.

A pass builds one task per partition (the partition's model rows by
:func:`~glmx.outofcore.chunkdesign.chunk_data`, then the pass's function: the survey,
:func:`~glmx.outofcore.streaming.chunk_partials` or the final statistics), adds the
results up in a tree of ``FAN_IN``-way sums, and computes the root with
``dask.compute``, so it runs on the active scheduler: a ``distributed.Client`` when one
is the default, the threaded scheduler otherwise.  Each pass reads every partition once
(nothing is persisted) and only the sums (p x p at most) come back to the client.
:class:`BlockPasses` is that machinery for any blocks of rows; the row blocks of dask
arrays (:mod:`glmx.outofcore.daskarrays`) use it too.  Its ``map_rows`` gives the
per-row outputs of the results as a lazy dask array: one task per block, with the row
counts the first pass found, computed only when the user computes the array.

An invalid value raises :class:`glmx.errors.DataError` inside the partition's task,
naming the column, the partition and the row in it; Dask passes a task's exception to
the client (distributed does not retry a task that raised, only one whose worker died).
The warnings of the first pass's checks (non-integer counts) are recorded in the task
and issued again on the client, where a worker's own warnings never arrive.

dask is imported only when a Dask DataFrame is fitted: glmx imports without it.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from glmx.design.frames import to_pandas
from glmx.errors import DataError
from glmx.outofcore.chunkdesign import ChunkData, ModelPlan, chunk_data
from glmx.outofcore.sources import Chunk, Survey, SurveyPart, finish_survey, survey_chunk
from glmx.outofcore.streaming import S

FAN_IN = 8  # partial sums added per reduction task

# catch_warnings swaps process-wide state: the tasks of one worker process take turns
_WARNINGS_LOCK = threading.Lock()


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
            dask.delayed(_partition_survey)(part, k, list(columns))
            for k, part in enumerate(self.ddf[list(columns)].to_delayed())
        ]
        try:
            total = compute_sum(parts)
        except KeyError as exc:  # Dask's column selection on a partition lacking one
            lacking = self._lacking(columns)
            if lacking is None:
                raise
            raise lacking from exc
        return finish_survey(total, columns)

    def _lacking(self, columns: Sequence[str]) -> DataError | None:
        """The error naming the first partition that lacks model columns (None: none
        does), from one more pass reading the partitions one by one (a partition Dask
        cannot even read for a missing column, e.g. of a Parquet file, is named too)."""
        import dask

        for k, part in enumerate(self.ddf.to_delayed()):
            try:
                (present,) = dask.compute(dask.delayed(_column_names)(part))
            except KeyError:
                present = []
            if not present:
                return DataError(
                    f"partition {k} of the Dask DataFrame cannot be read with the columns "
                    f"{', '.join(map(repr, columns))} the model uses: one is missing from it "
                    "(or from a file behind it); every partition must hold them"
                )
            absent = [c for c in columns if c not in present]
            if absent:
                return _lacking_columns(k, absent)
        return None

    def passes(self, plan: ModelPlan) -> DaskPasses:
        return DaskPasses(self.ddf, plan)


@dataclass
class Checked:
    """A block's result in the first pass: the pass's value, the warnings its checks
    raised (category and message) and ``found``, what the backend learns from the
    values (summable, or None); ``+`` adds two blocks' results."""

    value: Any
    warnings: tuple[tuple[type[Warning], str], ...] = ()
    found: Any = None

    def __add__(self, other: Checked) -> Checked:
        new = tuple(w for w in other.warnings if w not in self.warnings)
        return Checked(
            _sum_present(self.value, other.value),
            self.warnings + new,
            _sum_present(self.found, other.found),
        )


class BlockPasses:
    """The passes of a fit over blocks of rows of a Dask collection (a
    :class:`~glmx.outofcore.streaming.RowPasses`): a pass is one task per block,
    ``task(block, k, context, check, fn)``, whose results are added in a tree and
    computed on the active scheduler.  The first pass checks the values (``check``); its
    tasks return :class:`Checked`, whose warnings are issued here and whose ``found``
    is kept."""

    def __init__(self, blocks: Sequence[Any], context: Any, task: Callable[..., Any]) -> None:
        import dask

        self._blocks = list(blocks)
        self._context = dask.delayed(context)  # one key in the graph, shared by the tasks
        self._task = task
        self.passes = 0
        self.found: Any = None

    def row_counts(self) -> list[int]:
        """The model rows of each block (known once the first pass has run)."""
        raise NotImplementedError

    def map_rows(self, fn: Callable[[ChunkData, int], Any]) -> Any:
        """A lazy dask vector of ``fn(rows, start)`` over the blocks in order: one task
        per block (its model rows, then ``fn``), nothing computed here."""
        import dask
        import dask.array as da

        counts = self.row_counts()
        starts = [int(s) for s in np.cumsum([0, *counts[:-1]])]
        shared_fn = dask.delayed(fn)
        parts = [
            da.from_delayed(
                dask.delayed(partial(_block_rows, self._task))(
                    block, k, self._context, shared_fn, start
                ),
                shape=(n,),
                dtype=float,
            )
            for k, (block, n, start) in enumerate(zip(self._blocks, counts, starts))
        ]
        return da.concatenate(parts)

    def map_sum(self, fn: Callable[[ChunkData], S]) -> S | None:
        import dask

        check = self.passes == 0
        self.passes += 1
        shared_fn = dask.delayed(fn)
        parts = [
            dask.delayed(self._task)(block, k, self._context, check, shared_fn)
            for k, block in enumerate(self._blocks)
        ]
        total = compute_sum(parts)
        if not check or total is None:
            return total  # type: ignore[no-any-return]
        for category, message in total.warnings:
            warnings.warn(message, category, stacklevel=2)
        self.found = total.found
        return total.value  # type: ignore[no-any-return]


class DaskPasses(BlockPasses):
    """The IRLS and statistics passes over the partitions of a dask DataFrame; the first
    counts each partition's model rows (after na.omit)."""

    found: PartitionRows | None

    def __init__(self, ddf: Any, plan: ModelPlan) -> None:
        super().__init__(ddf[plan.columns].to_delayed(), plan, _partition_value)

    def row_counts(self) -> list[int]:
        counts = {} if self.found is None else self.found.counts
        return [counts.get(k, 0) for k in range(len(self._blocks))]


@dataclass
class PartitionRows:
    """The model rows of the partitions seen, by partition number; ``+`` joins them."""

    counts: dict[int, int]

    def __add__(self, other: PartitionRows) -> PartitionRows:
        return PartitionRows({**self.counts, **other.counts})


def block_value(
    build: Callable[[bool], ChunkData | None],
    check: bool,
    fn: Callable[[ChunkData], S],
    find: Callable[[ChunkData], Any] | None = None,
) -> Any:
    """A pass's task on one block: its model rows by ``build(check)``, then ``fn`` (None
    for a block with no row).  In the first pass a :class:`Checked`, with the warnings
    ``build`` raised and ``find(rows)``."""
    if not check:
        data = build(False)
        return None if data is None else fn(data)
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = build(True)
    raised = tuple(dict.fromkeys((m.category, str(m.message)) for m in caught))
    if data is None:
        return Checked(None, raised)
    return Checked(fn(data), raised, None if find is None else find(data))


def _block_rows(
    task: Callable[..., Any], block: Any, k: int, context: Any, fn: Any, start: int
) -> Any:
    """The task of a rows pass on block k: ``fn(rows, start)``, empty for no rows."""
    value = task(block, k, context, False, partial(fn, start=start))
    return np.empty(0) if value is None else value


def _partition_frame(frame: Any, k: int, columns: list[str]) -> pd.DataFrame:
    """The columns of partition k (a DataError names the partition lacking one)."""
    df = to_pandas(frame)
    absent = [c for c in columns if c not in df.columns]
    if absent:
        raise _lacking_columns(k, absent)
    return df[columns]


def _lacking_columns(k: int, absent: Sequence[str]) -> DataError:
    return DataError(
        f"partition {k} of the Dask DataFrame lacks the column(s) "
        f"{', '.join(map(repr, absent))} the model uses; every partition must hold them"
    )


def _column_names(frame: Any) -> list[str]:
    return [str(c) for c in frame.columns]


def _partition_chunk(frame: Any, k: int, columns: list[str]) -> Chunk:
    """Partition k as a chunk (labelled for the errors, rows counted from 0 in it)."""
    return Chunk(_partition_frame(frame, k, columns).reset_index(drop=True), f"partition {k}", 0)


def _partition_survey(frame: Any, k: int, columns: list[str]) -> SurveyPart | None:
    """The survey's part of partition k (None: an empty partition, skipped)."""
    df = _partition_frame(frame, k, columns)
    return survey_chunk(df, columns, f"partition {k}") if len(df) else None


def _partition_value(
    frame: Any, k: int, plan: ModelPlan, check: bool, fn: Callable[[ChunkData], S]
) -> Any:
    """The task of a pass on partition k: its model rows, then the pass's function."""
    chunk = _partition_chunk(frame, k, plan.columns)
    return block_value(partial(chunk_data, plan, chunk), check, fn, partial(_partition_rows, k))


def _partition_rows(k: int, data: ChunkData) -> PartitionRows:
    return PartitionRows({k: int(data.y.shape[0])})


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


def compute_sum(parts: list[Any]) -> Any:
    """The sum of delayed partial sums (None if every one is None), added in a tree and
    computed on the active scheduler: only the sum comes back to the client."""
    import dask

    (total,) = dask.compute(_tree_sum(parts))
    return total


__all__ = [
    "BlockPasses",
    "Checked",
    "DaskPasses",
    "DaskSource",
    "PartitionRows",
    "block_value",
    "is_dask_dataframe",
]
