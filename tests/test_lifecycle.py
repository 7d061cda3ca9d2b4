"""The lifecycle table is the one home of the server actions: every layer serves
each of its rows, so a new action needs its row, its hypervisor call, its RPC and
its test, nothing else. (What each action does is tested end to end in test_api,
test_compute and the QEMU tests.)"""

from __future__ import annotations

from novalite.api.servicer import ServersServicer
from novalite.auth import policy
from novalite.client.commands import CLI_ACTIONS
from novalite.compute.manager import ComputeManager
from novalite.conductor.moves import MoveTasks
from novalite.objects import lifecycle
from novalite.objects.states import TaskState, VmState
from novalite.rpc.novalite.compute.v1 import servers_pb2


def test_every_action_has_a_hypervisor_call_or_a_move_task() -> None:
    assert set(ComputeManager.HYPERVISOR_CALLS) == set(lifecycle.HYPERVISOR_ACTIONS)
    for name in lifecycle.MOVES:
        assert callable(getattr(MoveTasks, f"_{name}")), name
    assert set(lifecycle.HYPERVISOR_ACTIONS) | set(lifecycle.MOVES) == set(lifecycle.ACTIONS)


def test_every_action_is_an_rpc_of_the_public_api_with_a_policy() -> None:
    service = servers_pb2.DESCRIPTOR.services_by_name["Servers"]
    for name, row in lifecycle.ACTIONS.items():
        method = service.methods_by_name[row.rpc]
        assert method.output_type.name == "Server", name
        assert callable(getattr(ServersServicer, row.rpc)), name
        assert policy.allowed_roles(f"/novalite.compute.v1.Servers/{row.rpc}"), name
    for name, row in lifecycle.PLAIN_ACTIONS.items():
        request = service.methods_by_name[row.rpc].input_type
        assert [f.name for f in request.fields] == ["id"], name
        # the servicer's method is the one made for the row, not the base's UNIMPLEMENTED
        assert getattr(ServersServicer, row.rpc).__name__ == row.rpc


def test_the_cli_offers_every_action() -> None:
    assert set(CLI_ACTIONS) == {"reboot"} | set(lifecycle.PLAIN_ACTIONS)
    assert {n for n in lifecycle.ACTIONS if n.startswith("reboot_")} == {"reboot_soft", "reboot_hard"}


def test_the_table_is_novas() -> None:
    """Spot checks against Nova's compute/api.py (the whole table is checked state
    by state through the API in test_api)."""
    assert lifecycle.allows("stop", VmState.ERROR, None)
    assert not lifecycle.allows("start", VmState.ACTIVE, None)
    assert lifecycle.allows("reboot_hard", VmState.ACTIVE, TaskState.REBOOTING)
    assert not lifecycle.allows("reboot_soft", VmState.ACTIVE, TaskState.REBOOTING)
    assert lifecycle.ACTIONS["suspend"].final_vm_state == VmState.SUSPENDED
    assert lifecycle.ACTIONS["reboot_hard"].log_name == "reboot"
    assert lifecycle.allows("resize", VmState.STOPPED, None)
    assert not lifecycle.allows("live_migrate", VmState.STOPPED, None)
    assert lifecycle.allows("confirm_resize", VmState.RESIZED, None)
    assert lifecycle.allows("evacuate", VmState.ERROR, None)
    assert lifecycle.allows("unshelve", VmState.SHELVED_OFFLOADED, None)
    assert not lifecycle.ACTIONS["evacuate"].checks_lock  # Nova's evacuate: no lock check
