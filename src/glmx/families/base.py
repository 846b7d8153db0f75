"""The Family base class: the per-observation mathematics of a GLM.

A family knows its variance function V(mu), its unit deviance d(y, mu), its
log-likelihood (R's ``family$aic`` formulas exactly), the valid range of the response
and of mu, and R's starting values ``mustart``.  To define a family of your own,
subclass :class:`Family` and implement ``variance`` and ``unit_deviance``; implement
``loglik`` too if the family is a real likelihood (otherwise AIC is NaN, as for R's
quasi families), and override ``invalid_response``/``starting_mu`` when the response
has a restricted range.  Example::

    class PowerVariance(Family):
        name = "power-variance"
        default_link = "log"
        def variance(self, mu): return mu ** 1.5
        def unit_deviance(self, y, mu): ...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from glmx.errors import DataError, FamilyError, shown
from glmx.families.links import Link, get_link

Array = NDArray[np.float64]


DevianceFunction = Callable[..., float]


def finite_within(x: Array, above: float | None = None, below: float | None = None) -> bool:
    """Whether every value is finite, > ``above`` and < ``below`` (by the minimum and
    the maximum: two passes and no temporaries; a NaN makes both NaN)."""
    if np.size(x) == 0:
        return True
    lo, hi = float(np.min(x)), float(np.max(x))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return False
    return (above is None or lo > above) and (below is None or hi < below)


CHECK_ROWS = 1 << 16  # rows per block of the response checks


def any_block(n: int, test: Callable[[int, int], bool]) -> bool:
    """Whether ``test(lo, hi)`` holds for some block of rows, stopping at the first:
    a check on the whole response would make n-long temporaries (fresh memory costs
    page faults, as much as the arithmetic)."""
    return any(test(lo, min(lo + CHECK_ROWS, n)) for lo in range(0, n, CHECK_ROWS))


class Family:
    """Base class of GLM families.

    Class attributes a subclass sets:

    ``name``            R's family name, printed in summaries.
    ``default_link``    link used when none is given.
    ``allowed_links``   names of links R accepts for the family (``None``: any link).
    ``fixed_dispersion`` True when the dispersion is 1 (binomial, poisson, negative
                        binomial): z tests; otherwise it is estimated and tests are t.
    ``n_scale_params``  parameters beyond the coefficients counted in AIC/BIC (R counts
                        the scale of gaussian, Gamma and inverse gaussian).
    ``canonical_link``  the link for which Fisher scoring is Newton's method (None when
                        it depends on a parameter or the family has none).
    ``concave_links``   other links with a log-likelihood concave in eta.
    """

    name: str = "family"
    default_link: str = "identity"
    allowed_links: tuple[str, ...] | None = None
    fixed_dispersion: bool = False
    n_scale_params: int = 0
    is_quasi: bool = False
    canonical_link: str | None = None
    # links besides the canonical one for which the log-likelihood is concave in eta
    # (then a stationary point is the maximum, and IRLS needs no second start)
    concave_links: tuple[str, ...] = ()
    # links for which the working weights w mu_eta^2 / V are the prior weights times a
    # constant, so X'WX does not change between IRLS steps
    constant_weight_links: tuple[str, ...] = ()

    @property
    def constant_weights(self) -> bool:
        """Whether X'WX is the same at every point (computed once by IRLS)."""
        return self.link.name in self.constant_weight_links

    @property
    def concave(self) -> bool:
        """Whether the log-likelihood is concave in the coefficients for this link."""
        return self.canonical or self.link.name in self.concave_links

    @property
    def canonical(self) -> bool:
        """Whether the link is the family's canonical one (IRLS converges quadratically)."""
        return self.canonical_link is not None and self.link.name == self.canonical_link

    def __init__(self, link: str | Link | None = None) -> None:
        self.link = get_link(self.default_link if link is None else link)
        if (
            self.allowed_links is not None
            and isinstance(link, str)
            and self.link.name not in self.allowed_links
        ):
            raise FamilyError(
                f"link {link!r} is not available for the {self.name} family; "
                f"available links are {', '.join(repr(x) for x in self.allowed_links)} "
                "(or pass a glmx.links.Link object)"
            )

    # --- closed-form math -------------------------------------------------------------
    def variance(self, mu: Array) -> Array:
        """V(mu), with Var(y) = dispersion * V(mu) / weight."""
        raise NotImplementedError

    def log_variance(self, mu: Array) -> Array:
        """log V(mu), where V itself may over- or underflow (means beyond 1e150)."""
        with np.errstate(divide="ignore"):
            return np.log(self.variance(mu))  # type: ignore[no-any-return]

    def unit_deviance(self, y: Array, mu: Array) -> Array:
        """d(y, mu), the deviance contribution of one observation of unit weight."""
        raise NotImplementedError

    def deviance_residuals_sq(self, y: Array, mu: Array, weights: Array) -> Array:
        """R's ``dev.resids``: weights * d(y, mu)."""
        return weights * self.unit_deviance(y, mu)

    def deviance(self, y: Array, mu: Array, weights: Array) -> float:
        """Total deviance, sum of weights * d(y, mu); ``weights`` include frequencies."""
        return float(np.sum(self.deviance_residuals_sq(y, mu, weights)))

    def deviance_function(self, y: Array, weights: Array) -> DevianceFunction:
        """(mu, lo, hi) -> the deviance of rows lo:hi (all rows by default) for this y and
        these weights, mu being those rows' means (IRLS evaluates it at every step, block
        by block); a family may prepare what depends on y alone once."""

        def deviance(mu: Array, lo: int = 0, hi: int | None = None) -> float:
            return self.deviance(y[lo:hi], mu, weights[lo:hi])

        return deviance

    def loglik(
        self, y: Array, mu: Array, weights: Array, freq_weights: Array, deviance: float
    ) -> float:
        """Maximised log-likelihood as R's ``logLik.glm`` (NaN when not a likelihood).

        ``weights`` are prior weights, ``freq_weights`` case counts, ``deviance`` the
        total deviance (with both weights), used for the ML dispersion estimate.
        """
        return float("nan")

    # --- ranges and starting values ---------------------------------------------------
    def invalid_response(self, y: Array, weights: Array) -> tuple[NDArray[np.bool_], str] | None:
        """Rows whose response is outside the family's support, and what the family
        needs (e.g. ``"a positive response"``); None when every value is valid."""
        return None

    def warn_response(self, y: Array, weights: Array, name: str) -> None:
        """Warn about valid but unusual responses (R's non-integer count warnings)."""

    def check_response(
        self, y: Array, weights: Array, name: str = "response", rows: Sequence[object] | None = None
    ) -> None:
        """Raise :class:`glmx.DataError` naming the first bad row if y is outside the
        family's support; ``rows`` are the data's row labels (default: positions)."""

        def invalid(lo: int, hi: int) -> bool:
            problem = self.invalid_response(y[lo:hi], weights[lo:hi])
            return problem is not None and bool(problem[0].any())

        if any_block(y.shape[0], invalid):
            problem = self.invalid_response(y, weights)
            assert problem is not None
            bad, need = problem
            i = int(np.flatnonzero(bad)[0])
            label = rows[i] if rows is not None else i
            raise DataError(
                f"the {self.name} family needs {need}; response {name!r} has "
                f"{int(bad.sum())} invalid value(s), first at row {shown(label)}: {float(y[i])!r}"
            )
        self.warn_response(y, weights, name)

    def starting_mu(self, y: Array, weights: Array) -> Array:
        """R's ``mustart`` from the family's ``initialize`` expression."""
        return np.array(y, dtype=float)

    def valid_mu(self, mu: Array) -> bool:
        """R's ``validmu``: whether every fitted mean is inside the family's range."""
        return finite_within(mu)

    # --- helpers ----------------------------------------------------------------------
    @property
    def link_name(self) -> str:
        return self.link.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(link={self.link.name!r})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.link.name))
