"""Which flavor extra specs novalite honours, and a refusal for those it does not.

Nova refuses what it cannot honour: a flavor asking for NUMA cells, pinned CPUs or a
PCI device must not land on a host that only has the cores and RAM in total. The
scheduler here implements the placement part of Nova (resources of the standard
classes, traits, aggregates, capabilities) but not NUMATopologyFilter,
PciPassthroughFilter, granular request groups or the libvirt driver's tuning knobs, so
a flavor naming any of those is refused when it is created (or its specs set) and
when a server is created from it.

Keys outside Nova's scopes (no ``:``, or a scope Nova does not know) stay allowed, as
in Nova: the aggregate and capabilities filters match the unscoped ones, and other
scopes are ignored by every filter there too.
"""

from __future__ import annotations

import re
from typing import Mapping

from novalite.objects.records import RESOURCE_CLASSES


# Scopes with meaning in Nova that novalite does not implement: what each asks for.
_UNSUPPORTED_SCOPES = {
    "hw": "guest hardware and NUMA/CPU pinning (NUMATopologyFilter, the libvirt driver)",
    "hw_rng": "a random number generator device",
    "hw_video": "video device settings",
    "pci_passthrough": "PCI passthrough (PciPassthroughFilter)",
    "accel": "accelerator devices (Cyborg)",
    "quota": "per-guest CPU, disk and network tuning",
    "os": "guest OS options",
    "vmware": "the VMware driver's options",
    "powervm": "the PowerVM driver's options",
    "hyperv": "the Hyper-V driver's options",
    "vfio_user": "vfio-user devices",
}
# Keys of those scopes that are honoured all the same.
_SUPPORTED_KEYS = frozenset({
    "hw:maxphysaddr_bits",   # ComputeCapabilitiesFilter reads it (capabilities:cpu_info:maxphysaddr:bits)
})
# resources1:VCPU, trait_gpu:..., group_policy: Nova's granular request groups.
_GRANULAR = re.compile(r"^(resources|trait)([0-9]+|_[A-Za-z0-9_-]+):")


def unsupported(key: str, value: str) -> str | None:
    """Why novalite cannot honour this extra spec, or None when it can (or when the
    key means nothing to any filter, as in Nova)."""
    if key in _SUPPORTED_KEYS or (key == "hw:cpu_policy" and value == "shared"):  # the default
        return None
    if _GRANULAR.match(key) or key == "group_policy":
        return "granular resource request groups are not implemented"
    if key.startswith("resources:"):
        rc = key[len("resources:"):]
        if rc not in RESOURCE_CLASSES and value.strip() != "0":
            return (f"resource class {rc!r} is not modelled (hosts have "
                    f"{', '.join(RESOURCE_CLASSES)})")
        return None
    scope, sep, _ = key.partition(":")
    if sep and scope in _UNSUPPORTED_SCOPES:
        return f"novalite does not implement {_UNSUPPORTED_SCOPES[scope]}"
    return None


def first_unsupported(specs: Mapping[str, str]) -> tuple[str, str] | None:
    """The first (by key) extra spec novalite cannot honour, and why; None if none."""
    for key in sorted(specs):
        why = unsupported(key, specs[key])
        if why is not None:
            return key, why
    return None
