"""glmx.allocator: freed temporaries of the data's size are reused, not faulted in again.

Each check runs in a fresh interpreter: the allocator's tuning is process-wide and final.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="glibc's malloc (Linux) only"
)

# a pass that makes 8 temporaries of 800 KB (a row vector of 1e5 rows), writes them and
# frees them together, 40 times: the minor page faults each pass costs.  A 1.6 MB block
# freed first sets glibc's adaptive thresholds to mmap 1.6 MB, trim 3.2 MB.
PROBE = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    if sys.argv[1] == "tune":
        from glmx.allocator import reuse_freed_memory
        done = reuse_freed_memory()
        again = reuse_freed_memory()
    else:
        done = again = False
    keep = np.ones(1000)
    block = np.ones(200_000)
    del block
    faults = []
    for _ in range(40):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        temps = [np.full(100_000, float(i)) for i in range(8)]
        del temps
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps({"done": done, "again": again, "faults": faults[1:]}))
    """
)


def _probe(mode: str, **env: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _is_glibc() -> bool:
    import ctypes

    try:
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
    except AttributeError:
        return False
    return True


@pytest.mark.skipif(not _is_glibc(), reason="glibc's malloc only")
def test_freed_temporaries_are_reused_without_page_faults() -> None:
    """Untuned, the 6.4 MB freed by each pass exceed the trim threshold and go back to the
    system, so the next pass faults its pages in again (1,600 pages of 4 KB); tuned, the
    heap keeps them."""
    tuned = _probe("tune")
    assert tuned["done"] is True and tuned["again"] is True
    faults = tuned["faults"]
    assert isinstance(faults, list)
    assert sum(faults) < 0.05 * 1600 * len(faults)
    plain = _probe("plain")
    assert isinstance(plain["faults"], list)
    assert sum(plain["faults"]) > 0.5 * 1600 * len(plain["faults"])


def test_tuning_can_be_turned_off() -> None:
    off = _probe("tune", GLMX_MALLOC_TUNING="0")
    assert off["done"] is False
    faults = off["faults"]
    assert isinstance(faults, list)
    assert sum(faults) > 0.5 * 1600 * len(faults)  # glibc's adaptive rule: trimmed
