"""formulaic's model spec as plain JSON, and back, for saved models.

A :class:`formulaic.ModelSpec` holds what rebuilds a design matrix for new data: the
terms and their factors, the column structure (which factors enter each term at
reduced rank), the state of stateful transforms (spline knots, centering and scaling
constants, polynomial coefficients) and the encoders' state (factor levels in order).
formulaic offers no serialization but pickle, so :func:`encode_spec` writes these
fields as JSON and :func:`decode_spec` rebuilds an equivalent spec from them, after
every factor expression has passed :mod:`glmx.design.safe`.  Values JSON has no plain
form for are tagged (see :mod:`glmx.io.modelfile`); decoding builds only those types.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from enum import Enum
from typing import Any

import numpy as np

from glmx.design.safe import formula_variables
from glmx.errors import DataError, FormulaError

_ARRAY_DTYPES = ("float64", "int64", "bool")
_CONTRASTS: tuple[str, ...] = (
    "TreatmentContrasts",
    "SASContrasts",
    "SumContrasts",
    "HelmertContrasts",
)
_CONTRASTS += ("DiffContrasts", "PolyContrasts", "CustomContrasts")


def encode_spec(spec: Any) -> dict[str, Any]:
    """A ModelSpec as plain JSON: terms, structure, transform and encoder state, options.
    glmx's CategoricalSpec (a many-level factor kept as codes) adds ``categorical_block``:
    the factor's column, its levels, coding, place and column names."""
    from glmx.design.categorical_terms import CategoricalSpec

    if isinstance(spec, CategoricalSpec):
        inner = encode_spec(spec.spec)
        terms = list(spec.spec.formula)
        block = {
            "variable": spec.variable,
            "levels": encode_state(list(spec.levels)),
            "reduced": bool(spec.reduced),
            "stand_in": [spec.stand_in.start, spec.stand_in.stop],
            "column_names": list(spec.column_names),
            "term_slices": [[terms.index(t), s.start, s.stop] for t, s in spec.term_slices.items()],
        }
        return {**inner, "categorical_block": block}
    formula_terms = list(spec.formula)
    if spec.structure is None:
        raise DataError("cannot save the model: its model spec has no structure")
    structure = []
    for s in spec.structure:
        scoped = [
            {"factors": [[sf.factor.expr, bool(sf.reduced)] for sf in st.factors],
             "scale": encode_state(st.scale)}
            for st in s.scoped_terms
        ]  # fmt: skip
        structure.append(
            {
                "term": formula_terms.index(s.term),
                "scoped_terms": scoped,
                "columns": list(s.columns),
            }
        )
    return {
        "terms": [
            [
                {"expr": f.expr, "eval_method": f.eval_method.value, "kind": f.kind.value}
                for f in t.factors
            ]
            for t in formula_terms
        ],  # fmt: skip
        "structure": structure,
        "transform_state": encode_state(spec.transform_state),
        "encoder_state": {
            str(k): {"kind": kind.value, "state": encode_state(st)}
            for k, (kind, st) in spec.encoder_state.items()
        },
        "options": {
            "materializer": spec.materializer,
            "ensure_full_rank": bool(spec.ensure_full_rank),
            "na_action": spec.na_action.value,
            "output": spec.output,
            "cluster_by": spec.cluster_by.value,
        },
    }


def encode_state(v: Any) -> Any:
    """Transform and encoder state as JSON, tagged where JSON has no plain form."""
    from formulaic.parser.types import Factor
    from formulaic.transforms.contrasts import Contrasts, ContrastsState
    from formulaic.utils.sentinels import Sentinel

    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else {"$float": repr(float(v))}
    if isinstance(v, list):
        return [encode_state(x) for x in v]
    if isinstance(v, tuple):
        return {"$tuple": [encode_state(x) for x in v]}
    if isinstance(v, np.ndarray) and v.dtype.name in _ARRAY_DTYPES:
        return {"$array": encode_state(v.tolist()), "dtype": v.dtype.name}
    if isinstance(v, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in v):
            return {k: encode_state(x) for k, x in v.items()}
        return {"$dict": [[encode_state(k), encode_state(x)] for k, x in v.items()]}
    if isinstance(v, Factor.Kind):
        return {"$kind": v.value}
    if isinstance(v, Sentinel):
        return {"$sentinel": v.name}
    if isinstance(v, ContrastsState):
        return {
            "$contrasts_state": {
                "contrasts": encode_state(v.contrasts),
                "levels": encode_state(list(v.levels)),
            }
        }
    if isinstance(v, Contrasts) and dataclasses.is_dataclass(v):
        fields = {f.name: encode_state(getattr(v, f.name)) for f in dataclasses.fields(v)}
        return {"$contrasts": type(v).__name__, "fields": fields}
    what = type(v).__name__ if not isinstance(v, Enum) else f"{type(v).__name__}.{v.name}"
    raise DataError(
        f"cannot save the model: its design holds a value of type {what} ({v!r:.60}) "
        "that the model file format does not represent"
    )


def decode_spec(design: Any, where: str, columns: list[str]) -> tuple[Any, set[str]]:
    """formulaic's ModelSpec from its JSON form, and the data columns its factors read.
    Each factor's expression passes the safe evaluator before the spec is built."""
    from formulaic import ModelSpec
    from formulaic.formula import SimpleFormula
    from formulaic.materializers.base import EncodedTermStructure
    from formulaic.materializers.types import EvaluatedFactor, ScopedFactor, ScopedTerm
    from formulaic.parser.types import Factor, Term
    from formulaic.utils.variables import Variable

    where = f"{where}: design"
    r = Reader(design, where)
    kinds = tuple(k.value for k in Factor.Kind)
    factors: dict[str, Factor] = {}
    reads: dict[str, set[Variable]] = {}  # each factor's data columns, as formulaic records
    variables: set[str] = set()
    terms = []
    for i, term in enumerate(r.seq("terms")):
        for j, f in enumerate(r.seq(f"terms[{i}]", v=term)):
            fr = Reader(f, f"{where}.terms[{i}][{j}]")
            expr, method = (
                fr.string("expr"),
                fr.choice("eval_method", ("python", "lookup", "literal")),
            )
            names = _factor_variables(expr, method, fr.where)
            variables |= names
            reads[expr] = {Variable(n, roles=["value"], source="data") for n in names}
            factors.setdefault(
                expr, Factor(expr, eval_method=method, kind=fr.choice("kind", kinds))
            )
        terms.append(Term([factors[f["expr"]] for f in term]))
    structure = []
    for i, s in enumerate(r.seq("structure")):
        sr = Reader(s, f"{where}.structure[{i}]")
        index = sr.get("term")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(terms):
            raise sr._bad("term", f"an index below {len(terms)}", index)
        scoped = []
        for st in sr.seq("scoped_terms"):
            tr = Reader(st, sr.where)
            pairs = tr.seq("factors")
            if not all(
                isinstance(x, list) and len(x) == 2 and x[0] in factors and isinstance(x[1], bool)
                for x in pairs
            ):
                raise tr._bad("factors", "[expression, reduced] pairs of the terms' factors", pairs)
            scoped.append(ScopedTerm(
                [ScopedFactor(EvaluatedFactor(factors[e], None, reads[e]), reduced=red) for e, red in pairs],
                scale=decode_state(tr.get("scale"), tr.where),
            ))  # fmt: skip
        structure.append(EncodedTermStructure(terms[index], scoped, sr.strings("columns")))
    block = design.get("categorical_block") if isinstance(design, dict) else None
    if block is None and [c for s in structure for c in s.columns] != columns:
        raise DataError(f"{where}: the structure's columns are not the file's 'columns'")
    encoder_state = {}
    for expr, v in r.object("encoder_state").items():
        er = Reader(v, f"{where}.encoder_state[{expr!r}]")
        state = decode_state(er.object("state"), er.where)
        encoder_state[expr] = (Factor.Kind(er.choice("kind", kinds)), state)
    o = Reader(r.object("options"), f"{where}.options")
    try:
        spec = ModelSpec(
            formula=SimpleFormula(terms, _ordering="none"),
            materializer=o.choice("materializer", ("pandas", "glmx")),  # glmx: R contrasts
            materializer_params={},
            ensure_full_rank=o.flag("ensure_full_rank"),
            na_action=o.choice("na_action", ("drop", "raise", "ignore")),
            output=o.choice("output", ("pandas", "numpy", "sparse")),
            cluster_by=o.choice("cluster_by", ("none", "numerical_factors")),
            structure=structure,
            transform_state=decode_state(r.object("transform_state"), f"{where}.transform_state"),
            encoder_state=encoder_state,
        )
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: cannot rebuild the model spec: {exc}") from None
    if block is not None:
        spec = _categorical_spec(spec, terms, Reader(block, f"{where}.categorical_block"), columns)
    return spec, variables


def _categorical_spec(spec: Any, terms: list[Any], r: Reader, columns: list[str]) -> Any:
    """glmx's CategoricalSpec around the rebuilt spec of the stand-in design."""
    from glmx.design.categorical_terms import CategoricalSpec

    def span(v: Any) -> slice:
        if not (isinstance(v, list) and len(v) == 2 and all(type(i) is int for i in v)):
            raise r._bad("stand_in", "[start, stop]", v)
        return slice(v[0], v[1])

    if r.strings("column_names") != columns:
        raise DataError(f"{r.where}: column_names are not the file's 'columns'")
    slices = {}
    for row in r.seq("term_slices"):
        if not (isinstance(row, list) and len(row) == 3 and type(row[0]) is int):
            raise r._bad("term_slices", "[term index, start, stop] rows", row)
        if not 0 <= row[0] < len(terms):
            raise r._bad("term_slices", f"term indices below {len(terms)}", row)
        slices[terms[row[0]]] = span(row[1:])
    levels = decode_state(r.seq("levels"), r.where)
    return CategoricalSpec(
        spec=spec,
        variable=r.string("variable"),
        levels=tuple(levels),
        reduced=r.flag("reduced"),
        stand_in=span(r.get("stand_in")),
        column_names=tuple(columns),
        term_slices=slices,
    )


def _factor_variables(expr: str, method: str, where: str) -> set[str]:
    """Columns a factor reads; its expression must pass the safe evaluator."""
    if method == "lookup":  # a column looked up by name, never evaluated
        if not expr or expr.startswith("__"):
            raise FormulaError(f"{where}: {expr!r} is not a column name")
        return {expr}
    try:
        names = formula_variables(f"~ {expr}")
    except FormulaError as exc:
        raise FormulaError(f"{where}: {exc}") from None
    if method == "literal" and (names or not re.fullmatch(r"[0-9.eE+-]+", expr)):
        raise FormulaError(f"{where}: literal factor {expr!r} is not a number")
    return set(names)


def decode_state(v: Any, where: str) -> Any:
    """Inverse of :func:`encode_state`; only the tagged types listed in the module docstring
    are built, nothing else."""
    from formulaic.parser.types import Factor
    from formulaic.transforms import contrasts
    from formulaic.utils.sentinels import Sentinel

    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, list):
        return [decode_state(x, where) for x in v]
    if not isinstance(v, dict):
        raise DataError(f"{where}: unexpected value {v!r:.60}")
    tags = [k for k in v if k.startswith("$")]
    if not tags:
        return {k: decode_state(x, where) for k, x in v.items()}
    tag, body = tags[0], v[tags[0]]
    try:
        if tag == "$float" and body in ("nan", "inf", "-inf") and len(v) == 1:
            return float(body)
        if tag in ("$tuple", "$array") and isinstance(body, list):
            items = decode_state(body, where)
            if tag == "$tuple" and len(v) == 1:
                return tuple(items)
            if tag == "$array" and v.get("dtype") in _ARRAY_DTYPES and len(v) == 2:
                return np.array(items, dtype=v["dtype"])
        if tag == "$dict" and isinstance(body, list) and len(v) == 1:
            return {decode_state(k, where): decode_state(x, where) for k, x in body}
        if tag == "$kind" and len(v) == 1:
            return Factor.Kind(body)
        if tag == "$sentinel" and body in ("UNSET", "MISSING") and len(v) == 1:
            return Sentinel[body]
        if tag == "$contrasts_state" and isinstance(body, dict) and len(v) == 1:
            state = decode_state(body, where)
            return contrasts.ContrastsState(state["contrasts"], state["levels"])
        if tag == "$contrasts" and body in _CONTRASTS and isinstance(v.get("fields"), dict):
            fields = {k: decode_state(x, where) for k, x in v["fields"].items()}
            return getattr(contrasts, body)(**fields)
    except (TypeError, ValueError, KeyError) as exc:
        raise DataError(f"{where}: cannot read {tag} value: {exc}") from None
    raise DataError(f"{where}: unknown or malformed tagged value {v!r:.80}")


class Reader:
    """Typed access to a JSON object, with errors that name the field at fault."""

    def __init__(self, obj: Any, where: str) -> None:
        if not isinstance(obj, dict):
            raise DataError(f"{where} must be a JSON object, got {type(obj).__name__}")
        self.obj, self.where = obj, where

    def _bad(self, key: str, what: str, got: Any) -> DataError:
        return DataError(f"{self.where}: field {key!r} must be {what}, got {got!r:.80}")

    def get(self, key: str) -> Any:
        if key not in self.obj:
            raise DataError(f"{self.where}: the field {key!r} is missing")
        return self.obj[key]

    def object(self, key: str) -> dict[str, Any]:
        v = self.get(key)
        if not isinstance(v, dict):
            raise self._bad(key, "a JSON object", v)
        return v

    def seq(self, key: str, n: int | None = None, v: Any = None) -> list[Any]:
        v = self.get(key) if v is None else v
        if not isinstance(v, list) or (n is not None and len(v) != n):
            raise self._bad(key, "a list" + ("" if n is None else f" of {n} values"), v)
        return v

    def numbers(self, key: str, n: int | None = None, v: Any = None) -> list[float]:
        values = self.seq(key, n, v)
        return [read_number(x, lambda: self._bad(key, "a list of numbers", values)) for x in values]

    def strings(self, key: str) -> list[str]:
        v = self.seq(key)
        if not all(isinstance(x, str) for x in v):
            raise self._bad(key, "a list of strings", v)
        return v

    def bools(self, key: str, n: int) -> list[bool]:
        v = self.seq(key, n)
        if not all(isinstance(x, bool) for x in v):
            raise self._bad(key, "a list of true/false", v)
        return v

    def string(self, key: str) -> str:
        v = self.get(key)
        if not isinstance(v, str):
            raise self._bad(key, "a string", v)
        return v

    def choice(self, key: str, options: tuple[str, ...]) -> str:
        v = self.get(key)
        if v not in options:
            raise self._bad(key, f"one of {', '.join(options)}", v)
        return str(v)

    def flag(self, key: str) -> bool:
        v = self.get(key)
        if not isinstance(v, bool):
            raise self._bad(key, "true or false", v)
        return v

    def number(self, key: str) -> float:
        v = self.get(key)
        return read_number(v, lambda: self._bad(key, "a number, null or 'inf'", v))

    def count(self, key: str) -> Any:
        v = self.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise self._bad(key, "a non-negative number", v)
        return v


def read_number(v: Any, bad: Callable[[], DataError]) -> float:
    """A number field: null is NaN, "inf" and "-inf" are infinities."""
    if v is None:
        return float("nan")
    if v in ("inf", "-inf"):
        return float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise bad()
    return float(v)


__all__ = ["encode_spec", "decode_spec", "encode_state", "decode_state", "Reader"]
