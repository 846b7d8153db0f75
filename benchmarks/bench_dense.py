"""Dense GLM fits: glmx against statsmodels, glum and scikit-learn on the same data.

Run with ``make bench`` (installs the peers) or
``python benchmarks/bench_dense.py --n 1000000 --p 50 --reps 3``.  Each library fits the
same simulated data; repetitions alternate between libraries; the median time and the
ratio to glmx are printed, with the largest coefficient difference from glmx.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings
from collections.abc import Callable

import numpy as np

import glmx


def simulate(family: str, n: int, p: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) * 0.2
    X[:, 0] = 1.0
    beta = rng.normal(scale=0.3, size=p)
    eta = X @ beta
    if family == "poisson":
        y = rng.poisson(np.exp(eta))
    elif family == "binomial":
        y = rng.random(n) < 1 / (1 + np.exp(-eta))
    else:  # gamma, log link, shape 2
        y = rng.gamma(2.0, np.exp(eta) / 2.0)
    return np.asfortranarray(X), y.astype(float)


def fitters(family: str) -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    out: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {}
    link = "log" if family == "gamma" else None

    def fit_glmx(X: np.ndarray, y: np.ndarray) -> np.ndarray:
        return glmx.glm_fit(X, y, family=family, link=link, intercept=True).coef.to_numpy()

    out["glmx"] = fit_glmx
    try:
        import statsmodels.api as sm

        sm_family = {
            "poisson": sm.families.Poisson(),
            "binomial": sm.families.Binomial(),
            "gamma": sm.families.Gamma(sm.families.links.Log()),
        }[family]
        out["statsmodels"] = lambda X, y: sm.GLM(y, X, family=sm_family).fit(tol=1e-10).params
    except ImportError:
        pass
    try:
        from glum import GeneralizedLinearRegressor

        def fit_glum(X: np.ndarray, y: np.ndarray) -> np.ndarray:
            m = GeneralizedLinearRegressor(
                family=family, link=link or "auto", alpha=0, fit_intercept=False, gradient_tol=1e-8
            ).fit(X, y)
            return m.coef_

        out["glum"] = fit_glum
    except ImportError:
        pass
    try:
        from sklearn.linear_model import GammaRegressor, LogisticRegression, PoissonRegressor

        def fit_sklearn(X: np.ndarray, y: np.ndarray) -> np.ndarray:
            if family == "binomial":
                m = LogisticRegression(
                    C=np.inf, solver="newton-cholesky", fit_intercept=False, tol=1e-8
                )
                return m.fit(X, y).coef_.ravel()
            cls = PoissonRegressor if family == "poisson" else GammaRegressor
            m = cls(alpha=0, solver="newton-cholesky", fit_intercept=False, tol=1e-8)
            return m.fit(X, y).coef_

        out["scikit-learn"] = fit_sklearn
    except ImportError:
        pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--p", type=int, default=50)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--families", default="poisson,binomial,gamma")
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}"
    )
    print(f"n = {args.n:,}, p = {args.p}, median of {args.reps} alternating repetitions\n")
    print("| family | library | median s | ratio to glmx | max |coef - glmx coef| |")
    print("| --- | --- | --- | --- | --- |")
    for family in args.families.split(","):
        X, y = simulate(family, args.n, args.p)
        fs = fitters(family)
        times: dict[str, list[float]] = {k: [] for k in fs}
        coefs: dict[str, np.ndarray] = {}
        for _ in range(args.reps):
            for name, f in fs.items():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t0 = time.perf_counter()
                    coefs[name] = np.asarray(f(X, y))
                    times[name].append(time.perf_counter() - t0)
        base = float(np.median(times["glmx"]))
        for name in fs:
            med = float(np.median(times[name]))
            diff = float(np.max(np.abs(coefs[name] - coefs["glmx"])))
            print(f"| {family} | {name} | {med:.2f} | {med / base:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
