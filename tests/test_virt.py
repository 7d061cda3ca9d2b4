"""The libvirt driver against libvirt's test driver (`test:///PATH.xml`): simulated
hosts described by node files that `write_test_node` generates.

Needs libvirt-python (scripts/setup_libvirt.sh installs it); no daemon, no root.
Real QEMU guests are in test_virt_qemu.py.
"""

from __future__ import annotations

import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from novalite.virt import (
    ActionFailed,
    DriverError,
    HypervisorUnavailable,
    ImageError,
    InstanceExists,
    InstanceNotFound,
    InvalidInstanceId,
    LibvirtDriver,
    SpawnFailed,
    domain_name,
    nova_power_state,
    node_uri,
    write_test_node,
)
from novalite.objects.states import PowerState
from novalite.virt import driver as driver_mod
from novalite.virt import images

if driver_mod._libvirt is None:  # pragma: no cover - a broken setup, not a skip
    pytest.fail(
        "libvirt-python is not importable from this Python: "
        f"{driver_mod.SETUP_HINT} with PYTHON set to this interpreter",
        pytrace=False,
    )
libvirt = driver_mod._libvirt


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def node(tmp_path: Path) -> Path:
    return write_test_node(tmp_path / "host-a.xml", "host-a", 16, 32768,
                           disk_gb=500, sockets=2, threads=2)


@pytest.fixture
def drv(node: Path) -> Iterator[LibvirtDriver]:
    d = LibvirtDriver(node_uri(node))
    yield d
    d.close()


# --- constants and mapping -------------------------------------------------------------


def test_libvirt_constants_match_the_binding() -> None:
    for name in ("VIR_DOMAIN_NOSTATE", "VIR_DOMAIN_RUNNING", "VIR_DOMAIN_BLOCKED",
                 "VIR_DOMAIN_PAUSED", "VIR_DOMAIN_SHUTDOWN", "VIR_DOMAIN_SHUTOFF",
                 "VIR_DOMAIN_CRASHED", "VIR_DOMAIN_PMSUSPENDED",
                 "VIR_DOMAIN_METADATA_ELEMENT", "VIR_DOMAIN_UNDEFINE_MANAGED_SAVE",
                 "VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA", "VIR_DOMAIN_UNDEFINE_NVRAM",
                 "VIR_ERR_NO_DOMAIN", "VIR_ERR_OPERATION_INVALID",
                 "VIR_ERR_NO_DOMAIN_METADATA"):
        assert getattr(driver_mod, name) == getattr(libvirt, name), name


def test_power_state_mapping_is_novas() -> None:
    # nova/virt/libvirt/driver.py LIBVIRT_POWER_STATE
    assert [nova_power_state(s) for s in range(8)] == [
        PowerState.NOSTATE, PowerState.RUNNING, PowerState.RUNNING, PowerState.PAUSED,
        PowerState.SHUTDOWN, PowerState.SHUTDOWN, PowerState.CRASHED, PowerState.SUSPENDED,
    ]
    assert nova_power_state(99) == PowerState.NOSTATE
    assert [int(p) for p in PowerState] == [0, 1, 3, 4, 6, 7]


# --- host ------------------------------------------------------------------------------


@pytest.mark.parametrize(("vcpus", "memory_mb", "disk_gb", "sockets", "threads"), [
    (1, 512, 10, 1, 1), (16, 32768, 500, 2, 2), (128, 1048576, 20000, 4, 2),
])
def test_host_info_matches_node_file(tmp_path: Path, vcpus: int, memory_mb: int,
                                     disk_gb: int, sockets: int, threads: int) -> None:
    path = write_test_node(tmp_path / "n.xml", "sim-7", vcpus, memory_mb, disk_gb=disk_gb,
                           sockets=sockets, threads=threads, architecture="x86_64")
    info = LibvirtDriver(node_uri(path)).host_info()
    assert info.hostname == "sim-7"
    assert (info.vcpus, info.memory_mb, info.disk_gb) == (vcpus, memory_mb, disk_gb)
    assert info.architecture == "x86_64"
    assert info.hypervisor_type == "test"
    assert isinstance(info.hypervisor_version, int) and info.hypervisor_version >= 1
    assert info.cpu_info["topology"] == {"sockets": sockets,
                                         "cores": vcpus // (sockets * threads),
                                         "threads": threads}
    assert info.supported_instances == [("x86_64", "test", "hvm")]


def test_disk_gb_argument_overrides_node_file(node: Path) -> None:
    assert LibvirtDriver(node_uri(node), disk_gb=42).host_info().disk_gb == 42


def test_write_test_node_rejects_bad_sizes(tmp_path: Path) -> None:
    for kwargs in ({"vcpus": 0, "memory_mb": 1}, {"vcpus": 1, "memory_mb": 0},
                   {"vcpus": 3, "memory_mb": 1, "sockets": 2}):
        with pytest.raises(ValueError):
            write_test_node(tmp_path / "x.xml", "x", **kwargs)  # type: ignore[arg-type]


def test_bad_uris(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="test:///ABS/PATH.xml"):
        LibvirtDriver("test:///default")
    with pytest.raises(ValueError, match="unsupported"):
        LibvirtDriver("xen:///system")
    with pytest.raises(HypervisorUnavailable, match="node file"):
        LibvirtDriver(node_uri(tmp_path / "missing.xml"))
    broken = tmp_path / "broken.xml"
    broken.write_text("<node><cpu>")
    with pytest.raises(HypervisorUnavailable):
        LibvirtDriver(node_uri(broken))


# --- spawn, list, lifecycle -------------------------------------------------------------


def test_spawn_defines_named_domain_with_metadata(drv: LibvirtDriver) -> None:
    iid = new_id()
    drv.spawn(iid, "web-1", 2, 2048, 20)
    assert drv.list_instances() == {iid: PowerState.RUNNING}
    # the driver's own connection (a second one would load the node file afresh)
    dom = drv._connection().lookupByName(domain_name(iid))
    root = ET.fromstring(dom.XMLDesc(0))
    assert root.findtext("name") == f"novalite-{iid}"
    assert root.findtext("uuid") == iid  # Nova's domain UUID is the instance's
    assert root.findtext("vcpu") == "2"
    assert root.find("memory").text == str(2048 * 1024)  # type: ignore[union-attr]
    meta = ET.fromstring(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, driver_mod.INSTANCE_NS))
    assert meta.get("id") == iid and meta.get("name") == "web-1"
    assert (meta.get("vcpus"), meta.get("memory_mb"), meta.get("root_gb")) == ("2", "2048", "20")


def test_non_uuid_ids_work(drv: LibvirtDriver) -> None:
    drv.spawn("server-0001", "a", 1, 128, 1)
    assert drv.power_state("server-0001") == PowerState.RUNNING
    drv.destroy("server-0001")


def test_power_transitions_follow_nova(drv: LibvirtDriver) -> None:
    iid = new_id()
    drv.spawn(iid, "vm", 1, 512, 1)
    assert drv.power_state(iid) == PowerState.RUNNING

    drv.pause(iid)
    assert drv.power_state(iid) == PowerState.PAUSED
    drv.pause(iid)  # already paused: nothing to do
    drv.unpause(iid)
    assert drv.power_state(iid) == PowerState.RUNNING

    # suspend = managedSave: shut off with a save image, as Nova's libvirt driver
    drv.suspend(iid)
    assert drv.power_state(iid) == PowerState.SHUTDOWN
    assert drv.is_suspended(iid)
    drv.resume(iid)
    assert drv.power_state(iid) == PowerState.RUNNING
    assert not drv.is_suspended(iid)

    drv.power_off(iid)
    assert drv.power_state(iid) == PowerState.SHUTDOWN
    assert not drv.is_suspended(iid)
    drv.power_off(iid)  # already off
    drv.power_on(iid)
    assert drv.power_state(iid) == PowerState.RUNNING

    assert drv.reboot(iid) == "soft"  # the test driver "shuts down" at once
    assert drv.power_state(iid) == PowerState.RUNNING
    assert drv.reboot(iid, hard=True) == "hard"
    assert drv.power_state(iid) == PowerState.RUNNING
    assert drv.list_instances() == {iid: PowerState.RUNNING}


def test_hard_reboot_starts_stopped_paused_and_suspended_guests(drv: LibvirtDriver) -> None:
    iid = new_id()
    drv.spawn(iid, "vm", 1, 512, 1)
    for put_down in (drv.power_off, drv.pause, drv.suspend):
        put_down(iid)
        assert drv.reboot(iid, hard=True) == "hard"
        assert drv.power_state(iid) == PowerState.RUNNING
        assert not drv.is_suspended(iid)  # the saved state is dropped, as Nova does
    # soft reboot of a guest that is not running falls back to hard (Nova)
    drv.power_off(iid)
    assert drv.reboot(iid) == "hard"
    assert drv.power_state(iid) == PowerState.RUNNING


def test_power_on_discards_a_suspended_state(drv: LibvirtDriver) -> None:
    iid = new_id()
    drv.spawn(iid, "vm", 1, 512, 1)
    drv.suspend(iid)
    drv.power_on(iid)
    assert drv.power_state(iid) == PowerState.RUNNING
    assert not drv.is_suspended(iid)


def test_actions_not_allowed_in_the_current_state(drv: LibvirtDriver) -> None:
    iid = new_id()
    drv.spawn(iid, "vm", 1, 512, 1)
    drv.unpause(iid)  # running: unpause has nothing to do
    drv.resume(iid)   # running: resume has nothing to do
    drv.power_off(iid)
    with pytest.raises(ActionFailed, match="pause"):
        drv.pause(iid)
    with pytest.raises(ActionFailed, match="not suspended"):
        drv.resume(iid)
    with pytest.raises(ActionFailed, match="not running"):
        drv.suspend(iid)
    with pytest.raises(ActionFailed):
        drv.unpause(iid)
    assert drv.power_state(iid) == PowerState.SHUTDOWN  # nothing changed
    assert isinstance(ActionFailed(iid, "x", "y"), DriverError)


def test_destroy_is_idempotent(drv: LibvirtDriver) -> None:
    a, b = new_id(), new_id()
    drv.spawn(a, "a", 1, 256, 1)
    drv.spawn(b, "b", 1, 256, 1)
    drv.suspend(b)
    drv.destroy(a)
    drv.destroy(a)
    drv.destroy(b)  # with its managed save image
    drv.destroy(new_id())  # never existed
    assert drv.list_instances() == {}


# --- restart ------------------------------------------------------------------------------


def test_instances_survive_a_new_driver(node: Path) -> None:
    first = LibvirtDriver(node_uri(node))
    ids = {name: new_id() for name in ("running", "paused", "suspended", "stopped")}
    for name, iid in ids.items():
        first.spawn(iid, name, 1, 512, 1)
    first.pause(ids["paused"])
    first.suspend(ids["suspended"])
    first.power_off(ids["stopped"])
    before = first.list_instances()
    first.close()
    del first

    # the agent restarts: a new driver (a new connection reloads the node file)
    second = LibvirtDriver(node_uri(node))
    assert second.list_instances() == before == {
        ids["running"]: PowerState.RUNNING,
        ids["paused"]: PowerState.PAUSED,
        ids["suspended"]: PowerState.SHUTDOWN,
        ids["stopped"]: PowerState.SHUTDOWN,
    }
    assert second.is_suspended(ids["suspended"])
    assert not second.is_suspended(ids["stopped"])
    second.resume(ids["suspended"])
    second.unpause(ids["paused"])
    second.power_on(ids["stopped"])
    assert set(second.list_instances().values()) == {PowerState.RUNNING}
    with pytest.raises(InstanceExists):
        second.spawn(ids["running"], "again", 1, 512, 1)  # no duplicate
    info = second.host_info()
    assert (info.hostname, info.vcpus, info.memory_mb) == ("host-a", 16, 32768)
    second.destroy(ids["running"])
    assert ids["running"] not in LibvirtDriver(node_uri(node)).list_instances()


def test_foreign_domains_are_ignored(drv: LibvirtDriver) -> None:
    conn = drv._connection()
    for name in ("someone-else", "novalite-without-metadata"):
        conn.defineXML(f"<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory>"
                       "<vcpu>1</vcpu><os><type>hvm</type></os></domain>")
    iid = new_id()
    drv.spawn(iid, "mine", 1, 256, 1)
    assert drv.list_instances() == {iid: PowerState.RUNNING}


def test_reconnects_when_the_connection_drops(drv: LibvirtDriver) -> None:
    iid = new_id()
    drv.spawn(iid, "vm", 1, 256, 1)
    conn = drv._connection()
    conn.close()  # behind the driver's back
    assert drv.power_state(iid) == PowerState.RUNNING
    drv.pause(iid)
    assert drv.list_instances() == {iid: PowerState.PAUSED}


def test_many_threads_one_driver(drv: LibvirtDriver) -> None:
    ids = [new_id() for _ in range(64)]
    errors: list[BaseException] = []

    def work(chunk: list[str]) -> None:
        try:
            for iid in chunk:
                drv.spawn(iid, "t", 1, 128, 1)
                drv.pause(iid)
                drv.list_instances()
                drv.unpause(iid)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(ids[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert drv.list_instances() == {iid: PowerState.RUNNING for iid in ids}
    assert LibvirtDriver(drv.uri).list_instances() == {iid: PowerState.RUNNING for iid in ids}

    def destroy(chunk: list[str]) -> None:
        for iid in chunk:
            drv.destroy(iid)

    threads = [threading.Thread(target=destroy, args=(ids[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert drv.list_instances() == {}


# --- errors ------------------------------------------------------------------------------


def test_unknown_instances_raise_instance_not_found(drv: LibvirtDriver) -> None:
    iid = new_id()
    calls = [drv.power_state, drv.pause, drv.unpause, drv.suspend, drv.resume,
             drv.power_off, drv.power_on, drv.reboot, drv.is_suspended,
             lambda i: drv.reboot(i, hard=True)]
    for call in calls:
        with pytest.raises(InstanceNotFound) as info:
            call(iid)
        assert info.value.instance_id == iid
        assert isinstance(info.value, DriverError)


def test_bad_ids_and_flavors(drv: LibvirtDriver) -> None:
    for bad in ("", "a/b", "x" * 200, "../etc", " sp"):
        with pytest.raises(InvalidInstanceId):
            drv.spawn(bad, "n", 1, 128, 1)
        with pytest.raises(InvalidInstanceId):
            drv.power_state(bad)
    with pytest.raises(SpawnFailed, match="invalid flavor"):
        drv.spawn(new_id(), "n", 0, 128, 1)
    with pytest.raises(SpawnFailed, match="invalid flavor"):
        drv.spawn(new_id(), "n", 1, 128, -1)
    iid = new_id()
    drv.spawn(iid, "n", 1, 128, 1)
    with pytest.raises(InstanceExists):
        drv.spawn(iid, "n", 1, 128, 1)
    assert drv.list_instances() == {iid: PowerState.RUNNING}


# --- images ------------------------------------------------------------------------------


def test_blank_image_and_info(tmp_path: Path) -> None:
    img = images.create_blank_image(tmp_path / "imgs" / "tiny.qcow2")
    assert img.format == "qcow2"
    assert img.virtual_size == 64 << 20
    assert img.virtual_size_gb == 1
    assert images.create_blank_image(img.path) == img  # idempotent
    assert images.image_format(img.path) == "qcow2"
    assert images.image_virtual_size(img.path) == 64 << 20
    raw = images.create_blank_image(tmp_path / "tiny.raw", 8, "raw")
    assert (raw.format, raw.virtual_size) == ("raw", 8 << 20)
    with pytest.raises(ImageError, match="exists with format"):
        images.create_blank_image(raw.path, 8, "qcow2")


def test_overlay_is_sized_to_the_flavor(tmp_path: Path) -> None:
    base = images.create_blank_image(tmp_path / "base.qcow2", 64)
    images.create_overlay(tmp_path / "disk", base.path, "qcow2", 3)
    info = images.image_info(tmp_path / "disk")
    assert (info.format, info.virtual_size, info.backing_file) == ("qcow2", 3 << 30, base.path)
    images.create_overlay(tmp_path / "disk0", base.path, "qcow2", 0)
    assert images.image_info(tmp_path / "disk0").virtual_size == 64 << 20


def test_image_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="does not exist"):
        images.image_info(tmp_path / "nope.qcow2")
    with pytest.raises(ImageError, match="disk_format"):
        images.create_blank_image(tmp_path / "x.vmdk", 8, "vmdk")
    with pytest.raises(ImageError, match="size_mb"):
        images.create_blank_image(tmp_path / "x.qcow2", 0)
    with pytest.raises(ImageError, match="qemu-img create failed"):
        images.create_overlay(tmp_path / "d", tmp_path / "missing", "qcow2", 1)
