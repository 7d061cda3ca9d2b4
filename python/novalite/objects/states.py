"""Nova's instance states and the API status derived from them.

Values are Nova's own (compute/vm_states.py, task_states.py, power_state.py); the
status table follows nova/api/openstack/common.py:_STATE_MAP for the states this
project implements. Which action is allowed in which state is in lifecycle.py.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final


class VmState:
    BUILDING: Final = "building"
    ACTIVE: Final = "active"
    STOPPED: Final = "stopped"
    PAUSED: Final = "paused"
    SUSPENDED: Final = "suspended"
    ERROR: Final = "error"
    DELETED: Final = "deleted"
    RESCUED: Final = "rescued"

    ALL: Final = frozenset({BUILDING, ACTIVE, STOPPED, PAUSED, SUSPENDED, ERROR, DELETED,
                            RESCUED})


class TaskState:
    SCHEDULING: Final = "scheduling"
    NETWORKING: Final = "networking"
    BLOCK_DEVICE_MAPPING: Final = "block_device_mapping"
    SPAWNING: Final = "spawning"
    DELETING: Final = "deleting"
    REBOOTING: Final = "rebooting"
    REBOOTING_HARD: Final = "rebooting_hard"
    POWERING_OFF: Final = "powering_off"
    POWERING_ON: Final = "powering_on"
    PAUSING: Final = "pausing"
    UNPAUSING: Final = "unpausing"
    SUSPENDING: Final = "suspending"
    RESUMING: Final = "resuming"
    RESCUING: Final = "rescuing"
    UNRESCUING: Final = "unrescuing"

    ALL: Final = frozenset({
        SCHEDULING, NETWORKING, BLOCK_DEVICE_MAPPING, SPAWNING, DELETING, REBOOTING,
        REBOOTING_HARD, POWERING_OFF, POWERING_ON, PAUSING, UNPAUSING, SUSPENDING,
        RESUMING, RESCUING, UNRESCUING,
    })


class PowerState(IntEnum):
    """Nova's power_state values (nova/compute/power_state.py): what the hypervisor
    says of a guest, stored as the integer."""

    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7

    @classmethod
    def is_known(cls, value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value in cls._value2member_map_

    @classmethod
    def name_of(cls, value: int) -> str:
        """The name of a power state value, or the value itself if it is none."""
        try:
            return cls(value).name
        except ValueError:
            return str(value)


# vm_state -> (status by default, {task_state: status that overrides it}).
_STATE_MAP: Final[dict[str, tuple[str, dict[str, str]]]] = {
    VmState.BUILDING: ("BUILD", {}),
    VmState.ACTIVE: ("ACTIVE", {TaskState.REBOOTING: "REBOOT",
                                TaskState.REBOOTING_HARD: "HARD_REBOOT"}),
    VmState.STOPPED: ("SHUTOFF", {}),
    VmState.PAUSED: ("PAUSED", {}),
    VmState.SUSPENDED: ("SUSPENDED", {}),
    VmState.ERROR: ("ERROR", {}),
    VmState.DELETED: ("DELETED", {}),
    VmState.RESCUED: ("RESCUE", {}),
}

STATUSES: Final = frozenset(
    {default for default, _ in _STATE_MAP.values()}
    | {status for _, overrides in _STATE_MAP.values() for status in overrides.values()})


def api_status(vm_state: str, task_state: str | None) -> str:
    """The API status of an instance, e.g. ("active", "rebooting") -> "REBOOT"."""
    default, overrides = _STATE_MAP.get(vm_state, ("UNKNOWN", {}))
    if task_state is not None and task_state in overrides:
        return overrides[task_state]
    return default


def states_with_status(status: str) -> list[tuple[str, frozenset[str], bool]]:
    """What ``status`` means in (vm_state, task_state) terms, for a status filter.

    Returns [(vm_state, task_states, include)]: with include=True the status holds
    when task_state is one of task_states; with include=False it holds when
    task_state is None or not one of task_states (the vm_state's default).
    """
    out: list[tuple[str, frozenset[str], bool]] = []
    for vm_state, (default, overrides) in _STATE_MAP.items():
        if default == status:
            out.append((vm_state, frozenset(overrides), False))
        matching = frozenset(t for t, s in overrides.items() if s == status)
        if matching:
            out.append((vm_state, matching, True))
    return out
