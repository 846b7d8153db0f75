"""Run every benchmark and write ``benchmarks/RESULTS.md``.

    python benchmarks/run_all.py                      # the issue's sizes (~30 min, estimated)
    python benchmarks/run_all.py --preset moderate    # under ~15 minutes on 2 cores
    python benchmarks/run_all.py --preset smoke --output /tmp/smoke.md   # checks the harness

Each comparison is its own script (bench_dense, bench_categorical, bench_sparse,
bench_scaling, bench_glmm, bench_outofcore, bench_shapes, bench_mixed_scale for the section
``mixed-scale``), runnable alone with its own options; a preset is a set of those options,
and ``--dense "--reps 5"`` etc. append options to one script's (the last value wins).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import bench_categorical
import bench_dense
import bench_glmm
import bench_mixed_scale
import bench_outofcore
import bench_scaling
import bench_shapes
import bench_sparse
from benchlib import Result, machine_markdown

HERE = Path(__file__).resolve().parent

SECTIONS = {
    "dense": ("Dense GLMs", bench_dense),
    "categorical": ("Categorical design", bench_categorical),
    "sparse": ("Wide sparse design", bench_sparse),
    "scaling": ("Scaling in n and p, against the syrk floor", bench_scaling),
    "glmm": ("Mixed models: glmx.glmm against lme4::glmer", bench_glmm),
    "outofcore": ("Out of core: a GLM streamed from Parquet", bench_outofcore),
    "shapes": ("More shapes against glum: first fit after import and warm", bench_shapes),
    "mixed-scale": ("Mixed models at scale: glmx.glmm against lme4", bench_mixed_scale),
}

PRESETS: dict[str, dict[str, str]] = {
    # the sizes: every script's defaults
    "full": {name: "" for name in SECTIONS},
    # the sizes, but slow peers (statsmodels, R, scikit-learn at 10,000 levels) run
    # once, glum is skipped at 10,000 levels (about 3 minutes a fit) and the p series uses
    # n = 1e5: under ~15 minutes on the 2-core development machine
    "moderate": {
        "dense": "--n 1000000 --p 50 --reps 3 --single-rep-above 12",
        "categorical": "--n 1000000 --levels 1000,10000 --reps 5 --timeout 300 --skip-slow "
        "--single-rep-above 20",
        "sparse": "--n 200000 --p 2000 --reps 3 --single-rep-above 20",
        "scaling": "--n-values 10000,100000,1000000,10000000 --p-values 10,50,100,200,500 "
        "--n-for-p 100000 --reps 3",
        "glmm": "--reps 3 --single-rep-above 60",
        "outofcore": "--n 100000000",
        "shapes": "--reps 3",
        # lme4 at 1e6 rows takes minutes a fit: one repetition each, no 1e7 rows
        "mixed-scale": "--reps 1 --cases classic,ratings_1e6,crossed_binomial,slopes_lmm,"
        "slopes_binomial,glmm_slopes,glmm_crossed",
    },
    "smoke": {
        "dense": "--n 20000 --p 10 --reps 2",
        "categorical": "--n 20000 --levels 50,500 --reps 2",
        "sparse": "--n 20000 --p 200 --reps 2",
        "scaling": "--n-values 10000,100000 --p-values 10,50 --n-for-p 20000 --reps 2",
        "glmm": "--n 20000 --groups 200 --reps 2",
        "outofcore": "--n 200000 --rows-per-file 50000 --chunk-rows 20000",
        "shapes": "--scale 0.02 --reps 1",
        "mixed-scale": "--preset smoke",
    },
}


def script(name: str) -> str:
    """The script of a section: bench_mixed_scale.py for mixed-scale."""
    return f"bench_{name.replace('-', '_')}.py"


def targets_table(checks: list[tuple[str, bool | None, str]]) -> str:
    mark = {True: "yes", False: "**no**", None: "not measured"}
    rows = ["| target (issues 4, 5, 7, 14, 16) | measured | met |", "| --- | --- | --- |"]
    rows += [f"| {what} | {detail} | {mark[ok]} |" for what, ok, detail in checks]
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--preset", choices=sorted(PRESETS), default="full")
    ap.add_argument("--only", default=",".join(SECTIONS), help="sections to run")
    ap.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--workdir", default=None, help="temp dir for the data files")
    for name in SECTIONS:
        ap.add_argument(f"--{name}", default="", help=f"extra options for {script(name)}")
    args = ap.parse_args()
    command = "python benchmarks/run_all.py " + shlex.join(sys.argv[1:])
    started = time.perf_counter()
    parts: list[tuple[str, str, str]] = []
    checks: list[tuple[str, bool | None, str]] = []
    for name in args.only.split(","):
        title, module = SECTIONS[name]
        extra = getattr(args, name.replace("-", "_"))
        argv = shlex.split(PRESETS[args.preset][name]) + shlex.split(extra)
        if args.workdir:
            argv += ["--workdir", args.workdir]
        print(f"== {name}: {script(name)} {shlex.join(argv)}", file=sys.stderr)
        t0 = time.perf_counter()
        res: Result = module.main(argv)
        took = time.perf_counter() - t0
        parts.append((title, f"python benchmarks/{script(name)} {shlex.join(argv)}", res.markdown))
        checks += res.checks
        print(f"== {name} took {took:.0f} s\n", file=sys.stderr)
    minutes = (time.perf_counter() - started) / 60
    doc = [
        "# glmx benchmarks",
        "",
        f"Written by `{command}` (preset `{args.preset}`, {minutes:.1f} minutes).  Each section "
        "below names the script command it ran; run `python benchmarks/run_all.py` for the "
        "issue's full sizes.  Times are wall-clock medians of repetitions that alternate "
        "between libraries, each fit in a fresh process (`benchmarks/_worker.py`) so that "
        "peak memory (`/usr/bin/time -v`, maximum resident set size) is that fit's.",
        "",
        "## Machine",
        "",
        machine_markdown(),
        "",
        "## Targets",
        "",
        targets_table(checks),
        "",
    ]
    for title, cmd, md in parts:
        doc += [f"## {title}", "", f"`{cmd}`", "", md, ""]
    args.output.write_text("\n".join(doc))
    print(f"wrote {args.output} ({minutes:.1f} min)", file=sys.stderr)


if __name__ == "__main__":
    main()
