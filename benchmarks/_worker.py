"""One timed fit in a fresh process (started by ``benchlib.run_fit``).

Loads the data written by a benchmark script, imports one library, runs a warm-up fit on
the first rows (lazy imports, JIT compilation and first-call costs are not timed), records
the resident set size, times the fit alone, and writes ``result.json`` and ``coef.npy``
into ``--out`` (coefficients in the design's column order; for the categorical task:
intercept, numeric columns, then the levels 2..K of the factor).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Fit = Callable[[], tuple[np.ndarray, int | None]]
LINK = {"poisson": None, "binomial": None, "gamma": "log"}
# Gradient tolerances: 1e-8 for scikit-learn; glum's default (1e-4) leaves coefficient
# errors near 1e-4, while at 1e-8 its line search stalls at n = 1e6 (rounding in its
# gradient) and runs 15-75 iterations; 1e-6 gives ~1e-9 relative accuracy in 3-5 iterations.
SKLEARN_TOL = 1e-8
GLUM_TOL = 1e-6


def rss_now() -> float:
    """Current resident set size in bytes (/proc/self/statm)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return float(pages * resource.getpagesize())


def rss_peak() -> float:
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


# ------------------------------------------------------------------------- the libraries


# glmx's own timing of each IRLS iteration (``fit_log.seconds``) of the timed fit
ITERATION_SECONDS: list[float] = []


def glmx_arrays(X: Any, y: np.ndarray, family: str) -> Fit:
    import glmx

    def fit() -> tuple[np.ndarray, int | None]:
        f = glmx.glm_fit(X, y, family=family, link=LINK[family])
        ITERATION_SECONDS[:] = f.fit_log.seconds
        return f.coef.to_numpy(), int(f.n_iter)

    return fit


def statsmodels_arrays(X: np.ndarray, y: np.ndarray, family: str) -> Fit:
    import statsmodels.api as sm

    fam = {
        "poisson": sm.families.Poisson(),
        "binomial": sm.families.Binomial(),
        "gamma": sm.families.Gamma(sm.families.links.Log()),
    }[family]

    def fit() -> tuple[np.ndarray, int | None]:
        r = sm.GLM(y, X, family=fam).fit()  # IRLS, statsmodels' default tol=1e-8
        return np.asarray(r.params), int(r.fit_history["iteration"])

    return fit


def glum_fit(X: Any, y: np.ndarray, family: str, intercept: bool = False) -> Fit:
    from glum import GeneralizedLinearRegressor

    def fit() -> tuple[np.ndarray, int | None]:
        m = GeneralizedLinearRegressor(
            family=family,
            link=LINK[family] or "auto",
            alpha=0,
            fit_intercept=intercept,
            drop_first=intercept,
            gradient_tol=GLUM_TOL,
        ).fit(X, y)
        coef = np.asarray(m.coef_)
        return (np.r_[m.intercept_, coef] if intercept else coef), int(m.n_iter_)

    return fit


def sklearn_fit(make_X: Callable[[], Any], y: np.ndarray, family: str) -> Fit:
    from sklearn.linear_model import GammaRegressor, LogisticRegression, PoissonRegressor

    def fit() -> tuple[np.ndarray, int | None]:
        X = make_X()
        if family == "binomial":
            m: Any = LogisticRegression(
                C=np.inf, solver="newton-cholesky", fit_intercept=False, tol=SKLEARN_TOL
            )
        else:
            cls = PoissonRegressor if family == "poisson" else GammaRegressor
            m = cls(alpha=0, solver="newton-cholesky", fit_intercept=False, tol=SKLEARN_TOL)
        m.fit(X, y)
        return np.ravel(m.coef_), int(np.max(m.n_iter_))

    return fit


# ------------------------------------------------------------------------------ tasks


def array_fit(library: str, X: Any, y: np.ndarray, family: str) -> Fit:
    """A fit of an X with its ones column (dense ndarray or CSR)."""
    if library == "glmx":
        return glmx_arrays(X, y, family)
    if library == "statsmodels" and isinstance(X, np.ndarray):
        return statsmodels_arrays(X, y, family)
    if library == "glum":
        return glum_fit(X, y, family)
    if library == "scikit-learn":
        return sklearn_fit(lambda: X, y, family)
    raise SystemExit(f"library {library} is not part of this benchmark")


def dense_task(data: Path, library: str, family: str) -> tuple[Fit, Fit]:
    X, y = np.load(data / "X.npy"), np.load(data / "y.npy")
    m = min(len(y), 50_000)  # enough rows for the code paths of large fits (glmx's Numba Gram)
    return array_fit(library, X, y, family), array_fit(library, X[:m].copy(), y[:m], family)


def sparse_task(data: Path, library: str, family: str) -> tuple[Fit, Fit]:
    import scipy.sparse as sp

    X, y = sp.load_npz(data / "X.npz").tocsr(), np.load(data / "y.npy")
    m = min(len(y), 5000)
    small = X[:m]
    small = small[:, np.flatnonzero(small.getnnz(axis=0) > 20)]  # well-determined columns
    return array_fit(library, X, y, family), array_fit(library, small, y[:m], family)


def categorical_fit(
    library: str, num: np.ndarray, codes: np.ndarray, k: int, y: np.ndarray, family: str
) -> Fit:
    import pandas as pd
    import scipy.sparse as sp

    levels = [f"L{i:05d}" for i in range(k)]
    names = [f"x{j + 1:02d}" for j in range(num.shape[1])]
    if library == "scikit-learn":

        def one_hot() -> sp.csr_matrix:
            # [1, numeric, levels 2..K] as CSR (built inside the timed region)
            n = len(codes)
            keep = codes > 0
            dummies = sp.csr_matrix(
                (np.ones(int(keep.sum())), (np.flatnonzero(keep), codes[keep] - 1)),
                shape=(n, k - 1),
            )
            return sp.hstack([sp.csr_matrix(np.c_[np.ones(n), num]), dummies], format="csr")

        return sklearn_fit(one_hot, y, family)
    df = pd.DataFrame(num, columns=names)
    df["g"] = pd.Categorical.from_codes(codes, categories=levels)
    if library == "glum":
        return glum_fit(df, y, family, intercept=True)
    if library == "glmx":
        import glmx

        df["y"] = y
        formula = "y ~ " + " + ".join(names) + " + C(g)"

        def fit() -> tuple[np.ndarray, int | None]:
            f = glmx.glm(formula, df, family=family, link=LINK[family])
            c = f.coef
            first = [str(c.index[0]), *names]  # intercept, then the numeric columns
            rest = [i for i in c.index if i not in first]
            return np.r_[c[first].to_numpy(), c[rest].to_numpy()], int(f.n_iter)

        return fit
    raise SystemExit(f"library {library} is not part of this benchmark")


def categorical_task(data: Path, library: str, family: str) -> tuple[Fit, Fit]:
    num, codes, y = (np.load(data / f) for f in ("num.npy", "codes.npy", "y.npy"))
    k = int(json.loads((data / "meta.json").read_text())["levels"])
    m = min(len(y), 50_000)  # warm-up: the same code paths with a 3-level factor
    warm = categorical_fit(library, num[:m], codes[:m] % 3, 3, y[:m], family)
    return categorical_fit(library, num, codes, k, y, family), warm


TASKS = {"dense": dense_task, "sparse": sparse_task, "categorical": categorical_task}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--task", choices=sorted(TASKS), required=True)
    ap.add_argument("--library", required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--family", default="poisson")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--mem-limit", type=int, default=0, help="address-space limit, bytes")
    args = ap.parse_args()
    if args.mem_limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (args.mem_limit, args.mem_limit))
    result: dict[str, Any] = {}
    try:
        fit, warm = TASKS[args.task](args.data, args.library, args.family)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:  # lazy imports, JIT compilation and first-call costs stay out of the timing
                warm()
            except Exception:  # noqa: BLE001, S110 - a failed warm-up only costs accuracy
                pass
            result["rss_before"] = rss_now()
            t0 = time.perf_counter()
            coef, n_iter = fit()
            result["seconds"] = time.perf_counter() - t0
        result.update(status="ok", n_iter=n_iter, iteration_seconds=ITERATION_SECONDS)
        np.save(args.out / "coef.npy", np.asarray(coef, dtype=float))
    except MemoryError:
        result["status"] = f"out of memory (limit {args.mem_limit / 1e9:.0f} GB)"
    except Exception as e:  # noqa: BLE001 - reported in the table
        result["status"] = f"error: {type(e).__name__}: {e}"[:200]
    result["peak_rss"] = rss_peak()
    (args.out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
