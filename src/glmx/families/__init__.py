"""GLM families and the registry that maps R-style names to them."""

from __future__ import annotations

from glmx.errors import FamilyError
from glmx.families import links
from glmx.families.base import Family
from glmx.families.exponential import Binomial, Gamma, Gaussian, InverseGaussian, Poisson
from glmx.families.links import Link
from glmx.families.names import did_you_mean
from glmx.families.negbin import NegativeBinomial
from glmx.families.quasi import Quasi, QuasiBinomial, QuasiPoisson
from glmx.families.tweedie import Tweedie

_FAMILIES: dict[str, type[Family]] = {
    "gaussian": Gaussian,
    "binomial": Binomial,
    "poisson": Poisson,
    "gamma": Gamma,
    "inverse_gaussian": InverseGaussian,
    "negative_binomial": NegativeBinomial,
    "tweedie": Tweedie,
    "quasibinomial": QuasiBinomial,
    "quasipoisson": QuasiPoisson,
    "quasi": Quasi,
}
_ALIASES = {
    "normal": "gaussian",
    "inverse.gaussian": "inverse_gaussian",
    "inversegaussian": "inverse_gaussian",
    "negbin": "negative_binomial",
    "nb": "negative_binomial",
    "negative.binomial": "negative_binomial",
    "logistic": "binomial",
}

FAMILY_NAMES = tuple(_FAMILIES)


def get_family(family: str | Family, link: str | Link | None = None) -> Family:
    """A family object from a name such as ``"poisson"`` or an existing Family.

    ``link`` overrides the family's link.  Given a Family instance and a link, the link
    must agree with the instance's (or be None).
    """
    if isinstance(family, Family):
        if link is not None and links.get_link(link) != family.link:
            raise FamilyError(
                f"link={link!r} disagrees with the family object's link "
                f"{family.link.name!r}; set the link on the family object"
            )
        return family
    if isinstance(family, type) and issubclass(family, Family):
        return family(link=link)
    if not isinstance(family, str):
        raise FamilyError(
            f"family must be a name or a glmx.families.Family, got {type(family).__name__}"
        )
    key = family.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _FAMILIES:
        known = {**{n: n for n in _FAMILIES}, **_ALIASES, "bernoulli": "binomial"}
        raise FamilyError(
            f"unknown family {family!r}{did_you_mean(family, known)}; known families: "
            f"{', '.join(FAMILY_NAMES)} (aliases: {', '.join(_ALIASES)})"
        )
    return _FAMILIES[key](link=link)


# lower-case constructors, R style: glmx.families.negative_binomial(theta=2)
def gaussian(link: str | Link | None = None) -> Gaussian:
    return Gaussian(link)


def binomial(link: str | Link | None = None) -> Binomial:
    return Binomial(link)


def poisson(link: str | Link | None = None) -> Poisson:
    return Poisson(link)


def gamma(link: str | Link | None = None) -> Gamma:
    return Gamma(link)


def inverse_gaussian(link: str | Link | None = None) -> InverseGaussian:
    return InverseGaussian(link)


def negative_binomial(
    theta: float | None = None, link: str | Link | None = None
) -> NegativeBinomial:
    return NegativeBinomial(theta, link)


def tweedie(power: float = 1.5, link: str | Link | None = None) -> Tweedie:
    return Tweedie(power, link)


def quasibinomial(link: str | Link | None = None) -> QuasiBinomial:
    return QuasiBinomial(link)


def quasipoisson(link: str | Link | None = None) -> QuasiPoisson:
    return QuasiPoisson(link)


def quasi(link: str | Link | None = None, variance: str = "constant") -> Quasi:
    return Quasi(link, variance)


__all__ = [
    "Family",
    "Gaussian",
    "Binomial",
    "Poisson",
    "Gamma",
    "InverseGaussian",
    "NegativeBinomial",
    "Tweedie",
    "QuasiBinomial",
    "QuasiPoisson",
    "Quasi",
    "get_family",
    "links",
    "FAMILY_NAMES",
    "gaussian",
    "binomial",
    "poisson",
    "gamma",
    "inverse_gaussian",
    "negative_binomial",
    "tweedie",
    "quasibinomial",
    "quasipoisson",
    "quasi",
]
