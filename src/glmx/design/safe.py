"""Safe formulas: refuse anything but column names, numbers, operators and a whitelist
of transforms *before* formulaic evaluates a single term.

Formulaic evaluates each formula term as Python, which is what makes ``np.log(x)`` or a
user's own function work in code the user writes.  A formula that arrives from the
command line or from a saved model file is untrusted text: ``__import__('os')`` or
``open(...)`` in a term would run.  :func:`check_formula` reads such a formula with
Python's tokenizer and ``ast`` (never ``eval``) and accepts only

* column names (``x``, backquoted ``\\`my col\\``` of letters, digits, spaces and
  ``_ . - /``), numbers;
* ``+ - * / ** ^ : | ~ %in%`` and parentheses (``**``/``^`` with a numeric exponent up
  to 100, not nested, so that no huge integer can be computed);
* comparisons (``< <= > >= == !=``) inside ``I(...)`` and ``C(...)`` only;
* calls to ``log exp sqrt abs log1p expm1 I C center scale poly bs cr offset`` and
  ``cbind`` (the whole response of a binomial model), whose keyword arguments are
  literals (``df=4``, ``extrapolation='extend'``, ``knots=[1, 2]``; strings hold only
  letters, digits, spaces, ``_ . -``); ``C(g, contr.sum)`` names one of formulaic's
  contrasts (``treatment sum helmert poly diff SAS``) or a contrasts class
  (``C(g, Treatment)``, ``C(g, Treatment('b'))``, ``Sum``, ``Helmert``, ``Poly``, ``Diff``).

Attribute access, subscripts, lambda, comprehensions, f-strings, dunder names, strings
other than keyword values and names that are neither columns nor whitelisted functions
are refused with a :class:`glmx.FormulaError` naming the offending token.
:func:`safe_glm` checks a formula against the data's columns and then fits it.
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
from collections.abc import Iterable
from typing import Any

from glmx.errors import FormulaError

FUNCTIONS = frozenset(
    {"log", "exp", "sqrt", "abs", "log1p", "expm1", "I", "C", "center", "scale"}
    | {"poly", "bs", "cr", "offset", "cbind"}
)
CONTRASTS = frozenset({"treatment", "sum", "helmert", "poly", "diff", "SAS"})
CONTRAST_CLASSES = frozenset({"Treatment", "Sum", "Helmert", "Poly", "Diff"})
MAX_LENGTH = 5000  # characters of one formula
MAX_EXPONENT = 100  # |e| of a ** e: no power of a literal can grow past ~100x its digits
MAX_BASIS = 100  # integer arguments of bs/cr/poly (df, degree): bounded design width
MAX_LIST = 1000  # elements of a literal list keyword (knots, levels)

_ALLOWED_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.BitOr, ast.MatMult)
_COMPARE_OPS = (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)
_OK_TOKEN_OPS = {"+", "-", "*", "/", "**", "^", ":", "~", "|", "(", ")", "[", "]", ",", "=", "."}
_OK_TOKEN_OPS |= {"<", "<=", ">", ">=", "==", "!="}
_PLACEHOLDER = "_glmx_q{}_"
_KIND = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscript",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehension",
    ast.SetComp: "comprehension",
    ast.DictComp: "comprehension",
    ast.GeneratorExp: "generator expression",
    ast.JoinedStr: "f-string",
    ast.NamedExpr: "assignment expression",
    ast.IfExp: "conditional expression",
    ast.BoolOp: "boolean operator",
    ast.Starred: "starred argument",
    ast.Dict: "dict literal",
    ast.Set: "set literal",
    ast.List: "list literal",
    ast.Tuple: "tuple literal",
}


def check_formula(formula: str, columns: Iterable[str] | None = None) -> None:
    """Raise :class:`glmx.FormulaError` unless ``formula`` uses only the safe subset
    described in this module; nothing is evaluated.  ``columns`` are the names a bare
    identifier may refer to; ``None`` accepts any identifier that is not a dunder name
    (for a model file, whose data are not known yet)."""
    _Checker(formula, columns).run()


def formula_variables(formula: str) -> frozenset[str]:
    """The column names a safe formula (or one side of it, or one term) refers to.
    Raises :class:`glmx.FormulaError` when the formula is not safe."""
    checker = _Checker(formula, None)
    checker.run()
    return frozenset(checker.variables)


def safe_glm(formula: str, data: Any, **kwargs: Any) -> Any:
    """Check ``formula`` against the columns of ``data`` with :func:`check_formula`, then
    fit it with :func:`glmx.glm` (same keyword arguments).  For untrusted formulas,
    e.g. from a command line."""
    from glmx.design.frames import to_pandas
    from glmx.fitting import glm

    df = to_pandas(data)
    check_formula(formula, [str(c) for c in df.columns])
    return glm(formula, df, **kwargs)


def safe_glmm(formula: str, data: Any, **kwargs: Any) -> Any:
    """:func:`safe_glm` for mixed models: the fixed part and each random-effect term's
    left-hand side pass :func:`check_formula`, grouping factors must be columns; then
    :func:`glmx.glmm` fits it."""
    from glmx.design.frames import to_pandas
    from glmx.errors import FormulaError
    from glmx.mixed.api import glmm
    from glmx.mixed.reformula import parse_mixed_formula

    df = to_pandas(data)
    columns = [str(c) for c in df.columns]
    parsed = parse_mixed_formula(formula)
    check_formula(parsed.fixed, columns)
    for term in parsed.terms:
        check_formula(f"{parsed.response} ~ {term.lhs}", columns)
        unknown = [f for f in term.factors if f not in columns]
        if unknown:
            raise FormulaError(
                f"grouping factor(s) {', '.join(map(repr, unknown))} of {term} are not "
                "columns of the data"
            )
    return glmm(formula, df, **kwargs)


class _Checker:
    """One pass over one formula: tokens first, then the ``ast`` of each side."""

    def __init__(self, formula: str, columns: Iterable[str] | None) -> None:
        if not isinstance(formula, str):
            raise FormulaError(f"formula must be a string, got {type(formula).__name__}")
        self.formula = formula
        self.columns = None if columns is None else frozenset(str(c) for c in columns)
        self.quoted: dict[str, str] = {}  # placeholder -> backquoted column name
        self.variables: set[str] = set()

    def refuse(self, reason: str) -> FormulaError:
        shown = self.formula if len(self.formula) <= 100 else self.formula[:97] + "..."
        return FormulaError(
            f"formula {shown!r} is refused: {reason} (safe formulas allow column "
            "names, numbers, + - * / : ** ^ | ~ and parentheses, and calls to "
            f"{', '.join(sorted(FUNCTIONS, key=str.lower))} with literal keyword arguments)"
        )

    # --- tokens -----------------------------------------------------------------------
    def run(self) -> None:
        if len(self.formula) > MAX_LENGTH:
            raise self.refuse(f"it is longer than {MAX_LENGTH} characters")
        sides = self._sides(self._tokens(self._unquote(self.formula)))
        if not sides[-1]:
            raise self.refuse("nothing follows '~'" if len(sides) == 2 else "it is empty")
        for i, side in enumerate(sides):
            if not side:
                continue  # a one-sided formula "~ x"
            text = " ".join(side)
            lhs = len(sides) == 2 and i == 0
            try:
                tree = ast.parse(text, mode="eval")
                if lhs and isinstance(tree.body, ast.Call) and _is_name(tree.body.func, "cbind"):
                    self._cbind(tree.body)
                else:
                    self._visit(tree.body, rhs=not lhs, in_call=False, in_I=False)
            except SyntaxError:
                raise self.refuse(f"{self._show(text)!r} is not a valid formula") from None
            except (RecursionError, MemoryError):
                raise self.refuse("it is nested too deeply") from None

    def _unquote(self, text: str) -> str:
        """Replace each backquoted name by a placeholder identifier.  Quotes and
        backquotes are read in one left-to-right pass; strings may hold plain words only
        and backquoted names no quote, so that this reading, Python's tokenizer and
        formulaic's agree on where every string and name begins and ends."""
        if re.search(r"[\x00-\x08\x0b-\x1f\x7f\\]", text):
            raise self.refuse("it contains a backslash or a control character")
        if "_glmx_q" in text:
            raise self.refuse("the name prefix '_glmx_q' is reserved")
        if "'''" in text or '"""' in text:
            raise self.refuse("triple-quoted strings are not allowed")
        out: list[str] = []
        i = 0
        while i < len(text):
            c = text[i]
            if c not in "`'\"":
                out.append(c)
                i += 1
                continue
            j = text.find(c, i + 1)
            if j < 0:
                raise self.refuse(f"a {c!r} is not closed")
            inner = text[i + 1 : j]
            if c == "`":
                # names hold no character that glmx's formula code or formulaic reads as
                # syntax (parentheses, quotes, '~', ','), so no reader can split them
                if not re.fullmatch(r"[\w .\-/]+", inner) or inner.startswith("__"):
                    raise self.refuse(
                        f"backquoted name {inner!r} is not allowed (safe formulas take "
                        "backquoted names of letters, digits, spaces, '_', '.', '-' and '/')"
                    )
                key = _PLACEHOLDER.format(len(self.quoted))
                self.quoted[key] = inner
                out.append(f" {key} ")
            elif m := re.search(r"(?<!\w)([rRuU]?[fFbB][rR]?|[rR][fFbB])$", text[:i]):
                raise self.refuse(f"prefixed string {m[0]}{text[i : j + 1]} (f-string or bytes)")
            elif not re.fullmatch(r"[\w .-]*", inner):
                # plain words only: no quote, bracket or operator that another reader
                # (formulaic's parser, its generated code) could take for syntax
                raise self.refuse(
                    f"the string {text[i : j + 1]} may hold only letters, digits, spaces, "
                    "'_', '.' and '-'"
                )
            else:
                out.append(text[i : j + 1])
            i = j + 1
        return "".join(out)

    def _tokens(self, text: str) -> list[str]:
        """Token strings, with ':' and '%in%' as '@' (a Python binary operator) and '^'
        as '**' (formulaic's '^' binds as tightly as Python's '**', unlike Python's '^');
        refuses keywords, dunder names, brackets and odd characters."""
        text = re.sub(r"\s+", " ", text).strip()
        try:
            toks = [
                t
                for t in tokenize.generate_tokens(io.StringIO(text).readline)
                if t.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER)
            ]
        except (tokenize.TokenError, SyntaxError) as exc:
            raise self.refuse(f"it cannot be read ({exc.args[0]})") from None
        out: list[str] = []
        i = 0
        while i < len(toks):
            t = toks[i]
            s = t.string
            if s == "%" and [x.string for x in toks[i : i + 3]] == ["%", "in", "%"]:
                out.append("@")
                i += 3
                continue
            if t.type == tokenize.NAME:
                if keyword.iskeyword(s) and s not in ("True", "False", "None"):
                    raise self.refuse(f"Python keyword {s!r} is not allowed")
                if s.startswith("__"):
                    raise self.refuse(f"dunder name {s!r} is not allowed")
            elif t.type == tokenize.STRING:
                prefix = s[: len(s) - len(s.lstrip("rRuUbBfF"))]
                if prefix.lower() not in ("", "r", "u"):
                    raise self.refuse(f"prefixed string {s!r} (f-string or bytes) is not allowed")
            elif t.type == tokenize.OP:
                if s not in _OK_TOKEN_OPS:
                    raise self.refuse(f"{s!r} is not allowed")
            elif t.type != tokenize.NUMBER:
                raise self.refuse(f"{s!r} is not allowed")
            out.append({":": "@", "^": "**"}.get(s, s))
            i += 1
        return out

    def _sides(self, toks: list[str]) -> list[list[str]]:
        depth = 0
        sides: list[list[str]] = [[]]
        for s in toks:
            depth += {"(": 1, ")": -1}.get(s, 0)
            if s == "~":
                if depth != 0:
                    raise self.refuse("'~' inside parentheses")
                if len(sides) == 2:
                    raise self.refuse("more than one '~'")
                sides.append([])
            else:
                sides[-1].append(s)
        return sides

    # --- syntax tree ------------------------------------------------------------------
    def _show(self, text: str) -> str:
        """Source text of a node for messages, with backquoted names restored."""
        text = text.replace(" @ ", ":").replace("@", ":")
        for key, name in self.quoted.items():
            text = text.replace(key, f"`{name}`")
        return text

    def _visit(self, node: ast.AST, *, rhs: bool, in_call: bool, in_I: bool) -> None:
        if isinstance(node, ast.Name):
            self._name(node.id)
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, (str, bool, type(None))):
                raise self.refuse(
                    f"the literal {node.value!r} is only allowed as a keyword value "
                    "(as in extrapolation='extend')"
                )
            if not isinstance(node.value, (int, float)):
                raise self.refuse(f"the literal {node.value!r} is not allowed")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            self._visit(node.operand, rhs=rhs, in_call=in_call, in_I=in_I)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, _ALLOWED_OPS):
            # a long sum of terms nests on the left: walk that spine in a loop
            while isinstance(node, ast.BinOp) and isinstance(node.op, _ALLOWED_OPS):
                if isinstance(node.op, ast.MatMult) and in_call:
                    raise self.refuse(f"':' inside a function call in {self._src(node)!r}")
                if isinstance(node.op, ast.Pow):
                    self._power(node)
                self._visit(node.right, rhs=rhs, in_call=in_call, in_I=in_I)
                node = node.left
            self._visit(node, rhs=rhs, in_call=in_call, in_I=in_I)
        elif isinstance(node, ast.Compare):
            if not in_I or not all(isinstance(op, _COMPARE_OPS) for op in node.ops):
                raise self.refuse(
                    f"comparison {self._src(node)!r} is only allowed inside I() or C()"
                )
            for sub in [node.left, *node.comparators]:
                self._visit(sub, rhs=rhs, in_call=in_call, in_I=in_I)
        elif isinstance(node, ast.Call):
            self._call(node, rhs=rhs, in_call=in_call, in_I=in_I)
        else:
            kind = _KIND.get(type(node), f"{type(node).__name__} expression")
            raise self.refuse(f"{kind} {self._src(node)!r} is not allowed")

    def _src(self, node: ast.AST) -> str:
        return self._show(ast.unparse(node))

    def _name(self, name: str) -> None:
        if name in self.quoted:
            name = self.quoted[name]
        if name.startswith("__"):
            raise self.refuse(f"dunder name {name!r} is not allowed")
        if self.columns is not None and name not in self.columns:
            if name in FUNCTIONS:
                raise self.refuse(f"function {name!r} is named but not called")
            shown = ", ".join(sorted(self.columns)[:20])
            raise self.refuse(f"name {name!r} is not a column of the data (columns: {shown})")
        self.variables.add(name)

    def _power(self, node: ast.BinOp) -> None:
        e = _number(node.right)
        if e is None or abs(e) > MAX_EXPONENT:
            raise self.refuse(
                f"the exponent in {self._src(node)!r} must be a number between "
                f"-{MAX_EXPONENT} and {MAX_EXPONENT}"
            )
        for sub in ast.walk(node.left):
            if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Pow):
                raise self.refuse(f"nested powers in {self._src(node)!r}")

    def _call(self, node: ast.Call, *, rhs: bool, in_call: bool, in_I: bool) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            raise self.refuse(f"attribute access {self._src(func)!r} is not allowed")
        if not isinstance(func, ast.Name):
            raise self.refuse(f"call of {self._src(func)!r} is not allowed")
        name = func.id
        if name not in FUNCTIONS:
            if name.startswith("__"):
                raise self.refuse(f"dunder name {name!r} is not allowed")
            raise self.refuse(f"call to {name!r} is not allowed")
        if name == "cbind":
            raise self.refuse("cbind() is only allowed as the whole response")
        if name == "offset" and (not rhs or in_call):
            raise self.refuse("offset() is only allowed as a term of the right-hand side")
        if self.columns is not None and name in self.columns:
            raise self.refuse(f"{name!r} is both a column and a function; rename the column")
        for k, arg in enumerate(node.args):
            if name == "C" and k == 1:
                self._contrasts(arg)
            elif name in ("bs", "cr", "poly") and k > 0:
                self._literal(arg, name, f"argument {k + 1}")
            else:
                self._visit(arg, rhs=rhs, in_call=True, in_I=in_I or name in ("I", "C"))
        for kw in node.keywords:
            if kw.arg is None or kw.arg.startswith("__"):
                raise self.refuse(f"keyword {self._src(kw)!r} in {name}() is not allowed")
            if name == "C" and kw.arg == "contrasts":
                self._contrasts(kw.value)
            else:
                self._literal(kw.value, name, kw.arg)

    def _literal(self, value: ast.AST, func: str, arg: str) -> None:
        """A keyword value: a number, string, True/False/None, or a list of those."""
        items = value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value]
        if isinstance(value, (ast.List, ast.Tuple)) and len(items) > MAX_LIST:
            raise self.refuse(f"{arg} of {func}() has more than {MAX_LIST} elements")
        for item in items:
            num = _number(item)
            if num is None and not (
                isinstance(item, ast.Constant) and isinstance(item.value, (str, bool, type(None)))
            ):
                raise self.refuse(
                    f"{arg}={self._src(value)} in {func}() must be a literal (a number, a "
                    "quoted string, True, False, None or a list of those)"
                )
            big = isinstance(num, int) and abs(num) > MAX_BASIS
            if big and func in ("bs", "cr", "poly") and item is value:
                raise self.refuse(f"{arg}={num} in {func}() is larger than {MAX_BASIS}")

    def _contrasts(self, value: ast.AST) -> None:
        """``contr.sum`` or ``contr.treatment(base=...)`` (formulaic's contrasts registry),
        or a contrasts class: ``Treatment``, ``Sum``, ``Treatment('b')``."""
        call = value if isinstance(value, ast.Call) else None
        target = call.func if call is not None else value
        registry = (
            isinstance(target, ast.Attribute)
            and _is_name(target.value, "contr")
            and target.attr in CONTRASTS
        )
        named = isinstance(target, ast.Name) and target.id in CONTRAST_CLASSES
        if not (registry or named):
            raise self.refuse(
                f"contrasts {self._src(value)!r} must be one of "
                f"{', '.join('contr.' + c for c in sorted(CONTRASTS))} or "
                f"{', '.join(sorted(CONTRAST_CLASSES))}"
            )
        shadowed = "contr" if registry else getattr(target, "id", "")
        if self.columns is not None and shadowed in self.columns:
            raise self.refuse(f"{shadowed!r} is both a column and a contrasts name")
        if call is not None:
            label = f"contr.{target.attr}" if registry else shadowed  # type: ignore[attr-defined]
            if call.args and registry:
                raise self.refuse(f"{self._src(value)!r} takes keyword arguments only")
            if len(call.args) > 1:
                raise self.refuse(f"{self._src(value)!r} takes one argument, the base level")
            for arg in call.args:
                self._literal(arg, label, "argument 1")
            for kw in call.keywords:
                if kw.arg is None or kw.arg.startswith("__"):
                    raise self.refuse(f"keyword {self._src(kw)!r} is not allowed")
                self._literal(kw.value, label, kw.arg)

    def _cbind(self, node: ast.Call) -> None:
        if len(node.args) != 2 or node.keywords:
            raise self.refuse("cbind() takes two arguments: successes and failures")
        for arg in node.args:
            self._visit(arg, rhs=False, in_call=True, in_I=False)


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _number(node: ast.AST) -> int | float | None:
    """The value of a (signed) int or float literal, else None."""
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -1 if isinstance(node.op, ast.USub) else 1
        node = node.operand
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
    ):
        return sign * node.value
    return None


__all__ = ["check_formula", "formula_variables", "safe_glm", "FUNCTIONS", "CONTRASTS"]
