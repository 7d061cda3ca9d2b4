"""Everything a caller can read back from a Rust-backed HostTable, in a form that ==
compares (used to prove that a refused call changed nothing)."""

from __future__ import annotations

import math
from typing import Any

from novalite import placement as core
from novalite.placement import model


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "nan"  # NaN != NaN; two NaNs in the same cell are the same state
    return value


def snapshot(t: core.HostTable) -> dict[str, Any]:
    hosts = t.host_names()
    return {
        "hosts": hosts,
        "len": len(t),
        "usage": {h: t.usage(h) for h in hosts},
        "capacity": {h: t.capacity(h) for h in hosts},
        "generation": {h: t.generation(h) for h in hosts},
        "inventory": {h: {rc: t.inventory(h, rc) for rc in model.RESOURCE_CLASSES} for h in hosts},
        "consumers": {c: t.allocations(c) for c in t.consumers()},
        "instances": {h: sorted(t.instances_on(h)) for h in hosts},
        "aggregates": {h: sorted(t.host_aggregates(h)) for h in hosts},
        "zones": {h: t.availability_zone(h) for h in hosts},
        "columns": {c: [_plain(v) for v in t.column(c).tolist()] for c in core.COLUMNS},
    }
