"""Reading a formula with formulaic, with glmx's checks and messages.

* Powers ``(a + b + c)**k`` (or ``^k``) expand to every interaction of up to ``k`` of
  the terms, as in R.  formulaic multiplies the term set by itself ``k`` times, which
  costs ``(number of terms)**k`` products; :func:`power_terms` multiplies one term set at
  a time and stops when no new term appears, so the cost is linear in the result.  The
  exponent must be a whole number from 1 to :data:`MAX_POWER`; a power that would give
  more than :data:`MAX_TERMS` terms is refused.
* A call to a function formulaic and glmx do not know (``logg(x)``, R's ``factor(g)``
  or ``ns(x, df = 3)``) is reported as an unknown function, with the glmx spelling where
  there is one, not as a missing column.
* A random-effect term ``(1 | g)`` in a GLM formula points to :func:`glmx.glmm`.
* formulaic's own parse errors become one line without terminal colour codes.
"""

from __future__ import annotations

import builtins
import dataclasses
import difflib
import re
from collections.abc import Iterable, Iterator
from typing import Any

import formulaic
from formulaic.errors import FormulaicError
from formulaic.parser import DefaultFormulaParser, DefaultOperatorResolver
from formulaic.parser.types import Operator, OrderedSet, Term
from formulaic.transforms import TRANSFORMS

from glmx.errors import FormulaError

MAX_POWER = 100  # the largest exponent of (a + b)**k
MAX_TERMS = 10_000  # terms one power may expand to

# R spellings with a glmx equivalent: the hint given with "unknown function"
_FACTOR_HINT = "use C({arg}) for a factor"
_SPLINE_HINT = (
    "for a natural spline use cr({arg}, df=...) (natural cubic regression spline) "
    "or bs({arg}, df=...) (B-spline)"
)
_HINTS = {
    "factor": _FACTOR_HINT,
    "as.factor": _FACTOR_HINT,
    "ordered": _FACTOR_HINT,
    "as.ordered": _FACTOR_HINT,
    "as.character": _FACTOR_HINT,
    "ns": _SPLINE_HINT,
    "splines.ns": _SPLINE_HINT,
    "splines.bs": _SPLINE_HINT,
    "s": _SPLINE_HINT,
    "log.default": "use log({arg})",
}
_BUILTINS = frozenset(n for n in dir(builtins) if not n.startswith("_"))
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def power_terms(arg: OrderedSet[Term], power: OrderedSet[Term]) -> OrderedSet[Term]:
    """``arg ** k``: the products of up to ``k`` terms of ``arg``, in the order formulaic's
    ``itertools.product`` of ``k`` copies gives them (first appearance).  One copy of
    ``arg`` is multiplied in at a time, on sets of factors, until ``k`` copies or a fixed
    point (a product repeats its terms: ``a:a = a``); the terms are built once, at the end."""
    k = _exponent(power)
    base = [(frozenset(t.factors), t.factors) for t in arg]
    out: dict[frozenset[Any], tuple[Any, ...]] = dict(base)
    for _ in range(k - 1):
        grown: dict[frozenset[Any], tuple[Any, ...]] = {}
        for x_key, x_factors in out.items():
            for y_key, y_factors in base:
                key = x_key | y_key
                if key not in grown:
                    grown[key] = tuple(dict.fromkeys(x_factors + y_factors))
        if list(grown) == list(out):
            break
        if len(grown) > MAX_TERMS:
            raise FormulaError(
                f"a power in the formula expands to more than {MAX_TERMS} terms; "
                "use a smaller power or fewer terms"
            )
        out = grown
    return OrderedSet(Term(factors) for factors in out.values())


def _exponent(power: OrderedSet[Term]) -> int:
    terms = list(power)
    factors = terms[0].factors if len(terms) == 1 else []
    expr = str(factors[0].expr) if len(factors) == 1 else ""
    if not re.fullmatch(r"\d+", expr) or not 1 <= int(expr) <= MAX_POWER:
        shown = " + ".join(str(t) for t in terms)
        raise FormulaError(
            f"the power {shown!r} must be a whole number from 1 to {MAX_POWER} "
            "(the highest order of interaction)"
        )
    return int(expr)


def _operators(resolver: DefaultOperatorResolver) -> list[Operator]:
    ops = DefaultOperatorResolver.operators.fget(resolver)  # type: ignore[attr-defined]
    return [
        Operator(
            op.symbol,
            arity=op.arity,
            precedence=op.precedence,
            associativity=op.associativity,
            fixity=op.fixity,
            to_terms=power_terms,
            accepts_context=op._accepts_context,
            structural=op.structural,
            disabled=op.disabled,
        )
        if op.symbol in ("**", "^")
        else op
        for op in ops
    ]


@dataclasses.dataclass
class _Resolver(DefaultOperatorResolver):
    """formulaic's operators with :func:`power_terms` for ``**`` and ``^``."""

    @property
    def operators(self) -> list[Operator]:
        return _operators(self)


PARSER = DefaultFormulaParser(operator_resolver=_Resolver())


def parse(text: str, what: str = "formula") -> Any:
    """formulaic's Formula of ``text`` (glmx's power rule); FormulaError on bad syntax."""
    check_powers(text, what)
    try:
        return formulaic.Formula(text, _parser=PARSER)
    except FormulaError:
        raise
    except FormulaicError as exc:
        raise FormulaError(f"cannot parse {what} {text!r}: {formulaic_message(exc)}") from None
    except (SyntaxError, ValueError, TypeError) as exc:
        raise FormulaError(f"cannot parse {what} {text!r}: {exc}") from None
    except (AttributeError, IndexError, KeyError, RecursionError):
        # formulaic's parser failing inside on malformed text (e.g. "( ]"): its own
        # message names its internals, not the formula
        raise FormulaError(
            f"cannot parse {what} {text!r}: the syntax is not valid (check its brackets "
            "and operators)"
        ) from None


def formulaic_message(exc: BaseException) -> str:
    """formulaic's message on one line: no terminal colours, no marked-up formula."""
    text = _ANSI.sub("", str(exc)).replace("⧛", "").replace("⧚", "")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first.replace("insuffient", "insufficient").strip()


def formula_level(text: str) -> Iterator[tuple[int, str]]:
    """(position, character) of the characters of ``text`` outside strings, backquoted
    names and the parentheses of function calls: the formula's own operators."""
    stack: list[bool] = []  # per open parenthesis: whether it opens a call
    i = 0
    while i < len(text):
        c = text[i]
        if c in "'\"`":
            j = text.find(c, i + 1)
            i = len(text) if j < 0 else j + 1
            continue
        if c == "(":
            j = i - 1
            while j >= 0 and text[j] == " ":
                j -= 1
            stack.append(j >= 0 and (text[j].isalnum() or text[j] in "_."))
        elif c == ")":
            if stack:
                stack.pop()
        elif not any(stack):
            yield i, c
        i += 1


def check_powers(text: str, what: str = "formula") -> None:
    """Each ``**k`` or ``^k`` of the formula (outside function calls, where it is
    arithmetic) has a whole number ``k`` from 1 to MAX_POWER."""
    level = dict(formula_level(text))
    i = 0
    while i < len(text):
        if i not in level or text[i] not in "*^" or (text[i] == "*" and text[i + 1 : i + 2] != "*"):
            i += 1
            continue
        op = "^" if text[i] == "^" else "**"
        m = re.match(r"\s*([+-]?\s*[\w.]*)", text[i + len(op) :])
        exponent = m.group(1).replace(" ", "") if m else ""
        after = text[i + len(op) + (m.end() if m else 0) :].lstrip()
        if after.startswith(("**", "^")):  # a power of a power: 2**3 is no whole number
            exponent += ("**" if after.startswith("**") else "^") + "..."
        if not re.fullmatch(r"\d+", exponent) or not 1 <= int(exponent) <= MAX_POWER:
            shown = exponent or text[i + len(op) :].strip()[:20]
            raise FormulaError(
                f"the power {op}{shown} in {what} {text!r} must be a whole number from 1 "
                f"to {MAX_POWER} (the highest order of interaction)"
            )
        i += len(op)


def check_no_bars(rhs: str, formula: str) -> None:
    """A GLM formula has no random-effect term ``(... | g)``."""
    level = dict(formula_level(rhs))
    bars = [i for i, c in level.items() if c == "|"]
    if bars:
        start = rhs.rfind("(", 0, bars[0])
        stop = rhs.find(")", bars[0])
        term = rhs[start : stop + 1] if 0 <= start and stop > 0 else "|"
        raise FormulaError(
            f"formula {formula!r} has the random-effect term {term!r}: fit mixed models "
            "with glmx.glmm"
        )


def known_functions(extra: Iterable[str] = ()) -> frozenset[str]:
    """Names a formula may call: formulaic's transforms, glmx's extras, offset and cbind,
    and Python's builtins (formulaic evaluates a term as Python; safe formulas, see
    :mod:`glmx.design.safe`, allow far less)."""
    return frozenset(TRANSFORMS) | frozenset(extra) | {"offset", "cbind"} | _BUILTINS


def check_functions(formula: str, columns: Iterable[str], extra: Iterable[str] = ()) -> None:
    """FormulaError for a call to a function that is neither known nor a method of a
    column (``x.clip(0)``), with the glmx spelling of R's functions."""
    known = known_functions(extra)
    cols = {str(c) for c in columns}
    for name, start in _calls(formula):
        root = name.split(".", 1)[0]
        if name in known or root in known or root in cols:
            continue
        arg = _first_argument(formula, start) or "x"
        hint = _HINTS.get(name, "").format(arg=arg)
        if not hint:
            names = known - _BUILTINS - {"Q", "contr"}
            close = difflib.get_close_matches(name, sorted(names), n=1)
            listed = "log, exp, sqrt, abs, I, C, poly, bs, cr, center, scale, offset, np.*"
            hint = (f"did you mean {close[0]}()? " if close else "") + f"formulas know {listed}"
        raise FormulaError(f"unknown function {name}() in formula {formula!r}: {hint}")


def _calls(text: str) -> Iterator[tuple[str, int]]:
    """(name, position after its '(') of each call in ``text``, outside strings."""
    quoted = _quoted_spans(text)
    for m in re.finditer(r"(?<![\w.])([A-Za-z_][\w.]*)\s*\(", text):
        if not any(a <= m.start() < b for a, b in quoted):
            yield m.group(1), m.end()


def _quoted_spans(text: str) -> list[tuple[int, int]]:
    spans, i = [], 0
    while i < len(text):
        if text[i] in "'\"`":
            j = text.find(text[i], i + 1)
            j = len(text) if j < 0 else j
            spans.append((i, j + 1))
            i = j + 1
        else:
            i += 1
    return spans


def _first_argument(text: str, start: int) -> str:
    """The call's first argument (text up to the first top-level ',' or ')')."""
    depth, i = 0, start
    while i < len(text):
        c = text[i]
        if c in "([":
            depth += 1
        elif c in ")]":
            if depth == 0:
                break
            depth -= 1
        elif c == "," and depth == 0:
            break
        i += 1
    return text[start:i].strip()


__all__ = [
    "MAX_POWER",
    "MAX_TERMS",
    "PARSER",
    "parse",
    "power_terms",
    "formulaic_message",
    "check_powers",
    "check_no_bars",
    "check_functions",
    "known_functions",
]
