"""Server group policies and what enforces each in the scheduler, as Nova's
scheduler/utils.py _get_group_details checks it: a group whose policy's filter
(hard policies) or weigher (soft ones) is not enabled cannot be honoured, so a
server is not placed in it at all (Nova's UnsupportedPolicyException)."""

from __future__ import annotations

from typing import Sequence

# policy -> (the scheduler option that must name it, the filter or weigher)
ENFORCED_BY: dict[str, tuple[str, str]] = {
    "affinity": ("enabled_filters", "ServerGroupAffinityFilter"),
    "anti-affinity": ("enabled_filters", "ServerGroupAntiAffinityFilter"),
    "soft-affinity": ("weight_classes", "ServerGroupSoftAffinityWeigher"),
    "soft-anti-affinity": ("weight_classes", "ServerGroupSoftAntiAffinityWeigher"),
}


def unsupported_policy(policy: str, enabled_filters: Sequence[str],
                       weight_classes: Sequence[str]) -> str | None:
    """Why a scheduler with these filters and weighers cannot honour ``policy``;
    None when it can."""
    option, enforcer = ENFORCED_BY.get(policy, ("", ""))
    enabled = enabled_filters if option == "enabled_filters" else weight_classes
    if not option or enforcer in enabled:
        return None
    return (f"server group policy {policy!r} is not supported here: {enforcer} is not in "
            f"the scheduler's {option}")
