"""Every ```python block of the README runs, in order, in one namespace."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples save plots to the working directory
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 5
    ns: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the README's examples fit without warnings
        for block in blocks:
            exec(compile(block, str(README), "exec"), ns)
    # the cbind response and the proportion-with-trials response are the same model
    prop_fit, cbind_fit = ns["prop_fit"], ns["cbind_fit"]
    np.testing.assert_allclose(cbind_fit.coef.to_numpy(), prop_fit.coef.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(cbind_fit.se.to_numpy(), prop_fit.se.to_numpy(), rtol=1e-10)
    assert cbind_fit.aic == prop_fit.aic
    assert (tmp_path / "quine_nb.png").stat().st_size > 10_000
    # lme4: REMLcrit 1743.628; glmer(cbpp) logLik -92.0266 (Laplace), exact -91.9834 (AGQ)
    assert abs(ns["lmm"].reml_criterion - 1743.628272) < 1e-4
    assert abs(ns["gm"].loglik + 92.0266) < 1e-3 and abs(ns["gm25"].loglik + 91.98337) < 1e-3
    assert abs(ns["table"]["chisq"].iloc[1] - 42.1393) < 1e-3
    # the streamed fits are the in-memory one
    for fit in (ns["streamed"], ns["chunked"], ns["on_cluster"], ns["on_arrays"]):
        np.testing.assert_allclose(fit.coef, ns["in_memory"].coef, rtol=1e-10)
        np.testing.assert_allclose(fit.se, ns["in_memory"].se, rtol=1e-10)
        assert abs(fit.deviance / ns["in_memory"].deviance - 1) < 1e-12
