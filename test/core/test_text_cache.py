"""The text-embedding cache of the text encoders: LRU, only missing texts embedded, threads."""
from __future__ import annotations

import threading

import numpy as np

from langx_ros.core.text_cache import TextCache


def _embedder(calls):
    def embed(texts):
        calls.append(list(texts))
        return np.array([[len(t), ord(t[0])] for t in texts], np.float64)

    return embed


def test_only_missing_texts_are_embedded_and_the_least_recently_used_goes_first():
    calls = []
    c = TextCache(2)
    out = c.encode(["ab", "c", "ab"], _embedder(calls))
    assert out.dtype == np.float32 and out.tolist() == [[2, 97], [1, 99], [2, 97]] and calls == [["ab", "c"]]
    c.encode(["ab"], _embedder(calls))  # a hit: "ab" is now the most recent
    c.encode(["d"], _embedder(calls))  # evicts "c", not "ab"
    assert calls[-1] == ["d"] and len(c) == 2
    c.encode(["ab", "c"], _embedder(calls))
    assert calls[-1] == ["c"]
    assert TextCache(0).encode(["x", "y"], _embedder([])).shape == (2, 2)  # size 0 caches nothing but answers


def test_concurrent_callers_get_their_own_rows():
    c = TextCache(3)
    errors, words = [], [f"w{i}" for i in range(12)]

    def worker(k):
        try:
            for i in range(50):
                ts = [words[(k + i) % 12], words[(k * 5 + i) % 12]]
                out = c.encode(ts, lambda missing: np.array([[int(t[1:]), -int(t[1:])] for t in missing]))
                assert out[:, 0].tolist() == [int(t[1:]) for t in ts] and out[:, 1].tolist() == [-int(t[1:]) for t in ts]
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(c) <= 3
