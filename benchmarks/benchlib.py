"""Shared machinery of the benchmark scripts: fits in worker subprocesses, alternating
repetitions, medians, peak memory, and the machine description.

Every timed fit runs in its own subprocess (``_worker.py``, or ``glm_fit.R`` for R) under
``/usr/bin/time -v`` when it exists, so that each library gets a fresh heap, a per-library
timeout can kill a fit that runs too long, and the kernel's "Maximum resident set size" of
that fit is its peak memory.  The worker times only the fit call (``time.perf_counter``
around it); loading the data and importing the library happen before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_worker.py"
R_SCRIPT = HERE / "glm_fit.R"
GB = 1e9


@dataclass
class Run:
    """One fit in a subprocess."""

    status: str  # "ok", "timeout", "error: ...", "out of memory ..."
    seconds: float | None = None
    n_iter: int | None = None
    peak_rss: float | None = None  # bytes: the process's maximum resident set size
    rss_before: float | None = None  # bytes: resident set just before the fit (data loaded)
    coef: np.ndarray | None = None
    load: float | None = None  # 1-minute load average when the fit started
    iteration_seconds: list[float] | None = None  # glmx: each IRLS iteration's own time


@dataclass
class Summary:
    """All repetitions of one library on one data set."""

    library: str
    runs: list[Run] = field(default_factory=list)
    skipped: str | None = None  # why the library was not run at all

    @property
    def ok(self) -> list[Run]:
        return [r for r in self.runs if r.status == "ok"]

    @property
    def seconds(self) -> float | None:
        t = [r.seconds for r in self.ok if r.seconds is not None]
        return float(np.median(t)) if t else None

    @property
    def min_seconds(self) -> float | None:
        t = [r.seconds for r in self.ok if r.seconds is not None]
        return float(min(t)) if t else None

    @property
    def iteration_seconds(self) -> float | None:
        """Median over the runs of the median time of one IRLS iteration (glmx only)."""
        t = [float(np.median(r.iteration_seconds)) for r in self.ok if r.iteration_seconds]
        return float(np.median(t)) if t else None

    @property
    def n_iter(self) -> int | None:
        its = [r.n_iter for r in self.ok if r.n_iter is not None]
        return int(np.median(its)) if its else None

    @property
    def peak_rss(self) -> float | None:
        m = [r.peak_rss for r in self.ok if r.peak_rss is not None]
        return float(max(m)) if m else None

    @property
    def extra_rss(self) -> float | None:
        """Peak RSS minus the RSS just before the fit (data already loaded), the largest
        over repetitions: the memory the fit itself added."""
        m = [
            r.peak_rss - r.rss_before
            for r in self.ok
            if r.peak_rss is not None and r.rss_before is not None
        ]
        return float(max(m)) if m else None

    @property
    def coef(self) -> np.ndarray | None:
        ok = self.ok
        return ok[-1].coef if ok else None

    @property
    def status(self) -> str:
        if self.skipped:
            return self.skipped
        if self.ok:
            n = len(self.ok)
            return "ok" if n == len(self.runs) else f"{n} of {len(self.runs)} ok"
        return self.runs[-1].status if self.runs else "not run"


@dataclass
class Result:
    """What a benchmark script hands to ``run_all.py``: its markdown section and the
    issue's targets it checked (description, passed or None when not measured, detail)."""

    markdown: str
    checks: list[tuple[str, bool | None, str]] = field(default_factory=list)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def set_threads(n: int | None) -> None:
    """Limit BLAS/OpenMP threads to ``n`` in this process (threadpoolctl) and in every
    worker started from now on (environment variables); None leaves the defaults."""
    if n is None:
        return
    for var in THREAD_VARIABLES:
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n)
    except ImportError:
        pass


def add_common_options(
    ap: argparse.ArgumentParser, timeout: float, single_rep: bool = True
) -> None:
    """Options every benchmark script takes."""
    ap.add_argument("--timeout", type=float, default=timeout, help="seconds per fit")
    if single_rep:
        ap.add_argument(
            "--single-rep-above",
            type=float,
            default=float("inf"),
            help="do not repeat a library whose fastest fit so far took longer (seconds)",
        )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="where the data files go (temp dir)")
    ap.add_argument(
        "--threads", type=int, default=None, help="BLAS/OpenMP threads (default: all cores)"
    )


def total_memory() -> float:
    """Physical memory in bytes (MemTotal of /proc/meminfo)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * GB


def _peak_from_time_v(stderr: str) -> float | None:
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    return float(m.group(1)) * 1024 if m else None


def run_fit(
    task: str,
    library: str,
    datadir: Path,
    family: str,
    timeout: float,
    mem_fraction: float = 0.8,
) -> Run:
    """Fit ``library`` on the data in ``datadir`` in a subprocess; never raises.

    The worker's address space is limited to ``mem_fraction`` of physical memory so that a
    design too big for the machine fails fast with MemoryError instead of swapping."""
    out = Path(tempfile.mkdtemp(prefix=f"{library}-", dir=datadir))
    res_json, coef_npy = out / "result.json", out / "coef.npy"
    if library == "R":
        meta = json.loads((datadir / "meta.json").read_text())
        cmd = ["Rscript", str(R_SCRIPT), str(datadir), family, str(res_json), str(coef_npy)]
        cmd += [str(meta["n"]), str(meta["p"])]
    else:
        cmd = [sys.executable, str(WORKER), "--task", task, "--library", library]
        cmd += ["--data", str(datadir), "--family", family, "--out", str(out)]
        cmd += ["--mem-limit", str(int(mem_fraction * total_memory()))]
    if Path("/usr/bin/time").exists():
        cmd = ["/usr/bin/time", "-v", *cmd]
    # own session: on timeout the whole group (time, python, BLAS threads) is killed
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
        return Run(status=f"timeout (> {timeout:.0f} s)", load=load)
    try:
        info = json.loads(res_json.read_text())
    except (OSError, ValueError):
        tail = stderr.strip().splitlines()[-3:] if stderr.strip() else ["no output"]
        shutil.rmtree(out, ignore_errors=True)
        return Run(status="error: " + " / ".join(tail)[:200], load=load)
    run = Run(
        status=info.get("status", "ok"),
        seconds=info.get("seconds"),
        n_iter=info.get("n_iter"),
        peak_rss=_peak_from_time_v(stderr) or info.get("peak_rss"),
        rss_before=info.get("rss_before"),
        coef=np.load(coef_npy) if coef_npy.exists() else None,
        load=load,
        iteration_seconds=info.get("iteration_seconds") or None,
    )
    shutil.rmtree(out, ignore_errors=True)
    return run


def compare(
    task: str,
    libraries: list[str],
    datadir: Path,
    family: str,
    reps: int,
    timeout: float | dict[str, float],
    single_rep_above: float = float("inf"),
    skipped: dict[str, str] | None = None,
    log: bool = True,
) -> dict[str, Summary]:
    """Run every library ``reps`` times, alternating (A B C A B C ...).  A library that
    failed or timed out is not retried; one whose fastest fit so far took longer than
    ``single_rep_above`` seconds is not repeated.  ``timeout``: seconds a fit, or a
    library's seconds by name."""
    skipped = skipped or {}
    sums = {lib: Summary(lib, skipped=skipped.get(lib)) for lib in libraries}
    for rep in range(reps):
        for lib, s in sums.items():
            if s.skipped or (rep > 0 and not s.ok):
                continue
            if rep > 0 and (s.min_seconds or 0.0) > single_rep_above:
                continue
            limit = timeout[lib] if isinstance(timeout, dict) else timeout
            run = run_fit(task, lib, datadir, family, limit)
            s.runs.append(run)
            if log:
                t = f"{run.seconds:.3f} s" if run.seconds is not None else run.status
                print(f"  [{task} {family}] rep {rep + 1} {lib}: {t}", file=sys.stderr)
    return sums


TIMING_HEADER = "median s | min s | reps | iterations | s / iteration | time / glmx time"


def timing_cells(s: Summary, base: float | None) -> str:
    """The cells of TIMING_HEADER for one library; ``base`` is glmx's median time."""
    t, it = s.seconds, s.n_iter
    if t is None:
        return f"{s.status} | | | | |"
    per_iter = t / it if it else None
    return (
        f"{t:.2f} | {fmt(s.min_seconds)} | {len(s.ok)} | {it if it is not None else '–'} "
        f"| {fmt(per_iter, '.3f')} | {fmt(t / base if base else None)}"
    )


def ratio_detail(glmx: Summary, peer: Summary | None) -> tuple[float | None, str]:
    """glmx's median time over the peer's, and a description with the ratio of the
    fastest fits too (robust to other work on the machine)."""
    if peer is None or not peer.seconds or glmx.seconds is None:
        return None, f"not measured ({peer.status if peer else 'not run'})"
    r = glmx.seconds / peer.seconds
    r_min = (glmx.min_seconds or np.nan) / (peer.min_seconds or np.nan)
    return r, (
        f"{r:.3f} × (glmx {glmx.seconds:.2f} s, {peer.library} {peer.seconds:.2f} s); "
        f"fastest fits: {r_min:.3f} ×"
    )


def load_note(summaries: list[Summary]) -> str:
    """The 1-minute load average seen when the fits started: other work on the machine
    (the load above the benchmark's own) slows multi-threaded BLAS down a lot."""
    loads = [r.load for s in summaries for r in s.runs if r.load is not None]
    if not loads:
        return ""
    return (
        f"1-minute load average when the fits started: median {np.median(loads):.1f} "
        f"(range {min(loads):.1f}–{max(loads):.1f}) on {os.cpu_count()} cores."
    )


def max_abs_diff(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    if a is None or b is None or a.shape != b.shape:
        return None
    return float(np.nanmax(np.abs(a - b)))


def max_rel_diff(a: np.ndarray | None, ref: np.ndarray | None) -> float | None:
    """max_j |a_j - ref_j| / |ref_j| (coefficients of the simulations are never ~0)."""
    if a is None or ref is None or a.shape != ref.shape:
        return None
    return float(np.nanmax(np.abs(a - ref) / np.abs(ref)))


def fmt(x: float | None, spec: str = ".2f", none: str = "–") -> str:
    return none if x is None or not np.isfinite(x) else format(x, spec)


def fmt_gb(x: float | None) -> str:
    return fmt(None if x is None else x / GB, ".2f")


def new_datadir(parent: str | None) -> Path:
    return Path(tempfile.mkdtemp(prefix="glmx-bench-", dir=parent))


def r_available() -> bool:
    return shutil.which("Rscript") is not None


# ---------------------------------------------------------------- machine description


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas() -> str:
    try:
        from threadpoolctl import threadpool_info

        blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if blas:
            b = blas[0]
            return (
                f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')}, "
                f"{b.get('threading_layer')}, {b.get('num_threads')} threads) via threadpoolctl"
            )
    except ImportError:
        pass
    try:
        cfg = np.show_config(mode="dicts")  # type: ignore[func-returns-value]
        deps = cfg["Build Dependencies"]["blas"]
        return f"{deps.get('name')} {deps.get('version')} (numpy.show_config)"
    except Exception:  # noqa: BLE001 - best effort description
        return "unknown"


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001
        return "not installed"


def _r_version() -> str:
    if not r_available():
        return "not installed"
    try:
        out = subprocess.run(
            ["Rscript", "-e", "cat(R.version.string)"], capture_output=True, text=True, timeout=30
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _git_state() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=HERE,
        ).stdout.strip()
        return f"{rev}{' + uncommitted changes' if dirty else ''}" if rev else "unknown"
    except OSError:
        return "unknown"


def machine_markdown() -> str:
    """The machine, BLAS and library versions, as a markdown list."""
    cores = os.cpu_count()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    libs = ["glmx", "numpy", "scipy", "pandas", "formulaic", "statsmodels", "glum", "tabmat"]
    libs += ["scikit-learn", "threadpoolctl"]
    versions = ", ".join(f"{m} {_version(m)}" for m in libs)
    return "\n".join(
        [
            f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- CPU: {_cpu_model()}, {cores} logical cores ({affinity} usable), "
            f"{platform.machine()}",
            f"- memory: {total_memory() / GB:.1f} GB",
            f"- BLAS: {_blas()}",
            f"- OS: {platform.platform()}; Python {platform.python_version()}",
            f"- libraries: {versions}; R: {_r_version()}",
            f"- glmx source: git {_git_state()}",
        ]
    )
