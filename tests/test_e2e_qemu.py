"""End to end with real QEMU guests (issue 4, section 5): a LocalCloud, each service
its own process over real sockets, with two simulated hosts and this machine as a
real `qemu:///system` host, driven only through the public gRPC API and the
`novalite` command; what libvirt really runs is checked with `virsh`.

Servers land on the real host because their image asks for the QEMU hypervisor
(`img_hv_type=qemu`): ImagePropertiesFilter removes the simulated hosts, whose
hypervisor is libvirt's `test`. Guests are 64 MiB, 1 vCPU, on a blank 64 MiB
image (the BIOS finds nothing to boot and waits: enough for every action).

Never skipped silently: if libvirtd cannot be reached these tests FAIL and say to
run `sudo scripts/setup_libvirt.sh`. A developer without root may skip them
explicitly with NOVALITE_SKIP_QEMU=1 (CI never sets it). Every domain a test made
is destroyed afterwards, whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
import pytest

from novalite.cloud import LocalCloud
from novalite.rpc.novalite.compute.v1 import (
    flavors_pb2,
    hosts_pb2,
    images_pb2,
    images_pb2_grpc,
    servers_pb2,
    states_pb2,
)
from novalite.virt import LibvirtDriver, domain_name, images

from helpers import Api as _Api
from helpers import NOVALITE, cloud_env, processes_with, reap_up, run_cli, start_up, stop_up
from qemu import libvirtd  # noqa: F401 - the fixture, for every test here
from qemu import GUEST_MB, URI, all_domains, domid, domstate, skip_if_not_wanted, virsh

SIMULATED = 2
# LocalCloud (and `novalite up`) run this machine as a host named after it.
REAL_HOST = socket.gethostname()

skip_if_not_wanted()

Code = grpc.StatusCode
VM = states_pb2.VmState
POWER = states_pb2.PowerState
TASK = states_pb2.TaskState


# ---- libvirt's view (virsh) ------------------------------------------------------------

def running_domains() -> list[str]:
    return virsh("list", "--name").split()


def cloud_domains(cloud: LocalCloud) -> list[str]:
    """The domains of this cloud (whatever their name): those whose disk lies in its
    instances directory. Other clouds' and other tests' guests are not counted."""
    instances = str(cloud.data_dir / "instances") + "/"
    mine = []
    for name in all_domains():
        xml = virsh("dumpxml", name, check=False)  # may vanish while we look
        if not xml:
            continue
        sources = [s.get("file", "") for s in ET.fromstring(xml).iterfind("devices/disk/source")]
        if any(s.startswith(instances) for s in sources):
            mine.append(name)
    return sorted(mine)


def destroy_cloud_domains(cloud: LocalCloud) -> None:
    """Every guest of the cloud, destroyed and undefined, its disk removed."""
    with LibvirtDriver(URI, instances_path=cloud.data_dir / "instances") as drv:
        for iid in drv.list_instances():
            if drv.instance_dir(iid).exists() or domain_name(iid) in cloud_domains(cloud):
                drv.destroy(iid)


# ---- the API -------------------------------------------------------------------------

class Api(_Api):
    """test_e2e's stubs, plus images, and waits that poll every 50 ms."""

    def __init__(self, cloud: LocalCloud, token: str) -> None:
        super().__init__(cloud, token)
        self.images = images_pb2_grpc.ImagesStub(self.channel)

    def get(self, sid: str) -> Any:
        return self.servers.GetServer(servers_pb2.GetServerRequest(id=sid))

    def until(self, sid: str, status: str, timeout: float = 60.0) -> Any:
        """The server once its status is ``status`` with no task in flight."""
        deadline = time.monotonic() + timeout
        server = None
        while time.monotonic() < deadline:
            server = self.get(sid)
            if server.status == status and server.task_state == TASK.TASK_STATE_NONE:
                return server
            if server.task_state == TASK.TASK_STATE_NONE and (
                    (server.status == "ERROR") != (status == "ERROR")) and server.status != "BUILD":
                break  # settled, and not as expected
            time.sleep(0.05)
        raise AssertionError(f"server {sid} not {status} within {timeout:.0f} s: {server}")

    def until_gone(self, sid: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.get(sid)
            except grpc.RpcError as e:
                if e.code() == Code.NOT_FOUND:
                    return
                raise
            time.sleep(0.05)
        raise AssertionError(f"server {sid} still there after {timeout:.0f} s")

    def actions(self, sid: str) -> list[Any]:
        return list(self.servers.ListServerActions(
            servers_pb2.ListServerActionsRequest(id=sid)).actions)

    def host(self, name: str) -> Any:
        for h in self.hosts.ListHosts(hosts_pb2.ListHostsRequest(page_size=1000)).hosts:
            if h.name == name:
                return h
        raise AssertionError(f"no host {name}")


def usage(host: Any) -> dict[str, int]:
    """What the Hosts API says is used on a host: each resource class's allocations
    and the compute view (disk as used MiB: the total is the free disk libvirt
    found when the agent started, so it may move a little between starts)."""
    out = {f"used.{r.resource_class}": r.used for r in host.resources}
    disk_total = next(r.total for r in host.resources if r.resource_class == "DISK_GB")
    c = host.compute
    out.update(vcpus_used=c.vcpus_used, free_ram_mb=c.free_ram_mb, num_instances=c.num_instances,
               disk_used_mb=disk_total * 1024 - c.free_disk_mb)
    return out


RPCS: dict[str, Callable[[Api, str], Any]] = {
    "stop": lambda a, i: a.servers.StopServer(servers_pb2.StopServerRequest(id=i)),
    "start": lambda a, i: a.servers.StartServer(servers_pb2.StartServerRequest(id=i)),
    "reboot_soft": lambda a, i: a.servers.RebootServer(servers_pb2.RebootServerRequest(
        id=i, type=servers_pb2.REBOOT_TYPE_SOFT)),
    "reboot_hard": lambda a, i: a.servers.RebootServer(servers_pb2.RebootServerRequest(
        id=i, type=servers_pb2.REBOOT_TYPE_HARD)),
    "pause": lambda a, i: a.servers.PauseServer(servers_pb2.PauseServerRequest(id=i)),
    "unpause": lambda a, i: a.servers.UnpauseServer(servers_pb2.UnpauseServerRequest(id=i)),
    "suspend": lambda a, i: a.servers.SuspendServer(servers_pb2.SuspendServerRequest(id=i)),
    "resume": lambda a, i: a.servers.ResumeServer(servers_pb2.ResumeServerRequest(id=i)),
}

# Nova's @check_instance_state (compute/api.py), written out here rather than taken
# from the API's table: the vm_states each action is allowed in.
ALLOWED = {
    "stop": {"ACTIVE", "ERROR"},
    "start": {"SHUTOFF"},
    "reboot_soft": {"ACTIVE"},
    "reboot_hard": {"ACTIVE", "SHUTOFF", "PAUSED", "SUSPENDED", "ERROR"},
    "pause": {"ACTIVE"},
    "unpause": {"PAUSED"},
    "suspend": {"ACTIVE"},
    "resume": {"SUSPENDED"},
}

# action -> (task_state and status while it runs, final status, vm_state, power_state,
#            `virsh domstate`, the name Nova's action log gives it, its event)
LIFECYCLE = [
    ("stop", TASK.TASK_STATE_POWERING_OFF, "ACTIVE", "SHUTOFF", VM.VM_STATE_STOPPED,
     POWER.POWER_STATE_SHUTDOWN, "shut off", "stop", "compute_stop_instance"),
    ("start", TASK.TASK_STATE_POWERING_ON, "SHUTOFF", "ACTIVE", VM.VM_STATE_ACTIVE,
     POWER.POWER_STATE_RUNNING, "running", "start", "compute_start_instance"),
    ("reboot_soft", TASK.TASK_STATE_REBOOTING, "REBOOT", "ACTIVE", VM.VM_STATE_ACTIVE,
     POWER.POWER_STATE_RUNNING, "running", "reboot", "compute_reboot_instance"),
    ("reboot_hard", TASK.TASK_STATE_REBOOTING_HARD, "HARD_REBOOT", "ACTIVE", VM.VM_STATE_ACTIVE,
     POWER.POWER_STATE_RUNNING, "running", "reboot", "compute_reboot_instance"),
    ("pause", TASK.TASK_STATE_PAUSING, "ACTIVE", "PAUSED", VM.VM_STATE_PAUSED,
     POWER.POWER_STATE_PAUSED, "paused", "pause", "compute_pause_instance"),
    ("unpause", TASK.TASK_STATE_UNPAUSING, "PAUSED", "ACTIVE", VM.VM_STATE_ACTIVE,
     POWER.POWER_STATE_RUNNING, "running", "unpause", "compute_unpause_instance"),
    # libvirt's managed save, as Nova: the domain is shut off, its memory on disk
    ("suspend", TASK.TASK_STATE_SUSPENDING, "ACTIVE", "SUSPENDED", VM.VM_STATE_SUSPENDED,
     POWER.POWER_STATE_SHUTDOWN, "shut off", "suspend", "compute_suspend_instance"),
    ("resume", TASK.TASK_STATE_RESUMING, "SUSPENDED", "ACTIVE", VM.VM_STATE_ACTIVE,
     POWER.POWER_STATE_RUNNING, "running", "resume", "compute_resume_instance"),
]


# ---- fixtures --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    # report_interval and the periodic intervals 1: the agents' periodic tasks
    # (heartbeat, power-state sync, usage) run every second; a soft reboot of a guest
    # without an OS falls back to a hard one after 1 s
    c = LocalCloud(tmp_path_factory.mktemp("qemu-cloud"), hosts=SIMULATED, host_vcpus=16,
                   host_memory_mb=32768, host_disk_gb=500, real_host=True, report_interval=1,
                   sync_power_state_interval=1, update_resources_interval=1,
                   wait_soft_reboot_seconds=1.0)
    try:
        with c:
            yield c
    finally:
        destroy_cloud_domains(c)


@pytest.fixture(scope="module")
def admin(cloud: LocalCloud) -> Api:
    return Api(cloud, cloud.admin_token())


@pytest.fixture(scope="module")
def flavor(admin: Api) -> Any:
    return admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
        name="qemu.tiny", vcpus=1, memory_mb=GUEST_MB, root_gb=1))


@pytest.fixture(scope="module")
def image_file(cloud: LocalCloud) -> Path:
    return Path(images.create_blank_image(cloud.data_dir / "images" / "tiny.qcow2", GUEST_MB).path)


@pytest.fixture(scope="module")
def image(admin: Api, image_file: Path) -> Any:
    """The tiny image, for QEMU only: servers from it land on the real host."""
    return admin.images.CreateImage(images_pb2.CreateImageRequest(
        name="tiny", path=str(image_file), properties={"img_hv_type": "qemu"}))


@pytest.fixture
def boot(cloud: LocalCloud, admin: Api, flavor: Any, image: Any) -> Iterator[Callable[..., Any]]:
    """boot(name, image_id=...) creates a server and waits for it to be ACTIVE (or
    ERROR with expect="ERROR"). Every server a test booted is deleted afterwards,
    its guest destroyed even if the API cannot."""
    booted: list[str] = []

    def create(name: str = "real", image_id: str | None = None, expect: str = "ACTIVE") -> Any:
        server = admin.servers.CreateServer(servers_pb2.CreateServerRequest(
            name=name, flavor_id=flavor.id, image_id=image_id or image.id)).servers[0]
        booted.append(server.id)
        return admin.until(server.id, expect)

    yield create
    leftovers = []
    for sid in booted:
        try:
            admin.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=sid))
            leftovers.append(sid)
        except grpc.RpcError:
            pass
    try:
        for sid in leftovers:
            admin.until_gone(sid, timeout=30)
    finally:
        with LibvirtDriver(URI, instances_path=cloud.data_dir / "instances") as drv:
            for sid in booted:
                drv.destroy(sid)


# ---- a. lifecycle ------------------------------------------------------------------------

def check_refused(admin: Api, sid: str, status: str) -> None:
    """Every action Nova refuses in ``status``: FAILED_PRECONDITION, and nothing
    changes (server, guest, action log)."""
    before, state, log = admin.get(sid), domstate(sid), admin.actions(sid)
    refused = [a for a, allowed in ALLOWED.items() if status not in allowed]
    assert refused
    for action in refused:
        with pytest.raises(grpc.RpcError) as e:
            RPCS[action](admin, sid)
        assert e.value.code() == Code.FAILED_PRECONDITION, (action, status, e.value.details())
        assert status in (e.value.details() or "")
    assert admin.get(sid) == before
    assert domstate(sid) == state
    assert admin.actions(sid) == log


def test_real_guest_lifecycle_through_the_api(cloud: LocalCloud, admin: Api, image: Any,
                                              boot: Callable[..., Any]) -> None:
    server = boot("lifecycle")
    sid, name = server.id, domain_name(server.id)
    assert server.host == REAL_HOST
    assert (server.vm_state, server.power_state) == (VM.VM_STATE_ACTIVE, POWER.POWER_STATE_RUNNING)
    assert name in running_domains()
    assert domstate(sid) == "running"
    assert cloud_domains(cloud) == [name]
    disk = images.image_info(cloud.data_dir / "instances" / sid / "disk")
    assert (disk.format, disk.virtual_size, disk.backing_file) == ("qcow2", 1 << 30, image.path)
    check_refused(admin, sid, "ACTIVE")

    for action, task, transient, final, vm, power, state, log_name, _ in LIFECYCLE:
        qemu_before = domid(sid) if state == "running" else None
        accepted = RPCS[action](admin, sid)
        # the reply: the action's task committed, the status Nova shows meanwhile
        assert (accepted.task_state, accepted.status) == (task, transient), action
        done = admin.until(sid, final)
        assert (done.vm_state, done.power_state) == (vm, power), action
        assert domstate(sid) == state, action  # libvirt agrees with the API
        if action.startswith("reboot"):
            # a guest without an OS ignores the ACPI request: after
            # wait_soft_reboot_seconds a soft reboot becomes a hard one (Nova's
            # fallback); either way a new QEMU process
            assert domid(sid) not in ("-", qemu_before), action
        if action == "suspend":
            assert "Managed save:   yes" in virsh("dominfo", name)
        if action == "resume":
            assert "Managed save:   no" in virsh("dominfo", name)
        assert not done.fault.message, (action, done.fault)
        check_refused(admin, sid, final)

    # the action log, newest first: one entry per action, each with its event
    log = admin.actions(sid)
    assert [a.action for a in log] == [e[7] for e in reversed(LIFECYCLE)] + ["create"]
    for entry, expected in zip(log, reversed(LIFECYCLE)):
        assert entry.request_id and entry.user_id == "admin"
        assert entry.HasField("finish_time") and not entry.message, entry
        assert [(e.event, e.result) for e in entry.events] == [(expected[8], "Success")]
        assert entry.events[0].HasField("finish_time")
    assert name in running_domains()
    assert cloud_domains(cloud) == [name]  # one domain all along


# ---- b. delete -----------------------------------------------------------------------------

def test_delete_removes_the_domain_and_its_disk(cloud: LocalCloud, admin: Api,
                                                 boot: Callable[..., Any]) -> None:
    idle = usage(admin.host(REAL_HOST))
    running, stopped = boot("doomed"), boot("doomed-stopped")
    RPCS["stop"](admin, stopped.id)
    admin.until(stopped.id, "SHUTOFF")
    busy = usage(admin.host(REAL_HOST))
    assert busy["used.MEMORY_MB"] == idle["used.MEMORY_MB"] + 2 * GUEST_MB
    assert busy["num_instances"] == idle["num_instances"] + 2
    for server in (running, stopped):
        inst_dir = cloud.data_dir / "instances" / server.id
        assert (inst_dir / "disk").exists()
        deleting = admin.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=server.id))
        assert deleting.task_state == TASK.TASK_STATE_DELETING
        admin.until_gone(server.id)
        assert domain_name(server.id) not in all_domains()
        assert not inst_dir.exists()
        assert [a.action for a in admin.actions(server.id)][0] == "delete"  # admins still see it
    assert cloud_domains(cloud) == []
    assert Path(admin.images.ListImages(images_pb2.ListImagesRequest()).images[0].path).exists()
    deadline = time.monotonic() + 10
    while usage(admin.host(REAL_HOST)) != idle and time.monotonic() < deadline:
        time.sleep(0.1)
    assert usage(admin.host(REAL_HOST)) == idle


# ---- c. the agent killed and restarted ---------------------------------------------------------

def test_a_killed_agent_finds_its_guests_again(cloud: LocalCloud, admin: Api,
                                               boot: Callable[..., Any]) -> None:
    servers = [boot(f"survivor-{i}") for i in range(3)]
    RPCS["stop"](admin, servers[2].id)
    servers[2] = admin.until(servers[2].id, "SHUTOFF")
    ids = [s.id for s in servers]
    qemu = {sid: domid(sid) for sid in ids[:2]}
    domains = cloud_domains(cloud)
    assert domains == sorted(domain_name(i) for i in ids)
    before_usage = usage(admin.host(REAL_HOST))
    assert before_usage["num_instances"] == 3

    def states() -> list[tuple[str, int, int, str]]:
        return [(s.status, s.vm_state, s.power_state, s.host) for s in map(admin.get, ids)]

    before = states()
    cloud.kill("compute_real")  # kill -9, guests running
    assert [domstate(i) for i in ids] == ["running", "running", "shut off"]
    assert states() == before  # the API still answers from the database

    cloud.restart("compute_real")
    # the same guests (the same QEMU processes), nothing new, the same usage
    deadline = time.monotonic() + 15
    while usage(admin.host(REAL_HOST)) != before_usage and time.monotonic() < deadline:
        time.sleep(0.1)
    assert usage(admin.host(REAL_HOST)) == before_usage
    assert {sid: domid(sid) for sid in ids[:2]} == qemu
    assert cloud_domains(cloud) == domains
    assert states() == before
    assert states()[0][:3] == ("ACTIVE", VM.VM_STATE_ACTIVE, POWER.POWER_STATE_RUNNING)
    host = admin.host(REAL_HOST)
    assert host.state == hosts_pb2.SERVICE_STATE_UP
    # a few rounds of the restarted agent's power-state sync change nothing
    time.sleep(2.5)
    assert states() == before and cloud_domains(cloud) == domains
    assert usage(admin.host(REAL_HOST)) == before_usage

    # and the restarted agent drives its guests as before
    RPCS["pause"](admin, ids[0])
    admin.until(ids[0], "PAUSED")
    assert domstate(ids[0]) == "paused"
    RPCS["start"](admin, ids[2])
    admin.until(ids[2], "ACTIVE")
    assert domstate(ids[2]) == "running"


# ---- d. a guest destroyed behind novalite's back -------------------------------------------------

def test_a_guest_destroyed_behind_our_back_is_shutoff(admin: Api, boot: Callable[..., Any]) -> None:
    server = boot("victim")
    virsh("destroy", domain_name(server.id))
    # the agent's power-state sync (every sync_power_state_interval, 1 s here) stops it, as
    # Nova's _sync_power_states calls the stop API
    stopped = admin.until(server.id, "SHUTOFF", timeout=15)
    assert (stopped.vm_state, stopped.power_state) == (VM.VM_STATE_STOPPED, POWER.POWER_STATE_SHUTDOWN)
    assert domstate(server.id) == "shut off"
    newest = admin.actions(server.id)[0]
    assert newest.action == "stop" and "by itself" in newest.message
    # a stopped server like any other: it starts again
    RPCS["start"](admin, server.id)
    assert admin.until(server.id, "ACTIVE").power_state == POWER.POWER_STATE_RUNNING
    assert domstate(server.id) == "running"


# ---- e. images through the CLI, and ImagePropertiesFilter ----------------------------------------

def novalite(cloud: LocalCloud, *args: str, token: str | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=cloud_env(cloud, token), timeout=timeout)


def cli_image(cloud: LocalCloud, name: str, path: Path, *properties: str) -> dict[str, Any]:
    args = ["image", "create", name, "--file", str(path), "--json"]
    for p in properties:
        args += ["--property", p]
    proc = novalite(cloud, *args)
    assert proc.returncode == 0, proc.stderr
    created: dict[str, Any] = json.loads(proc.stdout)
    return created


@pytest.mark.parametrize("properties,stored", [
    # Nova's legacy names, stored under the current ones (as ImageMetaProps reads them)
    (["architecture=aarch64"], {"hw_architecture": "aarch64"}),
    (["architecture=x86_64", "hypervisor_type=xen"], {"hw_architecture": "x86_64", "img_hv_type": "xen"}),
    (["hw_architecture=ppc64le", "img_hv_type=qemu"], {"hw_architecture": "ppc64le", "img_hv_type": "qemu"}),
], ids=["architecture", "hypervisor_type", "current-names"])
def test_image_properties_no_host_satisfies(cloud: LocalCloud, admin: Api, image_file: Path,
                                            boot: Callable[..., Any], properties: list[str],
                                            stored: dict[str, str]) -> None:
    created = cli_image(cloud, "no-host", image_file, *properties)
    assert {k: v for k, v in created["properties"].items() if k != "virtual_size"} == stored
    listed = novalite(cloud, "image", "list", "--json")
    assert created["id"] in [i["id"] for i in json.loads(listed.stdout)]

    server = boot("unplaceable", image_id=created["id"], expect="ERROR")
    assert "No valid host" in server.fault.message
    rejections = {r.check: r.hosts for r in server.fault.rejections}
    assert rejections.get("ImagePropertiesFilter") == SIMULATED + 1, rejections
    assert not server.host
    assert domain_name(server.id) not in all_domains()


def test_image_properties_that_match_boot_on_the_real_host(cloud: LocalCloud, admin: Api,
                                                            image_file: Path,
                                                            boot: Callable[..., Any]) -> None:
    created = cli_image(cloud, "x86-qemu", image_file, "architecture=x86_64",
                        "hypervisor_type=qemu", "vm_mode=hvm", "min_ram=32")
    server = boot("matching", image_id=created["id"])
    assert server.host == REAL_HOST  # the simulated hosts' hypervisor is not QEMU
    assert domstate(server.id) == "running"
    # a bad value is refused under the name it was given, and registers nothing
    bad = novalite(cloud, "image", "create", "z80", "--file", str(image_file),
                   "--property", "architecture=z80")
    assert bad.returncode == 1
    assert "INVALID_ARGUMENT" in bad.stderr and "properties.architecture" in bad.stderr
    listed = json.loads(novalite(cloud, "image", "list", "--json").stdout)
    assert "z80" not in [i["name"] for i in listed]
    # an image with no hypervisor property may land anywhere: a simulated host too
    plain = cli_image(cloud, "x86-any", image_file, "hw_architecture=x86_64")
    anywhere = boot("anywhere", image_id=plain["id"])
    assert anywhere.status == "ACTIVE"


def test_the_real_host_reports_its_cpu_traits_and_gets_the_flavors_that_need_them(
        cloud: LocalCloud, admin: Api, image_file: Path) -> None:
    """From libvirt's capabilities (the simulated hosts here are configured with
    none): a flavor requiring SSE2, which every x86_64 CPU has, lands on the real
    host, from an image that would fit a simulated one as well."""
    real = admin.host(REAL_HOST)
    assert {"HW_CPU_X86_SSE", "HW_CPU_X86_SSE2"} <= set(real.traits), real.traits
    assert all(t.startswith("HW_CPU_X86_") for t in real.traits), real.traits
    assert not admin.host("compute-001").traits
    sse2 = admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
        name="qemu.sse2", vcpus=1, memory_mb=GUEST_MB, root_gb=1,
        extra_specs={"trait:HW_CPU_X86_SSE2": "required"}))
    plain = cli_image(cloud, "x86-any-sse2", image_file, "hw_architecture=x86_64")
    [server] = admin.servers.CreateServer(servers_pb2.CreateServerRequest(
        name="sse2", flavor_id=sse2.id, image_id=plain["id"])).servers
    try:
        assert admin.until(server.id, "ACTIVE").host == REAL_HOST
        assert domstate(server.id) == "running"
    finally:
        admin.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=server.id))
        admin.until_gone(server.id)


# ---- f. `novalite up` --------------------------------------------------------------------------

def _start_up(data_dir: Path) -> subprocess.Popen[str]:
    return start_up("--data-dir", str(data_dir), "--hosts", "2", "--host-memory-mb", "8192")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_novalite_up_adds_this_machine_as_a_real_host(tmp_path: Path, sig: int) -> None:
    data_dir = tmp_path / "up"
    proc = _start_up(data_dir)
    try:
        env_file = data_dir / "env"
        deadline = time.monotonic() + 90
        while not env_file.exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "novalite up did not come up in 90 s"
            time.sleep(0.1)
        # what the README says: source the env file, then use the cloud
        shell = (f"source {env_file} && {' '.join(NOVALITE)} host list --json && "
                 f"{' '.join(NOVALITE)} token create --data-dir {data_dir} --project p --user u")
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOVALITE_")}
        done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, env=env,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        listing, _, member_token = done.stdout.rpartition("]")
        hosts = {h["name"]: h for h in json.loads(listing + "]")}
        assert set(hosts) == {"compute-001", "compute-002", REAL_HOST}
        assert hosts[REAL_HOST]["hypervisor_type"] == "QEMU"
        assert hosts["compute-001"]["hypervisor_type"] == "test"
        assert member_token.strip()
        assert processes_with(str(data_dir))  # its services run

        code, out = stop_up(proc, sig)
        assert code == 0, out
        assert "this machine as a real QEMU host" in out and "stopping" in out
        assert "Traceback" not in out
        assert processes_with(str(data_dir)) == []  # every service stopped with it
    finally:
        reap_up(proc, data_dir)


def test_novalite_up_interrupted_while_starting_leaves_nothing_running(tmp_path: Path) -> None:
    data_dir = tmp_path / "up"
    proc = _start_up(data_dir)
    try:
        deadline = time.monotonic() + 60
        # interrupted as the first service is being spawned (its log file is opened
        # just before), long before the cloud is up
        while not (data_dir / "logs" / "compute.log").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.002)
        code, out = stop_up(proc, signal.SIGINT)
        # its services run in sessions of their own: Ctrl-C reaches only `up`, which
        # must stop the ones it has started
        assert processes_with(str(data_dir)) == [], out
        assert "Traceback" not in out, out
        assert code in (0, 130), out
    finally:
        reap_up(proc, data_dir)
