"""Data files read into memory: CSV, TSV, Parquet and Arrow/Feather, by extension.

The command line reads every DATA argument here, and ``glmx.glm`` reads a path whose
extension says CSV, TSV or Arrow/Feather here too (a Parquet path is streamed instead).
Arrow and Parquet tables go through glmx's own frame conversion, so their columns are
read exactly as ``glmx.glm`` reads a pyarrow Table.
"""

from __future__ import annotations

import os
import sys
from typing import IO

import pandas as pd

from glmx.errors import DataError

# file extensions, longest first so that ".csv.gz" wins over ".gz"
CSV = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip", ".txt")
TSV = (".tsv", ".tsv.gz", ".tab")
PARQUET = (".parquet", ".pq")
ARROW = (".feather", ".arrow", ".ipc")
KNOWN_EXTENSIONS = CSV + TSV + PARQUET + ARROW


def file_kind(path: str | os.PathLike[str]) -> str | None:
    """``"csv"``, ``"tsv"``, ``"parquet"`` or ``"arrow"`` from the file's extension
    (None: not one of those)."""
    low = os.fspath(path).lower()
    for kind, exts in (("csv", CSV), ("tsv", TSV), ("parquet", PARQUET), ("arrow", ARROW)):
        if low.endswith(exts):
            return kind
    return None


def read_data(path: str | os.PathLike[str], stdin: IO[str] | None = None) -> pd.DataFrame:
    """A data frame from a CSV, TSV, Parquet or Arrow/Feather file, or CSV from standard
    input (path ``-``); a DataError names the file that cannot be read and why."""
    from pyarrow import ArrowException

    from glmx.design.frames import to_pandas

    name = os.fspath(path)
    kind = "csv" if name == "-" else file_kind(name)
    if kind is None:
        raise DataError(
            f"cannot tell the format of {name!r} from its extension; use one of "
            f"{', '.join(KNOWN_EXTENSIONS)} (or '-' for CSV on standard input)"
        )
    try:
        if name == "-":
            return pd.read_csv(stdin if stdin is not None else sys.stdin)
        if kind in ("csv", "tsv"):
            return pd.read_csv(name, sep="\t" if kind == "tsv" else ",")
        if kind == "parquet":
            import pyarrow.parquet as pq

            return to_pandas(pq.read_table(name))
        import pyarrow.feather as feather

        return to_pandas(feather.read_table(name))
    except (OSError, ValueError, ArrowException) as exc:  # pandas' parser errors are ValueErrors
        if isinstance(exc, DataError):
            raise
        where = "standard input" if name == "-" else repr(name)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DataError(f"cannot read {where}: {' '.join(reason.split())}") from exc


__all__ = ["KNOWN_EXTENSIONS", "file_kind", "read_data"]
