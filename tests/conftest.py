"""Fixtures shared by the Dask tests: a two-worker LocalCluster and the scheduler a test
runs on (the cluster through a Client, or dask's threaded scheduler with no client)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

# `pytest --hypothesis-profile=deep`: thousands of random examples in the fuzz suite
# (tests/test_fuzz.py scales its example counts by 20 under this profile)
settings.register_profile("deep", max_examples=5000, deadline=10_000, print_blob=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    # in-process workers (threads) start in a fraction of a second; the tasks still go
    # through the scheduler, serialized, as on a real cluster
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as lc:
        yield lc


@pytest.fixture(params=["distributed", "threads"])
def scheduler(request: pytest.FixtureRequest, cluster: Any) -> Iterator[str]:
    distributed = pytest.importorskip("distributed")
    if request.param == "distributed":
        with distributed.Client(cluster) as client:
            yield "distributed"
            assert client.status == "running"
    else:
        with pytest.raises(ValueError):
            distributed.default_client()  # no client: dask's threaded scheduler runs it
        yield "threads"
