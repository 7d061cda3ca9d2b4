"""The Rust core against the pure-Python reference of Nova's semantics, on random
clouds, options and requests: the same passing hosts, rejection counts, weights (to
1e-9), chosen hosts and alternates, the same errors, and the same table afterwards."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from novalite import placement as core
from novalite.placement import model
from novalite.placement import reference as ref
from novalite.placement.config import SchedulerConfig

from helpers import outcome
from strategies import Cloud, clouds, configs, requests

# 300 examples by default; HYPOTHESIS_PROFILE=thorough raises it to 3000
EXAMPLES = max(300, settings.default.max_examples)
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def build(cloud: Cloud, config: SchedulerConfig) -> tuple[core.Scheduler, ref.Scheduler]:
    rust = core.Scheduler(core.HostTable(cloud.hosts, cloud.aggregates), config)
    oracle = ref.Scheduler(ref.HostTable(cloud.hosts, cloud.aggregates), config)
    return rust, oracle


def same_weights(a: Any, b: Any) -> bool:
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        return False
    nan = np.isnan(a)
    return bool((nan == np.isnan(b)).all() and np.allclose(a[~nan], b[~nan], rtol=0, atol=1e-9))


def selections(sels: list[list[model.Selection]]) -> list[list[tuple[Any, ...]]]:
    return [[(s.host, s.host_uuid, s.row, dict(s.allocation), s.availability_zone, s.cell) for s in inst]
            for inst in sels]


def assert_same_selections(got: tuple[Any, ...], want: tuple[Any, ...]) -> None:
    assert got[0] == want[0], (got, want)
    if got[0] != "ok":
        assert got == want
        return
    assert selections(got[1]) == selections(want[1])
    for gi, wi in zip(got[1], want[1]):
        for g, w in zip(gi, wi):
            assert math.isclose(g.weight, w.weight, rel_tol=0, abs_tol=1e-9), (g, w)


def table_state(t: Any) -> dict[str, Any]:
    hosts = t.host_names()
    return {
        "hosts": hosts,
        "usage": {h: t.usage(h) for h in hosts},
        "capacity": {h: t.capacity(h) for h in hosts},
        "generation": {h: t.generation(h) for h in hosts},
        "consumers": {c: t.allocations(c) for c in t.consumers()},
        "instances": {h: sorted(t.instances_on(h)) for h in hosts},
    }


@SETTINGS
@given(data=st.data())
def test_filter_and_weigh_match_the_reference(data: st.DataObject) -> None:
    cloud = data.draw(clouds())
    config = data.draw(configs())
    spec = data.draw(requests(cloud))
    rust, oracle = build(cloud, config)
    for index in (0, 1):
        got = outcome(lambda: rust.filter(spec, index))
        want = outcome(lambda: oracle.filter(spec, index))
        assert got[0] == want[0], (got, want)
        if got[0] == "ok":
            assert list(got[1].mask) == list(want[1].mask), (got, want)
            assert got[1].rejections == want[1].rejections
        else:
            assert got == want
    got_w = outcome(lambda: rust.weigh(spec))
    want_w = outcome(lambda: oracle.weigh(spec))
    assert got_w[0] == want_w[0], (got_w, want_w)
    if got_w[0] == "ok":
        assert same_weights(got_w[1], want_w[1]), (got_w, want_w)


@SETTINGS
@given(data=st.data())
def test_select_destinations_matches_the_reference(data: st.DataObject) -> None:
    cloud = data.draw(clouds())
    config = data.draw(configs())
    spec = data.draw(requests(cloud))
    seed = data.draw(st.integers(0, 2**32))
    rust, oracle = build(cloud, config)
    before = table_state(rust.table)
    got = outcome(lambda: rust.select_destinations(spec, claim=False, seed=seed))
    want = outcome(lambda: oracle.select_destinations(spec, claim=False, seed=seed))
    assert_same_selections(got, want)
    # a dry run changes nothing
    assert table_state(rust.table) == before


@settings(max_examples=EXAMPLES // 2, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_a_sequence_of_claiming_requests_matches_the_reference(data: st.DataObject) -> None:
    """Requests one after another, each claiming: the same choices and the same
    table (usage, generations, consumers, instances) after every one."""
    cloud = data.draw(clouds())
    config = data.draw(configs())
    rust, oracle = build(cloud, config)
    for step in range(data.draw(st.integers(1, 4))):
        spec = data.draw(requests(cloud, uuid_prefix=f"req{step}"))
        seed = data.draw(st.integers(0, 2**32))
        got = outcome(lambda: rust.select_destinations(spec, claim=True, seed=seed))
        want = outcome(lambda: oracle.select_destinations(spec, claim=True, seed=seed))
        assert_same_selections(got, want)
        assert table_state(rust.table) == table_state(oracle.table)
        for column in ("free_ram_mb", "free_disk_mb", "vcpus_used", "num_instances", "num_io_ops"):
            assert list(rust.table.column(column)) == [
                getattr(oracle.table._rows[i], column) for i in range(len(oracle.table))
            ], column


@pytest.mark.parametrize("n_instances", [1, 7, 40])
def test_large_random_clouds_match(n_instances: int) -> None:
    """A bigger cloud than hypothesis draws (many tie groups, renormalisations)."""
    rng = np.random.default_rng(n_instances)
    hosts = []
    for i in range(300):
        hosts.append(model.Host(
            f"h{i}", f"u{i}",
            model.Inventory(int(rng.choice([8, 16, 32])), allocation_ratio=float(rng.choice([1.0, 4.0]))),
            model.Inventory(int(rng.choice([8192, 16384, 32768])), reserved=512),
            model.Inventory(int(rng.choice([100, 200]))),
            num_io_ops=int(rng.integers(0, 4)),
            hypervisor_version=int(rng.choice([6000000, 7000000])),
        ))
    config = SchedulerConfig(enabled_filters=["ComputeFilter", "IoOpsFilter", "NumInstancesFilter"],
                             max_io_ops_per_host=6)
    rust, oracle = build(Cloud(hosts, []), config)
    for k in range(5):
        spec = model.RequestSpec(model.Flavor("f", 2, 2048, 20), [f"r{k}-{j}" for j in range(n_instances)])
        got = outcome(lambda: rust.select_destinations(spec, seed=k))
        want = outcome(lambda: oracle.select_destinations(spec, seed=k))
        assert_same_selections(got, want)
    assert table_state(rust.table) == table_state(oracle.table)


@pytest.mark.parametrize("variant", ["spread", "stack", "subset", "shuffle", "aggregates"])
def test_zone_pruned_decisions_match(variant: str) -> None:
    """Past a few zones (4096 hosts each) the core weighs only the zones whose upper
    bound can still win; the answer must be the reference's, ties included."""
    n = 13_000
    rng = np.random.default_rng(len(variant))
    kind = rng.integers(0, 3, size=n)
    aggs = [model.Aggregate("agg-a", "agg-a", {"ram_weight_multiplier": "2.0", "max_io_ops_per_host": "3"}),
            model.Aggregate("agg-b", "agg-b", {"cpu_weight_multiplier": "-1"})]
    hosts = []
    for i in range(n):
        k = int(kind[i])
        # many twins (same size, same usage) so that ties at the top are common
        used = int(rng.integers(0, 3)) if variant != "shuffle" else 0
        hosts.append(model.Host(
            f"h{i:05d}", f"u{i}",
            model.Inventory([16, 32, 64][k], allocation_ratio=2.0),
            model.Inventory([32768, 65536, 131072][k], reserved=512),
            model.Inventory([200, 400, 800][k]),
            vcpus_used=used, free_ram_mb=[32768, 65536, 131072][k] - 512 - 1024 * used,
            num_io_ops=int(rng.integers(0, 5)),
            enabled=bool(rng.random() > 0.01),
            aggregates=(["agg-a"] if variant == "aggregates" and i % 7 == 0 else [])
            + (["agg-b"] if variant == "aggregates" and i % 11 == 0 else []),
        ))
    options: dict[str, Any] = {"enabled_filters": ["ComputeFilter", "AggregateIoOpsFilter"]}
    if variant == "stack":
        options["ram_weight_multiplier"] = -1.0
    if variant == "subset":
        options["host_subset_size"] = 3
    if variant == "shuffle":
        options["shuffle_best_same_weighed_hosts"] = True
    rust, oracle = build(Cloud(hosts, aggs), SchedulerConfig(**options))
    for seed in range(3):
        spec = model.RequestSpec(model.Flavor("f", 2, 2048 * (seed + 1), 20), [f"z{seed}"])
        got = outcome(lambda: rust.select_destinations(spec, claim=False, seed=seed))
        want = outcome(lambda: oracle.select_destinations(spec, claim=False, seed=seed))
        assert_same_selections(got, want)


@pytest.mark.parametrize("policy", ["anti-affinity", "soft-affinity"])
def test_a_grouped_multi_create_counts_its_own_instances_for_image_properties(
        policy: str) -> None:
    """Nova's _consume_selected_host puts a stub of each instance of a grouped
    multi-create into its host's instances, and ImagePropertiesWeigher counts them
    (with the request's image): with a negative multiplier the second instance
    spreads to the other host, in the core as in the reference."""
    hosts = [model.Host(name=n, uuid=f"uuid-{n}", vcpu=model.Inventory(total=4),
                        memory_mb=model.Inventory(total=4096), disk_gb=model.Inventory(total=100),
                        instances={f"old-{n}": {"os_distro": "debian"}})
             for n in ("a", "b")]
    config = SchedulerConfig(enabled_filters=[], weight_classes=("ImagePropertiesWeigher",),
                             image_props_weight_multiplier=-2.0)
    spec = model.RequestSpec(
        flavor=model.Flavor("f", vcpus=1, memory_mb=64), instance_uuids=["i0", "i1"],
        image=model.Image(id="img", properties={"os_distro": "ubuntu"}),
        instance_group=model.InstanceGroup(uuid="g", policy=policy, members=["i0", "i1"]))
    rust = core.Scheduler(core.HostTable(hosts), config)
    oracle = ref.Scheduler(ref.HostTable(hosts), config)
    got = rust.select_destinations(spec, claim=True, seed=1)
    want = oracle.select_destinations(spec, claim=True, seed=1)
    assert_same_selections(("ok", got), ("ok", want))
    assert sorted(sels[0].host for sels in got) == ["a", "b"]
