"""Out-of-core GLM fits: IRLS streamed over chunks of rows (Parquet datasets, iterators
of data frames), with the numbers of the in-memory ``glmx.glm``.

``glm_chunked(formula, source, family=...)`` is the entry point; the result is a
:class:`ChunkedGLM` (estimates and fit statistics; per-row outputs by a pass over the data).
"""

from glmx.outofcore.api import glm_chunked
from glmx.outofcore.results import ChunkedGLM, ChunkedSummary
from glmx.outofcore.sources import FrameSource, ParquetSource

__all__ = ["ChunkedGLM", "ChunkedSummary", "FrameSource", "ParquetSource", "glm_chunked"]
