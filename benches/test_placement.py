"""One scheduling decision over 1k..1M hosts (Rust core), the pure-Python reference
of Nova's semantics at 1k and 10k in the same run, and a batch of 10,000 servers
placed with claims on 10,000 hosts.

Targets (medians, on the 2-core machine): 10k hosts <= 50 us, 100k <= 500 us,
1M <= 5 ms; batch >= 100,000 placements per second. Figures: benches/RESULTS.md.
"""

from __future__ import annotations

import functools

import pytest

from cloud import CONFIG, reference_table, request, rust_table
from novalite.placement import Scheduler
from novalite.placement import reference


@functools.lru_cache(maxsize=None)
def rust_scheduler(n: int) -> Scheduler:
    return Scheduler(rust_table(n), CONFIG)


@pytest.mark.parametrize("hosts", [1_000, 10_000, 100_000, 1_000_000])
def test_decision_rust(benchmark, hosts: int) -> None:
    sched = rust_scheduler(hosts)
    spec = sched.prepare(request())
    result = benchmark(sched.select_destinations, spec, claim=False, seed=1)
    assert len(result) == 1 and len(result[0]) == CONFIG.max_attempts


@pytest.mark.parametrize("hosts", [1_000, 10_000])
def test_decision_reference(benchmark, hosts: int) -> None:
    sched = reference.Scheduler(reference_table(hosts), CONFIG)
    spec = request()
    result = benchmark.pedantic(sched.select_destinations, args=(spec,),
                                kwargs={"claim": False, "seed": 1}, rounds=5, iterations=1)
    assert len(result) == 1
    # the same decision as the Rust core
    rust = rust_scheduler(hosts).select_destinations(spec, claim=False, seed=1)
    assert [s.host for s in result[0]] == [s.host for s in rust[0]]


@pytest.mark.parametrize("cloud", ["fresh", "used"])
def test_batch_10000_servers_on_10000_hosts(benchmark, cloud: str) -> None:
    """One multi-create of 10,000 same-flavor servers, claimed, on 10,000 hosts.

    "fresh": empty hosts of three hardware generations (a new cloud, or a batch
    onto new capacity); "used": every host at a different random usage, so nearly
    every placement moves some weigher's maximum and Nova's normalisation changes
    every host's weight (the core then recomputes them all, exactly)."""
    holder = {}

    def setup():
        sched = Scheduler(rust_table(10_000, fresh=cloud == "fresh"), CONFIG)
        holder["sched"] = sched
        return (sched.prepare(request(10_000)),), {}

    def place(spec):
        return holder["sched"].select_destinations(spec, claim=True, seed=1)

    result = benchmark.pedantic(place, setup=setup, rounds=5, iterations=1)
    assert len(result) == 10_000
    benchmark.extra_info["placements_per_second"] = round(10_000 / benchmark.stats.stats.median)
