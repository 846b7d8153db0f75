"""Mixed models at scale (issue 16): glmx.glmm against lme4 on crossed designs of up to
10 million rows, random slopes with 50,000 groups, and the existing GLMM cases.

    python benchmarks/bench_mixed_scale.py                       # the issue's sizes
    python benchmarks/bench_mixed_scale.py --preset smoke        # seconds: checks the harness
    python benchmarks/bench_mixed_scale.py --preset medium       # a tenth of the sizes
    python benchmarks/bench_mixed_scale.py --cases classic --reps 3

Cases (simulated with a fixed seed; ``--scale s`` multiplies rows and levels by s):

- ``classic``: a simulated equivalent of lme4's InstEval (students x instructors), 73,421
  rows, 2,972 students ``s`` x 1,128 instructors ``d``, each instructor in one of 14
  departments, ratings 1..5; ``y ~ service * dept + (1 | s) + (1 | d)`` (28 fixed effects);
- ``ratings_1e6``: 1,000,000 ratings, 50,000 users x 5,000 items, item popularity Zipf-like
  (the k-th item drawn with weight 1/k), user activity log-normal;
  ``y ~ x + g + (1 | user) + (1 | item)`` with ``g`` a 4-level factor;
- ``ratings_1e7``: the same at 10,000,000 rows, 200,000 users x 20,000 items (lme4 is left
  out above ``--skip-lme4-above`` rows, 5,000,000 by default: it does not finish in 30 minutes);
- ``crossed_binomial``: the ratings shape as a binary response, 1,000,000 rows, 20,000 users
  x 2,000 items, ``y ~ x + g + (1 | user) + (1 | item)``;
- ``slopes_lmm`` and ``slopes_binomial``: ``y ~ x + z + (x | g)``, 1,000,000 rows in 50,000
  groups, a correlated random intercept and slope;
- ``glmm_slopes`` and ``glmm_crossed``: bench_glmm.py's two binomial data sets (``(x | g)``
  with 100,000 rows in 1,000 groups; VerbAgg's 316 x 24 crossed design).

Every linear mixed model is fitted by maximum likelihood (``reml=False``; lmer's
``REML = FALSE``), every GLMM by the Laplace approximation (``nagq=1``; glmer's ``nAGQ = 1``);
lme4 runs with its default optimizers (lmer: nloptwrap's BOBYQA; glmer: bobyqa, then
Nelder_Mead).  Each fit runs in its own process under ``/usr/bin/time -v`` (benchlib's
runner: this file in ``--task`` mode for glmx, ``mixed_scale_fit.R`` for lme4) after a
warm-up fit on the first 2,000 rows; repetitions alternate between the libraries.  Both
read the same binary columns (float64 values, int32 factor codes), so both fit the same
numbers.  The table prints time, objective evaluations (glmx's ``fit.n_feval``, lme4's
``fit@optinfo$feval``), the objective -2 log-likelihood, peak RSS and the ratios.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
import pandas as pd
from _worker import rss_now, rss_peak
from bench_glmm import glmx_missing, lme4_missing, simulate_crossed, simulate_slopes
from benchlib import (
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
)

HERE = Path(__file__).resolve().parent
WARMUP_ROWS = 2000
LMM_REL_TOL = 1e-6  # glmx's -2 loglik at most lme4's x (1 + 1e-6)
LOGLIK_SLACK = 1e-3  # GLMM: glmx's loglik at least glmer's - 1e-3
TIME_RATIO = 0.1  # at most 0.1 x lme4's time
BIG_SECONDS, BIG_RSS = 120.0, 4e9  # ratings_1e7: under 120 s and 4 GB peak RSS
# glmx's median times of bench_glmm's two cases before issue 16 (benchmarks/RESULTS.md,
# 2-core machine): they must not get slower
GLMM_BEFORE = {"glmm_slopes": 1.22, "glmm_crossed": 0.43}
PRESETS = {"full": (1.0, 3), "medium": (0.1, 2), "smoke": (0.002, 1)}  # (scale, reps)

Frame = dict[str, np.ndarray | pd.Categorical]


# ------------------------------------------------------------------------------ data


def cover(rng: np.random.Generator, levels: int, n: int, weights: np.ndarray) -> np.ndarray:
    """n codes in 0..levels-1, each level at least once, the rest drawn with ``weights``;
    in random order."""
    p = weights / weights.sum()
    codes = np.concatenate([np.arange(levels), rng.choice(levels, n - levels, p=p)])
    return rng.permutation(codes).astype(np.int32)


def factor(codes: np.ndarray, prefix: str, levels: int) -> pd.Categorical:
    width = len(str(levels))
    names = [f"{prefix}{i + 1:0{width}d}" for i in range(levels)]  # sorted = code order
    return pd.Categorical.from_codes(codes, categories=names)


def simulate_classic(scale: float, seed: int) -> Frame:
    """InstEval's shape: students rate instructors; each instructor belongs to one of 14
    departments; ``service`` (0/1) varies within instructors; ratings 1..5 from sds 0.32
    (student), 0.52 (instructor) and 1.18 (residual), the sizes of lme4's InstEval fit."""
    rng = np.random.default_rng(seed)
    n = round(73_421 * scale)
    n_s, n_d, n_dept = max(round(2972 * scale), 10), max(round(1128 * scale), 28), 14
    s = cover(rng, n_s, n, rng.gamma(2.0, size=n_s))
    d = cover(rng, n_d, n, rng.lognormal(0.0, 1.0, n_d))
    # every department has at least two instructors, and both service levels (at small
    # scales too: service * dept keeps its 28 columns)
    first = np.r_[np.arange(n_dept), np.arange(n_dept)]
    dept_of_d = rng.permutation(np.r_[first, rng.integers(0, n_dept, n_d - 2 * n_dept)])
    dept = dept_of_d[d]
    service = (rng.random(n) < 0.2 + 0.5 * rng.beta(1.0, 1.5, n_d)[d]).astype(np.int32)
    for k in range(n_dept):
        rows = np.flatnonzero(dept == k)[:2]
        service[rows] = [0, 1]
    b_dept, b_int = rng.normal(0.0, 0.2, n_dept), rng.normal(0.0, 0.1, n_dept)
    eta = 3.2 - 0.1 * service + b_dept[dept] + b_int[dept] * service
    eta += rng.normal(0.0, 0.32, n_s)[s] + rng.normal(0.0, 0.52, n_d)[d]
    y = np.clip(np.round(eta + rng.normal(0.0, 1.18, n)), 1, 5)
    return {
        "y": y,
        "service": pd.Categorical.from_codes(service, categories=["0", "1"]),
        "dept": factor(dept.astype(np.int32), "dept", n_dept),
        "s": factor(s, "s", n_s),
        "d": factor(d, "d", n_d),
    }


def simulate_ratings(n: int, users: int, items: int, seed: int, binary: bool = False) -> Frame:
    """Users rate items: item k drawn with weight 1/k (Zipf), user activity log-normal;
    user sd 0.5 (binary: 0.8), item sd 0.8 (binary: 0.5), residual sd 1."""
    rng = np.random.default_rng(seed)
    user = cover(rng, users, n, rng.lognormal(0.0, 1.0, users))
    item = cover(rng, items, n, 1.0 / np.arange(1, items + 1))
    x = rng.standard_normal(n)
    g = rng.integers(0, 4, n).astype(np.int32)
    b_g = np.array([0.0, 0.2, -0.1, 0.4])
    if binary:
        eta = -0.5 + 0.5 * x + b_g[g] + rng.normal(0, 0.8, users)[user]
        eta += rng.normal(0, 0.5, items)[item]
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    else:
        y = 3.0 + 0.3 * x + b_g[g] + rng.normal(0, 0.5, users)[user]
        y += rng.normal(0, 0.8, items)[item] + rng.standard_normal(n)
    return {
        "y": y,
        "x": x,
        "g": factor(g, "g", 4),
        "user": factor(user, "u", users),
        "item": factor(item, "i", items),
    }


def simulate_slopes_frame(n: int, groups: int, seed: int, binary: bool) -> Frame:
    """y ~ x + z + (x | g) with groups of about n / groups rows: LMM sds 1 and 0.5, binary
    0.8 and 0.4 (bench_glmm's), correlation 0.3; LMM residual sd 1."""
    rng = np.random.default_rng(seed)
    g = cover(rng, groups, n, np.ones(groups))
    x, z = rng.standard_normal(n), rng.standard_normal(n)
    sd = np.array([0.8, 0.4]) if binary else np.array([1.0, 0.5])
    cov = np.outer(sd, sd) * np.array([[1.0, 0.3], [0.3, 1.0]])
    b = rng.multivariate_normal(np.zeros(2), cov, groups)
    if binary:
        eta = -0.5 + 0.8 * x - 0.4 * z + b[g, 0] + b[g, 1] * x
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    else:
        y = 1.0 + 0.5 * x - 0.3 * z + b[g, 0] + b[g, 1] * x + rng.standard_normal(n)
    return {"y": y, "x": x, "z": z, "g": factor(g, "g", groups)}


def from_frame(df: pd.DataFrame) -> Frame:
    """bench_glmm's data frames: strings become factors with sorted levels (R's order)."""
    out: Frame = {}
    for name in df.columns:
        col = df[name]
        if pd.api.types.is_numeric_dtype(col):
            out[name] = col.to_numpy(dtype=float)
        else:
            out[name] = pd.Categorical(col, categories=sorted(col.unique()))
    return out


@dataclass(frozen=True)
class Case:
    label: str
    formula: str
    family: str
    p: int  # fixed effects
    n_theta: int
    make: Callable[[float, int], Frame]


def _scaled(x: int, scale: float, least: int) -> int:
    return max(round(x * scale), least)


CASES: dict[str, Case] = {
    "classic": Case(
        "crossed LMM, InstEval's shape",
        "y ~ service * dept + (1 | s) + (1 | d)",
        "gaussian",
        28,
        2,
        simulate_classic,
    ),
    "ratings_1e6": Case(
        "ratings LMM, Zipf items",
        "y ~ x + g + (1 | user) + (1 | item)",
        "gaussian",
        5,
        2,
        lambda s, seed: simulate_ratings(
            _scaled(1_000_000, s, 1000), _scaled(50_000, s, 20), _scaled(5_000, s, 10), seed
        ),
    ),
    "ratings_1e7": Case(
        "ratings LMM, Zipf items",
        "y ~ x + g + (1 | user) + (1 | item)",
        "gaussian",
        5,
        2,
        lambda s, seed: simulate_ratings(
            _scaled(10_000_000, s, 1000), _scaled(200_000, s, 20), _scaled(20_000, s, 10), seed
        ),
    ),
    "crossed_binomial": Case(
        "crossed binomial GLMM",
        "y ~ x + g + (1 | user) + (1 | item)",
        "binomial",
        5,
        2,
        lambda s, seed: simulate_ratings(
            _scaled(1_000_000, s, 1000),
            _scaled(20_000, s, 20),
            _scaled(2_000, s, 10),
            seed,
            binary=True,
        ),
    ),
    "slopes_lmm": Case(
        "random slopes LMM",
        "y ~ x + z + (x | g)",
        "gaussian",
        3,
        3,
        lambda s, seed: simulate_slopes_frame(
            _scaled(1_000_000, s, 1000), _scaled(50_000, s, 20), seed, binary=False
        ),
    ),
    "slopes_binomial": Case(
        "random slopes binomial GLMM",
        "y ~ x + z + (x | g)",
        "binomial",
        3,
        3,
        lambda s, seed: simulate_slopes_frame(
            _scaled(1_000_000, s, 1000), _scaled(50_000, s, 20), seed, binary=True
        ),
    ),
    "glmm_slopes": Case(
        "bench_glmm's slopes (binomial)",
        "y ~ x + z + (x | g)",
        "binomial",
        3,
        3,
        lambda s, seed: from_frame(
            simulate_slopes(_scaled(100_000, s, 1000), _scaled(1000, s, 20), seed)
        ),
    ),
    "glmm_crossed": Case(
        "bench_glmm's crossed (VerbAgg's shape, binomial)",
        "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
        "binomial",
        6,
        2,
        lambda s, seed: from_frame(simulate_crossed(seed, persons=_scaled(316, s, 20))),
    ),
}


def grouping_levels(case: Case, frame: Frame) -> str:
    """The numbers of levels of the grouping factors, e.g. "2,972 x 1,128"."""
    groups = re.findall(r"\|\s*(\w+)\s*\)", case.formula)
    return " x ".join(f"{len(frame[g].categories):,}" for g in groups)  # type: ignore[union-attr]


def write_data(datadir: Path, case: Case, frame: Frame) -> int:
    """Columns as raw little-endian files (.f64 values, .i32 codes + .levels), read by both
    workers; meta.json holds n, p, the formula and the column list.  Returns n."""
    columns = []
    for name, col in frame.items():
        if isinstance(col, pd.Categorical):
            np.asarray(col.codes, dtype="<i4").tofile(datadir / f"{name}.i32")
            (datadir / f"{name}.levels").write_text("\n".join(map(str, col.categories)) + "\n")
            columns.append({"name": name, "kind": "factor"})
        else:
            np.asarray(col, dtype="<f8").tofile(datadir / f"{name}.f64")
            columns.append({"name": name, "kind": "numeric"})
    n = len(next(iter(frame.values())))
    meta = {
        "n": n,
        "p": case.p,
        "n_theta": case.n_theta,
        "formula": case.formula,
        "family": case.family,
        "columns": columns,
    }
    (datadir / "meta.json").write_text(json.dumps(meta))
    return n


def read_data(datadir: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    meta = json.loads((datadir / "meta.json").read_text())
    cols: dict[str, Any] = {}
    for c in meta["columns"]:
        name = c["name"]
        if c["kind"] == "factor":
            codes = np.fromfile(datadir / f"{name}.i32", dtype="<i4")
            levels = (datadir / f"{name}.levels").read_text().splitlines()
            cols[name] = pd.Categorical.from_codes(codes, categories=levels)
        else:
            cols[name] = np.fromfile(datadir / f"{name}.f64", dtype="<f8")
    return meta, pd.DataFrame(cols)


# ------------------------------------------------------------------------ glmx worker


def worker(argv: list[str]) -> None:
    """One timed glmx.glmm fit; the command line of benchlib.run_fit's Python worker.
    Writes result.json and coef.npy = [fixed effects, theta, loglik] into --out."""
    ap = argparse.ArgumentParser()
    for opt in ("--task", "--library", "--family"):
        ap.add_argument(opt, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--mem-limit", type=int, default=0, help="address-space limit, bytes")
    args = ap.parse_args(argv)
    if args.mem_limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (args.mem_limit, args.mem_limit))
    result: dict[str, Any] = {}
    try:
        import glmx

        meta, data = read_data(args.data)
        reml = False if args.family == "gaussian" else None

        def fit(d: pd.DataFrame) -> tuple[np.ndarray, int]:
            f = glmx.glmm(meta["formula"], d, family=args.family, reml=reml, progress=False)
            result["converged"] = bool(f.converged)
            params = np.r_[f.coef.to_numpy(), np.ravel(f.theta), f.loglik]
            return params, int(f.n_feval)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warm = data.iloc[:WARMUP_ROWS].copy()
            for name in warm.columns:
                if isinstance(warm[name].dtype, pd.CategoricalDtype):
                    warm[name] = warm[name].cat.remove_unused_categories()
            try:  # imports, JIT compilation and first-call costs stay out of the timing
                fit(warm)
            except Exception:  # noqa: BLE001, S110 - a failed warm-up only costs accuracy
                pass
            result["rss_before"] = rss_now()
            t0 = time.perf_counter()
            params, n_feval = fit(data)
            result["seconds"] = time.perf_counter() - t0
        result.update(status="ok", n_iter=n_feval)
        np.save(args.out / "coef.npy", np.asarray(params, dtype=float))
    except MemoryError:
        result["status"] = f"out of memory (limit {args.mem_limit / 1e9:.0f} GB)"
    except Exception as e:  # noqa: BLE001 - reported in the table
        result["status"] = f"error: {type(e).__name__}: {e}"[:200]
    result["peak_rss"] = rss_peak()
    (args.out / "result.json").write_text(json.dumps(result))


@contextmanager
def scale_scripts() -> Iterator[None]:
    """Point benchlib's runner at this file (glmx) and mixed_scale_fit.R (lme4)."""
    saved = benchlib.WORKER, benchlib.R_SCRIPT
    benchlib.WORKER, benchlib.R_SCRIPT = Path(__file__).resolve(), HERE / "mixed_scale_fit.R"
    try:
        yield
    finally:
        benchlib.WORKER, benchlib.R_SCRIPT = saved


# ------------------------------------------------------------------------------ report


@dataclass
class Outcome:
    """One library's numbers on one case."""

    seconds: float | None
    min_seconds: float | None
    reps: int
    feval: int | None
    loglik: float | None
    beta: np.ndarray | None
    theta: np.ndarray | None
    peak_rss: float | None
    extra_rss: float | None
    status: str

    @classmethod
    def of(cls, s: Summary, case: Case) -> Outcome:
        params = s.coef
        ok = params is not None and len(params) == case.p + case.n_theta + 1
        return cls(
            s.seconds,
            s.min_seconds,
            len(s.ok),
            s.n_iter,
            float(params[-1]) if ok else None,  # type: ignore[index]
            params[: case.p] if ok else None,  # type: ignore[index]
            params[case.p : case.p + case.n_theta] if ok else None,  # type: ignore[index]
            s.peak_rss,
            s.extra_rss,
            s.status,
        )


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


HEADER = [
    "| case | rows | levels | library | median s | min s | reps | evaluations | s / eval "
    "| time / lme4's | −2 loglik | rel. Δ(−2 loglik) vs lme4 | Δloglik vs lme4 "
    "| max abs Δcoef | max abs Δtheta | peak RSS GB | peak RSS / lme4's | fit's extra RSS GB |",
    "| " + " | ".join(["---"] * 18) + " |",
]


def table_rows(name: str, n: int, levels: str, g: Outcome, r: Outcome) -> list[str]:
    rows = []
    for lib, o in (("glmx.glmm", g), ("lme4", r)):
        if o is r:  # no comparison of lme4 with itself
            r = Outcome(None, None, 0, None, None, None, None, None, None, "")
        if o.seconds is None:
            rows.append(f"| {name} | {n:,} | {levels} | {lib} | {o.status} |" + " |" * 13)
            continue
        dev = None if o.loglik is None else -2 * o.loglik
        rdev = None if r.loglik is None else -2 * r.loglik
        rel = None if dev is None or rdev is None else (dev - rdev) / abs(rdev)
        d_ll = None if o.loglik is None or r.loglik is None else o.loglik - r.loglik
        per = _ratio(o.seconds, o.feval)
        rows.append(
            f"| {name} | {n:,} | {levels} | {lib} | {o.seconds:.2f} | {fmt(o.min_seconds)} "
            f"| {o.reps} | {o.feval if o.feval is not None else '–'} | {fmt(per, '.4f')} "
            f"| {fmt(_ratio(o.seconds, r.seconds), '.3f')} | {fmt(dev, '.4f')} "
            f"| {fmt(rel, '.1e')} | {fmt(d_ll, '.2e')} "
            f"| {fmt(max_abs_diff(o.beta, r.beta), '.1e')} "
            f"| {fmt(max_abs_diff(o.theta, r.theta), '.1e')} | {fmt_gb(o.peak_rss)} "
            f"| {fmt(_ratio(o.peak_rss, r.peak_rss), '.2f')} | {fmt_gb(o.extra_rss)} |"
        )
    return rows


def _time_detail(g: Outcome, r: Outcome) -> tuple[bool | None, str]:
    ratio = _ratio(g.seconds, r.seconds)
    if ratio is None:
        return None, f"time not compared (glmx: {g.status}; lme4: {r.status})"
    fastest = _ratio(g.min_seconds, r.min_seconds)
    return ratio <= TIME_RATIO, (
        f"time {ratio:.3f} × (glmx {g.seconds:.2f} s, lme4 {r.seconds:.2f} s; fastest fits "
        f"{fmt(fastest, '.3f')} ×)"
    )


def checks(name: str, g: Outcome, r: Outcome, scale: float) -> list[Any]:
    """The issue's targets for this case: (description, met or None, detail); at another
    scale than 1 the target is not measured and the detail says what it would be."""
    found = _checks(name, g, r)
    if scale == 1:
        return found
    would = {True: "yes", False: "no", None: "not measured"}
    return [
        (f"{what} (at scale {scale:g}: not the target's size)", None, f"{d}; would be: {would[ok]}")
        for what, ok, d in found
    ]


def _checks(name: str, g: Outcome, r: Outcome) -> list[Any]:
    if name in ("classic", "ratings_1e6"):
        fast, detail = _time_detail(g, r)
        if g.loglik is None or r.loglik is None:
            close, d2 = None, "objective not compared"
        else:
            rel = (-2 * g.loglik + 2 * r.loglik) / abs(2 * r.loglik)
            close, d2 = rel <= LMM_REL_TOL, f"rel. Δ(−2 loglik) = {rel:.1e}"
        met = None if fast is None or close is None else fast and close
        return [
            (
                f"mixed-scale {name}: ≤ {TIME_RATIO:g} × lmer's time, −2 loglik ≤ lmer's × "
                f"(1 + {LMM_REL_TOL:g})",
                met,
                f"{detail}; {d2}",
            )
        ]
    if name == "ratings_1e7":
        if g.seconds is None:
            return [(f"mixed-scale {name}: < 120 s, < 4 GB", None, g.status)]
        ok = g.seconds < BIG_SECONDS and (g.peak_rss or np.inf) < BIG_RSS
        return [
            (
                f"mixed-scale {name}: glmx < {BIG_SECONDS:.0f} s and < {BIG_RSS / 1e9:.0f} GB "
                f"peak RSS",
                ok,
                f"{g.seconds:.1f} s, {fmt_gb(g.peak_rss)} GB",
            )
        ]
    if name == "crossed_binomial":
        fast, detail = _time_detail(g, r)
        gap = None if g.loglik is None or r.loglik is None else g.loglik - r.loglik
        close = None if gap is None else gap >= -LOGLIK_SLACK
        met = None if fast is None or close is None else fast and close
        return [
            (
                f"mixed-scale {name}: ≤ {TIME_RATIO:g} × glmer's time, loglik ≥ glmer's − "
                f"{LOGLIK_SLACK:g}",
                met,
                f"{detail}; glmx − glmer loglik = {fmt(gap, '.2e')}",
            )
        ]
    if name in GLMM_BEFORE and g.seconds is not None:
        ok = g.seconds <= 1.1 * GLMM_BEFORE[name]
        return [
            (
                f"mixed-scale {name}: glmx not slower than before issue 16 "
                f"({GLMM_BEFORE[name]:.2f} s, 10% allowed)",
                ok,
                f"{g.seconds:.2f} s (load-sensitive: see the load average)",
            )
        ]
    return []


# -------------------------------------------------------------------------------- main


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="full",
        help="full: the issue's sizes; medium: 0.1 x; smoke: 0.002 x, one rep",
    )
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    ap.add_argument("--scale", type=float, default=None, help="rows and levels x this")
    ap.add_argument("--reps", type=int, default=None, help="alternating repetitions")
    ap.add_argument("--no-r", action="store_true", help="leave out lme4")
    ap.add_argument(
        "--skip-lme4-above",
        type=float,
        default=5e6,
        help="rows above which lme4 is not run (it cannot finish in 30 minutes)",
    )
    ap.add_argument("--lme4-timeout", type=float, default=1800, help="seconds per lme4 fit")
    add_common_options(ap, timeout=1800)
    ap.set_defaults(single_rep_above=120.0)
    return ap


def main(argv: list[str] | None = None) -> Result:
    args = parser().parse_args(argv)
    set_threads(args.threads)
    scale = args.scale if args.scale is not None else PRESETS[args.preset][0]
    reps = args.reps if args.reps is not None else PRESETS[args.preset][1]
    names = args.cases.split(",")
    unknown = [c for c in names if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown cases {unknown}; choose from {list(CASES)}")
    base_skip = {"glmx": glmx_missing(), "R": "skipped (--no-r)" if args.no_r else lme4_missing()}
    notes = [f"{'glmx' if k == 'glmx' else 'lme4'}: {v}" for k, v in base_skip.items() if v]
    lines = [
        f"Scale {scale:g} of the issue's sizes; median of up to {reps} alternating "
        "repetitions, each fit in its own process after a warm-up fit on the first "
        f"{WARMUP_ROWS:,} rows; lme4 is not run above {args.skip_lme4_above:,.0f} rows "
        f"(`--skip-lme4-above`), and has {args.lme4_timeout:.0f} s per fit.",
        "",
        *(f"- {note}" for note in notes),
        "",
        *HEADER,
    ]
    found: list[Any] = []
    every: list[Summary] = []
    formulas: list[str] = []
    for name in names:
        case = CASES[name]
        datadir = new_datadir(args.workdir)
        try:
            t0 = time.perf_counter()
            frame = case.make(scale, args.seed)
            n, levels = write_data(datadir, case, frame), grouping_levels(case, frame)
            del frame
            print(
                f"== {name}: {n:,} rows simulated in {time.perf_counter() - t0:.1f} s",
                file=sys.stderr,
            )
            skipped = {k: v for k, v in base_skip.items() if v}
            if "R" not in skipped and n > args.skip_lme4_above:
                skipped["R"] = (
                    f"not run: {n:,} rows > --skip-lme4-above {args.skip_lme4_above:,.0f} "
                    "(lme4 does not finish in 30 minutes)"
                )
            timeouts = {"glmx": args.timeout, "R": args.lme4_timeout}
            with scale_scripts():  # one library after the other, reps times
                sums = compare(
                    name, ["glmx", "R"], datadir, case.family, reps, timeouts,
                    args.single_rep_above, skipped,
                )  # fmt: skip
            every.extend(sums.values())
        finally:
            shutil.rmtree(datadir, ignore_errors=True)
        g, r = Outcome.of(sums["glmx"], case), Outcome.of(sums["R"], case)
        lines += table_rows(name, n, levels, g, r)
        found += checks(name, g, r, scale)
        formulas.append(f"- `{name}`: {case.label}, `{case.formula}` ({case.family})")
    lines += [
        "",
        *formulas,
        "",
        load_note(every),
        "",
        "Settings: `glmx.glmm(formula, data, family, reml=False)` (gaussian) or with "
        "`nagq=1` (binomial); `lme4::lmer(formula, data, REML = FALSE)` and "
        "`lme4::glmer(formula, data, family, nAGQ = 1)` with their default optimizers "
        "(lmer: nloptwrap BOBYQA; glmer: bobyqa then Nelder_Mead).  Evaluations: glmx's "
        "`fit.n_feval`, lme4's `fit@optinfo$feval` (glmer: its second, (theta, beta) stage "
        "only).  −2 loglik: the ML deviance (Laplace for GLMMs); rel. Δ = (glmx − lme4) / "
        "|lme4|, negative where glmx found the higher likelihood.  Peak RSS: the process's "
        "maximum resident set size (`/usr/bin/time -v`) including the data and the "
        "interpreter; fit's extra RSS = peak minus the resident set just before the fit.",
    ]
    md = "\n".join(lines)
    print(md)
    return Result(md, found)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--task"]:  # started by benchlib.run_fit as the glmx worker
        worker(sys.argv[1:])
    else:
        result = main(sys.argv[1:])
        mark = {True: "met", False: "NOT MET", None: "not measured"}
        print("\nTargets (issue 16):")
        for what, ok, detail in result.checks:
            print(f"- {what}: {mark[ok]} ({detail})")
