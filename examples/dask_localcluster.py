"""A GLM fitted on a Dask cluster: a LocalCluster with several workers, a Poisson model
fitted by ``glmx.glm`` to a Dask DataFrame and by ``glmx.glm_fit`` to dask arrays.

The data are made on the workers, partition by partition (block by block), and never
gathered: each pass of the fit is one task per partition and only the p x p sums come
back to this process.

    python examples/dask_localcluster.py                  # 500,000 rows, 2 worker processes
    python examples/dask_localcluster.py --rows 20000 --threads
"""

from __future__ import annotations

import argparse
import time

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import Client, LocalCluster

import glmx

LEVELS = ["north", "east", "south", "west"]


def make_partition(k: int, rows: int) -> pd.DataFrame:
    """Partition k: a covariate, a four-level factor, an exposure and Poisson counts
    (seeded by k, so every pass of the fit sees the same rows)."""
    rng = np.random.default_rng(1000 + k)
    x = rng.normal(size=rows)
    region = rng.choice(LEVELS, size=rows)
    exposure = rng.uniform(0.5, 3.0, size=rows)
    effect = np.select([region == "east", region == "south"], [0.3, -0.2], 0.0)
    claims = rng.poisson(exposure * np.exp(-0.5 + 0.4 * x + effect))
    return pd.DataFrame(
        {"x": x, "region": region, "log_exposure": np.log(exposure), "claims": claims.astype(float)}
    )


def dataframe_fit(rows: int, partitions: int) -> glmx.outofcore.ChunkedGLM:
    """glmx.glm on a Dask DataFrame whose partitions are made on the workers."""
    size = rows // partitions
    meta = make_partition(0, 1).iloc[:0]
    ddf = dd.from_map(make_partition, range(partitions), rows=size, meta=meta)
    return glmx.glm("claims ~ x + region + offset(log_exposure)", ddf, family="poisson")


def design_block(k: int, rows: int) -> np.ndarray:
    """Partition k as a numeric block: a column of ones, x, the dummies of region (east
    is the reference level, as in the formula fit), the log exposure and the counts."""
    df = make_partition(k, rows)
    dummies = [(df["region"] == level).to_numpy(float) for level in LEVELS if level != "east"]
    ones = np.ones(rows)
    return np.column_stack([ones, df["x"], *dummies, df["log_exposure"], df["claims"]])


def array_fit(rows: int, partitions: int) -> glmx.outofcore.ChunkedGLM:
    """glmx.glm_fit on dask arrays sliced from one array of blocks made on the workers:
    the same rows and model as the data frame fit, so the same estimates."""
    size = rows // partitions
    blocks = [dask.delayed(design_block)(k, size) for k in range(partitions)]
    data = da.concatenate([da.from_delayed(b, shape=(size, 7), dtype=float) for b in blocks])
    X, log_exposure, claims = data[:, :5], data[:, 5], data[:, 6]
    names = ["Intercept", "x", *(f"region[T.{level}]" for level in LEVELS if level != "east")]
    return glmx.glm_fit(X, claims, family="poisson", offset=log_exposure, column_names=names)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", action="store_true", help="workers as threads of this process")
    args = parser.parse_args(argv)
    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=not args.threads,
            dashboard_address=":0",  # any free port
        ) as cluster,
        Client(cluster) as client,
    ):
        print(
            f"cluster: {len(client.scheduler_info()['workers'])} workers, {client.dashboard_link}"
        )
        fits = {}
        for label, fit_on in (("glmx.glm on a Dask DataFrame", dataframe_fit),
                              ("glmx.glm_fit on dask arrays", array_fit)):  # fmt: skip
            start = time.perf_counter()
            fits[label] = fit = fit_on(args.rows, args.partitions)
            seconds = time.perf_counter() - start
            print(f"\n== {label}: {fit.nobs} rows, {fit.n_passes} passes, {seconds:.1f} s")
            print(fit.summary())
        frame_fit, matrix_fit = fits.values()
        gap = np.max(np.abs(matrix_fit.coef.to_numpy() / frame_fit.coef.to_numpy() - 1))
        print(f"largest relative difference of the two fits' coefficients: {gap:.1e}")


if __name__ == "__main__":
    main()
