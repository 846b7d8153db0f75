"""The closest known name to a mistyped family or link name, for error messages."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping


def _squash(name: str) -> str:
    return re.sub(r"[\s._-]+", "", name.lower())


def did_you_mean(name: str, known: Mapping[str, str]) -> str:
    """``" (did you mean 'poisson'?)"`` for the known name (or alias, mapped by ``known``
    to its canonical name) closest to ``name``, or ``""`` when none is close.  Case and
    separators (space, ``_``, ``.``, ``-``) are ignored; among close names one that
    starts as ``name`` does is preferred ("negbinomial": negative_binomial, not binomial)."""
    key = _squash(name)
    squashed = {_squash(k): v for k, v in known.items()}
    close = difflib.get_close_matches(key, list(squashed), n=3, cutoff=0.6)
    close.sort(key=lambda k: not k.startswith(key[:3]))  # stable: same start first
    if not close and len(key) >= 3:
        # a part of a longer name: "neg" -> negative_binomial, "squared" -> inverse_squared
        close = [k for k in squashed if key in k][:1]
    return f" (did you mean {squashed[close[0]]!r}?)" if close else ""
