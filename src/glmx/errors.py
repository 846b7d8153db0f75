"""Exceptions and warnings raised by glmx.

Invalid input raises a :class:`GlmxError` subclass whose message names the column,
row count or value at fault.  Numerical trouble that still yields an answer warns with a
:class:`GlmxWarning` subclass and is recorded on the fit.
"""

from __future__ import annotations

from typing import Any


class GlmxError(Exception):
    """Base class of every error glmx raises on purpose."""


class DataError(GlmxError, ValueError):
    """The data cannot be used: bad values, wrong lengths, missing columns, no rows."""


class FormulaError(GlmxError, ValueError):
    """The formula cannot be parsed or evaluated against the data."""


class FamilyError(GlmxError, ValueError):
    """Unknown family or link, or a link the family does not allow."""


class ConvergenceError(GlmxError, RuntimeError):
    """The fit could not produce any valid estimate (not even a non-converged one)."""


class GlmxWarning(UserWarning):
    """Base class of glmx warnings."""


class ConvergenceWarning(GlmxWarning):
    """The iterations stopped at the cap before meeting the convergence criterion."""


class SeparationWarning(GlmxWarning):
    """Perfect or quasi-perfect separation in a binomial model: some estimates are infinite."""


class BoundaryWarning(GlmxWarning):
    """The fit stopped at the boundary of the parameter space (R's 'algorithm stopped at
    boundary value'), or fitted values are numerically at the edge of their range."""


class DataWarning(GlmxWarning):
    """The data are usable but unusual (e.g. non-integer binomial successes, as R warns)."""


def shown(value: Any) -> str:
    """A value as Python prints it, for messages: numpy scalars as their Python
    equivalents (``-1.0``, not ``np.float64(-1.0)``)."""
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "ndim", None) == 0:
        value = item()
    return repr(value)
