"""The lifecycle of a server: which action is allowed in which state, the task it
runs as, and the state it leaves the server in. The one table every layer reads:
the API refuses what it does not allow (Nova's @check_instance_state), the conductor
commits the final state, the compute agent runs the hypervisor's part, the servicers
and the CLI expose one RPC per action.

A new action is a row here, its hypervisor call in the compute manager
(ComputeManager.HYPERVISOR_CALLS), its RPC in servers.proto and its test: the
servicer, the policy, the CLI, the REST API (by the row's Nova action key), the
conductor and the compute agent's RunAction serve every row without a change.
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
    # the vm_state once the hypervisor has done it
    final_vm_state: str
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


# Nova's task_states.ALLOW_REBOOT: a hard reboot may take over from a soft reboot
# that hangs (a guest ignoring ACPI) or from a pause, unpause, suspend or resume in
# flight; the action it takes over from then leaves the final state to it.
_ALLOW_REBOOT: frozenset[str | None] = frozenset({
    None, TaskState.REBOOTING, TaskState.REBOOTING_HARD, TaskState.RESUMING,
    TaskState.UNPAUSING, TaskState.PAUSING, TaskState.SUSPENDING})

# Nova's compute/api.py @check_instance_state of each action, its task state and
# the vm_state its compute manager leaves.
ACTIONS: Mapping[str, ServerAction] = {
    "reboot_soft": ServerAction(
        frozenset({VmState.ACTIVE}), TaskState.REBOOTING, "reboot", VmState.ACTIVE,
        "RebootServer", "compute_reboot_instance", rest_action="reboot"),
    "reboot_hard": ServerAction(
        frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED, VmState.SUSPENDED,
                   VmState.ERROR}), TaskState.REBOOTING_HARD, "reboot", VmState.ACTIVE,
        "RebootServer", "compute_reboot_instance", _ALLOW_REBOOT, rest_action="reboot"),
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
}

# The actions whose RPC takes nothing but the server's id (every one but reboot,
# whose request says which of the two reboots): the servicers and the CLI serve
# these from the table alone.
PLAIN_ACTIONS: Mapping[str, ServerAction] = {
    name: a for name, a in ACTIONS.items() if not name.startswith("reboot_")}


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
