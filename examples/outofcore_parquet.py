"""A GLM fitted to a Parquet dataset bigger than the memory it is allowed: the fit reads
the data in chunks, once per IRLS step, and never holds more than a chunk.

    python examples/outofcore_parquet.py                # 15 million rows, 1 GB budget
    python examples/outofcore_parquet.py --rows 1e8     # the size of glmx's benchmark

The script writes a Parquet dataset (a Poisson claim count, an exposure, 6 numeric
covariates and a 5-level region: 10 columns) in a temporary directory, fits

    claims ~ x1 + ... + x6 + region + offset(log_exposure)

with ``glmx.glm`` in a child process, prints the summary, and compares the child's peak
resident memory (``getrusage(RUSAGE_CHILDREN)``, the number ``/usr/bin/time -v`` reports)
with the memory budget and with what an in-memory fit would hold: the design matrix X
alone is rows x 11 doubles.  The budget is checked, not imposed: an address-space limit
(``RLIMIT_AS``) counts what numpy's BLAS and the allocator's per-thread arenas reserve,
not what is used, and would fail a fit whose resident memory is a third of it.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import glmx

COVARIATES = [f"x{j}" for j in range(1, 7)]
REGIONS = ["north", "east", "south", "west", "central"]
FORMULA = "claims ~ " + " + ".join(COVARIATES) + " + region + offset(log_exposure)"
ROWS_PER_FILE = 2_500_000
ROW_GROUP = 500_000


def write_dataset(root: Path, rows: int, seed: int = 1) -> None:
    """Files of ROWS_PER_FILE rows, written a row group at a time (the writer never holds
    more than one)."""
    rng = np.random.default_rng(seed)
    beta = np.array([0.3, -0.2, 0.1, 0.05, -0.1, 0.0])
    effect = np.array([0.0, 0.3, -0.2, 0.1, 0.2])
    for k, start in enumerate(range(0, rows, ROWS_PER_FILE)):
        n_file = min(ROWS_PER_FILE, rows - start)
        writer = None
        for lo in range(0, n_file, ROW_GROUP):
            m = min(ROW_GROUP, n_file - lo)
            X = rng.normal(size=(m, len(COVARIATES)))
            region = rng.integers(0, len(REGIONS), size=m)
            log_exposure = np.log(rng.uniform(0.5, 2.0, size=m))
            mu = np.exp(-1.0 + X @ beta + effect[region] + log_exposure)
            columns = {"claims": rng.poisson(mu).astype(float), "log_exposure": log_exposure}
            columns |= {name: X[:, j] for j, name in enumerate(COVARIATES)}
            table = pa.table(columns).append_column("region", pa.array(np.array(REGIONS)[region]))
            if writer is None:
                writer = pq.ParquetWriter(root / f"part-{k:03d}.parquet", table.schema)
            writer.write_table(table, row_group_size=ROW_GROUP)
        assert writer is not None
        writer.close()


def fit(root: str) -> None:
    """The child process: the fit, and its summary on stdout."""
    t = time.perf_counter()
    result = glmx.glm(FORMULA, root, family="poisson")
    seconds = time.perf_counter() - t
    print(result.summary())
    print(f"\n{result.n_passes} passes over the data in {seconds:.1f} s")


def peak_rss_bytes() -> int:
    """The largest resident set of the children waited for (kilobytes on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=float, default=15e6, help="rows of data (default 15e6)")
    ap.add_argument("--budget-gb", type=float, default=1.0, help="memory budget (default 1)")
    ap.add_argument("--dir", default=None, help="where the dataset goes (default: a temp dir)")
    ap.add_argument("--fit", help=argparse.SUPPRESS)  # the child process's dataset
    args = ap.parse_args(argv)
    if args.fit:
        fit(args.fit)
        return 0
    rows, budget = int(args.rows), args.budget_gb * 2**30
    work = Path(tempfile.mkdtemp(prefix="glmx-parquet-", dir=args.dir))
    try:
        t = time.perf_counter()
        write_dataset(work, rows)
        on_disk = sum(f.stat().st_size for f in work.glob("*.parquet"))
        print(f"wrote {rows:,} rows x 10 columns, {on_disk / 2**30:.2f} GB of Parquet, "
              f"in {time.perf_counter() - t:.1f} s\n")  # fmt: skip
        child = subprocess.run([sys.executable, __file__, "--fit", str(work)], check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if child.returncode != 0:
        return child.returncode
    peak = peak_rss_bytes()
    design = rows * (len(COVARIATES) + len(REGIONS)) * 8  # intercept, x1-x6, 4 region columns
    print(f"\ndesign matrix of an in-memory fit: {design / 2**30:.2f} GB;  Parquet on disk: "
          f"{on_disk / 2**30:.2f} GB;  memory budget: {budget / 2**30:.2f} GB")  # fmt: skip
    within = "within" if peak < budget else "OVER"
    print(f"peak resident memory of the fit: {peak / 2**30:.2f} GB ({within} the budget)")
    return 0 if peak < budget else 1


if __name__ == "__main__":
    sys.exit(main())
