"""Constant vectors that take no memory: the default weights and offset of a fit.

A length-n vector of one value is a stride-0 view of a single number (read-only).  A fit
of n rows would otherwise hold fresh n-vectors of ones and zeros, and a fresh n-vector
costs page faults on its first touch, about as much as the arithmetic on it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


def constant(n: int, value: float) -> Array:
    """A read-only length-n vector holding ``value``, in no memory (a stride-0 view)."""
    return np.broadcast_to(np.float64(value), (n,))


def is_constant(v: Array, value: float | None = None) -> bool:
    """Whether v is a :func:`constant` vector (of ``value``, when given)."""
    if v.ndim != 1 or v.strides != (0,):
        return False
    return value is None or v.shape[0] == 0 or float(v[0]) == value


__all__ = ["constant", "is_constant"]
