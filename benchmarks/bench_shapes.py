"""GLM shapes beyond dense poisson (issue 14): glmx against glum on the same data, the
first fit after import and a warm fit, in fresh processes.

    python benchmarks/bench_shapes.py                           # the issue's sizes
    python benchmarks/bench_shapes.py --shapes wide_gaussian --reps 5
    python benchmarks/bench_shapes.py --scale 0.02 --reps 1     # smoke run

Shapes (n x p, p counting the ones column that X starts with; no library adds an
intercept, none penalizes):

- binomial_dense: dense binomial (logit), 1e6 x 50
- gamma_log: dense gamma, log link, 5e5 x 50
- tweedie_log: dense tweedie, power 1.5, log link, 5e5 x 30
- sparse_poisson: poisson, scipy CSR [1, S] with S at 0.2% density, 2e5 x 5,000
- wide_gaussian: dense gaussian (identity), 2e4 x 2,000; glmx's fit is also set against
  one X'X (``X.T @ X``) timed in the same process

Each shape is simulated once (seeded) and saved to a temp dir.  Every repetition starts
one fresh process per library (this script with ``--worker``; libraries alternate): it
loads the data, imports the library, times the *first fit* (the first fit after import:
lazy imports, JIT compilation or loading of compiled code, first-call costs included;
the import itself excluded), then a *warm fit* of the same data in the same process.
Tables give medians over the repetitions, the ratio glmx / glum, iteration counts, the
process's peak RSS and the coefficient differences between the two libraries.

``--scale s`` multiplies n by s (for smoke runs); where that would leave fewer than
min(20, n/p) rows per column, p shrinks to keep that ratio, and the sparse density rises
so that every column keeps about 50 stored values.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from benchlib import (
    Result,
    _peak_from_time_v,
    add_common_options,
    fmt,
    fmt_gb,
    max_abs_diff,
    max_rel_diff,
    new_datadir,
    set_threads,
    total_memory,
)

HERE = Path(__file__).resolve().parent
LIBRARIES = ["glmx", "glum"]
# glum's gradient tolerance, as in bench_dense (_worker.GLUM_TOL): ~1e-9 relative accuracy
GLUM_TOL = 1e-6
TWEEDIE_POWER = 1.5


@dataclass(frozen=True)
class Shape:
    family: str  # glmx's family name ("tweedie" with power TWEEDIE_POWER)
    link: str
    n: int
    p: int
    density: float | None = None  # sparse: density of S in X = [1, S]
    label: str = ""


SHAPES: dict[str, Shape] = {
    "binomial_dense": Shape("binomial", "logit", 1_000_000, 50, label="dense binomial (logit)"),
    "gamma_log": Shape("gamma", "log", 500_000, 50, label="dense gamma, log link"),
    "tweedie_log": Shape(
        "tweedie", "log", 500_000, 30, label=f"dense tweedie (power {TWEEDIE_POWER}), log link"
    ),
    "sparse_poisson": Shape(
        "poisson", "log", 200_000, 5_000, density=0.002, label="sparse poisson (CSR), log link"
    ),
    "wide_gaussian": Shape(
        "gaussian", "identity", 20_000, 2_000, label="wide dense gaussian (identity)"
    ),
}

# glmx / glum, first fit after import, measured before issue 14's work on a 2-core machine
BEFORE = {
    "binomial_dense": 0.41,
    "gamma_log": 0.51,
    "tweedie_log": 0.92,
    "sparse_poisson": 0.64,
    "wide_gaussian": 0.88,
}
# issue 14: "the wide gaussian fit needs one Gram matrix (today it takes 3.3x ... one X'X)"
XTX_BEFORE = 3.3
XTX_TARGET = 1.5


# ------------------------------------------------------------------------------ data


def dims(shape: Shape, scale: float) -> tuple[int, int, float | None]:
    """n, p and density at ``scale`` (see the module docstring)."""
    n = max(200, round(shape.n * scale))
    ratio = min(20.0, shape.n / shape.p)
    p = shape.p if n >= ratio * shape.p else max(5, int(n / ratio))
    density = shape.density
    if density is not None:
        density = min(1.0, max(density, 50.0 / n))
    return n, p, density


def simulate(name: str, scale: float = 1.0, seed: int = 0) -> tuple[Any, np.ndarray]:
    """X (C-ordered float64, or CSR for sparse_poisson) whose first column is ones, and y.

    Dense columns are N(0, 0.2^2) (wide_gaussian: N(0, 1)); sparse entries N(0, 1).
    |beta_j| in [0.1, 0.5] (sparse: [0.2, 0.4], intercept 0.5) so that relative coefficient
    differences are meaningful.  gamma: shape 2; tweedie: compound Poisson-gamma with
    dispersion 1; gaussian: noise sd 1."""
    shape = SHAPES[name]
    n, p, density = dims(shape, scale)
    rng = np.random.default_rng(seed)
    if density is not None:
        S = sp.random(n, p - 1, density=density, format="csr", random_state=rng)
        S.data = rng.standard_normal(S.nnz)
        X: Any = sp.hstack([sp.csr_matrix(np.ones((n, 1))), S], format="csr")
        beta = rng.choice([-1.0, 1.0], p) * rng.uniform(0.2, 0.4, p)
        beta[0] = 0.5
    else:
        X = rng.standard_normal((n, p))
        if shape.family != "gaussian":
            X *= 0.2
        X[:, 0] = 1.0
        beta = rng.choice([-1.0, 1.0], p) * rng.uniform(0.1, 0.5, p)
    eta = np.asarray(X @ beta)
    if shape.family == "binomial":
        y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    elif shape.family == "gamma":
        y = rng.gamma(2.0, np.exp(eta) / 2.0)
    elif shape.family == "tweedie":
        # Poisson(lam) many Gamma(a, s) summands: mean mu, variance phi mu^p (phi = 1)
        mu, q = np.exp(eta), TWEEDIE_POWER
        lam = mu ** (2 - q) / (2 - q)
        a, s = (2 - q) / (q - 1), (q - 1) * mu ** (q - 1)
        y = rng.gamma(rng.poisson(lam) * a, s)  # shape 0 gives 0
    elif shape.family == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    else:
        y = eta + rng.standard_normal(n)
    return X, y


def write_data(datadir: Path, name: str, X: Any, y: np.ndarray) -> None:
    if sp.issparse(X):
        sp.save_npz(datadir / "X.npz", X, compressed=False)
    else:
        np.save(datadir / "X.npy", np.ascontiguousarray(X))
    np.save(datadir / "y.npy", y)
    meta = {"shape": name, "n": X.shape[0], "p": X.shape[1]}
    if sp.issparse(X):
        meta["nnz"] = int(X.nnz)
    (datadir / "meta.json").write_text(json.dumps(meta))


# ---------------------------------------------------------------------------- worker


def _fit_function(library: str, shape: Shape, X: Any, y: np.ndarray) -> Any:
    """Imports the library (outside the timing) and returns fit() -> (coef, n_iter)."""
    if library == "glmx":
        import glmx

        def fit() -> tuple[np.ndarray, int]:
            if shape.family == "tweedie":
                fam: Any = glmx.families.tweedie(TWEEDIE_POWER, shape.link)
                f = glmx.glm_fit(X, y, family=fam)
            else:
                f = glmx.glm_fit(X, y, family=shape.family, link=shape.link)
            return f.coef.to_numpy(), int(f.n_iter)

        return fit
    if library == "glum":
        from glum import GeneralizedLinearRegressor, TweedieDistribution

        family: Any = {
            "binomial": "binomial",
            "gamma": "gamma",
            "poisson": "poisson",
            "gaussian": "normal",
            "tweedie": TweedieDistribution(TWEEDIE_POWER),
        }[shape.family]

        def fit() -> tuple[np.ndarray, int]:
            m = GeneralizedLinearRegressor(
                family=family,
                link=shape.link,
                alpha=0,
                fit_intercept=False,
                gradient_tol=GLUM_TOL,
            ).fit(X, y)
            return np.asarray(m.coef_, dtype=float), int(m.n_iter_)

        return fit
    raise SystemExit(f"unknown library {library}")


def _rss_now() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return float(pages * resource.getpagesize())


def worker(argv: list[str]) -> None:
    """One process: load, import, first fit, warm fit (wide_gaussian, glmx: one X'X)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--mem-limit", type=int, default=0)
    args = ap.parse_args(argv)
    if args.mem_limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (args.mem_limit, args.mem_limit))
    result: dict[str, Any] = {}
    try:
        name = json.loads((args.data / "meta.json").read_text())["shape"]
        shape = SHAPES[name]
        if (args.data / "X.npz").exists():
            X: Any = sp.load_npz(args.data / "X.npz").tocsr()
        else:
            X = np.load(args.data / "X.npy")
        y = np.load(args.data / "y.npy")
        fit = _fit_function(args.library, shape, X, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result["rss_before"] = _rss_now()
            t0 = time.perf_counter()
            coef, result["first_iter"] = fit()
            result["first_seconds"] = time.perf_counter() - t0
            np.save(args.out / "coef_first.npy", np.asarray(coef, dtype=float))
            t0 = time.perf_counter()
            coef, result["warm_iter"] = fit()
            result["warm_seconds"] = time.perf_counter() - t0
        np.save(args.out / "coef.npy", np.asarray(coef, dtype=float))
        if name == "wide_gaussian" and args.library == "glmx":
            X.T @ X  # warm-up (BLAS threads, page faults of the result)
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                X.T @ X
                times.append(time.perf_counter() - t0)
            result["xtx_seconds"] = min(times)
        result["status"] = "ok"
    except MemoryError:
        result["status"] = f"out of memory (limit {args.mem_limit / 1e9:.0f} GB)"
    except Exception as e:  # noqa: BLE001 - reported in the table
        result["status"] = f"error: {type(e).__name__}: {e}"[:200]
    result["peak_rss"] = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    (args.out / "result.json").write_text(json.dumps(result))


# ------------------------------------------------------------------------ the driver


@dataclass
class ShapeRun:
    status: str
    first: float | None = None
    warm: float | None = None
    first_iter: int | None = None
    warm_iter: int | None = None
    xtx: float | None = None
    peak_rss: float | None = None
    rss_before: float | None = None
    coef: np.ndarray | None = None
    coef_first: np.ndarray | None = None
    load: float | None = None


@dataclass
class ShapeSummary:
    library: str
    runs: list[ShapeRun] = field(default_factory=list)

    @property
    def ok(self) -> list[ShapeRun]:
        return [r for r in self.runs if r.status == "ok"]

    def median(self, attr: str) -> float | None:
        v = [getattr(r, attr) for r in self.ok if getattr(r, attr) is not None]
        return float(np.median(v)) if v else None

    def values(self, attr: str) -> list[Any]:
        return [getattr(r, attr) for r in self.ok if getattr(r, attr) is not None]

    @property
    def status(self) -> str:
        if self.ok:
            n = len(self.ok)
            return "ok" if n == len(self.runs) else f"{n} of {len(self.runs)} ok"
        return self.runs[-1].status if self.runs else "not run"

    @property
    def coef(self) -> np.ndarray | None:
        return self.ok[-1].coef if self.ok else None


def run_worker(library: str, datadir: Path, timeout: float) -> ShapeRun:
    """One worker process under ``/usr/bin/time -v``; never raises."""
    out = Path(tempfile.mkdtemp(prefix=f"{library}-", dir=datadir))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--library", library]
    cmd += ["--data", str(datadir), "--out", str(out)]
    cmd += ["--mem-limit", str(int(0.8 * total_memory()))]
    if Path("/usr/bin/time").exists():
        cmd = ["/usr/bin/time", "-v", *cmd]
    load = os.getloadavg()[0]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        shutil.rmtree(out, ignore_errors=True)
        return ShapeRun(status=f"timeout (> {timeout:.0f} s)", load=load)
    try:
        info = json.loads((out / "result.json").read_text())
    except (OSError, ValueError):
        tail = stderr.strip().splitlines()[-3:] if stderr.strip() else ["no output"]
        shutil.rmtree(out, ignore_errors=True)
        return ShapeRun(status="error: " + " / ".join(tail)[:200], load=load)

    def coef(f: str) -> np.ndarray | None:
        return np.load(out / f) if (out / f).exists() else None

    run = ShapeRun(
        status=info.get("status", "ok"),
        first=info.get("first_seconds"),
        warm=info.get("warm_seconds"),
        first_iter=info.get("first_iter"),
        warm_iter=info.get("warm_iter"),
        xtx=info.get("xtx_seconds"),
        peak_rss=_peak_from_time_v(stderr) or info.get("peak_rss"),
        rss_before=info.get("rss_before"),
        coef=coef("coef.npy"),
        coef_first=coef("coef_first.npy"),
        load=load,
    )
    shutil.rmtree(out, ignore_errors=True)
    return run


def compare_shape(
    name: str, libs: list[str], datadir: Path, reps: int, timeout: float
) -> dict[str, ShapeSummary]:
    """``reps`` alternating repetitions (A B A B ...); a failed library is not retried."""
    sums = {lib: ShapeSummary(lib) for lib in libs}
    for rep in range(reps):
        for lib, s in sums.items():
            if rep > 0 and not s.ok:
                continue
            run = run_worker(lib, datadir, timeout)
            s.runs.append(run)
            if run.status == "ok":
                t = f"first {run.first:.3f} s, warm {run.warm:.3f} s"
            else:
                t = run.status
            print(f"  [shapes {name}] rep {rep + 1} {lib}: {t}", file=sys.stderr)
    return sums


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _iters(s: ShapeSummary) -> str:
    first, warm = s.values("first_iter"), s.values("warm_iter")
    if not first:
        return "–"
    a, b = int(np.median(first)), int(np.median(warm)) if warm else None
    return str(a) if a == b else f"{a} / {fmt(b, 'd')}"


TABLE_HEADER = [
    "| library | first fit s | warm fit s | min first / warm s | reps | iterations "
    "| peak RSS GB | max rel Δcoef vs glum | max abs Δcoef vs glum |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
]


def shape_section(
    name: str, meta: dict[str, Any], sums: dict[str, ShapeSummary]
) -> tuple[list[str], list[tuple[str, bool | None, str]]]:
    shape = SHAPES[name]
    n, p = meta["n"], meta["p"]
    what = f"n = {n:,}, p = {p:,}"
    if "nnz" in meta:
        what += f", CSR with {meta['nnz']:,} stored values (density {meta['nnz'] / (n * p):.2%})"
    else:
        what += f", X {8.0 * n * p / 1e9:.2f} GB"
    lines = [f"### {name}: {shape.label}", "", what, "", *TABLE_HEADER]
    ref = sums["glum"].coef if "glum" in sums else None
    for lib, s in sums.items():
        if not s.ok:
            lines.append(f"| {lib} | {s.status} | | | | | | | |")
            continue
        mins = f"{fmt(min(s.values('first')))} / {fmt(min(s.values('warm')))}"
        lines.append(
            f"| {lib} | {fmt(s.median('first'))} | {fmt(s.median('warm'))} | {mins} "
            f"| {len(s.ok)} | {_iters(s)} | {fmt_gb(s.median('peak_rss'))} "
            f"| {fmt(max_rel_diff(s.coef, ref), '.1e')} "
            f"| {fmt(max_abs_diff(s.coef, ref), '.1e')} |"
        )
    g, m = sums.get("glmx"), sums.get("glum")
    r_first = r_warm = None
    if g is not None and m is not None:
        r_first = _ratio(g.median("first"), m.median("first"))
        r_warm = _ratio(g.median("warm"), m.median("warm"))
        lines.append(
            f"| **glmx / glum** | **{fmt(r_first)}** (before: {BEFORE[name]:.2f}) "
            f"| **{fmt(r_warm)}** | | | | | | |"
        )
    checks: list[tuple[str, bool | None, str]] = []
    if g is not None and m is not None:
        gi = g.values("first_iter")
        mi = m.values("first_iter")
        detail = (
            f"{fmt(r_first, '.3f')} × (glmx {fmt(g.median('first'))} s, "
            f"glum {fmt(m.median('first'))} s; {fmt(int(np.median(gi)) if gi else None, 'd')} "
            f"vs {fmt(int(np.median(mi)) if mi else None, 'd')} iterations); "
            f"warm fits {fmt(r_warm, '.3f')} ×"
        )
        if r_first is None:
            detail = f"not measured (glmx {g.status}, glum {m.status})"
        checks.append(
            (
                f"shapes {name}: glmx/glum first fit ≤ {BEFORE[name]:.2f} (issue 14)",
                None if r_first is None else r_first <= BEFORE[name],
                detail,
            )
        )
    if g is not None and name == "wide_gaussian":
        xtx = g.median("xtx")
        rf, rw = _ratio(g.median("first"), xtx), _ratio(g.median("warm"), xtx)
        lines += [
            "",
            f"One X'X (`X.T @ X`, float64, in glmx's process after a warm-up; the fastest of "
            f"three): {fmt(xtx, '.3f')} s.  glmx first fit / X'X = **{fmt(rf)}**, warm fit / "
            f"X'X = **{fmt(rw)}** (before: {XTX_BEFORE} ×; one Gram matrix is the target).",
        ]
        checks.append(
            (
                f"shapes wide_gaussian: glmx warm fit ≤ {XTX_TARGET} × one X'X "
                f"(one Gram matrix; before {XTX_BEFORE} ×; issue 14)",
                None if rw is None else rw <= XTX_TARGET,
                f"warm fit {fmt(rw)} × X'X, first fit {fmt(rf)} × "
                f"(X'X {fmt(xtx, '.3f')} s, warm fit {fmt(g.median('warm'))} s)",
            )
        )
    for lib, s in sums.items():  # the first and the warm fit must give the same answer
        d = [max_abs_diff(r.coef, r.coef_first) for r in s.ok]
        d = [x for x in d if x is not None]
        if d and max(d) > 1e-10:
            lines += ["", f"{lib}: first and warm fits differ by up to {max(d):.1e} (abs)."]
    return lines, checks


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma list of shapes")
    ap.add_argument("--reps", type=int, default=3, help="alternating repetitions (median)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply n by this (smoke)")
    ap.add_argument("--libraries", default=",".join(LIBRARIES))
    ap.add_argument("--output", type=Path, default=None, help="also write the markdown here")
    add_common_options(ap, timeout=1800, single_rep=False)
    return ap


def main(argv: list[str] | None = None) -> Result:
    args = parser().parse_args(argv)
    set_threads(args.threads)
    libs = [x for x in args.libraries.split(",") if x]
    names = [x for x in args.shapes.split(",") if x]
    for name in names:
        if name not in SHAPES:
            raise SystemExit(f"unknown shape {name!r}; choose from {', '.join(SHAPES)}")
    lines = [
        f"glmx against glum, each fit's process fresh; median of {args.reps} alternating "
        "repetitions"
        + (f"; n scaled by {args.scale:g} (smoke run)" if args.scale != 1.0 else "")
        + ".  *First fit*: the first fit after importing the library (compilation and "
        "first-call costs included, the import excluded); *warm fit*: a second fit of the "
        "same data in the same process.  Iterations: first / warm fit when they differ.",
        "",
    ]
    summary = [
        "| shape | glmx/glum first fit | before (issue 14) | glmx/glum warm fit "
        "| iterations glmx / glum |",
        "| --- | --- | --- | --- | --- |",
    ]
    checks: list[tuple[str, bool | None, str]] = []
    loads: list[float] = []
    body: list[str] = []
    for name in names:
        datadir = new_datadir(args.workdir)
        try:
            X, y = simulate(name, args.scale, args.seed)
            write_data(datadir, name, X, y)
            del X, y
            meta = json.loads((datadir / "meta.json").read_text())
            sums = compare_shape(name, libs, datadir, args.reps, args.timeout)
        finally:
            shutil.rmtree(datadir, ignore_errors=True)
        loads += [r.load for s in sums.values() for r in s.runs if r.load is not None]
        section, found = shape_section(name, meta, sums)
        body += [*section, ""]
        checks += found
        g, m = sums.get("glmx"), sums.get("glum")
        if g is not None and m is not None:
            summary.append(
                f"| {name} | {fmt(_ratio(g.median('first'), m.median('first')))} "
                f"| {BEFORE[name]:.2f} | {fmt(_ratio(g.median('warm'), m.median('warm')))} "
                f"| {_iters(g)} / {_iters(m)} |"
            )
    lines += [*summary, "", *body]
    if loads:
        lines.append(
            f"1-minute load average when the fits started: median {np.median(loads):.1f} "
            f"(range {min(loads):.1f}–{max(loads):.1f}) on {os.cpu_count()} cores."
        )
        lines.append("")
    lines.append(
        "Settings: glmx `glm_fit(X, y, family, link)` defaults (tweedie: "
        f"`glmx.families.tweedie({TWEEDIE_POWER}, 'log')`); glum `GeneralizedLinearRegressor("
        f"alpha=0, fit_intercept=False, gradient_tol={GLUM_TOL:g})` with the same family and "
        f"link (tweedie: `TweedieDistribution({TWEEDIE_POWER})`, gaussian: `'normal'`); the "
        "sparse X is passed to both as scipy CSR.  Peak RSS: the process's maximum resident "
        "set size (`/usr/bin/time -v`), data and interpreter included, over both fits.  "
        "Δcoef: the warm fits' coefficients, relative to glum's."
    )
    md = "\n".join(lines)
    print(md)
    if args.output is not None:
        args.output.write_text(md + "\n")
    return Result(md, checks)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2:])
    else:
        main(sys.argv[1:])
