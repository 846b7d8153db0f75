"""A one-line progress display for long fits: shown only when the session is interactive
(a terminal or a notebook) and only once a fit has run for ``delay`` seconds, so short
fits, scripts, logs and tests stay silent.

``GLMX_PROGRESS=0`` turns it off everywhere, ``GLMX_PROGRESS=1`` forces it on.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO


def interactive() -> bool:
    """A terminal on stderr, or an IPython/Jupyter session."""
    setting = os.environ.get("GLMX_PROGRESS", "").strip()
    if setting in ("0", "1"):
        return setting == "1"
    if "IPython" in sys.modules:
        try:
            from IPython import get_ipython

            if get_ipython() is not None:
                return True
        except Exception:  # noqa: BLE001 - any failure: not a notebook
            pass
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class Progress:
    """``update(step, **values)`` redraws ``label: step k, name value, ...`` in place
    (``unit`` names the steps: optimizer steps, passes over the data)."""

    def __init__(
        self,
        label: str,
        delay: float = 2.0,
        enabled: bool | None = None,
        stream: TextIO | None = None,
        unit: str = "step",
    ) -> None:
        self.label = label
        self.unit = unit
        self.delay = delay
        self.enabled = interactive() if enabled is None else enabled
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.perf_counter()
        self.shown = False
        self._width = 0

    def update(self, step: int, **values: float) -> None:
        if not self.enabled or time.perf_counter() - self.start < self.delay:
            return
        parts = [f"{self.label}: {self.unit} {step}"]
        parts += [f"{name} {value:.6g}" for name, value in values.items()]
        parts.append(f"{time.perf_counter() - self.start:.1f} s")
        line = ", ".join(parts)
        pad = max(0, self._width - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._width = len(line)
        self.shown = True

    def __call__(self, step: int, deviance: float) -> None:
        """An optimizer's callback: the step and the current deviance."""
        self.update(step, deviance=deviance)

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
