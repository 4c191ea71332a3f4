"""Text queries: request checking (the field-side selection arrives with the field)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from langx_ros.core.config import QueryConfig


class QueryRequestError(ValueError):
    """The request itself is unusable (empty, too many or too long queries, bad threshold)."""


@dataclass(frozen=True)
class QueryRequest:
    """A checked request: trimmed query texts and the threshold to apply."""

    queries: tuple[str, ...]
    threshold: float


def prepare_queries(queries: Sequence[str], threshold: float, cfg: QueryConfig) -> QueryRequest:
    """Check and normalise a query request.

    Args:
        queries: the texts as sent; each is trimmed of surrounding white space.
        threshold: relevancy threshold; <= 0 selects ``cfg.threshold``.
        cfg: limits and the default threshold.

    Raises:
        QueryRequestError: with a message fit for the caller.
    """
    if len(queries) == 0:
        raise QueryRequestError("no queries given: send at least one text in 'queries'")
    if len(queries) > cfg.max_queries:
        raise QueryRequestError(
            f"too many queries: {len(queries)} > max_queries = {cfg.max_queries} (split the request)"
        )
    texts = []
    for i, q in enumerate(queries):
        t = q.strip()
        if not t:
            raise QueryRequestError(f"query {i} is empty")
        if len(t) > cfg.max_query_chars:
            raise QueryRequestError(
                f"query {i} is {len(t)} characters long; the limit is max_query_chars = {cfg.max_query_chars}"
            )
        texts.append(t)
    if not math.isfinite(threshold) or threshold > 1.0:
        raise QueryRequestError(f"threshold must be in (0, 1] or <= 0 for the default; got {threshold}")
    return QueryRequest(tuple(texts), cfg.threshold if threshold <= 0 else float(threshold))
