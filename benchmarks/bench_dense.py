"""Dense GLM fits: glmx against statsmodels, glum, scikit-learn (and R's glm.fit) on the
same simulated data.

    python benchmarks/bench_dense.py --n 1000000 --p 50 --reps 3

X is a C-ordered float64 n x p array whose first column is ones (no library adds an
intercept; none penalizes).  Each fit runs in its own subprocess; repetitions alternate
between libraries; the table gives the median time, its ratio to glmx's, the coefficient
differences and the peak memory of each fit.
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
    max_rel_diff,
    new_datadir,
    r_available,
    ratio_detail,
    set_threads,
    timing_cells,
)

LIBRARIES = ["glmx", "statsmodels", "glum", "scikit-learn", "R"]


def simulate(family: str, n: int, p: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """X: ones then N(0, 0.2^2) columns; |beta_j| in [0.1, 0.5] so that relative
    coefficient differences are meaningful; y from the family (gamma: shape 2, log link)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    X *= 0.2
    X[:, 0] = 1.0
    beta = rng.choice([-1.0, 1.0], p) * rng.uniform(0.1, 0.5, p)
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


def write_data(datadir: Path, X: np.ndarray, y: np.ndarray, for_r: bool) -> None:
    np.save(datadir / "X.npy", X)
    np.save(datadir / "y.npy", y)
    (datadir / "meta.json").write_text(json.dumps({"n": X.shape[0], "p": X.shape[1]}))
    if for_r:  # raw column-major float64 for readBin
        X.T.tofile(datadir / "X.f64")
        y.tofile(datadir / "y.f64")


def table_rows(family: str, sums: dict[str, Summary], x_bytes: float) -> list[str]:
    base = sums["glmx"].seconds if "glmx" in sums else None
    ref_glmx = sums["glmx"].coef if "glmx" in sums else None
    ref_sm = sums["statsmodels"].coef if "statsmodels" in sums else None
    rows = []
    for lib, s in sums.items():
        extra = s.extra_rss
        rows.append(
            f"| {family} | {lib} | {timing_cells(s, base)} "
            f"| {fmt(max_abs_diff(s.coef, ref_glmx), '.1e')} "
            f"| {fmt(max_rel_diff(s.coef, ref_sm), '.1e')} "
            f"| {fmt_gb(s.peak_rss)} | {fmt_gb(extra)} "
            f"| {fmt(None if extra is None else 1 + extra / x_bytes)} |"
        )
    return rows


HEADER = [
    f"| family | library | {TIMING_HEADER} | max abs Δcoef vs glmx "
    "| max rel Δcoef vs statsmodels | peak RSS GB "
    "| fit's extra RSS GB | (X + extra) / X |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
]


def checks(
    family: str, sums: dict[str, Summary], x_bytes: float
) -> list[tuple[str, bool | None, str]]:
    g = sums.get("glmx")
    out: list[tuple[str, bool | None, str]] = []
    if g is None or g.seconds is None:
        return [(f"dense {family}: glmx ran", False, g.status if g else "not run")]
    for peer, target in (("glum", 0.5), ("statsmodels", 0.05)):
        r, detail = ratio_detail(g, sums.get(peer))
        ok = None if r is None else r <= target
        out.append(
            (
                f"dense {family}: glmx time ≤ {target} × {peer}'"
                + ("" if peer.endswith("s") else "s"),
                ok,
                detail,
            )
        )
    sm = sums.get("statsmodels")
    rel = max_rel_diff(g.coef, sm.coef if sm else None)
    out.append(
        (
            f"dense {family}: coefficients equal to statsmodels' to 1e-8 (relative)",
            None if rel is None else rel <= 1e-8,
            f"max relative difference {fmt(rel, '.1e')}",
        )
    )
    extra = g.extra_rss
    m = None if extra is None else 1 + extra / x_bytes
    out.append(
        (
            f"dense {family}: peak memory ≤ 1.5 × size of X",
            None if m is None else m <= 1.5,
            f"(X + fit's extra RSS) / X = {fmt(m)}; process peak {fmt_gb(g.peak_rss)} GB, "
            f"X {x_bytes / 1e9:.2f} GB",
        )
    )
    return out


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=1_000_000, help="rows (default 1e6)")
    ap.add_argument("--p", type=int, default=50, help="columns incl. the ones (default 50)")
    ap.add_argument("--reps", type=int, default=3, help="alternating repetitions")
    ap.add_argument("--families", default="poisson,binomial,gamma")
    ap.add_argument("--libraries", default=",".join(LIBRARIES))
    ap.add_argument("--no-r", action="store_true", help="leave out R's glm.fit")
    add_common_options(ap, timeout=1800)
    return ap


def main(argv: list[str] | None = None) -> Result:
    args = parser().parse_args(argv)
    set_threads(args.threads)
    libs = [x for x in args.libraries.split(",") if x]
    if args.no_r or not r_available():
        libs = [x for x in libs if x != "R"]
    x_bytes = 8.0 * args.n * args.p
    lines = [
        f"n = {args.n:,}, p = {args.p} (first column ones), X {x_bytes / 1e9:.2f} GB float64 "
        f"C-ordered; median of up to {args.reps} alternating repetitions, each fit in its own "
        "process.",
        "",
        *HEADER,
    ]
    found: list[tuple[str, bool | None, str]] = []
    every: list[Summary] = []
    for family in args.families.split(","):
        datadir = new_datadir(args.workdir)
        try:
            X, y = simulate(family, args.n, args.p, args.seed)
            write_data(datadir, X, y, for_r="R" in libs)
            del X, y
            sums = compare(
                "dense", libs, datadir, family, args.reps, args.timeout, args.single_rep_above
            )
            every.extend(sums.values())
        finally:
            shutil.rmtree(datadir, ignore_errors=True)
        lines += table_rows(family, sums, x_bytes)
        found += checks(family, sums, x_bytes)
    lines += [
        "",
        load_note(every),
        "",
        "Settings: glmx `glm_fit` defaults (R's criterion |Δdev|/(|dev|+0.1) < 1e-10); "
        "statsmodels `GLM.fit()` defaults (IRLS, tol 1e-8 on the absolute deviance change); "
        "glum `alpha=0, gradient_tol=1e-6`; scikit-learn `newton-cholesky, alpha=0` "
        "(logistic: `C=inf`), `tol=1e-8`; R `glm.fit(..., control = glm.control(epsilon = "
        "1e-10))`.  All without an added intercept (X has the ones column).  s / iteration = "
        "total time / the library's reported iteration count.  Peak RSS: the process's "
        "maximum resident set size (`/usr/bin/time -v`) including X and the interpreter; "
        "fit's extra RSS = peak minus the resident set just before the fit.",
    ]
    md = "\n".join(lines)
    print(md)
    return Result(md, found)


if __name__ == "__main__":
    main(sys.argv[1:])
