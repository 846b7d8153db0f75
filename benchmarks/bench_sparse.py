"""A wide sparse design: glmx (``glm_fit`` with a scipy.sparse CSR X), glum and
scikit-learn on the same data.

    python benchmarks/bench_sparse.py --n 200000 --p 2000 --density 0.005 --reps 3

X = [1, S] with S a random CSR matrix of N(0, 1) entries at the given density (every
column non-empty); y from the family with coefficients of magnitude 0.05..0.2.
statsmodels is left out: its GLM needs a dense X (n x p x 8 bytes).
"""

from __future__ import annotations

import argparse
import shutil
import sys

import numpy as np
import scipy.sparse as sp
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
    set_threads,
    timing_cells,
)

LIBRARIES = ["glmx", "glum", "scikit-learn"]


def simulate(
    n: int, p: int, density: float, family: str, seed: int = 0
) -> tuple[sp.csr_matrix, np.ndarray]:
    rng = np.random.default_rng(seed)
    S = sp.random(n, p - 1, density=density, format="csr", random_state=rng)
    S.data = rng.standard_normal(S.nnz)
    X = sp.hstack([sp.csr_matrix(np.ones((n, 1))), S], format="csr")
    beta = rng.choice([-1.0, 1.0], p) * rng.uniform(0.05, 0.2, p)
    beta[0] = 0.5
    eta = X @ beta
    if family == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    elif family == "binomial":
        y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    elif family == "gamma":
        y = rng.gamma(2.0, np.exp(eta) / 2.0)
    else:
        raise SystemExit(f"unknown family {family}")
    return X, y


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--p", type=int, default=2_000, help="columns incl. the ones column")
    ap.add_argument("--density", type=float, default=0.005)
    ap.add_argument("--families", default="poisson,binomial")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--libraries", default=",".join(LIBRARIES))
    add_common_options(ap, timeout=900)
    return ap


def main(argv: list[str] | None = None) -> Result:
    args = parser().parse_args(argv)
    set_threads(args.threads)
    libs = [x for x in args.libraries.split(",") if x]
    lines: list[str] = []
    table = [
        f"| family | library | {TIMING_HEADER} | max abs Δcoef vs glmx | peak RSS GB "
        "| fit's extra RSS GB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    nnz = 0
    every: list[Summary] = []
    for family in args.families.split(","):
        datadir = new_datadir(args.workdir)
        try:
            X, y = simulate(args.n, args.p, args.density, family, args.seed)
            nnz = X.nnz
            sp.save_npz(datadir / "X.npz", X, compressed=False)
            np.save(datadir / "y.npy", y)
            del X, y
            sums = compare(
                "sparse", libs, datadir, family, args.reps, args.timeout, args.single_rep_above
            )
            every.extend(sums.values())
        finally:
            shutil.rmtree(datadir, ignore_errors=True)
        g = sums.get("glmx")
        base, ref = (g.seconds, g.coef) if g else (None, None)
        for lib, s in sums.items():
            table.append(
                f"| {family} | {lib} | {timing_cells(s, base)} "
                f"| {fmt(max_abs_diff(s.coef, ref), '.1e')} | {fmt_gb(s.peak_rss)} "
                f"| {fmt_gb(s.extra_rss)} |"
            )
    csr_bytes = nnz * 12 + (args.n + 1) * 8
    lines += [
        f"n = {args.n:,}, p = {args.p:,} (ones column + {args.p - 1:,} sparse columns), density "
        f"{args.density:g}: {nnz:,} stored values, CSR {csr_bytes / 1e9:.3f} GB (dense would be "
        f"{8.0 * args.n * args.p / 1e9:.2f} GB); median of up to {args.reps} alternating "
        "repetitions.",
        "",
        *table,
        "",
        load_note(every),
        "",
        "glmx: `glm_fit(X_csr, y)` defaults; glum: `alpha=0, gradient_tol=1e-6`, "
        "`fit_intercept=False`; scikit-learn: `newton-cholesky`, `tol=1e-8`, no penalty, "
        "`fit_intercept=False`.",
    ]
    md = "\n".join(lines)
    print(md)
    return Result(md)  # the issue sets no target for sparse designs


if __name__ == "__main__":
    main(sys.argv[1:])
