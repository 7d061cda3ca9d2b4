"""Checked by mypy --strict in tests/test_typing.py (never run): how a benchmark
author uses novalite.placement and the compiled module, with the types they get."""

from __future__ import annotations

from typing import Any, assert_type

import numpy as np
import numpy.typing as npt

from novalite import _placement
from novalite.placement import (
    Flavor,
    HostTable,
    Inventory,
    Placement,
    RequestSpec,
    Scheduler,
    SchedulerConfig,
    Selection,
)


def facade() -> None:
    names = [f"h{i}" for i in range(4)]
    table = HostTable.from_columns(names, vcpu_total=np.full(4, 8, dtype=np.int64))
    sched = Scheduler(table, SchedulerConfig())
    spec = RequestSpec(flavor=Flavor("m1", 1, 512, 1), instance_uuids=["i-1"])
    assert_type(sched.weigh(spec), npt.NDArray[np.float64])
    assert_type(sched.select(spec, seed=1), Placement)
    assert_type(sched.select_destinations(spec), list[list[Selection]])
    assert_type(table.claim("c", {"h0": {"VCPU": 1}}), dict[str, int])
    assert_type(table.usage("h0"), dict[str, int])
    assert_type(table.allocations("c"), dict[str, dict[str, int]])
    assert_type(table.inventory("h0", "VCPU"), Inventory)
    assert_type(table.set_inventory("h0", "VCPU", Inventory(16)), int)
    assert_type(table.column("vcpu_used"), npt.NDArray[Any])


def core() -> None:
    table = _placement.HostTable()
    sched = _placement.Scheduler(table, SchedulerConfig())
    spec = RequestSpec(flavor=Flavor("m1", 1, 512, 1), instance_uuids=["i-1"])
    prepared = sched.prepare(spec)
    assert_type(prepared, _placement.PreparedRequest)
    assert_type(prepared.amounts, dict[str, int])
    assert_type(prepared.num_instances, int)
    assert_type(sched.weigh(prepared), npt.NDArray[np.float64])
    mask, rejections = sched.filter(prepared)
    assert_type(mask, npt.NDArray[np.bool_])
    assert_type(rejections, list[tuple[str, int]])
    amounts, counts, picks = sched.select(spec, False, 7, True)
    assert_type(amounts, dict[str, int])
    for uuid, hosts in picks:
        for row, host, host_uuid, weight, zone, cell in hosts:
            assert_type(row, int)
            assert_type(weight, float)
    assert_type(table.inventory_tuple("h0", "VCPU"), tuple[int, int, float, int, int, int])
    assert_type(len(table), int)
    assert_type(_placement.COLUMNS, list[str])
