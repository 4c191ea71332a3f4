"""Checking ~/query requests before any field work."""
from __future__ import annotations

import pytest

from langx_ros.core.config import QueryConfig
from langx_ros.core.query import QueryRequestError, prepare_queries

CFG = QueryConfig(threshold=0.4, max_queries=3, max_query_chars=10)


def test_trims_and_applies_default_threshold():
    req = prepare_queries(["  printer ", "pillow"], 0.0, CFG)
    assert req.queries == ("printer", "pillow")
    assert req.threshold == 0.4
    assert prepare_queries(["printer"], -1.0, CFG).threshold == 0.4
    assert prepare_queries(["printer"], 0.7, CFG).threshold == pytest.approx(0.7)


@pytest.mark.parametrize(
    "queries, threshold, message",
    [
        ([], 0.0, "no queries"),
        (["a", "b", "c", "d"], 0.0, "too many queries: 4 > max_queries = 3"),
        (["ok", "   "], 0.0, "query 1 is empty"),
        (["x" * 11], 0.0, "query 0 is 11 characters long"),
        (["a"], 1.5, "threshold must be in"),
        (["a"], float("nan"), "threshold must be in"),
    ],
)
def test_bad_requests(queries, threshold, message):
    with pytest.raises(QueryRequestError, match=message):
        prepare_queries(queries, threshold, CFG)
