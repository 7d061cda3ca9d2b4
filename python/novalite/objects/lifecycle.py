"""The lifecycle of a server: which action is allowed in which state, the task it
runs as, and the state it leaves the server in. The one table every layer reads:
the API refuses what it does not allow (Nova's @check_instance_state), the conductor
commits the final state, the compute agent runs the hypervisor's part, the servicers
and the CLI expose one RPC per action.

A new action is a row here, its hypervisor call in the compute manager
(ComputeManager.HYPERVISOR_CALLS), its RPC in servers.proto and its test: the
servicer, the policy, the CLI, the REST API (by the row's Nova action key), the
conductor and the compute agent's RunAction serve every row without a change.

The moves (resize, migrations, evacuation, rebuild, shelve...) are rows too, run by
the conductor step by step instead of by one hypervisor call (``runs_on``
"conductor": conductor/moves.py has one task per row); those whose RPC takes more
than the server's id (a flavor, a host, an image) have their own handlers.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

from novalite.objects.states import TaskState, VmState


class ServerAction(NamedTuple):
    """One lifecycle action. As a tuple: (allowed_vm_states, task_state, log_name, ...)."""

    # the vm_states it may start from (the task_state must be one of start_tasks)
    allowed_vm_states: frozenset[str]
    # the task_state the API sets while it runs
    task_state: str
    # what Nova's action log (os-instance-actions) calls it
    log_name: str
    # the vm_state once the hypervisor has done it; None where the move decides it
    # (a revert restores the vm_state before the resize, a confirm or an
    # evacuation leaves a stopped server stopped...)
    final_vm_state: str | None
    # the public RPC (servers.proto) that asks for it
    rpc: str
    # the compute step's event in the action log (Nova's wrap_instance_event names it
    # after the compute manager's method)
    event: str
    # the task_states it may start in: None (no task) but for a hard reboot
    start_tasks: frozenset[str | None] = frozenset({None})
    # whether only admins may ask for it (auth/policy.py reads this); else members
    admin_only: bool = False
    # Nova's REST action (POST /servers/{id}/action {"os-stop": null}); the two
    # reboots share "reboot", whose body's type picks one
    rest_action: str = ""
    # "compute": one hypervisor call on the server's host (the agent's RunAction);
    # "conductor": a move the conductor drives step by step (conductor/moves.py)
    runs_on: str = "compute"
    # whether its RPC takes more than the server's id (its own servicer handler)
    has_arguments: bool = False
    # whether a locked server refuses it to all but admins (Nova's
    # @check_instance_lock; evacuation, an admin's rescue of a dead host's
    # servers, does not look)
    checks_lock: bool = True


# Nova's task_states.ALLOW_REBOOT: a hard reboot may take over from a soft reboot
# that hangs (a guest ignoring ACPI) or from a pause, unpause, suspend or resume in
# flight; the action it takes over from then leaves the final state to it.
_ALLOW_REBOOT: frozenset[str | None] = frozenset({
    None, TaskState.REBOOTING, TaskState.REBOOTING_HARD, TaskState.RESUMING,
    TaskState.UNPAUSING, TaskState.PAUSING, TaskState.SUSPENDING})
_RUNNING_OR_STOPPED = frozenset({VmState.ACTIVE, VmState.STOPPED})
_REBUILDABLE = frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.ERROR})

# Nova's compute/api.py @check_instance_state of each action, its task state and
# the vm_state its compute manager leaves.
ACTIONS: Mapping[str, ServerAction] = {
    "reboot_soft": ServerAction(
        frozenset({VmState.ACTIVE}), TaskState.REBOOTING, "reboot", VmState.ACTIVE,
        "RebootServer", "compute_reboot_instance", has_arguments=True,
        rest_action="reboot"),
    "reboot_hard": ServerAction(
        frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED, VmState.SUSPENDED,
                   VmState.ERROR}), TaskState.REBOOTING_HARD, "reboot", VmState.ACTIVE,
        "RebootServer", "compute_reboot_instance", _ALLOW_REBOOT, has_arguments=True,
        rest_action="reboot"),
    "stop": ServerAction(
        frozenset({VmState.ACTIVE, VmState.ERROR}), TaskState.POWERING_OFF, "stop",
        VmState.STOPPED, "StopServer", "compute_stop_instance",
        rest_action="os-stop"),
    "start": ServerAction(
        frozenset({VmState.STOPPED}), TaskState.POWERING_ON, "start", VmState.ACTIVE,
        "StartServer", "compute_start_instance",
        rest_action="os-start"),
    "pause": ServerAction(
        frozenset({VmState.ACTIVE}), TaskState.PAUSING, "pause", VmState.PAUSED,
        "PauseServer", "compute_pause_instance",
        rest_action="pause"),
    "unpause": ServerAction(
        frozenset({VmState.PAUSED}), TaskState.UNPAUSING, "unpause", VmState.ACTIVE,
        "UnpauseServer", "compute_unpause_instance",
        rest_action="unpause"),
    "suspend": ServerAction(
        frozenset({VmState.ACTIVE}), TaskState.SUSPENDING, "suspend", VmState.SUSPENDED,
        "SuspendServer", "compute_suspend_instance",
        rest_action="suspend"),
    "resume": ServerAction(
        frozenset({VmState.SUSPENDED}), TaskState.RESUMING, "resume", VmState.ACTIVE,
        "ResumeServer", "compute_resume_instance",
        rest_action="resume"),
    # the server's own image boots as a fresh rescue disk, its disk beside it
    "rescue": ServerAction(
        frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.ERROR}), TaskState.RESCUING,
        "rescue", VmState.RESCUED, "RescueServer", "compute_rescue_instance",
        rest_action="rescue"),
    "unrescue": ServerAction(
        frozenset({VmState.RESCUED}), TaskState.UNRESCUING, "unrescue", VmState.ACTIVE,
        "UnrescueServer", "compute_unrescue_instance",
        rest_action="unrescue"),
    # ---- moves (run by the conductor) ----
    # to another flavor, on another host (the same one where allowed); then
    # VERIFY_RESIZE until confirmed or reverted
    "resize": ServerAction(
        _RUNNING_OR_STOPPED, TaskState.RESIZE_PREP, "resize", VmState.RESIZED,
        "ResizeServer", "conductor_migrate_server", runs_on="conductor", has_arguments=True,
        rest_action="resize"),
    # a cold migration: a resize to the same flavor, on a host the scheduler (or
    # the admin) picks
    "migrate": ServerAction(
        _RUNNING_OR_STOPPED, TaskState.RESIZE_PREP, "migrate", VmState.RESIZED,
        "MigrateServer", "conductor_migrate_server", admin_only=True, runs_on="conductor",
        has_arguments=True, rest_action="migrate"),
    # the old host's copy and allocation freed; ACTIVE, or STOPPED if it was off
    "confirm_resize": ServerAction(
        frozenset({VmState.RESIZED}), TaskState.RESIZE_CONFIRMING, "confirmResize", None,
        "ConfirmResize", "compute_confirm_resize", runs_on="conductor",
        rest_action="confirmResize"),
    # back on the old host as it was; the new host's copy and allocation freed
    "revert_resize": ServerAction(
        frozenset({VmState.RESIZED}), TaskState.RESIZE_REVERTING, "revertResize", None,
        "RevertResize", "compute_revert_resize", runs_on="conductor",
        rest_action="revertResize"),
    # the running (or paused) guest moved to another host; its vm_state unchanged
    "live_migrate": ServerAction(
        frozenset({VmState.ACTIVE, VmState.PAUSED}), TaskState.MIGRATING, "live-migration",
        None, "LiveMigrateServer", "conductor_live_migrate_instance", admin_only=True,
        runs_on="conductor", has_arguments=True, rest_action="os-migrateLive"),
    # off a host that is down, rebuilt from its image elsewhere (stopped ones stay
    # stopped, as Nova's microversion 2.95)
    "evacuate": ServerAction(
        _REBUILDABLE, TaskState.REBUILDING, "evacuate", None, "EvacuateServer",
        "compute_rebuild_instance", admin_only=True, runs_on="conductor",
        has_arguments=True, checks_lock=False, rest_action="evacuate"),
    # the same host, a fresh disk from an image (another one, or the same)
    "rebuild": ServerAction(
        _REBUILDABLE, TaskState.REBUILDING, "rebuild", None, "RebuildServer",
        "compute_rebuild_instance", runs_on="conductor", has_arguments=True,
        rest_action="rebuild"),
    # powered off and its disk kept; offloaded at once (shelved_offload_time 0,
    # Nova's default): no host, nothing held
    "shelve": ServerAction(
        frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED, VmState.SUSPENDED}),
        TaskState.SHELVING, "shelve", None, "ShelveServer", "compute_shelve_instance",
        runs_on="conductor", rest_action="shelve"),
    "shelve_offload": ServerAction(
        frozenset({VmState.SHELVED}), TaskState.SHELVING_OFFLOADING, "shelveOffload",
        VmState.SHELVED_OFFLOADED, "ShelveOffloadServer", "compute_shelve_offload_instance",
        admin_only=True, runs_on="conductor", rest_action="shelveOffload"),
    # started again: on its host when shelved, placed afresh when offloaded (only
    # an admin may name the host)
    "unshelve": ServerAction(
        frozenset({VmState.SHELVED, VmState.SHELVED_OFFLOADED}), TaskState.UNSHELVING,
        "unshelve", VmState.ACTIVE, "UnshelveServer", "compute_unshelve_instance",
        runs_on="conductor", has_arguments=True, rest_action="unshelve"),
}

# The actions whose RPC takes nothing but the server's id: the servicers and the
# CLI serve these from the table alone.
PLAIN_ACTIONS: Mapping[str, ServerAction] = {
    name: a for name, a in ACTIONS.items() if not a.has_arguments}
# The actions the compute agent carries out in one hypervisor call (RunAction).
HYPERVISOR_ACTIONS: Mapping[str, ServerAction] = {
    name: a for name, a in ACTIONS.items() if a.runs_on == "compute"}
# The moves, which the conductor drives.
MOVES: Mapping[str, ServerAction] = {
    name: a for name, a in ACTIONS.items() if a.runs_on == "conductor"}


class SystemMetadata:
    """The keys of what the control plane keeps in a server's system_metadata
    between the steps of its actions (Nova's names where Nova has them)."""

    LOCKED_REASON = "locked_reason"
    # a shelved server: when, on which host, and the image of its disk's snapshot
    SHELVED_AT = "shelved_at"
    SHELVED_HOST = "shelved_host"
    SHELVED_IMAGE_ID = "shelved_image_id"
    # a rebuild's image before it (back if the new one does not pass the filters)
    ORIG_IMAGE_REF = "rebuild_orig_image_ref"
    # the host an admin asked an unshelve to go to
    UNSHELVE_HOST = "unshelve_host"
    # where a move's source set the guest aside (its destination copies from there)
    MOVE_SOURCE = "move_source"


def by_rest_action() -> dict[str, list[str]]:
    """Nova's REST action keys, each with the names of its rows ("reboot": both)."""
    out: dict[str, list[str]] = {}
    for name, a in ACTIONS.items():
        if a.rest_action:
            out.setdefault(a.rest_action, []).append(name)
    return out


def allows(action: str, vm_state: str, task_state: str | None) -> bool:
    """Whether ``action`` may start on a server in (vm_state, task_state)."""
    a = ACTIONS[action]
    return vm_state in a.allowed_vm_states and task_state in a.start_tasks
