"""``glmx`` on the command line: fit a GLM to a data file, save it, predict with it.

    glmx fit DATA FORMULA --family poisson [--link L] [--weights COL] [--freq-weights COL]
             [--offset COL] [--theta T] [--power P] [--save model.json]
             [--format text|json|markdown]
    glmx predict MODEL DATA [--type response|link] [--se] [-o out.csv]
    glmx demo
    glmx glmm DATA FORMULA [--family binomial|poisson|gaussian] [--weights COL]
              [--offset COL] [--ml] [--nagq N] [--format text|json|markdown]

DATA is CSV, Parquet or Arrow/Feather, chosen by the file's extension; ``-`` reads CSV
from standard input.  Formulas typed on the command line are checked by glmx's safe
formula evaluator before anything is evaluated.  Bad input (a missing file, an unknown
column, a refused formula, any :class:`glmx.GlmxError`) prints one line
``glmx: error: ...`` on stderr and exits with status 2; ``--debug`` shows the traceback.

Presentation only: every number comes from the results object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import IO, Any, NoReturn

import numpy as np
import pandas as pd

import glmx
from glmx.errors import GlmxError
from glmx.io import datafiles
from glmx.io.datafiles import KNOWN_EXTENSIONS, file_kind

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2


class CliError(Exception):
    """Bad command-line input that is not a glmx error: a file, an extension, an option."""


# --- data files ---------------------------------------------------------------------------
def _kind(path: str) -> str:
    kind = file_kind(path)
    if kind is None:
        raise CliError(
            f"cannot tell the format of {path!r} from its extension; use one of "
            f"{', '.join(KNOWN_EXTENSIONS)} (or '-' for CSV on standard input)"
        )
    return kind


def read_data(path: str, stdin: IO[str] | None = None) -> pd.DataFrame:
    """A data frame from a CSV, TSV, Parquet or Arrow/Feather file, or CSV from stdin (``-``):
    :func:`glmx.io.datafiles.read_data`, whose errors are the command line's."""
    try:
        return datafiles.read_data(path, stdin)
    except GlmxError as exc:
        raise CliError(str(exc)) from exc


def write_data(df: pd.DataFrame, path: str | None) -> None:
    """CSV on stdout (``path`` None or ``-``), else a file in the format of its extension.

    CSV floats are written with full precision (17 significant digits round-trip)."""
    if path is None or path == "-":
        df.to_csv(sys.stdout, index=False)
        return
    kind = _kind(path)
    try:
        if kind in ("csv", "tsv"):
            df.to_csv(path, index=False, sep="\t" if kind == "tsv" else ",")
        elif kind == "parquet":
            df.to_parquet(path, index=False)
        else:
            df.to_feather(path)
    except OSError as exc:
        raise CliError(f"cannot write {path!r}: {exc.strerror or exc}") from exc


# --- fit -----------------------------------------------------------------------------------
def _family(args: argparse.Namespace) -> Any:
    """The family argument for glmx: the name itself, or an object when --theta/--power."""
    from glmx.families import NegativeBinomial, Tweedie, get_family, negative_binomial, tweedie

    fam = get_family(args.family, args.link)  # FamilyError on an unknown name or link
    if args.theta is not None and not isinstance(fam, NegativeBinomial):
        raise CliError(f"--theta goes with --family negative_binomial, not {args.family!r}")
    if args.power is not None and not isinstance(fam, Tweedie):
        raise CliError(f"--power goes with --family tweedie, not {args.family!r}")
    if args.theta is not None:
        return negative_binomial(theta=args.theta, link=args.link)
    if args.power is not None:
        return tweedie(power=args.power, link=args.link)
    return args.family


def cmd_fit(args: argparse.Namespace) -> int:
    from glmx.design.safe import safe_glm  # checks the formula before formulaic sees it

    data = read_data(args.data)
    family = _family(args)
    fit = safe_glm(
        args.formula,
        data,
        family=family,
        link=args.link if isinstance(family, str) else None,  # an object carries its link
        weights=args.weights,
        freq_weights=args.freq_weights,
        offset=args.offset,
    )
    if args.save:
        try:
            fit.save(args.save)
        except OSError as exc:
            raise CliError(f"cannot write {args.save!r}: {exc.strerror or exc}") from exc
    render = {"text": lambda f: str(f.summary()), "json": fit_json, "markdown": fit_markdown}
    print(render[args.format](fit))
    return EXIT_OK


def _num(x: Any) -> float | int | bool | str | None:
    """A JSON-safe scalar: NaN and infinities become null."""
    if isinstance(x, bool | str | np.bool_) or x is None:
        return x if not isinstance(x, np.bool_) else bool(x)
    if isinstance(x, int | np.integer):
        return int(x)
    v = float(x)
    return v if math.isfinite(v) else None


def fit_statistics(fit: Any) -> dict[str, Any]:
    """The fit statistics the summary prints, by name (R's glance plus a few)."""
    stats = {
        "nobs": fit.nobs,
        "n_dropped": fit.n_dropped,
        "df_resid": fit.df_resid,
        "df_null": fit.df_null,
        "deviance": fit.deviance,
        "null_deviance": fit.null_deviance,
        "pearson_chi2": fit.pearson_chi2,
        "dispersion": fit.dispersion,
        "loglik": fit.loglik,
        "aic": fit.aic,
        "bic": fit.bic,
        "converged": bool(fit.converged),
        "n_iter": fit.n_iter,
    }
    from glmx.families import NegativeBinomial

    if isinstance(fit.family, NegativeBinomial):
        stats["theta"] = fit.theta
        try:
            stats["theta_se"] = fit.theta_se
        except AttributeError:  # a fixed theta (--theta) has no standard error
            stats["theta_se"] = None
    return {k: _num(v) for k, v in stats.items()}


def _stat_label(fit: Any) -> str:
    fixed = fit.family.fixed_dispersion or fit.cov_type != "model"
    return "z" if fixed else "t"


def fit_json(fit: Any) -> str:
    """The coefficient table and fit statistics as a JSON document (NaN as null)."""
    doc = {
        "call": fit._fit.call,
        "family": fit.family.name,
        "link": fit.link,
        "statistic": _stat_label(fit),
        "coefficients": _coef_records(fit.coef_table),
        "statistics": fit_statistics(fit),
        "warnings": list(fit.warnings),
    }
    return json.dumps(doc, indent=2, allow_nan=False)


def _coef_records(tab: pd.DataFrame) -> list[dict[str, Any]]:
    """A coefficient table as JSON records (term, estimate, std_error, statistic, p_value)."""
    return [
        {"term": str(term), **{c: _num(row[c]) for c in tab.columns}}
        for term, row in tab.iterrows()
    ]


def _md_pval(p: float) -> str:
    """As R prints p-values: below machine epsilon '<2e-16'."""
    return "NA" if math.isnan(p) else "<2e-16" if p < np.finfo(float).eps else f"{p:.3g}"


def _md(x: Any, digits: int = 6) -> str:
    if isinstance(x, str):
        return x.replace("|", "\\|")
    if isinstance(x, bool) or x is None:
        return str(x)
    v = float(x)
    return "NA" if math.isnan(v) else f"{v:.{digits}g}"


def fit_markdown(fit: Any) -> str:
    """A markdown coefficient table and a table of fit statistics."""
    lines = [f"`{fit._fit.call}`", "", *_md_coefficients(fit.coef_table, _stat_label(fit))]
    return "\n".join(lines + _md_statistics(fit_statistics(fit)))


def _md_coefficients(tab: pd.DataFrame, k: str) -> list[str]:
    """A coefficient table in markdown, ``k`` the statistic ('z' or 't')."""
    lines = [
        f"| term | estimate | std. error | {k} value | Pr(>\\|{k}\\|) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for term, row in tab.iterrows():
        cells = [_md(str(term))] + [_md(row[c]) for c in tab.columns[:3]]
        lines.append("| " + " | ".join(cells + [_md_pval(float(row[tab.columns[3]]))]) + " |")
    return lines


def _md_statistics(stats: dict[str, Any]) -> list[str]:
    return ["", "| statistic | value |", "| --- | ---: |"] + [
        f"| {name} | {_md(v)} |" for name, v in stats.items()
    ]


# --- predict, demo, glmm -------------------------------------------------------------------
def cmd_predict(args: argparse.Namespace) -> int:
    if args.model == "-":
        raise CliError("MODEL must be a file written by 'glmx fit --save'; '-' is for DATA")
    try:
        model = glmx.load(args.model)
    except OSError as exc:
        raise CliError(f"cannot read {args.model!r}: {exc.strerror or exc}") from exc
    except ValueError as exc:  # not JSON at all (a malformed glmx file raises a GlmxError)
        if isinstance(exc, GlmxError):
            raise
        raise CliError(f"{args.model!r} is not a glmx model file: {exc}") from exc
    data = read_data(args.data)
    pred = model.predict(data, type=args.type, se=args.se)
    out = pred if isinstance(pred, pd.DataFrame) else pd.DataFrame({"fit": pred})
    write_data(out.reset_index(drop=True), args.output)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from glmx.demo import main as demo_main

    demo_main(plot_dir=args.plot_dir)
    return EXIT_OK


def cmd_glmm(args: argparse.Namespace) -> int:
    from glmx.design.safe import safe_glmm  # checks every part of the formula first

    data = read_data(args.data)
    fit = safe_glmm(
        args.formula, data, family=args.family, link=args.link, weights=args.weights,
        offset=args.offset, reml=False if args.ml else None, nagq=args.nagq,
    )  # fmt: skip
    render = {"text": lambda f: str(f.summary()), "json": glmm_json, "markdown": glmm_markdown}
    print(render[args.format](fit))
    return EXIT_OK


def glmm_statistics(fit: Any) -> dict[str, Any]:
    """A mixed model's fit statistics by name."""
    stats = {
        "nobs": fit.nobs, "loglik": fit.loglik, "aic": fit.aic, "bic": fit.bic,
        "deviance": fit.deviance, "reml_criterion": fit.reml_criterion, "sigma": fit.sigma,
        "df_resid": fit.df_resid, "singular": bool(fit.singular),
        "converged": bool(fit.converged), "nagq": fit.nagq,
    }  # fmt: skip
    return {k: _num(v) for k, v in stats.items()}


def glmm_json(fit: Any) -> str:
    """Fixed effects, variance components and fit statistics as a JSON document."""
    doc = {
        "call": fit.call,
        "family": fit.family.name,
        "link": fit.link_name,
        "statistic": "t" if fit.is_lmm else "z",
        "coefficients": _coef_records(fit.coef_table),
        "random_effects": [
            {
                k: (_num(v) if k in ("vcov", "sdcor") else (None if v != v else v))
                for k, v in r.items()
            }
            for r in fit.varcorr.to_dict("records")
        ],
        "n_groups": fit.n_groups,
        "theta": [_num(t) for t in fit.theta],
        "statistics": glmm_statistics(fit),
        "warnings": list(fit.warnings),
    }
    return json.dumps(doc, indent=2, allow_nan=False)


def glmm_markdown(fit: Any) -> str:
    """Markdown tables: fixed effects, variance components, fit statistics."""
    lines = [f"`{fit.call}`", "", *_md_coefficients(fit.coef_table, "t" if fit.is_lmm else "z")]
    lines += ["", "| group | term | term 2 | variance / covariance | sd / correlation |"]
    lines.append("| --- | --- | --- | ---: | ---: |")
    for r in fit.varcorr.to_dict("records"):
        names = [
            _md(str(r[c])) if r[c] == r[c] and r[c] is not None else ""
            for c in ("grp", "var1", "var2")
        ]
        lines.append("| " + " | ".join(names + [_md(r["vcov"]), _md(r["sdcor"])]) + " |")
    return "\n".join(lines + _md_statistics(glmm_statistics(fit)))


# --- the parser ----------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``glmx: error: ... (see 'glmx fit --help')``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"glmx: error: {message} (see '{self.prog} --help')\n")


def _add_format(parser: argparse.ArgumentParser, like: str) -> None:
    parser.add_argument(
        "--format",
        choices=("text", "json", "markdown"),
        default="text",
        help=f"summary format (default text, as {like})",
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="glmx",
        description="Generalized linear models with R's numbers, from the command line.",
        epilog="DATA: .csv/.tsv (optionally compressed), .parquet/.pq, .feather/.arrow/.ipc, "
        "or '-' for CSV on standard input. Exit status 2 on bad input.",
    )
    p.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    p.add_argument("--version", action="version", version=f"glmx {glmx.__version__}")
    common = _Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    f = sub.add_parser(
        "fit",
        parents=[common],
        help="fit a GLM and print its summary",
        description="Fit a GLM to a data file and print an R-style summary. The formula is "
        "checked by glmx's safe evaluator before anything is evaluated: column names, "
        "arithmetic and a whitelist of transforms (log, exp, sqrt, I, C, center, scale, "
        "poly, splines); attribute access, imports and other calls are refused.",
    )
    f.add_argument("data", metavar="DATA", help="data file, or '-' for CSV on stdin")
    f.add_argument("formula", metavar="FORMULA", help="R-style formula, e.g. 'y ~ x + C(g)'")
    f.add_argument(
        "--family",
        default="gaussian",
        help="family name (default gaussian): "
        "gaussian, binomial, poisson, gamma, inverse_gaussian, negative_binomial, "
        "tweedie, quasibinomial, quasipoisson",
    )
    f.add_argument("--link", help="link name (default: the family's default link)")
    f.add_argument("--weights", metavar="COL", help="column of prior weights (binomial: trials)")
    f.add_argument("--freq-weights", metavar="COL", help="column of frequency weights")
    f.add_argument("--offset", metavar="COL", help="column of offsets, on the link scale")
    f.add_argument("--theta", type=float, help="negative_binomial: fixed theta (default: ML)")
    f.add_argument("--power", type=float, help="tweedie: variance power (default 1.5)")
    f.add_argument("--save", metavar="FILE", help="save the fitted model as JSON")
    _add_format(f, "R's summary.glm")
    f.set_defaults(run=cmd_fit)

    r = sub.add_parser(
        "predict",
        parents=[common],
        help="predict from a saved model",
        description="Predict from a model saved by 'glmx fit --save' for the rows of DATA. "
        "Writes CSV with a column 'fit' (and 'se' with --se), one row per input row; rows "
        "with missing values give empty predictions.",
    )
    r.add_argument("model", metavar="MODEL", help="model file written by 'glmx fit --save'")
    r.add_argument("data", metavar="DATA", help="data file, or '-' for CSV on stdin")
    r.add_argument(
        "--type",
        choices=("response", "link"),
        default="response",
        help="scale of the predictions (default response)",
    )
    r.add_argument("--se", action="store_true", help="add delta-method standard errors")
    r.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="output file (.csv, .parquet, .feather); default CSV on stdout",
    )
    r.set_defaults(run=cmd_predict)

    d = sub.add_parser(
        "demo",
        parents=[common],
        help="fit classic models on the bundled data and print their summaries",
    )
    d.add_argument("--plot-dir", default="demo_output", help="where diagnostic PNGs go")
    d.set_defaults(run=cmd_demo)

    g = sub.add_parser(
        "glmm",
        parents=[common],
        help="fit a mixed model (lme4 syntax) and print its summary",
        description="Fit a linear or generalized linear mixed model written in lme4's "
        "syntax, e.g. 'y ~ x + (x | g)', and print an lme4-style summary. Gaussian models "
        "are fitted by REML (--ml for maximum likelihood), binomial and poisson models by "
        "the Laplace approximation or, with --nagq N > 1, adaptive Gauss-Hermite "
        "quadrature. The formula is checked by glmx's safe evaluator first.",
    )
    g.add_argument("data", metavar="DATA", help="data file, or '-' for CSV on stdin")
    g.add_argument("formula", metavar="FORMULA", help="lme4 formula, e.g. 'y ~ x + (1 | g)'")
    g.add_argument("--family", default="gaussian", help="gaussian (default), binomial or poisson")
    g.add_argument("--link", help="link name (default: the family's default link)")
    g.add_argument("--weights", metavar="COL", help="column of prior weights (binomial: trials)")
    g.add_argument("--offset", metavar="COL", help="column of offsets, on the link scale")
    g.add_argument("--ml", action="store_true", help="gaussian: maximum likelihood, not REML")
    g.add_argument("--nagq", type=int, default=1, help="quadrature points (default 1: Laplace)")
    _add_format(g, "lme4's summary")
    g.set_defaults(run=cmd_glmm)
    return p


# --- main ----------------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or type(exc).__name__


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    print(f"glmx: warning: {_one_line(Warning(str(message)))}", file=sys.stderr)


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so Python's exit flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no real file (e.g. captured in tests)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 1 internal error)."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    if args.debug:
        return run(args)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # one line per warning, no source path
            return run(args)
    except (GlmxError, CliError) as exc:
        print(f"glmx: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `glmx predict ... | head`: stop quietly, as Unix tools do
        _silence_stdout()
        return EXIT_OK
    except Exception as exc:  # a bug, not bad input: still one line, the traceback on demand
        print(
            f"glmx: internal error: {type(exc).__name__}: {_one_line(exc)} "
            "(rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
