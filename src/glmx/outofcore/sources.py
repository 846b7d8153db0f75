"""Chunk sources for out-of-core fits, and the first pass that learns what the formula needs.

A source yields the data in chunks of rows, as pandas DataFrames, as many times as the
fit asks (one pass per IRLS iteration).  Two kinds:

* :class:`ParquetSource`: a Parquet file or a directory (a dataset) read with
  ``pyarrow.dataset``, file by file in path order, only the needed columns, in record
  batches of ``chunk_rows`` rows;
* :class:`FrameSource`: pandas DataFrames from a callable returning a fresh iterator
  per pass, from a list of frames, or from one in-memory frame cut into chunks.

Every chunk carries a label (file and rows, or chunk number and rows) for the errors.
:func:`survey` is the first pass: rows, rows dropped for missing values (R's
``na.omit``) with the count per column, and the levels of every factor column.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from glmx.design.frames import to_pandas
from glmx.errors import DataError


@dataclass(frozen=True)
class Chunk:
    """Rows of the data: ``frame`` (the needed columns), where they come from (``label``,
    e.g. ``"file part-2.parquet"``) and the position of their first row there."""

    frame: pd.DataFrame
    label: str
    first_row: int

    def where(self, i: int) -> str:
        """Where row i of the chunk is, for an error message."""
        return f"{self.label}, row {self.first_row + i}"


class ChunkSource(Protocol):
    """Yields the data in chunks, afresh at every call (one call per pass)."""

    def chunks(self, columns: Sequence[str]) -> Iterator[Chunk]: ...

    def column_names(self) -> list[str]: ...


class ParquetSource:
    """A Parquet file or directory of Parquet files, scanned file by file (sorted by path)
    in record batches of ``chunk_rows`` rows, reading only the requested columns."""

    def __init__(self, path: str | os.PathLike[str], chunk_rows: int) -> None:
        import pyarrow.dataset as ds

        if not Path(path).exists():
            raise DataError(f"no Parquet file or directory at {str(path)!r}")
        self.path = Path(path)
        self.chunk_rows = chunk_rows
        self._dataset = ds.dataset(str(path), format="parquet")
        self._fragments = sorted(self._dataset.get_fragments(), key=lambda f: f.path)
        if not self._fragments:
            raise DataError(f"{str(path)!r} holds no Parquet files")

    def column_names(self) -> list[str]:
        return list(self._dataset.schema.names)

    def chunks(self, columns: Sequence[str]) -> Iterator[Chunk]:
        import pyarrow as pa
        import pyarrow.dataset as ds

        for fragment in self._fragments:
            name = os.path.relpath(fragment.path, self.path) if self.path.is_dir() else None
            label = f"file {name or self.path.name}"
            row = 0
            # no read-ahead and no pre-buffering of whole column chunks: peak memory then
            # follows the batch (and a row group), not the file (1e7 rows, 1e6-row row
            # groups: a scan peaks at 0.5 GB instead of 1.4 GB)
            batches = fragment.to_batches(
                columns=list(columns),
                batch_size=self.chunk_rows,
                batch_readahead=0,
                fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False),
            )
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                # glmx's conversion: dictionary columns become strings (levels sorted)
                frame = to_pandas(pa.Table.from_batches([batch]))
                yield Chunk(frame, label, row)
                row += batch.num_rows


class FrameSource:
    """pandas DataFrames: ``make()`` returns a fresh iterator of frames at every pass."""

    def __init__(self, make: Callable[[], Iterable[Any]]) -> None:
        self._make = make

    def column_names(self) -> list[str]:
        for chunk in self.chunks(None):
            return [str(c) for c in chunk.frame.columns]
        raise DataError("the chunk source yields no data frames")

    def chunks(self, columns: Sequence[str] | None) -> Iterator[Chunk]:
        for k, data in enumerate(self._make()):
            frame = to_pandas(data)
            if columns is not None:
                absent = [c for c in columns if c not in frame.columns]
                if absent:
                    raise DataError(f"chunk {k} lacks the column(s) {', '.join(map(repr, absent))}")
                frame = frame[list(columns)]
            if len(frame):
                yield Chunk(frame.reset_index(drop=True), f"chunk {k}", 0)


def as_source(source: Any, chunk_rows: int) -> ChunkSource:
    """A chunk source from a Parquet path, a callable returning an iterator of frames, a
    list/tuple of frames, or one data frame (cut into ``chunk_rows``-row chunks)."""
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)):
        raise DataError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    if chunk_rows < 1:
        raise DataError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    if isinstance(source, (str, os.PathLike)):
        return ParquetSource(source, int(chunk_rows))
    if hasattr(source, "chunks") and hasattr(source, "column_names"):
        return source  # type: ignore[no-any-return]
    if isinstance(source, (list, tuple)):
        frames = list(source)
        return FrameSource(lambda: iter(frames))
    if callable(source):
        return FrameSource(source)
    if isinstance(source, Iterator):
        raise DataError(
            "an iterator can be read once, and a fit reads the data once per iteration: "
            "pass a callable returning a fresh iterator (e.g. lambda: read_chunks(...))"
        )
    frame = to_pandas(source)
    step = int(chunk_rows)
    return FrameSource(lambda: (frame.iloc[a : a + step] for a in range(0, len(frame), step)))


def is_factor(col: pd.Series) -> bool:
    """Whether formulaic treats the column as a factor (strings, categoricals, booleans)."""
    return isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(col)


@dataclass(frozen=True)
class Survey:
    """What the first pass learned: rows read, rows dropped for missing values (and per
    column), the levels of each factor column (R's order: sorted strings, a categorical's
    own order, unused levels dropped) and one complete row (for the design's prototype)."""

    n_rows: int
    n_dropped: int
    na_counts: dict[str, int]
    levels: dict[str, list[Any]]
    example: pd.DataFrame
    n_chunks: int


@dataclass
class SurveyPart:
    """The first pass's sums over some chunks; ``+`` adds a later chunk's (the reduction:
    counts add, the factor values seen are united, a categorical's categories keep their
    first-seen order and the example is the earliest complete row)."""

    n_rows: int
    n_dropped: int
    na_counts: dict[str, int]
    seen: dict[str, set[Any]]  # factor columns: the values seen in complete rows
    order: dict[str, list[Any]]  # categorical columns: their categories, in order
    example: pd.DataFrame | None
    n_chunks: int

    def __add__(self, other: SurveyPart) -> SurveyPart:
        seen = {c: set(v) for c, v in self.seen.items()}
        for c, values in other.seen.items():
            seen.setdefault(c, set()).update(values)
        order = {c: list(v) for c, v in self.order.items()}
        for c, cats in other.order.items():
            known = set(order.setdefault(c, []))
            order[c].extend(v for v in cats if v not in known)
        na_counts = {c: n + other.na_counts.get(c, 0) for c, n in self.na_counts.items()}
        return SurveyPart(
            self.n_rows + other.n_rows,
            self.n_dropped + other.n_dropped,
            na_counts,
            seen,
            order,
            self.example if self.example is not None else other.example,
            self.n_chunks + other.n_chunks,
        )


def survey_chunk(df: pd.DataFrame, columns: Sequence[str]) -> SurveyPart:
    """One chunk's part of the first pass (the map)."""
    na = df.isna()
    drop = np.asarray(na.any(axis=1))
    kept = df.loc[~drop]
    seen: dict[str, set[Any]] = {}
    order: dict[str, list[Any]] = {}
    for c in columns:
        col = kept[c]
        if not is_factor(col):
            continue
        seen[c] = set(pd.unique(col.to_numpy(dtype=object)))
        if isinstance(col.dtype, pd.CategoricalDtype):
            order[c] = list(col.cat.categories)
    return SurveyPart(
        n_rows=len(df),
        n_dropped=int(drop.sum()),
        na_counts={c: int(na[c].sum()) for c in columns},
        seen=seen,
        order=order,
        example=kept.iloc[:1] if len(kept) else None,
        n_chunks=1,
    )


def finish_survey(total: SurveyPart | None, columns: Sequence[str]) -> Survey:
    """The survey from the sum of the chunks' parts (None: no chunk)."""
    if total is None or total.n_rows == 0:
        raise DataError("the data have no rows")
    if total.example is None:
        raise DataError(
            f"no rows left after removing {total.n_dropped} row(s) with missing values in "
            f"{', '.join(columns)}"
        )
    levels = {
        c: [v for v in total.order[c] if v in values]
        if c in total.order
        else _sorted_levels(values, c)
        for c, values in total.seen.items()
    }
    return Survey(
        total.n_rows, total.n_dropped, total.na_counts, levels, total.example, total.n_chunks
    )


def survey(source: ChunkSource, columns: Sequence[str]) -> Survey:
    """The first pass over the data (see :class:`Survey`)."""
    total: SurveyPart | None = None
    for chunk in source.chunks(columns):
        part = survey_chunk(chunk.frame, columns)
        total = part if total is None else total + part
    return finish_survey(total, columns)


def _sorted_levels(values: set[Any], column: str) -> list[Any]:
    """pandas' (and so formulaic's) category order: the sorted unique values."""
    try:
        return sorted(values)
    except TypeError:
        raise DataError(
            f"column {column!r} mixes value types across chunks ({len(values)} distinct "
            "values that cannot be ordered); give it one type"
        ) from None


__all__ = [
    "Chunk",
    "ChunkSource",
    "FrameSource",
    "ParquetSource",
    "Survey",
    "SurveyPart",
    "as_source",
    "finish_survey",
    "survey",
    "survey_chunk",
]
