"""Chunk sources for out-of-core fits, and the first pass that learns what the formula needs.

A source yields the data in chunks of rows (:class:`Chunk`: a pandas DataFrame or a
pyarrow record batch) as many times as the fit asks (one pass per IRLS iteration).  Two
kinds:

* :class:`ParquetSource`: a Parquet file or a directory (a dataset found by
  ``pyarrow.dataset``), file by file in path order, only the needed columns, in record
  batches of ``chunk_rows`` rows (string columns as Arrow dictionaries), the next batch
  read in a background thread while the fit works on the current one;
* :class:`FrameSource`: pandas DataFrames from a callable returning a fresh iterator
  per pass, from a list of frames, or from one in-memory frame cut into chunks.

Every chunk carries a label (file and rows, or chunk number and rows) for the errors.
:func:`survey` is the first pass: rows, rows dropped for missing values (R's
``na.omit``) with the count per column, and the levels of every factor column (of a
record batch without a pandas frame when its columns are numbers and strings); it
refuses a column whose kind of values differs between chunks
(:mod:`glmx.outofcore.columnkinds`).  Empty chunks are skipped; a file that cannot be
read, or lacks a column, is named (:mod:`glmx.outofcore.parquetfiles`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from glmx.design.frames import to_pandas
from glmx.errors import DataError, shown
from glmx.outofcore.columnkinds import is_factor, same_kinds, value_kind
from glmx.outofcore.parquetfiles import (
    absent_columns,
    file_name,
    lacking_columns,
    read_errors,
    unreadable_dataset,
    unreadable_file,
)

T = TypeVar("T")

# bytes read at a time from a Parquet column chunk (the buffered stream of pyarrow's reader)
READ_BUFFER_BYTES = 1 << 20


class Chunk:
    """Rows of the data: the needed columns, as a pandas ``frame`` or a pyarrow record
    ``batch`` (whose ``frame`` is made on first use), where they come from (``label``,
    e.g. ``"file part-2.parquet"``) and the position of their first row there."""

    def __init__(
        self,
        frame: pd.DataFrame | None = None,
        label: str = "",
        first_row: int = 0,
        *,
        batch: Any = None,
    ) -> None:
        if (frame is None) == (batch is None):
            raise ValueError("a chunk holds a data frame or a record batch")
        self._frame = frame
        self.batch = batch
        self.label = label
        self.first_row = first_row

    @property
    def frame(self) -> pd.DataFrame:
        """The rows as a pandas DataFrame (glmx's conversion of Arrow: dictionary columns
        become strings, whose levels sort as R's)."""
        if self._frame is None:
            import pyarrow as pa

            self._frame = to_pandas(pa.Table.from_batches([self.batch]))
        return self._frame

    @property
    def n_rows(self) -> int:
        return int(self.batch.num_rows if self._frame is None else len(self._frame))

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
        try:
            self._dataset = ds.dataset(str(path), format="parquet")
            self._fragments = sorted(self._dataset.get_fragments(), key=lambda f: f.path)
        except read_errors() as exc:
            raise unreadable_dataset(self.path, exc) from exc
        if not self._fragments:
            raise DataError(f"{str(path)!r} holds no Parquet files")

    def column_names(self) -> list[str]:
        return list(self._dataset.schema.names)

    def check_absent(self, absent: Sequence[str]) -> None:
        """Columns absent from the dataset's schema (its first file's): when another file
        holds them, a DataError names the first file lacking them."""
        try:
            holders = [f for f in self._fragments if set(absent) & set(f.physical_schema.names)]
        except read_errors():
            return  # a file that cannot be read: the first pass names it
        if holders:
            first = self._fragments[0]
            raise lacking_columns(
                self.path, first.path, absent_columns(first, first.physical_schema, absent)
            )

    def chunks(self, columns: Sequence[str]) -> Iterator[Chunk]:
        return read_ahead(self._chunks(list(columns)))

    def _chunks(self, columns: list[str]) -> Iterator[Chunk]:
        for fragment in self._fragments:
            label = f"file {file_name(self.path, fragment.path)}"
            row = 0
            batches = self._batches(fragment, columns)
            while True:
                try:
                    batch = next(batches, None)
                except read_errors() as exc:
                    raise unreadable_file(self.path, fragment.path, exc) from exc
                if batch is None:
                    break
                if batch.num_rows:
                    yield Chunk(batch=batch, label=label, first_row=row)
                    row += batch.num_rows

    def _batches(self, fragment: Any, columns: list[str]) -> Iterator[Any]:
        """The file's record batches of the columns.  Read as a ParquetFile through a
        buffered stream, peak memory follows the batch, not the row group or the file
        (1e7 rows in 1e6-row row groups, 2.5e5-row batches: Arrow's pool peaks at 70 MB,
        against 180 MB for the dataset scanner, which decodes whole row groups); columns
        that are not in the file (a partitioned dataset's keys) need the dataset's
        scanner."""
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        schema = fragment.physical_schema
        absent = absent_columns(fragment, schema, columns)
        if absent:
            raise lacking_columns(self.path, fragment.path, absent)
        if set(columns) <= set(schema.names):
            # string columns as Arrow dictionaries: a factor's codes then come from its
            # few distinct values, not from a hash of every row's string
            strings = [c for c in columns if arrow_kind(schema.field(c).type) == "string"]
            with fragment.filesystem.open_input_file(fragment.path) as handle:
                pf = pq.ParquetFile(
                    handle, pre_buffer=False, buffer_size=READ_BUFFER_BYTES, read_dictionary=strings
                )
                yield from pf.iter_batches(batch_size=self.chunk_rows, columns=columns)
            return
        yield from fragment.to_batches(
            columns=columns,
            batch_size=self.chunk_rows,
            batch_readahead=0,
            fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False),
        )


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """The items, the next one made in a background thread while the caller works on
    the current one (Parquet decoding releases the GIL: a pass then overlaps reading the
    next chunk with the arithmetic on this one, at the memory of one more chunk)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="glmx-read") as pool:
        pending = pool.submit(next, items, None)
        while (item := pending.result()) is not None:
            pending = pool.submit(next, items, None)
            yield item


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
        raise DataError(f"chunk_rows must be a positive integer, got {shown(chunk_rows)}")
    if chunk_rows < 1:
        raise DataError(f"chunk_rows must be a positive integer, got {shown(chunk_rows)}")
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
    first-seen order (kept as the levels' order when no chunk holds the column as plain
    strings, as pandas' concatenation would) and the example is the earliest complete
    row).  A column whose values are all missing in a chunk adds no kind or level."""

    n_rows: int
    n_dropped: int
    na_counts: dict[str, int]
    seen: dict[str, set[Any]]  # factor columns: the values seen in complete rows
    order: dict[str, list[Any]]  # categorical columns: their categories, in order
    example: pd.DataFrame | None
    n_chunks: int
    # each column's kind of values ("numbers", "strings", "booleans") where first seen
    kinds: dict[str, tuple[str, str]] = field(default_factory=dict)
    # factor columns seen as plain values (not categorical) somewhere: sorted levels
    plain: set[str] = field(default_factory=set)

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
            same_kinds(self.kinds, other.kinds),
            self.plain | other.plain,
        )


def survey_chunk(df: pd.DataFrame, columns: Sequence[str], label: str = "") -> SurveyPart:
    """One chunk's part of the first pass (the map); ``label`` names the chunk."""
    na = df.isna()
    drop = np.asarray(na.any(axis=1))
    kept = df.loc[~drop]
    kinds = {c: k for c in columns if (k := value_kind(df[c])) is not None}
    seen: dict[str, set[Any]] = {}
    order: dict[str, list[Any]] = {}
    plain: set[str] = set()
    for c in kinds:  # a column with no value here says nothing of its levels
        col = kept[c]
        if not is_factor(col):
            continue
        seen[c] = set(pd.unique(col.to_numpy(dtype=object)))
        if isinstance(col.dtype, pd.CategoricalDtype):
            order[c] = list(col.cat.categories)
        else:
            plain.add(c)
    return SurveyPart(
        n_rows=len(df),
        n_dropped=int(drop.sum()),
        na_counts={c: int(na[c].sum()) for c in columns},
        seen=seen,
        order=order,
        example=kept.iloc[:1] if len(kept) else None,
        n_chunks=1,
        kinds={c: (k, label) for c, k in kinds.items()},
        plain=plain,
    )


def survey_batch(batch: Any, columns: Sequence[str], label: str = "") -> SurveyPart:
    """:func:`survey_chunk` of a pyarrow record batch, without making a pandas frame when
    the columns are numbers and strings (others take the pandas route)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    masks = {c: arrow_missing(batch.column(c)) for c in columns}
    kinds = {c: arrow_kind(batch.column(c).type) for c in columns}
    if any(kind is None for kind in kinds.values()):
        return survey_chunk(to_pandas(pa.Table.from_batches([batch])), columns, label)
    drop = np.zeros(batch.num_rows, dtype=bool)
    for mask in masks.values():
        drop |= mask
    keep = pa.array(~drop)
    seen = {
        c: set(pc.unique(batch.column(c).filter(keep)).to_pylist())
        for c in columns
        if kinds[c] == "string" and not masks[c].all()
    }
    first = np.flatnonzero(~drop)[:1]
    example = (
        to_pandas(pa.Table.from_batches([batch.slice(int(first[0]), 1)])) if len(first) else None
    )
    return SurveyPart(
        n_rows=batch.num_rows,
        n_dropped=int(drop.sum()),
        na_counts={c: int(masks[c].sum()) for c in columns},
        seen=seen,
        order={},  # dictionary columns become strings (glmx's conversion of Arrow)
        example=example,
        n_chunks=1,
        kinds={
            c: ("numbers" if kinds[c] == "number" else "strings", label)
            for c in columns
            if not masks[c].all()
        },
        plain=set(seen),
    )


def arrow_kind(dtype: Any) -> str | None:
    """How glmx's pandas conversion sees an Arrow column: ``"number"`` (integers and
    floats), ``"string"`` (a factor: strings, or a dictionary of strings, which becomes
    strings), None for other types (booleans, whose pandas type depends on missing values,
    dates...), which take the pandas route."""
    import pyarrow as pa

    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
        return "string" if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) else None
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype):
        return "number"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    return None


def arrow_missing(column: Any) -> NDArray[np.bool_]:
    """Rows missing in pandas' sense: null, or NaN in a float column."""
    import pyarrow as pa

    if pa.types.is_floating(column.type):
        values = column.to_numpy(zero_copy_only=False)  # NaN where null
        return np.isnan(values)  # type: ignore[no-any-return]
    if column.null_count == 0:
        return np.zeros(len(column), dtype=bool)
    return np.asarray(column.is_null().to_numpy(zero_copy_only=False))


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
        if c in total.order and c not in total.plain
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
        if chunk.batch is not None:
            part = survey_batch(chunk.batch, columns, chunk.label)
        else:
            part = survey_chunk(chunk.frame, columns, chunk.label)
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
    "arrow_kind",
    "arrow_missing",
    "as_source",
    "finish_survey",
    "survey",
    "survey_batch",
    "survey_chunk",
]
