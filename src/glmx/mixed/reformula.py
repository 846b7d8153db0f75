"""Split an lme4 formula into its fixed part and its random-effect terms.

``y ~ x + (x | g) + (1 | a/b)`` gives the fixed formula ``y ~ x`` (for glmx's design
machinery) and the random-effect terms ``(x | g)``, ``(1 | b:a)``, ``(1 | a)``, expanded as
lme4's ``findbars`` does:

- ``(x || g)`` is ``(1 | g) + (0 + x | g)``: one uncorrelated term per term of the
  left-hand side (lme4's ``expandDoubleVerts``);
- ``(1 | a/b)`` is ``(1 | b:a) + (1 | a)`` and ``(1 | a/b/c)`` is
  ``(1 | c:(b:a)) + (1 | b:a) + (1 | a)`` (lme4's ``expandSlash``, names included);
- ``g1:g2`` groups by the observed combinations of the two factors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import formulaic
from formulaic.errors import FormulaicError

from glmx.design.formula import split_formula
from glmx.errors import FormulaError

_NAME = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*|`[^`]+`")


@dataclass(frozen=True)
class ReTermSpec:
    """One random-effect term ``(lhs | group)``.

    ``factors`` are the data columns whose combinations are the groups, in the order that
    sorts the interaction's levels (lexicographically by each factor's levels); ``group``
    is lme4's name of the grouping factor (``"Subject"``, ``"cask:batch"``,
    ``"c:(b:a)"``)."""

    lhs: str
    factors: tuple[str, ...]
    group: str

    def __str__(self) -> str:
        return f"({self.lhs} | {self.group})"


@dataclass(frozen=True)
class MixedFormula:
    """A mixed-model formula taken apart: ``fixed`` is ``response ~ fixed terms``."""

    formula: str
    response: str
    fixed: str
    terms: tuple[ReTermSpec, ...]

    @property
    def variables(self) -> set[str]:
        """Columns read by the random-effect terms (left-hand sides and groups)."""
        out: set[str] = set()
        for t in self.terms:
            out |= set(t.factors) | lhs_variables(t.lhs)
        return out


def lhs_variables(lhs: str) -> set[str]:
    try:
        return {str(v) for v in formulaic.Formula(lhs).required_variables}
    except (FormulaicError, SyntaxError, ValueError, TypeError) as exc:
        raise FormulaError(f"cannot parse random-effect term {lhs!r}: {exc}") from None


def parse_mixed_formula(formula: str) -> MixedFormula:
    """Take an lme4 formula apart; raise FormulaError for malformed random-effect terms."""
    lhs, rhs = split_formula(formula)
    pieces, bars = _split_bars(rhs, formula)
    if not bars:
        raise FormulaError(
            f"formula {formula!r} has no random-effect term such as (1 | group); "
            "use glmx.glm for a model without random effects"
        )
    terms: list[ReTermSpec] = []
    for inner in bars:
        terms.extend(_bar_terms(inner, formula))
    fixed_rhs = " + ".join(p for p in pieces if p) or "1"
    return MixedFormula(formula, lhs, f"{lhs} ~ {fixed_rhs}", tuple(terms))


def _matching(text: str, start: int, formula: str) -> int:
    """Index of the ')' closing the '(' at ``start``."""
    depth = 0
    for j in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[j], 0)
        if depth == 0:
            return j
    raise FormulaError(f"unbalanced parentheses in formula {formula!r}")


def _top_level(text: str, char: str) -> list[int]:
    """Positions of ``char`` outside any parentheses."""
    depth, out = 0, []
    for j, c in enumerate(text):
        depth += {"(": 1, ")": -1}.get(c, 0)
        if depth < 0:
            raise FormulaError(f"unbalanced parentheses in {text!r}")
        if depth == 0 and c == char:
            out.append(j)
    return out


def _split_bars(rhs: str, formula: str) -> tuple[list[str], list[str]]:
    """The right-hand side without its ``( ... | ... )`` terms, and those terms' insides."""
    if rhs.count("(") != rhs.count(")"):
        raise FormulaError(f"unbalanced parentheses in formula {formula!r}")
    kept: list[str] = []
    bars: list[str] = []
    i = 0
    while i < len(rhs):
        if rhs[i] == "(":
            before = rhs[:i].rstrip()
            j = _matching(rhs, i, formula)
            inner = rhs[i + 1 : j]
            is_call = bool(before) and (before[-1].isalnum() or before[-1] in "_.")
            if not is_call and _top_level(inner, "|"):
                bars.append(inner)
                kept.append(" ")
            else:
                kept.append(rhs[i : j + 1])
            i = j + 1
        else:
            kept.append(rhs[i])
            i += 1
    rest = "".join(kept)
    if _top_level(rest, "|"):
        raise FormulaError(
            f"random-effect terms need parentheses, as in 'y ~ x + (1 | g)'; got {formula!r}"
        )
    cuts = [-1, *_top_level(rest, "+"), len(rest)]
    pieces = [rest[a + 1 : b].strip() for a, b in zip(cuts[:-1], cuts[1:])]
    return pieces, bars


def _bar_terms(inner: str, formula: str) -> list[ReTermSpec]:
    """Expand one ``lhs | group`` or ``lhs || group`` into lme4's scalar/vector terms."""
    bars = _top_level(inner, "|")
    double = len(bars) == 2 and bars[1] == bars[0] + 1
    if len(bars) > 2 or (len(bars) == 2 and not double):
        raise FormulaError(f"random-effect term ({inner}) has more than one '|' in {formula!r}")
    lhs = inner[: bars[0]].strip()
    group = inner[bars[-1] + 1 :].strip()
    if not lhs:
        raise FormulaError(
            f"random-effect term ({inner}) has nothing left of the bar; write (1 | group)"
        )
    if not group:
        raise FormulaError(f"random-effect term ({inner}) has no grouping factor after the bar")
    groups = _expand_slash(group, inner)
    lhss = _double_vert_terms(lhs) if double else [lhs]
    return [ReTermSpec(lh, factors, name) for lh in lhss for factors, name in groups]


def _double_vert_terms(lhs: str) -> list[str]:
    """``x + z`` -> ``["1", "0 + x", "0 + z"]`` (lme4's expandDoubleVerts)."""
    try:
        parsed = [str(t) for t in formulaic.Formula(lhs)]
    except (FormulaicError, SyntaxError, ValueError, TypeError) as exc:
        raise FormulaError(f"cannot parse random-effect term {lhs!r}: {exc}") from None
    return [("1" if t == "1" else f"0 + {t}") for t in parsed]


def _factor_names(part: str, inner: str) -> list[str]:
    names = [p.strip() for p in part.split(":")]
    for name in names:
        if not _NAME.fullmatch(name):
            raise FormulaError(
                f"grouping factor {part!r} in ({inner}) must be column names joined by ':' "
                "or '/', such as g, a:b or a/b"
            )
    return [n.strip("`") for n in names]


def _expand_slash(group: str, inner: str) -> list[tuple[tuple[str, ...], str]]:
    """``a/b/c`` -> [(c,b,a)-interaction named "c:(b:a)", (b,a) "b:a", (a,) "a"]."""
    parts = [p.strip() for p in group.split("/")]
    if any(not p for p in parts):
        raise FormulaError(f"empty grouping factor in ({inner})")
    levels = [_factor_names(p, inner) for p in parts]
    out: list[tuple[tuple[str, ...], str]] = []
    factors: tuple[str, ...] = ()
    name = ""
    for i, names in enumerate(levels):
        own = ":".join(names)
        if i == 0:
            factors, name = tuple(names), own
        else:
            inner_name = f"({name})" if ":" in name else name
            factors, name = (*names, *factors), f"{own}:{inner_name}"
        out.append((factors, name))
    return out[::-1]
