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
    # running from a rescue disk, its own disk beside it
    RESCUED: Final = "rescued"
    # a resize or cold migration waiting for its confirm or revert
    RESIZED: Final = "resized"
    # powered off, its disk kept; offloaded: no host any more, nothing held
    SHELVED: Final = "shelved"
    SHELVED_OFFLOADED: Final = "shelved_offloaded"

    ALL: Final = frozenset({BUILDING, ACTIVE, STOPPED, PAUSED, SUSPENDED, ERROR, DELETED,
                            RESIZED, SHELVED, SHELVED_OFFLOADED, RESCUED})


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
    # the moves (Nova's task_states.resizing_states and the rest)
    RESIZE_PREP: Final = "resize_prep"
    RESIZE_MIGRATING: Final = "resize_migrating"
    RESIZE_MIGRATED: Final = "resize_migrated"
    RESIZE_FINISH: Final = "resize_finish"
    RESIZE_REVERTING: Final = "resize_reverting"
    RESIZE_CONFIRMING: Final = "resize_confirming"
    MIGRATING: Final = "migrating"
    REBUILDING: Final = "rebuilding"
    REBUILD_SPAWNING: Final = "rebuild_spawning"
    SHELVING: Final = "shelving"
    SHELVING_OFFLOADING: Final = "shelving_offloading"
    UNSHELVING: Final = "unshelving"
    RESCUING: Final = "rescuing"
    UNRESCUING: Final = "unrescuing"

    ALL: Final = frozenset({
        SCHEDULING, NETWORKING, BLOCK_DEVICE_MAPPING, SPAWNING, DELETING, REBOOTING,
        REBOOTING_HARD, POWERING_OFF, POWERING_ON, PAUSING, UNPAUSING, SUSPENDING,
        RESUMING, RESIZE_PREP, RESIZE_MIGRATING, RESIZE_MIGRATED, RESIZE_FINISH,
        RESIZE_REVERTING, RESIZE_CONFIRMING, MIGRATING, REBUILDING, REBUILD_SPAWNING,
        SHELVING, SHELVING_OFFLOADING, UNSHELVING, RESCUING, UNRESCUING,
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


_RESIZING = {t: "RESIZE" for t in (TaskState.RESIZE_PREP, TaskState.RESIZE_MIGRATING,
                                    TaskState.RESIZE_MIGRATED, TaskState.RESIZE_FINISH)}
_REBUILDING = {t: "REBUILD" for t in (TaskState.REBUILDING, TaskState.REBUILD_SPAWNING)}

# vm_state -> (status by default, {task_state: status that overrides it}).
_STATE_MAP: Final[dict[str, tuple[str, dict[str, str]]]] = {
    VmState.BUILDING: ("BUILD", {}),
    VmState.ACTIVE: ("ACTIVE", {TaskState.REBOOTING: "REBOOT",
                                TaskState.REBOOTING_HARD: "HARD_REBOOT",
                                TaskState.MIGRATING: "MIGRATING", **_RESIZING, **_REBUILDING}),
    VmState.STOPPED: ("SHUTOFF", {**_RESIZING, **_REBUILDING}),
    VmState.PAUSED: ("PAUSED", {TaskState.MIGRATING: "MIGRATING"}),
    VmState.SUSPENDED: ("SUSPENDED", {}),
    VmState.ERROR: ("ERROR", {**_REBUILDING}),
    VmState.DELETED: ("DELETED", {}),
    VmState.RESCUED: ("RESCUE", {}),
    VmState.RESIZED: ("VERIFY_RESIZE", {TaskState.RESIZE_REVERTING: "REVERT_RESIZE"}),
    VmState.SHELVED: ("SHELVED", {}),
    VmState.SHELVED_OFFLOADED: ("SHELVED_OFFLOADED", {}),
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
