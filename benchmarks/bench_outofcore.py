"""A GLM streamed from Parquet on disk: peak memory and the time per pass, against a plain
pyarrow scan of the same columns.

    python benchmarks/bench_outofcore.py --n 10000000   # default: the issue's 1e8 rows
    python benchmarks/bench_outofcore.py --n 1e7 --chunk-rows 250000,1000000

Writes a Parquet dataset of n rows (a poisson response, 8 numeric columns and one
5-level factor: 10 columns) in files of ``--rows-per-file`` rows, then in separate
processes under ``/usr/bin/time -v``: (1) ``glmx.glm_chunked`` with each ``--chunk-rows``
(default: the library's default, 250,000), (2) a pyarrow scan that reads the same columns
batch by batch and sums each (the floor of one pass), three times before and three
times after the fits, the fastest counting.  Prints n, chunk_rows, the passes, the time
per pass, its ratio to the scan and the peak resident memory (GB = 1e9 bytes).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import Result

NUMERIC = [f"x{j}" for j in range(1, 9)]
COLUMNS = ["y", *NUMERIC, "g"]
FORMULA = "y ~ " + " + ".join(NUMERIC) + " + g"
SCAN_REPEATS = 3


def write_dataset(root: Path, n: int, rows_per_file: int, seed: int) -> None:
    import pandas as pd

    rng = np.random.default_rng(seed)
    beta = rng.normal(0.0, 0.05, len(NUMERIC))
    effect = {"a": 0.0, "b": 0.2, "c": -0.1, "d": 0.3, "e": 0.1}
    for k, start in enumerate(range(0, n, rows_per_file)):
        m = min(rows_per_file, n - start)
        X = rng.normal(size=(m, len(NUMERIC)))
        g = rng.choice(list(effect), size=m)
        eta = 0.5 + X @ beta + np.vectorize(effect.get)(g)
        frame = pd.DataFrame(X, columns=NUMERIC)
        frame.insert(0, "y", rng.poisson(np.exp(eta)).astype(float))
        frame["g"] = g
        frame.to_parquet(root / f"part{k:04d}.parquet", row_group_size=min(m, 1_000_000))


def task_fit(root: str, chunk_rows: int, out: str) -> None:
    import glmx

    t = time.perf_counter()
    fit = glmx.glm_chunked(FORMULA, root, family="poisson", chunk_rows=chunk_rows)
    seconds = time.perf_counter() - t
    info = {"seconds": seconds, "passes": fit.n_passes, "n_iter": fit.n_iter, "nobs": fit.nobs}
    info["coef"] = [float(c) for c in fit.coef]
    Path(out).write_text(json.dumps(info))


def task_scan(root: str, chunk_rows: int, out: str) -> None:
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    times = []
    for _ in range(SCAN_REPEATS):  # the fastest of a few: the machine is shared
        t = time.perf_counter()
        dataset = ds.dataset(root, format="parquet")
        total = 0.0
        for batch in dataset.to_batches(columns=COLUMNS, batch_size=chunk_rows):
            for name in COLUMNS[:-1]:
                total += pc.sum(batch.column(name)).as_py() or 0.0
        times.append(time.perf_counter() - t)
    Path(out).write_text(json.dumps({"seconds": min(times), "total": total}))


def run_task(task: str, root: Path, chunk_rows: int) -> tuple[dict, float | None]:
    out = root.parent / f"{task}.json"  # beside the dataset, not in it
    cmd = [sys.executable, __file__, "--task", task, "--root", str(root)]
    cmd += ["--chunk-rows", str(chunk_rows), "--out", str(out)]
    if Path("/usr/bin/time").exists():
        cmd = ["/usr/bin/time", "-v", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{task} failed: {proc.stderr.strip()[-500:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    peak = float(m.group(1)) * 1024 if m else None
    return json.loads(out.read_text()), peak


def gb(x: float | None) -> str:
    return "–" if x is None else f"{x / 1e9:.2f}"


def main(argv: list[str] | None = None) -> Result:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=float, default=1e8, help="rows (default 1e8, the issue's size)")
    ap.add_argument("--rows-per-file", type=float, default=5e6)
    ap.add_argument("--chunk-rows", default="250000", help="rows per chunk; a comma list fits each")
    ap.add_argument("--seed", type=int, default=20261124)
    ap.add_argument("--workdir", default=None, help="where the dataset goes (temp dir)")
    ap.add_argument("--task", choices=["fit", "scan"], help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    chunks = [int(float(c)) for c in str(args.chunk_rows).split(",")]
    if args.task in ("fit", "scan"):
        (task_fit if args.task == "fit" else task_scan)(args.root, chunks[0], args.out)
        return Result("", [])
    n = int(args.n)
    work = Path(tempfile.mkdtemp(prefix="glmx-ooc-", dir=args.workdir))
    root = work / "data"
    root.mkdir()
    try:
        t = time.perf_counter()
        write_dataset(root, n, int(args.rows_per_file), args.seed)
        written = time.perf_counter() - t
        size = sum(f.stat().st_size for f in root.glob("*.parquet"))
        scan, scan_peak = run_task("scan", root, chunks[0])
        fits = [run_task("fit", root, chunk) for chunk in chunks]
        scan2, _ = run_task("scan", root, chunks[0])  # after the fits: the page cache is warm
        scan_s = min(scan["seconds"], scan2["seconds"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"n = {n:,} rows x {len(COLUMNS)} columns (`{FORMULA}`, poisson), "
        f"{size / 1e9:.2f} GB of Parquet in {len(range(0, n, int(args.rows_per_file)))} "
        f"files of {int(args.rows_per_file):,} rows, row groups of up to 1e6 rows (written in "
        f"{written:.0f} s).",
        "",
        "| what | n | chunk_rows | passes | seconds | s / pass | pass / pyarrow scan "
        "| peak RSS GB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for chunk, (fit, peak) in zip(chunks, fits, strict=True):
        per_pass = fit["seconds"] / fit["passes"]
        lines.append(
            f"| glmx.glm_chunked | {n:,} | {chunk:,} | {fit['passes']} | {fit['seconds']:.1f} "
            f"| {per_pass:.2f} | {per_pass / scan_s:.2f} | {gb(peak)} |"
        )
    lines += [
        f"| pyarrow scan of the same columns | {n:,} | {chunks[0]:,} | 1 | {scan_s:.2f} | "
        f"{scan_s:.2f} | 1.00 | {gb(scan_peak)} |",
        "",
        f"{fits[0][0]['n_iter']} IRLS steps; the passes also count the first pass (levels, "
        "rows, missing values) and the last (dispersion, log-likelihood, null deviance).  "
        "Peak RSS is the process's maximum resident set size (`/usr/bin/time -v`), "
        "interpreter and libraries included.  The scan is pyarrow's dataset scanner with its "
        "defaults (threads, read-ahead), the fastest of 3 scans before and 3 after the fits.",
    ]
    text = "\n".join(lines)
    print(text)
    fit, peak = fits[0]
    per_pass = fit["seconds"] / fit["passes"]
    check = (
        f"out of core n = {n:,}: peak resident memory < 1 GB",
        None if peak is None else peak < 1e9,
        f"{gb(peak)} GB with chunk_rows = {chunks[0]:,}; {per_pass:.2f} s per pass = "
        f"{per_pass / scan_s:.2f} x a pyarrow scan",
    )
    return Result(text, [check])


if __name__ == "__main__":
    main()
