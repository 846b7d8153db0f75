"""The errors of Parquet sources in glmx's words: which file of a dataset cannot be read,
which file lacks a column.

pyarrow reports a damaged file, a stray non-Parquet file in a dataset directory or a
column missing from one file with its own exceptions and wording; these helpers name the
file (relative to the dataset's directory) and say what to do, in one line.  The Arrow
exception stays chained for ``--debug`` tracebacks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from glmx.errors import DataError

# what glmx.glm reads in memory rather than as Parquet (see glmx.io.datafiles)
OTHER_FORMATS = "CSV, TSV or Arrow/Feather"


def read_errors() -> tuple[type[BaseException], ...]:
    """The exceptions pyarrow raises for a file it cannot read."""
    from pyarrow import ArrowException

    return (ArrowException, OSError)


def file_name(path: Path, file: str) -> str:
    """How an error names one file of the source: relative to a dataset's directory."""
    return os.path.relpath(file, path) if path.is_dir() else path.name


def _why(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "it was removed"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return "it is damaged, truncated or not a Parquet file"


def unreadable_file(path: Path, file: str, exc: BaseException) -> DataError:
    """The error for a file of the source that pyarrow could not open or decode."""
    if path.is_dir():
        return DataError(
            f"cannot read file {file_name(path, file)!r} of the Parquet dataset {str(path)!r}: "
            f"{_why(exc)}; remove it from the directory or rewrite it"
        )
    return DataError(
        f"cannot read {str(path)!r} as Parquet: {_why(exc)} (glmx.glm reads a path as Parquet "
        f"unless its extension says {OTHER_FORMATS})"
    )


def unreadable_dataset(path: Path, exc: BaseException) -> DataError:
    """The error when pyarrow cannot open the dataset: the first file of the directory
    (in pyarrow's order, skipping hidden and ``_``-prefixed names as it does) whose
    Parquet footer cannot be read, else the dataset itself."""
    import pyarrow.parquet as pq

    if not path.is_dir():
        return unreadable_file(path, str(path), exc)
    for file in _dataset_files(path):
        try:
            pq.read_metadata(file)
        except read_errors() as bad:
            return unreadable_file(path, file, bad)
    return DataError(f"cannot read the Parquet dataset {str(path)!r}: {_why(exc)}")


def _dataset_files(path: Path) -> Iterator[str]:
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in sorted(files):
            if not name.startswith((".", "_")):
                yield os.path.join(root, name)


def absent_columns(fragment: Any, schema: Any, columns: Sequence[str]) -> list[str]:
    """The requested columns neither in the file nor among the fragment's partition keys
    (a partitioned dataset's directory names)."""
    import pyarrow.dataset as ds

    keys = ds.get_partition_keys(fragment.partition_expression) or {}
    return [c for c in columns if c not in schema.names and c not in keys]


def lacking_columns(path: Path, file: str, absent: Sequence[str]) -> DataError:
    return DataError(
        f"file {file_name(path, file)!r} of the Parquet dataset {str(path)!r} lacks the "
        f"column(s) {', '.join(map(repr, absent))} the model uses; every file must hold them"
    )


__all__ = [
    "absent_columns",
    "file_name",
    "lacking_columns",
    "read_errors",
    "unreadable_dataset",
    "unreadable_file",
]
