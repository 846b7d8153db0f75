"""Binomial GLMM fits: glmx.glmm against lme4::glmer (Laplace, bobyqa) on the same data.

    python benchmarks/bench_glmm.py --n 100000 --groups 1000 --reps 3

Two simulated data sets (fixed seed):

- ``slopes``: ``y ~ x + z + (x | g)``, n rows in ``--groups`` groups, a correlated random
  intercept and slope (sds 0.8 and 0.4, correlation 0.3);
- ``crossed``: the structure of lme4's VerbAgg, 316 persons x 24 items crossed (7,584 rows),
  ``r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)`` with person covariates
  (Anger, Gender) and item covariates (btype, situ), effects near lme4's VerbAgg fit.

Each fit runs in its own process (benchlib's runner: this file in ``--task`` mode for glmx,
``glmm_fit.R`` for lme4) after a warm-up fit on the first 2,000 rows; repetitions
alternate; the table gives median times, glmx's time over glmer's, both log-likelihoods
(glmx's must not be below glmer's by more than 1e-3), coefficient and theta differences,
and peak memory.  Without Rscript or lme4 only glmx runs; without ``glmx.glmm`` only R does.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
import pandas as pd
from _worker import rss_now, rss_peak
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
    r_available,
    ratio_detail,
    set_threads,
    timing_cells,
)

HERE = Path(__file__).resolve().parent
LIBRARIES = ["glmx", "R"]
DATASETS = ["slopes", "crossed"]
LOGLIK_SLACK = 1e-3  # glmx's log-likelihood may fall short of glmer's by at most this
WARMUP_ROWS = 2000


# ------------------------------------------------------------------------------ data


def inv_logit(eta: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-eta))


def simulate_slopes(n: int, groups: int, seed: int) -> pd.DataFrame:
    """y ~ Bernoulli(logit^-1(-0.5 + 0.8 x - 0.4 z + b0_g + b1_g x)), (b0, b1) normal with
    sds 0.8, 0.4 and correlation 0.3; rows sorted by group, about n / groups per group."""
    rng = np.random.default_rng(seed)
    g = np.sort(rng.integers(0, groups, n))
    x = np.round(rng.standard_normal(n), 4)
    z = np.round(rng.standard_normal(n), 4)
    sd, corr = np.array([0.8, 0.4]), 0.3
    cov = np.outer(sd, sd) * np.array([[1.0, corr], [corr, 1.0]])
    b = rng.multivariate_normal(np.zeros(2), cov, groups)
    eta = -0.5 + 0.8 * x - 0.4 * z + b[g, 0] + b[g, 1] * x
    y = (rng.random(n) < inv_logit(eta)).astype(int)
    width = len(str(groups - 1))
    return pd.DataFrame({"g": [f"g{i:0{width}d}" for i in g], "x": x, "z": z, "y": y})


def simulate_crossed(seed: int, persons: int = 316, items: int = 24) -> pd.DataFrame:
    """VerbAgg's design: every person answers every item; items are 4 situations x 2 modes x
    3 behaviour types (situations 1-2 'other', 3-4 'self'); person sd 1.34, item sd 0.5."""
    rng = np.random.default_rng(seed)
    anger = np.clip(np.round(rng.normal(20.0, 5.0, persons)), 11, 39).astype(int)
    gender = np.where(rng.random(persons) < 0.77, "F", "M")
    btype = np.tile(["curse", "scold", "shout"], items // 3)
    situ = np.where(np.arange(items) % 12 < 6, "other", "self")
    u, v = rng.normal(0.0, 1.34, persons), rng.normal(0.0, 0.5, items)
    person, item = np.tile(np.arange(persons), items), np.repeat(np.arange(items), persons)
    eta = (
        0.2
        + 0.057 * anger[person]
        + 0.32 * (gender[person] == "M")
        - 1.06 * (btype[item] == "scold")
        - 2.1 * (btype[item] == "shout")
        - 1.06 * (situ[item] == "self")
        + u[person]
        + v[item]
    )
    return pd.DataFrame(
        {
            "id": [f"p{i:03d}" for i in person],
            "item": [f"i{j:02d}" for j in item],
            "Anger": anger[person],
            "Gender": gender[person],
            "btype": btype[item],
            "situ": situ[item],
            "r2": (rng.random(len(person)) < inv_logit(eta)).astype(int),
        }
    )


# dataset -> (formula, number of fixed effects, number of theta parameters)
MODELS = {
    "slopes": ("y ~ x + z + (x | g)", 3, 3),
    "crossed": ("r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", 6, 2),
}


def write_data(datadir: Path, name: str, data: pd.DataFrame) -> None:
    formula, p, n_theta = MODELS[name]
    data.to_csv(datadir / "data.csv", index=False)
    (datadir / "formula.txt").write_text(formula + "\n")
    meta = {"n": len(data), "p": p, "n_theta": n_theta, "formula": formula}
    (datadir / "meta.json").write_text(json.dumps(meta))


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

        data = pd.read_csv(args.data / "data.csv")
        formula = (args.data / "formula.txt").read_text().strip()

        def fit(d: pd.DataFrame) -> tuple[np.ndarray, int | None]:
            f = glmx.glmm(formula, d, family=args.family)
            params = np.r_[f.coef.to_numpy(), np.ravel(f.theta), f.loglik]
            return params, f.n_feval  # deviance evaluations, as glmer's feval

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:  # imports and first-call costs stay out of the timing
                fit(data.iloc[:WARMUP_ROWS].copy())
            except Exception:  # noqa: BLE001, S110 - a failed warm-up only costs accuracy
                pass
            result["rss_before"] = rss_now()
            t0 = time.perf_counter()
            params, n_iter = fit(data)
            result["seconds"] = time.perf_counter() - t0
        result.update(status="ok", n_iter=n_iter)
        np.save(args.out / "coef.npy", np.asarray(params, dtype=float))
    except MemoryError:
        result["status"] = f"out of memory (limit {args.mem_limit / 1e9:.0f} GB)"
    except Exception as e:  # noqa: BLE001 - reported in the table
        result["status"] = f"error: {type(e).__name__}: {e}"[:200]
    result["peak_rss"] = rss_peak()
    (args.out / "result.json").write_text(json.dumps(result))


@contextmanager
def glmm_scripts() -> Iterator[None]:
    """Point benchlib's runner at this file (glmx) and glmm_fit.R (lme4) for the duration:
    run_fit and compare (timeouts, /usr/bin/time, alternation) are reused unchanged."""
    saved = benchlib.WORKER, benchlib.R_SCRIPT
    benchlib.WORKER, benchlib.R_SCRIPT = Path(__file__).resolve(), HERE / "glmm_fit.R"
    try:
        yield
    finally:
        benchlib.WORKER, benchlib.R_SCRIPT = saved


# -------------------------------------------------------------------------- availability


def glmx_missing() -> str | None:
    """Why glmx cannot take part (None when glmx.glmm exists)."""
    try:
        import glmx
    except ImportError as e:
        return f"glmx.glmm not available (import glmx failed: {e})"
    if not hasattr(glmx, "glmm"):
        return "glmx.glmm not available (this glmx has no glmm)"
    return None


def lme4_missing() -> str | None:
    """Why lme4 cannot take part (None when Rscript can load lme4)."""
    if not r_available():
        return "skipped: Rscript not found"
    probe = 'quit(status = if (requireNamespace("lme4", quietly = TRUE)) 0 else 1)'
    try:
        ok = subprocess.run(["Rscript", "-e", probe], capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        return f"skipped: Rscript failed ({e})"
    return None if ok.returncode == 0 else "skipped: R package lme4 not installed"


# ------------------------------------------------------------------------------ report


def split_params(params: np.ndarray | None, p: int) -> tuple[Any, Any, float | None]:
    """[fixed effects, theta, loglik] -> the three parts (Nones when missing)."""
    if params is None or len(params) < p + 1:
        return None, None, None
    return params[:p], params[p:-1], float(params[-1])


def loglik_gap(sums: dict[str, Summary], p: int) -> float | None:
    """glmx's log-likelihood minus glmer's."""
    g = split_params(sums["glmx"].coef, p)[2] if "glmx" in sums else None
    r = split_params(sums["R"].coef, p)[2] if "R" in sums else None
    return None if g is None or r is None else g - r


def table_rows(name: str, sums: dict[str, Summary], p: int) -> list[str]:
    base = sums["glmx"].seconds if "glmx" in sums else None
    ref_beta, ref_theta, ref_ll = split_params(sums["R"].coef if "R" in sums else None, p)
    rows = []
    for lib, s in sums.items():
        beta, theta, ll = split_params(s.coef, p)
        label = "lme4::glmer" if lib == "R" else "glmx.glmm"
        d_ll = None if ll is None or ref_ll is None else ll - ref_ll
        rows.append(
            f"| {name} | {label} | {timing_cells(s, base)} | {fmt(ll, '.4f')} "
            f"| {fmt(d_ll, '.2e')} | {fmt(max_abs_diff(beta, ref_beta), '.1e')} "
            f"| {fmt(max_abs_diff(theta, ref_theta), '.1e')} "
            f"| {fmt_gb(s.peak_rss)} | {fmt_gb(s.extra_rss)} |"
        )
    return rows


HEADER = [
    f"| data | library | {TIMING_HEADER} | loglik | Δloglik vs glmer "
    "| max abs Δcoef vs glmer | max abs Δtheta vs glmer | peak RSS GB | fit's extra RSS GB |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
]


def checks(name: str, sums: dict[str, Summary], p: int) -> list[tuple[str, bool | None, str]]:
    gap = loglik_gap(sums, p)
    g = sums.get("glmx")
    if g is None or g.seconds is None:
        speed = f"not measured (glmx: {g.status if g else 'not run'})"
    else:
        speed = ratio_detail(g, sums.get("R"))[1]
    return [
        (
            f"glmm {name}: glmx loglik ≥ glmer's − {LOGLIK_SLACK:g}",
            None if gap is None else gap >= -LOGLIK_SLACK,
            f"glmx − glmer = {fmt(gap, '.2e')}; time {speed}",
        )
    ]


def describe(name: str, n: int, groups: int) -> str:
    if name == "slopes":
        return f"`slopes`: n = {n:,}, {groups:,} groups, `{MODELS[name][0]}`"
    return f"`crossed`: 7,584 rows, 316 x 24 crossed levels, `{MODELS[name][0]}`"


# -------------------------------------------------------------------------------- main


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=100_000, help="rows of `slopes` (default 1e5)")
    ap.add_argument("--groups", type=int, default=1000, help="groups of `slopes`")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--reps", type=int, default=3, help="alternating repetitions")
    ap.add_argument("--no-r", action="store_true", help="leave out lme4::glmer")
    add_common_options(ap, timeout=1800)
    return ap


def main(argv: list[str] | None = None) -> Result:
    args = parser().parse_args(argv)
    set_threads(args.threads)
    skipped = {"glmx": glmx_missing(), "R": "skipped (--no-r)" if args.no_r else lme4_missing()}
    notes = [
        f"{'glmx' if lib == 'glmx' else 'lme4::glmer'}: {why}"
        for lib, why in skipped.items()
        if why
    ]
    for note in notes:
        print(note)
    lines = [
        f"Binomial GLMMs, Laplace approximation; median of up to {args.reps} alternating "
        "repetitions, each fit in its own process after a warm-up fit on the first "
        f"{WARMUP_ROWS:,} rows.",
        "",
        *(f"- {describe(name, args.n, args.groups)}" for name in args.datasets.split(",")),
        *(f"- {note}" for note in notes),
        "",
        *HEADER,
    ]
    found: list[tuple[str, bool | None, str]] = []
    every: list[Summary] = []
    for name in args.datasets.split(","):
        p = MODELS[name][1]
        datadir = new_datadir(args.workdir)
        try:
            data = (
                simulate_slopes(args.n, args.groups, args.seed)
                if name == "slopes"
                else simulate_crossed(args.seed)
            )
            write_data(datadir, name, data)
            del data
            with glmm_scripts():
                sums = compare(
                    f"glmm-{name}",
                    LIBRARIES,
                    datadir,
                    "binomial",
                    args.reps,
                    args.timeout,
                    args.single_rep_above,
                    skipped={lib: why for lib, why in skipped.items() if why},
                )
            every.extend(sums.values())
        finally:
            shutil.rmtree(datadir, ignore_errors=True)
        lines += table_rows(name, sums, p)
        found += checks(name, sums, p)
    lines += [
        "",
        load_note(every),
        "",
        'Settings: `glmx.glmm(formula, data, family="binomial")` defaults (nagq = 1); '
        "`lme4::glmer(formula, data, binomial, control = glmerControl(optimizer = "
        '"bobyqa"))`.  loglik: the Laplace log-likelihood each reports; Δloglik = '
        f"library − glmer (glmx must be ≥ −{LOGLIK_SLACK:g}).  Iterations: deviance "
        "evaluations (glmx's `n_feval`, glmer's `optinfo$feval`).  Peak RSS: "
        "the process's maximum resident set size (`/usr/bin/time -v`) including the data "
        "and the interpreter; fit's extra RSS = peak minus the resident set just before the "
        "fit.",
    ]
    md = "\n".join(lines)
    print(md)
    return Result(md, found)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--task"]:  # started by benchlib.run_fit as the glmx worker
        worker(sys.argv[1:])
    else:
        main(sys.argv[1:])
