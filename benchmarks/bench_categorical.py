"""A categorical design: numeric columns plus one factor of many levels.

    python benchmarks/bench_categorical.py --n 1000000 --levels 1000,10000 --reps 3

glmx fits ``y ~ x01 + ... + x20 + C(g)`` with ``glmx.glm`` on a pandas DataFrame whose
``g`` is a pandas Categorical; glum gets the same DataFrame (``drop_first=True``, its
native categorical handling); scikit-learn gets a CSR design [1, numeric, one-hot of
levels 2..K], built inside its timed region.  statsmodels is left out: its GLM needs the
dense one-hot design.  A fit that runs out of memory (each worker's address space is
limited to 80% of RAM) or past ``--timeout`` is reported as such, not fatal.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from benchlib import (
    TIMING_HEADER,
    Result,
    Summary,
    add_common_options,
    compare,
    fmt,
    fmt_gb,
    load_note,
    max_abs_diff,
    new_datadir,
    ratio_detail,
    set_threads,
    timing_cells,
)

LIBRARIES = ["glmx", "glum", "scikit-learn"]


def simulate(
    n: int, n_num: int, levels: int, family: str, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Numeric N(0, 0.2^2) columns, uniform factor codes (every level present), level
    effects N(0, 0.3^2) with level 1 the baseline; y from the family."""
    rng = np.random.default_rng(seed)
    num = rng.standard_normal((n, n_num)) * 0.2
    codes = rng.integers(0, levels, n).astype(np.int32)
    codes[:levels] = np.arange(levels, dtype=np.int32)
    beta = rng.choice([-1.0, 1.0], n_num) * rng.uniform(0.1, 0.5, n_num)
    effect = rng.normal(scale=0.3, size=levels)
    effect[0] = 0.0
    eta = 0.5 + num @ beta + effect[codes]
    if family == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    elif family == "binomial":
        y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    elif family == "gamma":
        y = rng.gamma(2.0, np.exp(eta) / 2.0)
    else:
        raise SystemExit(f"unknown family {family}")
    return num, codes, y


def rows(levels: int, sums: dict[str, Summary]) -> list[str]:
    base = sums["glmx"].seconds if "glmx" in sums else None
    ref = sums["glmx"].coef if "glmx" in sums else None
    out = []
    for lib, s in sums.items():
        out.append(
            f"| {levels:,} | {lib} | {timing_cells(s, base)} "
            f"| {fmt(max_abs_diff(s.coef, ref), '.1e')} | {fmt_gb(s.peak_rss)} "
            f"| {fmt_gb(s.extra_rss)} |"
        )
    return out


def checks(levels: int, sums: dict[str, Summary]) -> list[tuple[str, bool | None, str]]:
    g, glum = sums.get("glmx"), sums.get("glum")
    if g is None or g.seconds is None:
        return [(f"categorical {levels:,} levels: glmx ran", False, g.status if g else "–")]
    r, detail = ratio_detail(g, glum)
    ok = None if r is None else r <= 0.25
    return [(f"categorical {levels:,} levels: glmx time ≤ 0.25 × glum's", ok, detail)]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=1_000_000, help="rows (default 1e6)")
    ap.add_argument("--numeric", type=int, default=20, help="numeric columns (default 20)")
    ap.add_argument("--levels", default="1000,10000", help="factor sizes, comma separated")
    ap.add_argument("--family", default="poisson")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--libraries", default=",".join(LIBRARIES))
    ap.add_argument(
        "--skip-slow",
        action="store_true",
        help="do not run glum and scikit-learn on factors of 10,000 or more levels",
    )
    add_common_options(ap, timeout=900)
    return ap


def main(argv: list[str] | None = None) -> Result:
    args = parser().parse_args(argv)
    set_threads(args.threads)
    libs = [x for x in args.libraries.split(",") if x]
    lines = [
        f"n = {args.n:,}, {args.numeric} numeric columns + intercept + one factor, "
        f"{args.family} family; median of up to {args.reps} alternating repetitions.",
        "",
        f"| levels | library | {TIMING_HEADER} | max abs Δcoef vs glmx | peak RSS GB "
        "| fit's extra RSS GB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    sizes = []
    found: list[tuple[str, bool | None, str]] = []
    every: list[Summary] = []
    for k in (int(v) for v in args.levels.split(",")):
        skipped = {}
        if args.skip_slow and k >= 10_000:
            skipped = {lib: "skipped (--skip-slow)" for lib in ("glum", "scikit-learn")}
        datadir = new_datadir(args.workdir)
        try:
            num, codes, y = simulate(args.n, args.numeric, k, args.family, args.seed)
            for name, arr in (("num", num), ("codes", codes), ("y", y)):
                np.save(Path(datadir) / f"{name}.npy", arr)
            (datadir / "meta.json").write_text(json.dumps({"n": args.n, "levels": k}))
            compact = num.nbytes + codes.nbytes
            del num, codes, y
            sums = compare(
                "categorical",
                libs,
                datadir,
                args.family,
                args.reps,
                args.timeout,
                args.single_rep_above,
                skipped,
            )
            every.extend(sums.values())
        finally:
            shutil.rmtree(datadir, ignore_errors=True)
        dense = 8.0 * args.n * (args.numeric + k)
        sizes.append(
            f"{k:,} levels: a dense one-hot X would be {dense / 1e9:.2f} GB; the numeric "
            f"columns and int32 codes take {compact / 1e9:.2f} GB."
        )
        lines += rows(k, sums)
        found += checks(k, sums)
    lines += [
        "",
        load_note(every),
        "",
        *sizes,
        "",
        "Times include each library's own design building (glmx: formula parsing and the "
        "design; glum: its DataFrame conversion; scikit-learn: the CSR one-hot).  glum: "
        "`alpha=0, drop_first=True, gradient_tol=1e-6`; scikit-learn: `newton-cholesky`, "
        "`tol=1e-8`, no penalty.  Coefficients compared in the order intercept, numeric, "
        "levels 2..K.",
    ]
    md = "\n".join(lines)
    print(md)
    return Result(md, found)


if __name__ == "__main__":
    main(sys.argv[1:])
