"""Real QEMU guests through the public gRPC API (issue 4, sections 2, 3, 4 and 5): a
cloud of separate processes (LocalCloud) whose only host is this machine, a compute
agent on `qemu:///system`; 64 MiB guests on a blank 64 MiB qcow2 image registered
through the API (the BIOS finds nothing to boot and waits, which is enough for every
lifecycle action).

What a user of the API sees, checked against what libvirt says (virsh) and what the
database holds (SQLite, and PostgreSQL when NOVALITE_TEST_POSTGRES_URL is set):
create to ACTIVE and into `virsh list`; every lifecycle action changing libvirt's
state and the API status together; actions refused in the wrong state
(FAILED_PRECONDITION, nothing changes) and a hard reboot taking over from a soft one
that hangs; the action log; delete removing the domain and its disk; the agent
killed with -9 and restarted (same servers, same usage, nothing twice); a guest
destroyed behind novalite's back stopped by the power sync; image properties
reaching ImagePropertiesFilter; `novalite image create`, `novalite server
create/stop/delete --wait` and `novalite up --hosts 0` from the command line.

tests/test_e2e_qemu.py runs the real host beside simulated ones (servers reach it
through img_hv_type=qemu); here it is the cloud's only host (LocalCloud(hosts=0)).

Never skipped silently: if libvirtd cannot be reached these tests FAIL and say to
run `sudo scripts/setup_libvirt.sh`. A developer without root may skip them
explicitly with NOVALITE_SKIP_QEMU=1 (CI never sets it).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
import pytest

from novalite.cloud import LocalCloud
from novalite.db.database import Database
from novalite.rpc.novalite.compute.v1 import (
    flavors_pb2,
    hosts_pb2,
    images_pb2,
    images_pb2_grpc,
    servers_pb2,
    states_pb2,
)
from novalite.virt import LibvirtDriver, domain_name, images

from helpers import BACKENDS, Api, cloud_env, run_cli
from helpers import cloud_database as _db
from helpers import code_of as _code
from helpers import postgres_database as _postgres_database
from qemu import libvirtd  # noqa: F401 - the fixture, for every test here
from qemu import GUEST_MB, URI, domid, domstate, skip_if_not_wanted, virsh

ROOT = Path(__file__).resolve().parent.parent
# the power sync runs every sync_power_state_interval seconds (1 here); a guest destroyed behind
# novalite's back must show as SHUTOFF within this many
SYNC_BOUND = 15.0

skip_if_not_wanted()


# ---- libvirt's view ---------------------------------------------------------------------

def managed_save(sid: str) -> bool:
    for line in virsh("dominfo", domain_name(sid)).splitlines():
        if line.startswith("Managed save:"):
            return line.split(":", 1)[1].strip() == "yes"
    raise AssertionError("virsh dominfo shows no 'Managed save' line")


def domains(*flags: str) -> set[str]:
    return set(virsh("list", "--name", *flags).split())


# ---- the cloud ------------------------------------------------------------------------

class QemuApi(Api):
    def __init__(self, cloud: LocalCloud, token: str) -> None:
        super().__init__(cloud, token)
        self.images = images_pb2_grpc.ImagesStub(self.channel)

    def get(self, sid: str) -> Any:
        return self.servers.GetServer(servers_pb2.GetServerRequest(id=sid))

    def settle(self, sid: str, timeout: float = 60.0) -> Any:
        """The server once no task is in flight."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.get(sid)
            if not s.task_state and s.status not in ("BUILD", "REBOOT", "HARD_REBOOT"):
                return s
            assert time.monotonic() < deadline, f"{sid} still {s.status}/{s.task_state}"
            time.sleep(0.05)

    def create(self, flavor_id: str, image_id: str, name: str = "guest") -> Any:
        s = self.servers.CreateServer(servers_pb2.CreateServerRequest(
            name=name, flavor_id=flavor_id, image_id=image_id)).servers[0]
        return self.settle(s.id)

    def delete(self, sid: str, timeout: float = 60.0) -> None:
        self.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=sid))
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.get(sid)
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND, e
                return
            assert time.monotonic() < deadline, f"{sid} not deleted"
            time.sleep(0.05)

    def actions(self, sid: str) -> list[Any]:
        """The action log, oldest first."""
        reply = self.servers.ListServerActions(servers_pb2.ListServerActionsRequest(id=sid))
        return list(reversed(reply.actions))


def _cleanup_guests(cloud: LocalCloud) -> None:
    """Destroys every guest of this cloud's servers (whatever a failed test left)."""
    db = _db(cloud)
    try:
        ids = {i.id for i in db.list_instances(include_deleted=True, limit=10_000).instances}
    finally:
        db.close()
    with LibvirtDriver(URI, instances_path=cloud.data_dir / "instances") as drv:
        for iid in ids & set(drv.list_instances()):
            drv.destroy(iid)


@pytest.fixture(scope="module", params=BACKENDS)
def cloud(request: Any, libvirtd: None,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    # no simulated host (hosts=0): this machine is the only one; a 1 s report
    # interval so the power sync and heartbeats are quick; soft reboots of a guest
    # without an OS fall back to hard after 1 s
    url = _postgres_database() if request.param == "postgresql" else None
    c = LocalCloud(tmp_path_factory.mktemp(f"qemu-only-{request.param}"), hosts=0,
                   real_host=True, database_url=url, report_interval=1,
                   sync_power_state_interval=1, update_resources_interval=1,
                   wait_soft_reboot_seconds=1.0)
    with c:
        try:
            yield c
        finally:
            _cleanup_guests(c)


@pytest.fixture(scope="module")
def admin(cloud: LocalCloud) -> QemuApi:
    return QemuApi(cloud, cloud.admin_token())


@pytest.fixture(scope="module")
def host(admin: QemuApi) -> Any:
    hosts = admin.hosts.ListHosts(hosts_pb2.ListHostsRequest()).hosts
    assert len(hosts) == 1, [h.name for h in hosts]
    return hosts[0]


@pytest.fixture(scope="module")
def image(cloud: LocalCloud, admin: QemuApi) -> Any:
    info = images.create_blank_image(cloud.data_dir / "images" / "tiny.qcow2", GUEST_MB)
    return admin.images.CreateImage(images_pb2.CreateImageRequest(
        name="tiny", path=info.path, disk_format="qcow2",
        properties={"hw_architecture": "x86_64"}))


@pytest.fixture(scope="module")
def flavor(admin: QemuApi) -> Any:
    return admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
        name="qemu.tiny", vcpus=1, memory_mb=GUEST_MB, root_gb=1))


def _usage(db: Database, name: str) -> tuple[dict[str, int], tuple[int, int, int, int]]:
    """A host's usage in the database: its allocations per resource class and the
    compute agent's view (vcpus_used, free_ram_mb, free_disk_mb, num_instances)."""
    h = db.get_host(name)
    return ({rc: n for rc, n in h.usage.items() if n},
            (h.vcpus_used, h.free_ram_mb, h.free_disk_mb, h.num_instances))


def _usage_once(db: Database, name: str, done: Callable[[Any], bool],
                timeout: float = 10.0) -> tuple[dict[str, int], tuple[int, int, int, int]]:
    """_usage once ``done(usage)`` holds: the agent writes its view shortly after a
    build (the allocations are written before it)."""
    deadline = time.monotonic() + timeout
    while not done(got := _usage(db, name)):
        assert time.monotonic() < deadline, got
        time.sleep(0.05)
    return got


# ---- the tests --------------------------------------------------------------------------

def test_this_machine_is_the_only_host(host: Any) -> None:
    assert host.name == socket.gethostname()
    assert host.hypervisor_type == "QEMU"
    assert host.state == hosts_pb2.SERVICE_STATE_UP
    assert host.status == hosts_pb2.SERVICE_STATUS_ENABLED
    resources = {r.resource_class: r for r in host.resources}
    assert resources["VCPU"].total == os.cpu_count()
    assert resources["MEMORY_MB"].total > GUEST_MB and resources["DISK_GB"].total > 0


def test_image_registered_through_the_api(admin: QemuApi, image: Any) -> None:
    assert image.disk_format == "qcow2"
    assert image.properties["hw_architecture"] == "x86_64"
    assert image.properties["virtual_size"] == str(GUEST_MB << 20)
    assert admin.images.GetImage(images_pb2.GetImageRequest(id=image.id)) == image


# Nova's allowed states (nova/compute/api.py @check_instance_state) seen from the
# API: what each status refuses.
REFUSED = {
    "ACTIVE": ("start", "unpause", "resume"),
    "PAUSED": ("pause", "reboot_soft", "start", "stop", "suspend", "resume"),
    "SUSPENDED": ("suspend", "pause", "unpause", "stop", "start", "reboot_soft"),
    "SHUTOFF": ("stop", "pause", "unpause", "suspend", "resume", "reboot_soft"),
}


def _rpc(api: QemuApi, action: str, sid: str) -> Any:
    s = api.servers
    return {
        "reboot_soft": lambda: s.RebootServer(servers_pb2.RebootServerRequest(
            id=sid, type=servers_pb2.REBOOT_TYPE_SOFT)),
        "reboot_hard": lambda: s.RebootServer(servers_pb2.RebootServerRequest(
            id=sid, type=servers_pb2.REBOOT_TYPE_HARD)),
        "stop": lambda: s.StopServer(servers_pb2.StopServerRequest(id=sid)),
        "start": lambda: s.StartServer(servers_pb2.StartServerRequest(id=sid)),
        "pause": lambda: s.PauseServer(servers_pb2.PauseServerRequest(id=sid)),
        "unpause": lambda: s.UnpauseServer(servers_pb2.UnpauseServerRequest(id=sid)),
        "suspend": lambda: s.SuspendServer(servers_pb2.SuspendServerRequest(id=sid)),
        "resume": lambda: s.ResumeServer(servers_pb2.ResumeServerRequest(id=sid)),
    }[action]()


def _refused_changes_nothing(api: QemuApi, sid: str) -> None:
    before = api.get(sid)
    state, n_actions = domstate(sid), len(api.actions(sid))
    for action in REFUSED[before.status]:
        assert _code(lambda: _rpc(api, action, sid)) == grpc.StatusCode.FAILED_PRECONDITION, \
            (before.status, action)
    after = api.get(sid)
    assert (after.status, after.vm_state, after.task_state, after.power_state, after.updated_at) \
        == (before.status, before.vm_state, before.task_state, before.power_state, before.updated_at)
    assert domstate(sid) == state
    assert len(api.actions(sid)) == n_actions


def test_create_every_lifecycle_action_and_delete(cloud: LocalCloud, admin: QemuApi, host: Any,
                                                   image: Any, flavor: Any) -> None:
    db = _db(cloud)
    try:
        idle = _usage(db, host.name)
        started = time.monotonic()
        server = admin.create(flavor.id, image.id, "lifecycle")
        sid = server.id
        assert (server.status, server.power_state) == ("ACTIVE", states_pb2.POWER_STATE_RUNNING), \
            server.fault.message
        assert time.monotonic() - started < 30
        assert server.host == host.name and server.launched_at.seconds > 0
        # libvirt runs it, on a qcow2 overlay of the image sized to the flavor
        assert domain_name(sid) in domains()
        assert domstate(sid) == "running"
        disk = cloud.data_dir / "instances" / sid / "disk"
        info = images.image_info(disk)
        assert (info.format, info.backing_file, info.virtual_size) == ("qcow2", image.path, 1 << 30)
        # and the database counts it
        assert _usage(db, host.name)[0] == {rc: idle[0].get(rc, 0) + n for rc, n in
                                            (("VCPU", 1), ("MEMORY_MB", GUEST_MB), ("DISK_GB", 1))}
        allocations, view = _usage_once(db, host.name, lambda u: u[1][3] == idle[1][3] + 1)

        steps = (  # action, API status, power state, libvirt state
            ("pause", "PAUSED", states_pb2.POWER_STATE_PAUSED, "paused"),
            ("unpause", "ACTIVE", states_pb2.POWER_STATE_RUNNING, "running"),
            ("suspend", "SUSPENDED", states_pb2.POWER_STATE_SHUTDOWN, "shut off"),
            ("resume", "ACTIVE", states_pb2.POWER_STATE_RUNNING, "running"),
            ("stop", "SHUTOFF", states_pb2.POWER_STATE_SHUTDOWN, "shut off"),
            ("start", "ACTIVE", states_pb2.POWER_STATE_RUNNING, "running"),
            ("reboot_soft", "ACTIVE", states_pb2.POWER_STATE_RUNNING, "running"),
            ("reboot_hard", "ACTIVE", states_pb2.POWER_STATE_RUNNING, "running"),
            # hard reboot is allowed from SHUTOFF too (Nova): it starts the guest
            ("stop", "SHUTOFF", states_pb2.POWER_STATE_SHUTDOWN, "shut off"),
            ("reboot_hard", "ACTIVE", states_pb2.POWER_STATE_RUNNING, "running"),
        )
        _refused_changes_nothing(admin, sid)
        for action, status, power, state in steps:
            qemu_before = domid(sid)
            accepted = _rpc(admin, action, sid)
            assert accepted.task_state, action  # the task is set before the reply
            got = admin.settle(sid)
            assert (got.status, got.power_state, got.fault.message) == (status, power, ""), action
            assert domstate(sid) == state, action
            assert managed_save(sid) == (status == "SUSPENDED"), action
            if action.startswith("reboot"):
                assert domid(sid) not in ("-", qemu_before), "a reboot starts a new QEMU process"
            _refused_changes_nothing(admin, sid)

        # while a soft reboot hangs (no OS answers ACPI) other actions are refused,
        # but a hard reboot takes over, as Nova allows (task_states.ALLOW_REBOOT)
        assert _rpc(admin, "reboot_soft", sid).status == "REBOOT"
        assert _code(lambda: _rpc(admin, "stop", sid)) == grpc.StatusCode.FAILED_PRECONDITION
        qemu_before = domid(sid)
        assert _rpc(admin, "reboot_hard", sid).status == "HARD_REBOOT"
        got = admin.settle(sid)
        assert (got.status, got.power_state) == ("ACTIVE", states_pb2.POWER_STATE_RUNNING)
        assert domstate(sid) == "running" and domid(sid) != qemu_before

        # every action recorded, in order, finished, with its compute event
        log = admin.actions(sid)
        names = [a.action for a in log]
        assert names == ["create"] + [a.split("_")[0] for a, *_ in steps] + ["reboot"] * 2, names
        for entry in log:
            assert entry.finish_time.seconds > 0, entry
            assert entry.request_id.startswith("req-") and entry.user_id == "admin"
        for entry, (action, *_) in zip(log[1:], steps):
            assert entry.message == ""
            assert [(e.event, e.result) for e in entry.events] == \
                [(f"compute_{action.split('_')[0]}_instance", "Success")], entry
        # the soft reboot the hard one took over from ends in Error (Nova's
        # UnexpectedTaskStateError); the hard one succeeds
        superseded, hard = log[-2:]
        assert superseded.message == "Error"
        assert [(e.event, e.result) for e in superseded.events] == \
            [("compute_reboot_instance", "Error")]
        assert "UnexpectedTaskStateError" in superseded.events[0].traceback
        assert (hard.message, [e.result for e in hard.events]) == ("", ["Success"])

        # usage did not move through all that
        assert _usage(db, host.name) == (allocations, view)

        admin.delete(sid)
        assert domain_name(sid) not in domains("--all")
        assert not disk.parent.exists()
        assert Path(image.path).exists()  # the image itself is untouched
        _usage_once(db, host.name, lambda u: u == idle)
    finally:
        db.close()


def test_agent_killed_and_restarted_finds_its_guests(cloud: LocalCloud, admin: QemuApi, host: Any,
                                                      image: Any, flavor: Any) -> None:
    servers = [admin.create(flavor.id, image.id, f"survivor-{i}") for i in range(3)]
    ids = [s.id for s in servers]
    assert {s.status for s in servers} == {"ACTIVE"}
    _rpc(admin, "pause", ids[1])
    assert admin.settle(ids[1]).status == "PAUSED"
    db = _db(cloud)
    try:
        time.sleep(1.5)  # a periodic round: the view as the agent keeps it
        usage = _usage(db, host.name)
        qemu = {sid: domid(sid) for sid in ids}
        services = [(s.id, s.host) for s in db.list_services(binary="compute")]
        provider = db.get_host(host.name).uuid

        cloud.kill("compute_real")
        assert not cloud.processes["compute_real"].alive()
        # the guests outlive their agent
        assert [domstate(sid) for sid in ids] == ["running", "paused", "running"]
        cloud.restart("compute_real")

        # the same servers, in the same states, on the same QEMU processes
        for sid, status in zip(ids, ("ACTIVE", "PAUSED", "ACTIVE")):
            got = admin.get(sid)
            assert (got.status, got.host, got.task_state) == \
                (status, host.name, states_pb2.TASK_STATE_NONE), sid
        assert {sid: domid(sid) for sid in ids} == qemu
        time.sleep(1.5)  # after a periodic round of the new agent too
        assert _usage(db, host.name) == usage
        # nothing twice: one service, one provider, one allocation per server, and
        # libvirt runs exactly the servers the database places here
        assert [(s.id, s.host) for s in db.list_services(binary="compute")] == services
        assert [h.uuid for h in db.list_hosts()] == [provider]
        assert {a.consumer_uuid for a in db.list_allocations(provider)} == set(ids)
        placed = {i.id for i in db.list_instances(host=host.name, limit=100).instances}
        known = {i.id for i in db.list_instances(include_deleted=True, limit=1000).instances}
        mine = {d for d in domains("--all") if d.removeprefix("novalite-") in known}
        assert placed == set(ids) and mine == {domain_name(sid) for sid in ids}

        # the restarted agent acts on them
        _rpc(admin, "unpause", ids[1])
        assert admin.settle(ids[1]).status == "ACTIVE" and domstate(ids[1]) == "running"
        for sid in ids:
            admin.delete(sid)
            assert domain_name(sid) not in domains("--all")
        assert _usage(db, host.name)[0] == {}
    finally:
        db.close()


def test_a_guest_destroyed_behind_novalites_back_is_stopped_by_the_sync(
        admin: QemuApi, image: Any, flavor: Any) -> None:
    sid = admin.create(flavor.id, image.id, "victim").id
    virsh("destroy", domain_name(sid))
    started = time.monotonic()
    while True:
        got = admin.get(sid)
        if got.status == "SHUTOFF":
            break
        assert time.monotonic() - started < SYNC_BOUND, \
            f"still {got.status} {SYNC_BOUND:.0f} s after the guest was destroyed"
        time.sleep(0.1)
    assert (got.vm_state, got.power_state, got.task_state) == \
        (states_pb2.VM_STATE_STOPPED, states_pb2.POWER_STATE_SHUTDOWN, states_pb2.TASK_STATE_NONE)
    assert domstate(sid) == "shut off"
    # recorded as Nova's sync does: a stop nobody asked for
    assert admin.actions(sid)[-1].action == "stop"
    # and it can be started again through the API
    _rpc(admin, "start", sid)
    assert admin.settle(sid).status == "ACTIVE" and domstate(sid) == "running"
    admin.delete(sid)
    assert domain_name(sid) not in domains("--all")


# ---- images and the command line -----------------------------------------------------------

def _cli(cloud: LocalCloud, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = cloud_env(cloud)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "python"), env.get("PYTHONPATH")) if p)
    proc = run_cli(*args, env=env, timeout=120)
    if check:
        assert proc.returncode == 0, f"novalite {' '.join(args)}: {proc.stderr}"
    return proc


def test_image_create_from_the_command_line_and_boot_it(cloud: LocalCloud, admin: QemuApi,
                                                        flavor: Any) -> None:
    path = images.create_blank_image(cloud.data_dir / "images" / "cli.qcow2", GUEST_MB).path
    made = json.loads(_cli(cloud, "image", "create", "cli-tiny", "--file", path, "--property",
                           "hw_architecture=x86_64", "--property", "img_hv_type=qemu",
                           "--property", "hw_vm_mode=hvm", "--json").stdout)
    assert (made["name"], made["path"], made["disk_format"]) == ("cli-tiny", path, "qcow2")
    assert {k: v for k, v in made["properties"].items() if k != "virtual_size"} == \
        {"hw_architecture": "x86_64", "img_hv_type": "qemu", "hw_vm_mode": "hvm"}
    assert made["id"] in _cli(cloud, "image", "list").stdout
    # a bad property is refused with the field named, and nothing is registered
    bad = _cli(cloud, "image", "create", "bad", "--file", path, "--property",
               "hw_architecture=vax-11", check=False)
    assert bad.returncode == 1 and "properties.hw_architecture" in bad.stderr
    assert "bad" not in [i.name for i in admin.images.ListImages(images_pb2.ListImagesRequest()).images]

    # a server of it, from the command line, to ACTIVE, stopped, and away
    booted = json.loads(_cli(cloud, "server", "create", "cli-guest", "--flavor", flavor.name,
                             "--image", made["id"], "--wait", "--timeout", "60", "--json").stdout)
    assert [s["status"] for s in booted] == ["ACTIVE"]
    sid = booted[0]["id"]
    assert domstate(sid) == "running"
    assert images.image_info(cloud.data_dir / "instances" / sid / "disk").backing_file == path
    _cli(cloud, "server", "stop", sid, "--wait")  # returns once the stop is done
    assert admin.get(sid).status == "SHUTOFF" and domstate(sid) == "shut off"
    _cli(cloud, "server", "delete", sid, "--wait", "--timeout", "60")
    assert domain_name(sid) not in domains("--all")


def test_an_image_no_host_supports_ends_in_error_by_image_properties_filter(
        cloud: LocalCloud, admin: QemuApi, flavor: Any) -> None:
    path = images.create_blank_image(cloud.data_dir / "images" / "arm.qcow2", GUEST_MB).path
    made = json.loads(_cli(cloud, "image", "create", "arm-tiny", "--file", path, "--property",
                           "hw_architecture=aarch64", "--json").stdout)
    server = admin.servers.CreateServer(servers_pb2.CreateServerRequest(
        name="arm", flavor_id=flavor.id, image_id=made["id"])).servers[0]
    got = admin.settle(server.id)
    assert got.status == "ERROR"
    assert "No valid host" in got.fault.message
    assert {r.check: r.hosts for r in got.fault.rejections if r.hosts} == {"ImagePropertiesFilter": 1}
    assert domain_name(server.id) not in domains("--all")
    admin.delete(server.id)


def test_novalite_up_with_no_simulated_host_runs_only_this_machine(libvirtd: None,
                                                                    tmp_path: Path) -> None:
    """`novalite up --hosts 0`: the machine itself is the cloud's one host (with
    simulated hosts beside it: tests/test_e2e_qemu.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOVALITE_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "python"), env.get("PYTHONPATH")) if p)
    data = tmp_path / "up"
    # no simulated host and no real one: nothing to run, said at once
    none = subprocess.run([sys.executable, "-m", "novalite.cli", "up", "--data-dir", str(data),
                           "--hosts", "0", "--no-real-host"], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert none.returncode == 1 and "--hosts 0" in none.stderr
    assert not (data / "logs").exists()

    up = subprocess.Popen([sys.executable, "-m", "novalite.cli", "up", "--data-dir", str(data),
                           "--hosts", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (data / "env").exists():
            assert up.poll() is None, up.communicate()[0]
            assert time.monotonic() < deadline, "novalite up did not come up"
            time.sleep(0.2)
        for line in (data / "env").read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value
        listing = subprocess.run([sys.executable, "-m", "novalite.cli", "host", "list", "--json"],
                                 capture_output=True, text=True, env=env, timeout=60, check=False)
        assert listing.returncode == 0, listing.stderr
        [real] = json.loads(listing.stdout)
        assert (real["name"], real["hypervisor_type"], real["state"]) == \
            (socket.gethostname(), "QEMU", "SERVICE_STATE_UP")
        assert {r["resource_class"]: int(r["total"]) for r in real["resources"]}["VCPU"] \
            == os.cpu_count()
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            output = up.communicate(timeout=90)[0]
        except subprocess.TimeoutExpired:
            up.kill()
            output = up.communicate()[0]
    assert up.returncode == 0, output
    assert "(0 simulated hosts + this machine as a real QEMU host)" in output
    assert "compute_real" in output and "  compute " not in output
