"""Number formatting in the manner of R's ``format``/``printCoefmat``/``format.pval``."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

EPS = float(np.finfo(float).eps)


def _sig_decimals(x: float, digits: int) -> int:
    """Decimals needed to show x with ``digits`` significant digits, trailing zeros cut."""
    if x == 0 or not math.isfinite(x):
        return 0
    e = math.floor(math.log10(abs(x)))
    dec = max(0, digits - 1 - e)
    s = f"{abs(x):.{dec}f}"
    if "." in s:
        frac = s.split(".")[1].rstrip("0")
        return len(frac)
    return 0


def format_column(values: ArrayLike, digits: int = 4) -> list[str]:
    """Format numbers jointly as R's ``format(x, digits=)``: fixed if no wider than
    scientific, NaN as 'NA'."""
    x = np.asarray(values, dtype=float)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return ["NA" if np.isnan(v) else str(v) for v in x]
    dec = max(_sig_decimals(float(v), digits) for v in finite)
    fixed = [f"{v:.{dec}f}" for v in finite]
    # scientific with the fewest mantissa digits (<= digits) that keeps every value
    mant = 0
    for v in finite:
        for m in range(digits):
            if float(f"{v:.{m}e}") == float(f"{v:.{digits - 1}e}"):
                mant = max(mant, m)
                break
    sci = [_r_sci(float(v), mant) for v in finite]
    use = fixed if max(map(len, fixed)) <= max(map(len, sci)) else sci
    out, it = [], iter(use)
    for v in x:
        out.append(
            next(it) if np.isfinite(v) else ("NA" if np.isnan(v) else ("Inf" if v > 0 else "-Inf"))
        )
    return out


def _r_sci(v: float, mant: int) -> str:
    s = f"{v:.{mant}e}"
    base, exp = s.split("e")
    e = int(exp)
    return f"{base}e{'-' if e < 0 else '+'}{abs(e):02d}"


def format_pval(p: ArrayLike, digits: int = 3) -> list[str]:
    """R's ``format.pval(p, digits, eps = .Machine$double.eps)``: values of 1e-3 and up
    formatted together, smaller ones together, and '<2e-16' (or '< 2e-16') below eps."""
    pv = np.asarray(p, dtype=float)
    out = ["NA"] * len(pv)
    ok = ~np.isnan(pv)
    tiny = ok & (pv < EPS)
    rest = ok & ~tiny
    # R 4.x formats every p-value above eps together (format.pval's fixp split is disabled)
    idx = np.flatnonzero(rest)
    for i, txt in zip(idx, format_column(pv[idx], digits)):
        out[i] = txt
    if tiny.any():
        d = max(1, digits - 2)
        sep = " "
        if rest.any():
            nc = max(len(out[i]) for i in np.flatnonzero(rest))
            if d > 1 and d + 6 > nc:
                d = max(1, nc - 7)
            sep = "" if (d == 1 and nc <= 6) else " "
        elif d == 1:
            sep = ""
        for i in np.flatnonzero(tiny):
            out[i] = "<" + sep + "2e-16"
    return out


def signif_stars(p: ArrayLike) -> list[str]:
    """R's significance codes, left-justified to a common width as ``symnum`` prints."""
    out = []
    for v in np.asarray(p, dtype=float):
        if np.isnan(v):
            out.append("")
        else:
            out.append(
                "***"
                if v < 0.001
                else "**"
                if v < 0.01
                else "*"
                if v < 0.05
                else "."
                if v < 0.1
                else " "
            )
    width = max((len(s) for s in out), default=0)
    return [s.ljust(width) for s in out]


def align(rows: list[list[str]], left_first: bool = True, n_left: int = 1) -> list[str]:
    """Right-align columns (the first ``n_left`` left-aligned), separated by single spaces."""
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [
            r[j].ljust(widths[j]) if (j < n_left and left_first) else r[j].rjust(widths[j])
            for j in range(len(r))
        ]
        lines.append(" ".join(cells))
    return lines
