"""Scheduler options, with Nova's names and defaults.

Options of ``[filter_scheduler]``, ``[scheduler]`` and ``[metrics]`` keep the name they
have in nova.conf (``metrics_*`` for the ``[metrics]`` group, ``default_availability_zone``
from ``[DEFAULT]``), so an operator's existing values carry over unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

from novalite.objects.fields import canonicalize_arch
from novalite.options import option

# Every filter the core implements, by Nova's class name. The order here is only the
# registry's; the order that counts is ``enabled_filters``.
AVAILABLE_FILTERS: tuple[str, ...] = (
    "AllHostsFilter",
    "ComputeFilter",
    "ComputeCapabilitiesFilter",
    "ImagePropertiesFilter",
    "ServerGroupAntiAffinityFilter",
    "ServerGroupAffinityFilter",
    "SameHostFilter",
    "DifferentHostFilter",
    "AggregateInstanceExtraSpecsFilter",
    "AggregateMultiTenancyIsolation",
    "AggregateTypeAffinityFilter",
    "AggregateImagePropertiesIsolation",
    "IsolatedHostsFilter",
    "IoOpsFilter",
    "AggregateIoOpsFilter",
    "NumInstancesFilter",
    "AggregateNumInstancesFilter",
    "MetricsFilter",
)

# All 13 weighers of Nova 34, in the order their scores are summed.
ALL_WEIGHERS: tuple[str, ...] = (
    "RAMWeigher",
    "CPUWeigher",
    "DiskWeigher",
    "IoOpsWeigher",
    "NumInstancesWeigher",
    "HypervisorVersionWeigher",
    "BuildFailureWeigher",
    "CrossCellWeigher",
    "PCIWeigher",
    "ServerGroupSoftAffinityWeigher",
    "ServerGroupSoftAntiAffinityWeigher",
    "MetricsWeigher",
    "ImagePropertiesWeigher",
)

DEFAULT_FILTERS: tuple[str, ...] = (
    "ComputeFilter",
    "ComputeCapabilitiesFilter",
    "ImagePropertiesFilter",
    "ServerGroupAntiAffinityFilter",
    "ServerGroupAffinityFilter",
)


class ConfigError(ValueError):
    """A scheduler option has a value Nova would refuse. ``option`` names it (the
    settings report it as ``scheduler.<option>``), ``message`` says why."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.option, self.message))


@dataclass(frozen=True)
class SchedulerConfig:
    # [filter_scheduler]
    enabled_filters: Sequence[str] = option(DEFAULT_FILTERS, help=(
        "the filters every host must pass, in the order they run (Nova's enabled_filters)"))
    weight_classes: Sequence[str] = option(ALL_WEIGHERS, help=(
        "the weighers that rank the hosts that passed (Nova's weight_classes)"))
    host_subset_size: int = option(1, help=(
        "pick at random among this many best hosts (Nova's host_subset_size)"))
    shuffle_best_same_weighed_hosts: bool = option(False, help=(
        "shuffle hosts of equal best weight (Nova's)"))
    max_io_ops_per_host: int = option(8, help=(
        "IoOpsFilter: most builds, resizes, snapshots... at once on a host (Nova's)"))
    max_instances_per_host: int = option(50, help="NumInstancesFilter: most servers on a host (Nova's)")
    ram_weight_multiplier: float = option(1.0, help="RAMWeigher: > 0 spreads by free RAM, < 0 stacks")
    cpu_weight_multiplier: float = option(1.0, help="CPUWeigher: > 0 spreads by free vCPUs, < 0 stacks")
    disk_weight_multiplier: float = option(1.0, help="DiskWeigher: > 0 spreads by free disk, < 0 stacks")
    io_ops_weight_multiplier: float = option(-1.0, help="IoOpsWeigher: < 0 prefers the least busy hosts")
    num_instances_weight_multiplier: float = option(0.0, help=(
        "NumInstancesWeigher: > 0 prefers hosts with more servers, < 0 fewer"))
    hypervisor_version_weight_multiplier: float = option(1.0, help=(
        "HypervisorVersionWeigher: > 0 prefers newer hypervisors"))
    build_failure_weight_multiplier: float = option(1000000.0, help=(
        "BuildFailureWeigher: how much recent failed builds push a host down"))
    cross_cell_move_weight_multiplier: float = option(1000000.0, help=(
        "CrossCellWeigher: preference for the server's own cell when moving"))
    pci_weight_multiplier: float = option(1.0, help="PCIWeigher: keeps PCI hosts for PCI servers (>= 0)")
    soft_affinity_weight_multiplier: float = option(1.0, help=(
        "ServerGroupSoftAffinityWeigher: pull toward hosts of the group (>= 0)"))
    soft_anti_affinity_weight_multiplier: float = option(1.0, help=(
        "ServerGroupSoftAntiAffinityWeigher: push away from hosts of the group (>= 0)"))
    image_props_weight_multiplier: float = option(0.0, help=(
        "ImagePropertiesWeigher: > 0 prefers hosts running servers of similar images"))
    image_props_weight_setting: Mapping[str, float] = option(factory=dict, help=(
        "ImagePropertiesWeigher: property name = weight; empty: every shared property counts 1"))
    image_properties_default_architecture: str | None = option(None, help=(
        "ImagePropertiesFilter: the architecture of an image that names none"))
    isolated_images: Sequence[str] = option((), help="IsolatedHostsFilter: images that run only on isolated hosts")
    isolated_hosts: Sequence[str] = option((), help="IsolatedHostsFilter: hosts kept for isolated images")
    restrict_isolated_hosts_to_isolated_images: bool = option(True, help=(
        "IsolatedHostsFilter: isolated hosts run isolated images only"))
    aggregate_image_properties_isolation_namespace: str | None = option(None, help=(
        "AggregateImagePropertiesIsolation: only aggregate keys in this namespace count"))
    aggregate_image_properties_isolation_separator: str = option(".", help=(
        "AggregateImagePropertiesIsolation: the namespace's separator"))
    # [scheduler]
    max_attempts: int = option(3, help="hosts tried per server before it goes to ERROR (Nova's)")
    # [metrics]
    metrics_weight_setting: Mapping[str, float] = option(factory=dict, help=(
        "MetricsWeigher: metric name = weight"))
    metrics_weight_multiplier: float = option(1.0, help="MetricsWeigher's multiplier")
    metrics_required: bool = option(True, help=(
        "MetricsWeigher: a host without a metric is an error (else weighed as unavailable)"))
    metrics_weight_of_unavailable: float = option(-10000.0, help=(
        "MetricsWeigher: the weight of a host without the metric, when not required"))
    # [DEFAULT]
    default_availability_zone: str = option("nova", help=(
        "the zone of hosts in no zone aggregate (Nova's default_availability_zone)"))

    def __post_init__(self) -> None:
        unknown = [f for f in self.enabled_filters if f not in AVAILABLE_FILTERS]
        if unknown:
            raise ConfigError("enabled_filters", f"unknown filter {unknown[0]!r} "
                                                 f"(available: {', '.join(AVAILABLE_FILTERS)})")
        if len(set(self.enabled_filters)) != len(self.enabled_filters):
            raise ConfigError("enabled_filters", "a filter is listed twice")
        unknown = [w for w in self.weight_classes if w not in ALL_WEIGHERS]
        if unknown:
            raise ConfigError("weight_classes", f"unknown weigher {unknown[0]!r} "
                                                f"(available: {', '.join(ALL_WEIGHERS)})")
        if len(set(self.weight_classes)) != len(self.weight_classes):
            raise ConfigError("weight_classes", "a weigher is listed twice")
        for name in ("host_subset_size", "max_attempts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(name, f"must be an integer >= 1, got {value!r}")
        for name in ("max_io_ops_per_host", "max_instances_per_host"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(name, f"must be an integer >= 0, got {value!r}")
        for f in fields(self):
            if f.name.endswith("_multiplier") or f.name == "metrics_weight_of_unavailable":
                _check_finite(f.name, getattr(self, f.name))
        for name in ("pci_weight_multiplier", "soft_affinity_weight_multiplier",
                     "soft_anti_affinity_weight_multiplier"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must be >= 0 (Nova's min=0), got {getattr(self, name)!r}")
        for setting in ("image_props_weight_setting", "metrics_weight_setting"):
            for key, value in getattr(self, setting).items():
                if not isinstance(key, str) or not key:
                    raise ConfigError(setting, "names must be non-empty strings")
                _check_finite(setting, value, f"[{key}]")
        arch = self.image_properties_default_architecture
        if arch is not None and canonicalize_arch(arch) is None:
            raise ConfigError("image_properties_default_architecture", f"unknown architecture {arch!r}")
        if not self.default_availability_zone:
            raise ConfigError("default_availability_zone", "must not be empty")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> "SchedulerConfig":
        """Build from a dict of option name -> value (as read from a file or flags);
        an unknown option is an error rather than silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(unknown[0], "unknown scheduler option")
        return cls(**dict(options))


def _check_finite(name: str, value: object, item: str = "") -> None:
    """``item``: which entry of a mapping option, e.g. "[ram]"."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(name, f"{item and item + ' '}must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(name, f"{item and item + ' '}must be finite, got {value!r}")
