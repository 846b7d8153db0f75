"""``glmx.glmm``: fit a mixed model from an lme4-style formula and return its results."""

from __future__ import annotations

from typing import Any

from glmx.families import get_family
from glmx.families.base import Family
from glmx.families.links import Link
from glmx.progress import Progress
from glmx.results.mixed import MixedResults


def glmm(
    formula: str,
    data: Any,
    family: str | Family = "gaussian",
    link: str | Link | None = None,
    weights: str | Any | None = None,
    offset: str | Any | None = None,
    reml: bool | None = None,
    nagq: int = 1,
    start: Any | None = None,
    control: dict[str, Any] | None = None,
    progress: bool | None = None,
) -> MixedResults:
    """Fit a (generalized) linear mixed model, lme4's ``lmer``/``glmer``.

    Random-effect terms use lme4's syntax: ``(1 | g)``, ``(x | g)``, ``(x || g)``,
    ``(1 | a/b)``, several terms for crossed factors.  ``family="gaussian"`` with the
    identity link is a linear mixed model, fitted by REML unless ``reml=False``; other
    families by maximum likelihood with the Laplace approximation (``nagq=1``) or adaptive
    Gauss-Hermite quadrature (``nagq > 1``, one scalar random-effect term only).
    ``weights`` are prior weights (binomial: trials of a proportion response), ``offset``
    is on the link scale (``offset(...)`` terms work too).  ``progress`` shows a progress
    line for fits longer than a couple of seconds (default: when interactive).
    """
    from glmx.mixed.fit import fit_mixed

    fam = get_family(family, link)
    options = {
        "formula": formula,
        "family": family,
        "link": link,
        "weights": weights,
        "offset": offset,
        "reml": reml,
        "nagq": nagq,
        "start": start,
        "control": control,
    }
    with Progress("glmx.glmm", enabled=progress) as bar:
        core = fit_mixed(
            formula,
            data,
            family=fam,
            weights=weights,
            offset=offset,
            reml=reml,
            nagq=nagq,
            start=start,
            control=control,
            progress=bar,
        )
    return MixedResults(
        core, call=_call_text(formula, fam, nagq, core.reml), data=data, options=options
    )


def _call_text(formula: str, fam: Family, nagq: int, reml: bool) -> str:
    if fam.name == "gaussian" and fam.link.name == "identity":
        return f"glmx.glmm({formula!r}, reml={reml})"
    return f"glmx.glmm({formula!r}, family={fam.name}({fam.link.name}), nagq={nagq})"
