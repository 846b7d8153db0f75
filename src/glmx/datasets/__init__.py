"""Small classic datasets bundled with glmx (the same ones R's examples use).

``load(name)`` returns a pandas DataFrame with factor columns as categoricals in R's
level order.  Available: dobson (Dobson 1990 counts), budworm (Collett's budworm
mortality), quine (school absences, MASS), clotting (McCullagh & Nelder blood
clotting times), insurance (car insurance claims, MASS Insurance), mtcars, and for mixed
models sleepstudy (reaction times under sleep deprivation, lme4) and cbpp (contagious
bovine pleuropneumonia incidence by herd, lme4; ``prop`` = incidence / size).
"""

from __future__ import annotations

import json
from importlib import resources

import pandas as pd

NAMES = (
    "dobson", "budworm", "quine", "clotting", "insurance", "mtcars", "sleepstudy", "cbpp",
)  # fmt: skip


def load(name: str) -> pd.DataFrame:
    """A bundled dataset by name."""
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(NAMES)}")
    root = resources.files(__name__)
    levels = json.loads((root / "levels.json").read_text())
    with (root / f"{name}.csv").open() as fh:
        df = pd.read_csv(fh)
    for col, lv in levels.get(name, {}).items():
        df[col] = pd.Categorical(df[col], categories=lv)
    return df
