"""The progress line: silent for short or non-interactive fits, one redrawn line otherwise."""

from __future__ import annotations

import io

from glmx.progress import Progress, interactive


def test_progress_line_is_redrawn_in_place_and_closed():
    out = io.StringIO()
    with Progress("glmm", delay=0.0, enabled=True, stream=out) as bar:
        bar.update(1, deviance=1234.5678)
        bar.update(2, deviance=1200.0)
    text = out.getvalue()
    assert text.startswith("\rglmm: step 1, deviance 1234.57, ")
    assert "\rglmm: step 2, deviance 1200, " in text
    assert text.endswith("\n") and text.count("\n") == 1


def test_progress_is_silent_before_its_delay_and_when_disabled():
    out = io.StringIO()
    with Progress("glmm", delay=3600.0, enabled=True, stream=out) as bar:
        bar.update(1, deviance=1.0)
    with Progress("glmm", delay=0.0, enabled=False, stream=out) as bar:
        bar.update(1, deviance=1.0)
    assert out.getvalue() == ""


def test_environment_setting_decides(monkeypatch):
    monkeypatch.setenv("GLMX_PROGRESS", "0")
    assert not interactive()
    monkeypatch.setenv("GLMX_PROGRESS", "1")
    assert interactive()
    monkeypatch.delenv("GLMX_PROGRESS")
    assert not interactive()  # pytest's stderr is not a terminal
