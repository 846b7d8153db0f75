"""Small classic datasets bundled with glmx (the same ones R's examples use).

``load(name)`` returns a pandas DataFrame with R's column types: R's factors are pandas
categoricals and R's ordered factors ordered categoricals, each with R's levels in R's
order; R's numeric and integer columns are numbers.  Available: dobson (Dobson 1990
counts, the ``glm`` help page), budworm (Collett's budworm mortality, MASS's book),
quine (school absences, ``MASS::quine``), clotting (McCullagh & Nelder blood clotting
times, the ``glm`` help page), insurance (car insurance claims, ``MASS::Insurance``:
``District`` a factor, ``Group`` and ``Age`` ordered factors), mtcars, and for mixed
models sleepstudy (reaction times under sleep deprivation, ``lme4::sleepstudy``) and cbpp
(contagious bovine pleuropneumonia incidence by herd, ``lme4::cbpp``).

Where R's factor labels are numbers, the bundled labels carry a letter so that they stay
labels when a frame is written to CSV: dobson's outcome ``o1``..``o3`` and treatment
``t1``..``t3`` (R's ``gl(3, ...)`` levels 1..3), cbpp's herd ``h1``..``h15`` and period
``p1``..``p4``, sleepstudy's Subject ``s308``..``s372``; insurance keeps R's labels
``"1"``..``"4"`` for District.  Columns R does not have, for convenience: budworm
``prop`` (numdead / total), cbpp ``prop`` (incidence / size), insurance ``log_holders``
(log(Holders)) and mtcars ``cyl_f`` (cyl as a factor, ``c4``, ``c6``, ``c8``).
"""

from __future__ import annotations

import json
from importlib import resources

import pandas as pd

from glmx.errors import DataError

NAMES = (
    "dobson", "budworm", "quine", "clotting", "insurance", "mtcars", "sleepstudy", "cbpp",
)  # fmt: skip


def load(name: str) -> pd.DataFrame:
    """A bundled dataset by name, with R's column types and level order."""
    if name not in NAMES:
        raise DataError(f"unknown dataset {name!r}; available: {', '.join(NAMES)}")
    root = resources.files(__name__)
    spec = json.loads((root / "levels.json").read_text())[name]
    factors: dict[str, list[str]] = spec.get("factors", {})
    ordered: dict[str, list[str]] = spec.get("ordered", {})
    labels = {col: str for col in (*factors, *ordered)}
    with (root / f"{name}.csv").open() as fh:
        df = pd.read_csv(fh, dtype=labels)
    for cols, is_ordered in ((factors, False), (ordered, True)):
        for col, lv in cols.items():
            df[col] = pd.Categorical(df[col], categories=lv, ordered=is_ordered)
    return df
