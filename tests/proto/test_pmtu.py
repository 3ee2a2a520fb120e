from __future__ import annotations

from trio_netstack.proto.pmtu import PathMtuCache, PmtuConfig

DST = 0xC6336407


def test_lowers_expires_and_floors() -> None:
    cache = PathMtuCache(PmtuConfig(expires=600.0, min_pmtu=552))
    assert cache.learn(DST, 1280, 1500, 1500, now=0.0) == 1280
    assert cache.get(DST, 599.9) == 1280
    assert cache.get(DST, 600.0) is None  # RFC 1191 6.3: forget, rediscover
    # A forged tiny MTU is raised to the floor; a report above the current one is ignored.
    assert cache.learn(DST, 100, 1500, 1500, now=0.0) == 552
    assert cache.learn(DST, 1400, 1500, 552, now=1.0) == 552
    assert cache.counters["ignored_not_lower"] == 1


def test_plateau_estimate_for_old_routers() -> None:
    cache = PathMtuCache()
    # RFC 1191 7.1: a zero next-hop MTU about a 1500-byte datagram -> 1492.
    assert cache.learn(DST, 0, 1500, 1500, now=0.0) == 1492
    assert cache.learn(DST, 0, 1492, 1492, now=0.0) == 1006


def test_bounded() -> None:
    cache = PathMtuCache(PmtuConfig(max_entries=10))
    for i in range(100):
        cache.learn(DST + i, 1000, 1500, 1500, now=0.0)
    assert len(cache) == 10
    assert cache.get(DST + 99, 1.0) == 1000 and cache.get(DST, 1.0) is None
