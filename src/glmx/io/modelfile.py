"""Saved models: ``fit.save(path)`` and ``glmx.load(path)``, in a documented JSON format.

No pickle: a model file is plain JSON that any language can read, and loading one never
runs code from it (every formula and term it holds passes :mod:`glmx.design.safe`
before anything is evaluated).  A loaded model (:class:`glmx.results.loaded.LoadedGLM`)
predicts bit for bit what the original did and prints the same summary.

Format ``glmx-model``, version 1: one JSON object with the keys

``format``          ``"glmx-model"``
``format_version``  ``1``; a reader refuses a version newer than it knows
``glmx_version``    version of glmx that wrote the file (``formulaic_version`` too)
``checksum``        ``"sha256:<hex>"`` of the canonical JSON of every other key
                    (``json.dumps(doc, sort_keys=True, separators=(",", ":"),
                    ensure_ascii=True)``): an edited or truncated file is refused
``formula``         the formula as written (``null`` for ``glm_fit`` models)
``call``            the call text the summary prints
``family``          ``{"name": "poisson", "link": {"name": "log"}}``; a power link is
                    ``{"name": "power", "power": 0.5}``; plus ``theta``,
                    ``theta_estimated`` and ``theta_se`` (negative binomial), ``power``
                    (tweedie) or ``variance`` (quasi)
``columns``         design column names, in order
``coef``            estimates by column, ``null`` where aliased (R's NA)
``aliased``         booleans by column
``vcov``            covariance of the non-aliased estimates, as ``fit.vcov``
                    (dispersion-scaled, or the sandwich chosen with ``cov_type``)
``fit``             ``method cov_type dispersion deviance null_deviance pearson_chi2
                    df_resid df_null nobs n_dropped rank loglik aic bic n_iter converged
                    has_intercept tol max_iter``
``summary``         ``residuals``: the deviance residuals the summary prints (their five
                    quantiles when df_resid > 5, else all of them), ``notes``: the
                    summary's lines computed from the data (the overdispersion test)
``warnings``        messages of the warnings raised during the fit
``design``          ``null`` for ``glm_fit`` models (predict takes a matrix with the
                    columns above), else what rebuilds the design for new data:
                    ``response``, ``offset_terms`` (expressions of ``offset(...)``),
                    ``offset_column``, ``offset_array``, and formulaic's model spec:
                    ``terms`` (lists of factors ``{"expr", "eval_method", "kind"}``),
                    ``structure`` (per term: its index, scoped terms as lists of
                    ``[expr, reduced]`` with a ``scale``, and its column names),
                    ``transform_state`` (stateful transforms by expression: spline knots
                    and bounds, centering and scaling constants, polynomial recursion
                    coefficients), ``encoder_state`` (per factor: ``kind`` and state,
                    e.g. the factor levels in order), and the spec's options; a fit
                    whose many-level factor is kept as codes adds ``categorical_block``
                    (that factor's column, levels, coding, place and column names)

Numbers are JSON numbers; in the top-level numeric fields NaN is ``null`` and infinities
are the strings ``"inf"`` and ``"-inf"``.  Inside ``transform_state`` and
``encoder_state`` values are tagged when JSON has no plain form for them:
``{"$float": "nan"}``, ``{"$tuple": [...]}``, ``{"$dict": [[key, value], ...]}`` (keys
that are not strings), ``{"$array": [...], "dtype": "float64"}``, ``{"$kind": ...}``,
``{"$sentinel": "UNSET"}``, ``{"$contrasts": "SumContrasts", "fields": {...}}`` and
``{"$contrasts_state": {"contrasts": ..., "levels": [...]}}``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glmx.design.formula import TermState
from glmx.design.safe import check_formula, formula_variables
from glmx.errors import DataError, FamilyError, FormulaError
from glmx.families import FAMILY_NAMES, Family, get_family
from glmx.families.links import LINK_NAMES, Link, Power, get_link
from glmx.inference.covariance import COV_TYPES
from glmx.io.specjson import Reader, decode_spec, encode_spec

if TYPE_CHECKING:
    from glmx.results.glm import GLMResults
    from glmx.results.loaded import LoadedGLM

FORMAT = "glmx-model"
FORMAT_VERSION = 1


# --- writing ----------------------------------------------------------------------------
def save(fit: GLMResults | LoadedGLM, path: str | Path) -> None:
    """Write a fitted (or loaded) GLM to ``path`` as a ``glmx-model`` JSON file."""
    from glmx.results.loaded import LoadedGLM

    if isinstance(fit, LoadedGLM):
        doc = fit._document
    else:
        doc = to_document(fit)
    text = json.dumps(doc, indent=1, allow_nan=False, ensure_ascii=False)
    Path(path).write_text(text + "\n", encoding="utf-8")


def to_document(fit: GLMResults) -> dict[str, Any]:
    """The JSON document of a fitted GLM (see the module docstring), checksum included."""
    import formulaic

    from glmx import __version__
    from glmx.inference.tests import dispersion_note

    f = fit._fit
    design = None if f.terms is None else encode_terms(f.terms)
    r = fit.residuals("deviance")
    # the summary prints the quantiles of the deviance residuals, or all when df <= 5
    shown = np.quantile(r, [0.0, 0.25, 0.5, 0.75, 1.0]) if fit.df_resid > 5 else r
    stats = {
        "method": f.method,
        "cov_type": f.cov_type,
        **{k: _num(getattr(fit, k)) for k in ("dispersion", "deviance", "null_deviance")},
        **{k: _num(getattr(fit, k)) for k in ("pearson_chi2", "loglik", "aic", "bic")},
        **{
            k: _count(getattr(fit, k)) for k in ("df_resid", "df_null", "nobs", "n_dropped", "rank")
        },
        "n_iter": int(f.n_iter),
        "converged": bool(f.converged),
        "has_intercept": bool(f.has_intercept),
        "tol": float(f.tol),
        "max_iter": int(f.max_iter),
    }
    doc: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "glmx_version": __version__,
        "formulaic_version": formulaic.__version__,
        "formula": None if f.terms is None else f.terms.formula,
        "call": f.call,
        "family": encode_family(fit.family, f.theta_se),
        "columns": list(fit.coef.index),
        "coef": [_num(c) for c in f.coef],
        "aliased": [bool(a) for a in f.aliased],
        "vcov": [[_num(v) for v in row] for row in fit.vcov.to_numpy()],
        "fit": stats,
        "summary": {"residuals": [_num(v) for v in shown], "notes": dispersion_note(fit)},
        "warnings": list(f.warnings),
        "design": design,
    }
    if design is not None:
        _check_loads(doc["formula"], design, doc["columns"])
    doc["checksum"] = checksum(doc)
    return doc


def checksum(doc: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of every key but ``checksum``."""
    body = {k: v for k, v in doc.items() if k != "checksum"}
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DataError(f"model document is not plain JSON: {exc}") from None
    return "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()


def encode_family(fam: Family, theta_se: float | None) -> dict[str, Any]:
    """Name (glmx's family key), link and the family's parameters."""
    key = next((k for k in FAMILY_NAMES if type(get_family(k)) is type(fam)), None)
    if key is None:
        raise FamilyError(
            f"cannot save a model of the custom family {type(fam).__name__}: model files "
            f"hold glmx's families only ({', '.join(FAMILY_NAMES)})"
        )
    link = fam.link
    if isinstance(link, Power):
        link_doc: dict[str, Any] = {"name": "power", "power": link.power}
    elif link.name in LINK_NAMES and type(get_link(link.name)) is type(link):
        link_doc = {"name": link.name}
    else:
        raise FamilyError(f"cannot save a model with the custom link {type(link).__name__}")
    out: dict[str, Any] = {"name": key, "link": link_doc}
    if key == "negative_binomial":
        out["theta"] = _num(fam.theta)  # type: ignore[attr-defined]
        out["theta_estimated"] = bool(fam.estimate_theta)  # type: ignore[attr-defined]
        out["theta_se"] = None if theta_se is None else _num(theta_se)
    elif key == "tweedie":
        out["power"] = float(fam.power)  # type: ignore[attr-defined]
    elif key == "quasi":
        out["variance"] = fam.variance_name  # type: ignore[attr-defined]
    return out


def encode_terms(terms: TermState) -> dict[str, Any]:
    """The design part of a model file: glmx's offsets and formulaic's model spec."""
    return {
        "response": terms.response,
        "offset_terms": list(terms.offset_terms),
        "offset_column": terms.offset_column,
        "offset_array": bool(terms.offset_array),
        **encode_spec(terms.model_spec),
    }


def _count(x: Any) -> int | float:
    """A count or degrees of freedom: an int unless frequency weights made it fractional."""
    return int(x) if isinstance(x, (int, np.integer)) else float(x)


def _num(x: Any) -> float | str | None:
    """A top-level number: NaN as null, infinities as "inf" / "-inf"."""
    v = float(x)
    if math.isnan(v):
        return None
    return v if math.isfinite(v) else ("inf" if v > 0 else "-inf")


# --- reading ----------------------------------------------------------------------------
def load(path: str | Path) -> LoadedGLM:
    """Read a ``glmx-model`` file; refuses other formats, newer versions, edited or
    malformed content (:class:`glmx.DataError`) and unsafe formulas
    (:class:`glmx.FormulaError`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read model file {str(path)!r}: {exc}") from None
    return from_document(parse(text, str(path)), str(path))


def parse(text: str, where: str = "model file") -> dict[str, Any]:
    """The checked top level of a model document: JSON object, format, version, checksum."""

    def no_constant(name: str) -> None:
        raise ValueError(f"{name} is not valid JSON")

    try:
        doc = json.loads(text, parse_constant=no_constant)
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DataError(f"{where} is not a glmx model file: it holds a {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise DataError(
            f"{where} is not a glmx model file: format is {doc.get('format')!r}, "
            f"expected {FORMAT!r}"
        )
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DataError(f"{where}: format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise DataError(
            f"{where} has format_version {version}, newer than this glmx reads "
            f"({FORMAT_VERSION}); it was written by glmx {doc.get('glmx_version')!r}: "
            "upgrade glmx to load it"
        )
    if doc.get("checksum") != checksum(doc):
        raise DataError(
            f"{where}: the content does not match its checksum, so the file was edited "
            "or damaged after it was saved; refusing to load it"
        )
    return doc


def from_document(doc: dict[str, Any], where: str = "model file") -> LoadedGLM:
    """Build the loaded model from a parsed document; every formula and term passes the
    safe-formula check before anything is evaluated."""
    from glmx.results.loaded import LoadedGLM, SavedFit

    r = Reader(doc, where)
    columns = r.strings("columns")
    p = len(columns)
    aliased = np.array(r.bools("aliased", p), dtype=bool)
    coef = np.array(r.numbers("coef", p), dtype=float)
    k = int((~aliased).sum())
    vcov = np.array([r.numbers(f"vcov[{i}]", k, r.seq("vcov", k)[i]) for i in range(k)])
    fam, theta_se = read_family(r)
    fit, summary = r.object("fit"), r.object("summary")
    stats = Reader(fit, f"{where}: fit")
    design = doc.get("design")
    formula = doc.get("formula")
    terms, variables = None, frozenset[str]()
    if design is not None:
        if not isinstance(formula, str):
            raise DataError(f"{where}: formula must be a string when there is a design")
        terms, variables = decode_terms(design, formula, where, columns)
    elif formula is not None:
        raise DataError(f"{where}: a model without a design has no formula")
    cov_type = fit.get("cov_type")
    if cov_type is not None and cov_type not in COV_TYPES:
        raise DataError(f"{where}: fit.cov_type {cov_type!r} is not a covariance type")
    sr = Reader(summary, f"{where}: summary")
    saved = SavedFit(
        family=fam,
        columns=columns,
        coef=coef,
        aliased=aliased,
        vcov=vcov,
        terms=terms,
        variables=variables,
        formula=formula,
        call=r.string("call"),
        method=stats.choice("method", ("irls", "firth")),
        cov_type=cov_type,
        theta_se=theta_se,
        dispersion=stats.number("dispersion"),
        deviance=stats.number("deviance"),
        null_deviance=stats.number("null_deviance"),
        pearson_chi2=stats.number("pearson_chi2"),
        loglik=stats.number("loglik"),
        aic=stats.number("aic"),
        bic=stats.number("bic"),
        tol=stats.number("tol"),
        df_resid=stats.count("df_resid"),
        df_null=stats.count("df_null"),
        nobs=stats.count("nobs"),
        n_dropped=int(stats.count("n_dropped")),
        rank=int(stats.count("rank")),
        n_iter=int(stats.count("n_iter")),
        max_iter=int(stats.count("max_iter")),
        converged=stats.flag("converged"),
        has_intercept=stats.flag("has_intercept"),
        residual_values=np.array(sr.numbers("residuals"), dtype=float),
        notes=tuple(sr.strings("notes")),
        warnings=tuple(r.strings("warnings")),
        glmx_version=r.string("glmx_version"),
    )
    if saved.rank != k:
        raise DataError(f"{where}: fit.rank is {saved.rank} but {k} columns are not aliased")
    return LoadedGLM(saved, doc)


def decode_terms(
    design: Any, formula: str, where: str, columns: list[str]
) -> tuple[TermState, frozenset[str]]:
    """The TermState of a saved design, and the data columns it reads.  The formula,
    each factor and each offset expression is checked by the safe evaluator first."""
    r = Reader(design, f"{where}: design")
    offset_terms = r.strings("offset_terms")
    response = r.string("response")
    try:
        check_formula(formula)
        variables = set().union(*(formula_variables(f"~ {o}") for o in offset_terms))
    except FormulaError as exc:
        raise FormulaError(f"{where}: {exc}") from None
    spec, spec_vars = decode_spec(design, where, columns)
    offset_column = design.get("offset_column")
    if offset_column is not None and not isinstance(offset_column, str):
        raise DataError(f"{where}: design.offset_column must be a string or null")
    terms = TermState(
        formula=formula,
        response=response,
        model_spec=spec,
        offset_terms=tuple(offset_terms),
        offset_column=offset_column,
        offset_array=r.flag("offset_array"),
    )
    return terms, frozenset(variables | spec_vars)


def _check_loads(formula: str, design: dict[str, Any], columns: list[str]) -> None:
    """Refuse to write a design that :func:`load` would refuse: decode it now."""
    try:
        decode_terms(design, formula, "the model", columns)
    except (DataError, FormulaError) as exc:
        raise type(exc)(
            f"cannot save this model: {exc}. Model files hold only safe formulas, which "
            "glmx loads without running code (write log(x), not np.log(x))"
        ) from None


def read_family(r: Reader) -> tuple[Family, float | None]:
    """The family object (and negative binomial theta's standard error) of a file."""
    f = Reader(r.object("family"), f"{r.where}: family")
    name = f.choice("name", FAMILY_NAMES)
    ln = Reader(f.object("link"), f"{r.where}: family.link")
    try:
        link: Link = (
            Power(ln.number("power"))
            if ln.get("name") == "power"
            else get_link(ln.choice("name", LINK_NAMES))
        )
        if name == "negative_binomial":
            theta, estimated = f.number("theta"), f.flag("theta_estimated")
            fam = get_family(name, link).with_theta(theta)  # type: ignore[attr-defined]
            fam.n_scale_params, fam.estimate_theta = int(estimated), estimated
            theta_se = f.number("theta_se") if estimated else None
            return fam, theta_se
        if name == "tweedie":
            from glmx.families import tweedie

            return tweedie(f.number("power"), link), None
        if name == "quasi":
            from glmx.families import quasi

            return quasi(link, f.string("variance")), None
        return get_family(name, link), None
    except FamilyError as exc:
        raise DataError(f"{r.where}: family: {exc}") from None


__all__ = ["save", "load", "to_document", "from_document", "parse", "FORMAT", "FORMAT_VERSION"]
