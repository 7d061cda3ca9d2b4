"""A stateful hypothesis machine over Placement's ledger: claim, replace, release,
set_inventory, update_host, select_destinations (claiming or not) and remove_host,
driven on the Rust core and on the pure-Python reference with the same operations.

After every step the Rust table must satisfy the invariants of
docs/placement-semantics.md ("Claim rules", "Selection"):

* per host and resource class, usage == the sum of the consumers' allocations;
* a successful write never raised a usage above its capacity (a usage may sit above
  capacity only because set_inventory shrank it, and then only shrinks);
* a refused call (any PlacementError) changed nothing at all;
* release gives back exactly what the consumer held;
* a stale generation is refused with GenerationConflict;
* the Rust table equals the reference table, and its numpy columns agree with its
  per-host reads.

By default 100 machines of up to 50 steps (a few thousand steps, seconds);
HYPOTHESIS_PROFILE=thorough runs 1000 machines of up to 80 steps.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from novalite import placement as core
from novalite.placement import model
from novalite.placement import reference as ref
from novalite.placement.config import SchedulerConfig

from helpers import outcome
from snapshots import snapshot as rust_snapshot
from strategies import Cloud, TRAITS, clouds, configs, inventories, requests

RCS = model.RESOURCE_CLASSES
INVENTORY_TOTALS = {"VCPU": (0, 1, 2, 4, 8), "MEMORY_MB": (0, 512, 1024, 2048, 4096),
                    "DISK_GB": (0, 10, 20, 40)}
AMOUNTS = {"VCPU": (1, 1, 2, 3, 4, 8), "MEMORY_MB": (1, 256, 512, 1024, 2048),
           "DISK_GB": (1, 2, 5, 10, 20)}
BIG = model.MAX_UNIT_DEFAULT
CONSUMERS = ("c0", "c1", "c2", "c3", "c4")
VIEW_COLUMNS = ("vcpus_used", "free_ram_mb", "free_disk_mb", "num_instances", "num_io_ops",
                "failed_builds", "enabled", "up", "hypervisor_version", "free_pci_devs")
RC_COLUMN = {"VCPU": "vcpu", "MEMORY_MB": "memory_mb", "DISK_GB": "disk_gb"}

EXAMPLES = max(100, settings.default.max_examples // 3)
STEPS = 50 if EXAMPLES <= 100 else 80


@st.composite
def roomy_inventory(draw: st.DrawFn, totals: tuple[int, ...]) -> model.Inventory:
    """Mostly plain inventories, so that many claims fit; sometimes unit rules."""
    return model.Inventory(
        total=draw(st.sampled_from(totals)),
        reserved=draw(st.sampled_from((0, 0, 0, 1))),
        allocation_ratio=draw(st.sampled_from((1.0, 1.0, 1.5, 2.0))),
        min_unit=draw(st.sampled_from((1, 1, 1, 1, 2))),
        max_unit=draw(st.sampled_from((BIG, BIG, BIG, 8, 1024))),
        step_size=draw(st.sampled_from((1, 1, 1, 1, 2))),
    )


@st.composite
def small_clouds(draw: st.DrawFn) -> Cloud:
    """strategies.clouds (aggregates, traits, instances, service states...) with
    inventories that leave room for a few claims per host, now and then a full or
    a unit-constrained one."""
    cloud = draw(clouds(max_hosts=4))
    drawn = list(cloud.hosts)
    for i in range(len(drawn), draw(st.integers(2, 4))):
        # at least two hosts: copies of drawn ones under new names, without instances
        drawn.append(dataclasses.replace(drawn[i % len(cloud.hosts)], name=f"h{i}",
                                         uuid=f"uuid-{i}", instances={}))
    hosts = []
    for h in drawn:
        if draw(st.integers(0, 4)) < 4:  # the simplest draw is a roomy host
            h = dataclasses.replace(
                h,
                vcpu=draw(roomy_inventory((4, 8, 16))),
                memory_mb=draw(roomy_inventory((1024, 2048, 4096))),
                disk_gb=draw(roomy_inventory((20, 40, 80))),
            )
        hosts.append(h)
    return Cloud(hosts, cloud.aggregates, cloud.instances)


@st.composite
def plain_requests(draw: st.DrawFn, uuid_prefix: str) -> model.RequestSpec:
    """A plain flavor (no extra specs, image or hints), sometimes with a group."""
    n = draw(st.integers(1, 3))
    uuids = [f"{uuid_prefix}-{k}" for k in range(n)]
    flavor = model.Flavor(
        name="f1",
        vcpus=draw(st.sampled_from((1, 1, 2, 4))),
        memory_mb=draw(st.sampled_from((0, 256, 512, 1024))),
        root_gb=draw(st.sampled_from((0, 1, 10))),
        swap=draw(st.sampled_from((0, 0, 1025))),
    )
    group = None
    if draw(st.integers(0, 3)) == 0:
        policy = draw(st.sampled_from(("affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity")))
        group = model.InstanceGroup(uuid="g", policy=policy, members=uuids)
    return model.RequestSpec(flavor=flavor, instance_uuids=uuids, instance_group=group)


def comparable(t: Any) -> dict[str, Any]:
    """The part of a table both implementations expose the same way."""
    hosts = t.host_names()
    out = {
        "hosts": hosts,
        "usage": {h: t.usage(h) for h in hosts},
        "capacity": {h: t.capacity(h) for h in hosts},
        "generation": {h: t.generation(h) for h in hosts},
        "inventory": {h: {rc: t.inventory(h, rc) for rc in RCS} for h in hosts},
        "consumers": {c: t.allocations(c) for c in sorted(t.consumers())},
        "instances": {h: sorted(t.instances_on(h)) for h in hosts},
    }
    if isinstance(t, core.HostTable):
        out["view"] = {c: t.column(c).tolist() for c in VIEW_COLUMNS}
    else:
        out["view"] = {c: [getattr(r, c) for r in t._rows] for c in VIEW_COLUMNS}
    return out


def unit_ok(inv: model.Inventory, amount: int) -> bool:
    return inv.min_unit <= amount <= inv.max_unit and amount % inv.step_size == 0


def sel_tuples(result: list[list[model.Selection]]) -> list[list[tuple[Any, ...]]]:
    return [[(s.host, s.host_uuid, s.row, dict(s.allocation), s.availability_zone, s.cell)
             for s in inst] for inst in result]


class ClaimsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.rust: core.Scheduler
        self.oracle: ref.Scheduler
        self.cloud: Cloud
        self.request_no = 0

    # ------------------------------------------------------------------ set up

    @initialize(cloud=small_clouds(), config=st.one_of(st.just(SchedulerConfig()), configs()))
    def build(self, cloud: Cloud, config: SchedulerConfig) -> None:
        self.cloud = cloud
        self.rust = core.Scheduler(core.HostTable(cloud.hosts, cloud.aggregates), config)
        self.oracle = ref.Scheduler(ref.HostTable(cloud.hosts, cloud.aggregates), config)

    @property
    def rt(self) -> core.HostTable:
        return self.rust.table

    @property
    def ot(self) -> ref.HostTable:
        return self.oracle.table

    def hosts(self) -> list[str]:
        return self.rt.host_names()

    # ------------------------------------------------------------------ helpers

    def both(self, label: str, op: Callable[[Any], Any]) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        """Run ``op`` on the Rust table and on the reference; the Rust outcome must
        match the reference's, and a refused call must leave the Rust table as it
        was. Returns (outcome, Rust snapshot before, Rust snapshot after)."""
        before = rust_snapshot(self.rt)
        got = outcome(lambda: op(self.rt))
        want = outcome(lambda: op(self.ot))
        after = rust_snapshot(self.rt)
        event(f"{label}: {got[0]}")
        assert got == want, f"Rust {got!r} != reference {want!r}"
        if got[0] != "ok":
            assert after == before, f"a refused call ({got[0]}) changed the table"
        return got, before, after

    def draw_allocation(self, data: st.DataObject, allow_empty: bool) -> dict[str, dict[str, int]]:
        hosts = self.hosts()
        if not hosts:
            return {}
        chosen = data.draw(st.lists(st.sampled_from(hosts), unique=True,
                                    min_size=0 if allow_empty else 1, max_size=2), label="hosts")
        alloc: dict[str, dict[str, int]] = {}
        for h in chosen:
            rcs = data.draw(st.lists(st.sampled_from(RCS), unique=True, min_size=1, max_size=2),
                            label=f"rcs {h}")
            alloc[h] = {rc: data.draw(st.sampled_from(AMOUNTS[rc]), label=f"{h} {rc}") for rc in rcs}
        return alloc

    def draw_generations(self, data: st.DataObject, hosts: list[str]) -> tuple[str, dict[str, int] | None]:
        """("none", None), ("right", current) or ("stale", one of them off)."""
        mode = data.draw(st.sampled_from(("none", "none", "right", "stale")), label="generations")
        if mode == "none" or not hosts:
            return "none", None
        gens = {h: self.rt.generation(h) for h in hosts}
        if mode == "stale":
            h = data.draw(st.sampled_from(hosts), label="stale host")
            gens[h] += data.draw(st.sampled_from((-1, 1, -3)), label="off by")
        return mode, gens

    def check_write(self, before: dict[str, Any], after: dict[str, Any],
                    gens_out: dict[str, int], consumer: str) -> None:
        """A successful claim/replace: no usage grew above capacity, each touched
        host's generation went up by exactly one (and the answer says so), nothing
        else changed generation, and the ledger holds what was asked."""
        old = before["consumers"].get(consumer, {})
        new = after["consumers"].get(consumer, {})
        touched = set(old) | set(new)
        assert set(gens_out) == touched, (gens_out, touched)
        for h in after["hosts"]:
            if h in touched:
                assert after["generation"][h] == before["generation"][h] + 1
                assert gens_out[h] == after["generation"][h]
            else:
                assert after["generation"][h] == before["generation"][h]
                assert after["usage"][h] == before["usage"][h]
            for rc in RCS:
                used_before, used_after = before["usage"][h][rc], after["usage"][h][rc]
                delta = new.get(h, {}).get(rc, 0) - old.get(h, {}).get(rc, 0)
                assert used_after == used_before + delta, (h, rc)
                if used_after > used_before:
                    assert used_after <= after["capacity"][h][rc], (
                        f"{h} {rc}: a write raised usage to {used_after} > capacity "
                        f"{after['capacity'][h][rc]}")
        # nothing but the ledger moved
        assert after["capacity"] == before["capacity"]
        assert after["inventory"] == before["inventory"]
        assert {c: a for c, a in after["consumers"].items() if c != consumer} == \
            {c: a for c, a in before["consumers"].items() if c != consumer}

    # ------------------------------------------------------------------ rules

    @rule(data=st.data())
    def claim(self, data: st.DataObject) -> None:
        held_now = self.rt.consumers()
        free = [c for c in CONSUMERS if c not in held_now]
        # mostly a new consumer; sometimes one that already holds (ClaimConflict)
        pool = held_now if (data.draw(st.integers(0, 4), label="held") == 4 and held_now) or not free else free
        consumer = data.draw(st.sampled_from(pool), label="consumer")
        alloc = self.draw_allocation(data, allow_empty=False)
        if not alloc:
            return
        mode, gens = self.draw_generations(data, list(alloc))
        held = consumer in self.rt.consumers()
        got, before, after = self.both("claim", lambda t: t.claim(consumer, alloc, gens))
        if held:
            assert got == ("ClaimConflict",), got
        elif mode == "stale":
            assert got == ("GenerationConflict",), got
        if got[0] == "ok":
            assert after["consumers"][consumer] == alloc
            self.check_write(before, after, got[1], consumer)
        elif got[0] == "CapacityExceeded":
            # the refusal is justified: some amount breaks a unit rule or does not fit
            assert any(
                not unit_ok(before["inventory"][h][rc], a)
                or before["usage"][h][rc] + a > before["capacity"][h][rc]
                for h, amounts in alloc.items() for rc, a in amounts.items()
            ), (alloc, before["usage"], before["capacity"])

    @precondition(lambda self: bool(self.rt.consumers()))
    @rule(data=st.data())
    def replace(self, data: st.DataObject) -> None:
        held = self.rt.consumers()
        if not held:
            return
        consumer = data.draw(st.sampled_from(held), label="consumer")
        # an empty mapping releases (for a consumer that holds something)
        alloc = self.draw_allocation(data, allow_empty=True)
        mode, gens = self.draw_generations(data, sorted(set(alloc) | set(self.rt.allocations(consumer))))
        got, before, after = self.both("replace", lambda t: t.replace(consumer, alloc, gens))
        if mode == "stale":
            assert got == ("GenerationConflict",), got
        if got[0] == "ok":
            assert after["consumers"].get(consumer, {}) == alloc
            self.check_write(before, after, got[1], consumer)

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        held_now = tuple(self.rt.consumers())
        pool = held_now if held_now and not data.draw(st.booleans(), label="unknown") else CONSUMERS
        consumer = data.draw(st.sampled_from(pool), label="consumer")
        held = consumer in self.rt.consumers()
        got, before, after = self.both("release", lambda t: t.release(consumer))
        if not held:
            assert got == ("UnknownConsumer",), got
            return
        assert got[0] == "ok", got
        # release gives back exactly what the consumer held, and nothing else moves
        alloc = before["consumers"][consumer]
        assert consumer not in after["consumers"]
        for h in after["hosts"]:
            for rc in RCS:
                assert after["usage"][h][rc] == before["usage"][h][rc] - alloc.get(h, {}).get(rc, 0)
            assert after["generation"][h] == before["generation"][h] + (1 if h in alloc else 0)

    @rule(data=st.data())
    def claim_then_release(self, data: st.DataObject) -> None:
        """A claim followed by its release restores the exact previous usage."""
        consumer = "probe"
        alloc = self.draw_allocation(data, allow_empty=False)
        if not alloc:
            return
        got, before, _ = self.both("claim", lambda t: t.claim(consumer, alloc))
        if got[0] != "ok":
            return
        got, _, after = self.both("release", lambda t: t.release(consumer))
        assert got[0] == "ok", got
        assert after["usage"] == before["usage"]
        assert after["consumers"] == before["consumers"]
        assert after["columns"]["vcpu_used"] == before["columns"]["vcpu_used"]

    @rule(data=st.data())
    def set_inventory(self, data: st.DataObject) -> None:
        hosts = self.hosts()
        if not hosts:
            return
        h = data.draw(st.sampled_from(hosts), label="host")
        rc = data.draw(st.sampled_from(RCS), label="rc")
        inv = data.draw(inventories(INVENTORY_TOTALS[rc]), label="inventory")
        mode, gens = self.draw_generations(data, [h])
        gen = None if gens is None else gens[h]
        got, before, after = self.both("set_inventory", lambda t: t.set_inventory(h, rc, inv, gen))
        if mode == "stale":
            assert got == ("GenerationConflict",), got
            return
        assert got[0] == "ok", got  # the inventory is valid: shrinking below usage is allowed
        assert got[1] == before["generation"][h] + 1 == after["generation"][h]
        assert after["inventory"][h][rc] == inv
        assert after["capacity"][h][rc] == int((inv.total - inv.reserved) * inv.allocation_ratio)
        assert after["usage"] == before["usage"]
        assert after["consumers"] == before["consumers"]

    @precondition(lambda self: bool(self.rt.consumers()))
    @rule(data=st.data())
    def shrink_below_usage(self, data: st.DataObject) -> None:
        """Shrink an inventory under its usage: allowed; then any new claim of that
        class on that host fails, and the holders may shrink but not grow."""
        used = [(h, rc) for h in self.hosts() for rc in RCS if self.rt.usage(h)[rc] > 0]
        if not used:
            return
        h, rc = data.draw(st.sampled_from(used), label="host, rc")
        usage = self.rt.usage(h)[rc]
        inv = model.Inventory(total=usage - 1)
        got, _, after = self.both("set_inventory", lambda t: t.set_inventory(h, rc, inv, t.generation(h)))
        assert got[0] == "ok", got
        assert after["capacity"][h][rc] < after["usage"][h][rc]
        got, _, _ = self.both("claim", lambda t: t.claim("newcomer", {h: {rc: 1}}))
        assert got == ("CapacityExceeded",), got
        event("shrink_below_usage: refused a newcomer")

    @precondition(lambda self: any(u[rc] > c[rc] for u, c in
                                   ((self.rt.usage(h), self.rt.capacity(h)) for h in self.hosts())
                                   for rc in RCS))
    @rule(data=st.data())
    def shrink_over_capacity_usage(self, data: st.DataObject) -> None:
        """A consumer on an over-capacity class may shrink its allocation there
        (Placement only refuses a write that grows an over-capacity usage), and may
        not grow it."""
        candidates = []
        for c in self.rt.consumers():
            for h, amounts in self.rt.allocations(c).items():
                for rc, a in amounts.items():
                    if self.rt.usage(h)[rc] > self.rt.capacity(h)[rc]:
                        candidates.append((c, h, rc, a))
        if not candidates:
            return
        c, h, rc, a = data.draw(st.sampled_from(candidates), label="consumer, host, rc, amount")
        current = self.rt.allocations(c)
        inv = self.rt.inventory(h, rc)
        grown = {hh: dict(v) for hh, v in current.items()}
        grown[h][rc] = a + inv.step_size
        if unit_ok(inv, a + inv.step_size):
            got, _, _ = self.both("replace", lambda t: t.replace(c, grown))
            assert got == ("CapacityExceeded",), got
        smaller = [x for x in range(a - 1, 0, -1) if unit_ok(inv, x)]
        if not smaller:
            return
        shrunk = {hh: dict(v) for hh, v in current.items()}
        shrunk[h][rc] = data.draw(st.sampled_from(smaller), label="new amount")
        got, before, after = self.both("replace", lambda t: t.replace(c, shrunk))
        if not all(unit_ok(before["inventory"][hh][r], x) for hh, am in shrunk.items() for r, x in am.items()):
            # an inventory changed since the claim and another amount of the consumer
            # no longer meets its unit rules: every amount of a write is checked
            assert got == ("CapacityExceeded",), got
            return
        assert got[0] == "ok", f"shrinking {c}'s {rc} on {h} from {a} was refused: {got}"
        event("shrink_over_capacity_usage: shrunk")
        self.check_write(before, after, got[1], c)

    @rule(data=st.data())
    def update_host(self, data: st.DataObject) -> None:
        hosts = self.hosts()
        if not hosts:
            return
        h = data.draw(st.sampled_from(hosts), label="host")
        choices: dict[str, st.SearchStrategy[Any]] = {
            "vcpus_used": st.sampled_from((0, 1, 5)),
            "free_ram_mb": st.sampled_from((-512, 0, 1024, 4096)),
            "free_disk_mb": st.sampled_from((0, 10240)),
            "num_instances": st.sampled_from((0, 2, 60)),
            "num_io_ops": st.sampled_from((0, 3, 9)),
            "failed_builds": st.sampled_from((0, 2)),
            "enabled": st.booleans(),
            "up": st.booleans(),
            "hypervisor_version": st.sampled_from((0, 7000000)),
            "free_pci_devs": st.sampled_from((0, 5)),
            "traits": st.lists(st.sampled_from(TRAITS), unique=True),
            "cell": st.sampled_from(("", "c1")),
            "metrics": st.sampled_from(({}, {"cpu.percent": 20.0})),
        }
        keys = data.draw(st.lists(st.sampled_from(sorted(choices)), unique=True, min_size=1, max_size=3),
                         label="fields")
        fields = {k: data.draw(choices[k], label=k) for k in keys}
        got, before, after = self.both("update_host", lambda t: t.update_host(h, **fields))
        assert got[0] == "ok", got
        for k in VIEW_COLUMNS:
            if k in fields:
                assert after["columns"][k][after["hosts"].index(h)] == fields[k], k
        # the ledger does not move; only a trait change bumps the generation
        assert after["usage"] == before["usage"] and after["consumers"] == before["consumers"]
        bump = 1 if "traits" in fields else 0
        assert after["generation"] == {**before["generation"], h: before["generation"][h] + bump}

    @rule(data=st.data(), claim=st.booleans())
    def select_destinations(self, data: st.DataObject, claim: bool) -> None:
        names = set(self.hosts())
        if not names:
            return
        cloud = Cloud([hh for hh in self.cloud.hosts if hh.name in names], self.cloud.aggregates,
                      self.cloud.instances)
        # a small pool of prefixes: a later request sometimes reuses held uuids
        prefix = f"s{data.draw(st.integers(0, 6), label='request')}"
        spec = data.draw(st.one_of(plain_requests(prefix),
                                   requests(cloud, max_instances=3, uuid_prefix=prefix)), label="spec")
        seed = data.draw(st.integers(0, 2**32), label="seed")

        def run(s: Any) -> Any:
            return s.select_destinations(spec, claim=claim, seed=seed)

        before = rust_snapshot(self.rt)
        got = outcome(lambda: run(self.rust))
        want = outcome(lambda: run(self.oracle))
        after = rust_snapshot(self.rt)
        event(f"select claim={claim}: {got[0]}")
        assert got[0] == want[0], (got, want)
        if got[0] != "ok":
            assert got == want
            assert after == before, f"a refused select ({got[0]}) changed the table"
            return
        assert sel_tuples(got[1]) == sel_tuples(want[1])
        for gi, wi in zip(got[1], want[1]):
            for g, w in zip(gi, wi):
                assert math.isclose(g.weight, w.weight, rel_tol=0, abs_tol=1e-9), (g, w)
        if not claim:
            assert after == before, "select_destinations(claim=False) changed the table"
            return
        chosen = [inst[0] for inst in got[1]]
        amounts = dict(chosen[0].allocation)
        per_host: dict[str, int] = {}
        for uuid, sel in zip(spec.instance_uuids, chosen):
            per_host[sel.host] = per_host.get(sel.host, 0) + 1
            assert after["consumers"][uuid] == {sel.host: amounts}
            assert uuid in after["instances"][sel.host]
        for h in after["hosts"]:
            k = per_host.get(h, 0)
            assert after["generation"][h] == before["generation"][h] + k
            for rc in RCS:
                want_used = before["usage"][h][rc] + k * amounts.get(rc, 0)
                assert after["usage"][h][rc] == want_used, (h, rc)
                if k and amounts.get(rc, 0):
                    assert want_used <= after["capacity"][h][rc], (
                        f"select placed {k} x {amounts} on {h}: {rc} usage {want_used} > "
                        f"capacity {after['capacity'][h][rc]}")

    @precondition(lambda self: len(self.rt) > 1)
    @rule(data=st.data())
    def remove_host(self, data: st.DataObject) -> None:
        hosts = self.hosts()
        if len(hosts) <= 1:
            return
        h = data.draw(st.sampled_from(hosts), label="host")
        holders = [c for c in self.rt.consumers() if h in self.rt.allocations(c)]
        got, before, after = self.both("remove_host", lambda t: t.remove_host(h))
        if holders:
            assert got == ("ClaimConflict",), got
            return
        assert got[0] == "ok", got
        assert after["hosts"] == [x for x in before["hosts"] if x != h]
        for x in after["hosts"]:
            assert after["usage"][x] == before["usage"][x]
            assert after["generation"][x] == before["generation"][x]
        assert after["consumers"] == before["consumers"]

    # ------------------------------------------------------------------ invariants

    @invariant()
    def usage_is_the_sum_of_allocations(self) -> None:
        if not hasattr(self, "rust"):
            return
        t = self.rt
        total = {h: {rc: 0 for rc in RCS} for h in t.host_names()}
        for c in t.consumers():
            alloc = t.allocations(c)
            assert alloc, f"consumer {c!r} is listed but holds nothing"
            for h, amounts in alloc.items():
                assert amounts, f"consumer {c!r} holds an empty allocation on {h!r}"
                for rc, a in amounts.items():
                    assert a >= 1
                    total[h][rc] += a
        for h in t.host_names():
            assert t.usage(h) == total[h], (h, t.usage(h), total[h])

    @invariant()
    def columns_agree_with_reads(self) -> None:
        if not hasattr(self, "rust"):
            return
        t = self.rt
        hosts = t.host_names()
        assert list(t.column("generation")) == [t.generation(h) for h in hosts]
        for rc in RCS:
            p = RC_COLUMN[rc]
            assert list(t.column(f"{p}_used")) == [t.usage(h)[rc] for h in hosts]
            assert list(t.column(f"{p}_capacity")) == [t.capacity(h)[rc] for h in hosts]
            assert list(t.column(f"{p}_total")) == [t.inventory(h, rc).total for h in hosts]
            assert np.array_equal(t.column(f"{p}_allocation_ratio"),
                                  [t.inventory(h, rc).allocation_ratio for h in hosts])

    @invariant()
    def rust_equals_reference(self) -> None:
        if not hasattr(self, "rust"):
            return
        assert comparable(self.rt) == comparable(self.ot)


ClaimsMachine.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)
TestClaims = ClaimsMachine.TestCase
