"""Mixed models (LMMs and GLMMs) in lme4's syntax and with lme4's numbers: the numerical
core.  ``fit_mixed`` returns a raw :class:`MixedFit`; ``predict_eta`` gives the linear
predictor for new data."""

from glmx.mixed.fit import fit_mixed
from glmx.mixed.predict import predict_eta
from glmx.mixed.record import MixedFit
from glmx.mixed.reformula import MixedFormula, ReTermSpec, parse_mixed_formula

__all__ = [
    "MixedFit",
    "MixedFormula",
    "ReTermSpec",
    "fit_mixed",
    "parse_mixed_formula",
    "predict_eta",
]
