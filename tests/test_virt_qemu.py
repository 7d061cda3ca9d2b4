"""The libvirt driver against real QEMU guests on `qemu:///system` (software emulation,
64 MiB guests on a blank 64 MiB image: the BIOS finds nothing to boot and waits, which
is enough for every lifecycle action).

These tests are never skipped silently: if libvirtd cannot be reached they FAIL and
say to run `sudo scripts/setup_libvirt.sh`. A developer without root may skip them
explicitly with NOVALITE_SKIP_QEMU=1 (CI never sets it).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from novalite.virt import (
    HypervisorUnavailable,
    InstanceExists,
    InstanceNotFound,
    LibvirtDriver,
    SpawnFailed,
    domain_name,
)
from novalite.objects.states import PowerState
from novalite.virt import driver as driver_mod
from novalite.virt import images
from novalite.virt.cpu_traits import cpu_traits

from qemu import GUEST_MB, URI, domstate, require_libvirtd, setup_failure, skip_if_not_wanted, virsh

skip_if_not_wanted()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("qemu")


@pytest.fixture(scope="module")
def image(workdir: Path) -> images.ImageInfo:
    return images.create_blank_image(workdir / "images" / "tiny.qcow2", GUEST_MB)


@pytest.fixture(scope="module")
def drv(workdir: Path) -> Iterator[LibvirtDriver]:
    require_libvirtd()
    try:
        d = LibvirtDriver(URI, instances_path=workdir / "instances", soft_reboot_timeout=1.0)
    except HypervisorUnavailable as exc:
        setup_failure(str(exc))
    yield d
    d.close()


@pytest.fixture
def spawned(drv: LibvirtDriver, image: images.ImageInfo) -> Iterator[list[str]]:
    """Instance ids a test spawned: destroyed afterwards whatever happened."""
    ids: list[str] = []
    yield ids
    for iid in ids:
        drv.destroy(iid)


def spawn(drv: LibvirtDriver, ids: list[str], image: images.ImageInfo | None,
          root_gb: int = 1) -> str:
    iid = str(uuid.uuid4())
    ids.append(iid)
    drv.spawn(iid, f"guest-{len(ids)}", 1, GUEST_MB, root_gb,
              image.path if image else None, "qcow2")
    return iid


def test_host_info(drv: LibvirtDriver) -> None:
    info = drv.host_info()
    assert info.hypervisor_type == "QEMU"
    assert info.architecture == "x86_64"
    assert info.vcpus == os.cpu_count()
    assert info.memory_mb > 0 and info.disk_gb > 0
    version = virsh("version", "--daemon")
    major, minor, release = (info.hypervisor_version // 1_000_000,
                             info.hypervisor_version // 1000 % 1000,
                             info.hypervisor_version % 1000)
    assert f"QEMU {major}.{minor}.{release}" in version
    assert ("x86_64", "qemu", "hvm") in info.supported_instances
    assert info.cpu_info["arch"] == "x86_64" and "topology" in info.cpu_info
    # the CPU's traits, from its features expanded with its model's (the
    # capabilities list only the extra ones: SSE2 comes with every x86_64 model)
    features = set(info.cpu_info["features"])
    assert {"sse", "sse2"} <= features
    assert {"HW_CPU_X86_SSE", "HW_CPU_X86_SSE2"} <= info.traits
    assert info.traits == cpu_traits(features)
    with open("/proc/cpuinfo") as f:
        flags = set(next(line for line in f if line.startswith("flags")).split(":")[1].split())
    assert ("HW_CPU_X86_AVX2" in info.traits) == ("avx2" in flags)


def test_spawn_real_guest(drv: LibvirtDriver, image: images.ImageInfo,
                          spawned: list[str]) -> None:
    started = time.monotonic()
    iid = spawn(drv, spawned, image, root_gb=2)
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"create+start took {elapsed:.2f} s"
    assert domain_name(iid) in virsh("list", "--name").split()
    assert domstate(iid) == "running"
    assert drv.power_state(iid) == PowerState.RUNNING
    assert drv.list_instances()[iid] == PowerState.RUNNING

    # the disk: a qcow2 overlay on the image, sized to the flavor's root disk
    inst_dir = drv.instance_dir(iid)
    disk = images.image_info(inst_dir / "disk")
    assert (disk.format, disk.virtual_size, disk.backing_file) == ("qcow2", 2 << 30, image.path)
    assert (inst_dir / "console.log").exists()

    xml = ET.fromstring(virsh("dumpxml", domain_name(iid)))
    assert xml.get("type") == "qemu"
    assert xml.findtext("uuid") == iid
    assert xml.findtext("devices/emulator") == "/usr/bin/qemu-system-x86_64"
    assert xml.find("devices/interface") is None  # no NIC
    assert xml.find("devices/serial/source").get("path") == str(inst_dir / "console.log")  # type: ignore[union-attr]
    assert int(xml.findtext("memory") or 0) == GUEST_MB * 1024
    meta = ET.fromstring(virsh("metadata", domain_name(iid), driver_mod.INSTANCE_NS))
    assert meta.get("id") == iid


def test_lifecycle(drv: LibvirtDriver, image: images.ImageInfo, spawned: list[str]) -> None:
    iid = spawn(drv, spawned, image)
    name = domain_name(iid)

    drv.pause(iid)
    assert (drv.power_state(iid), domstate(iid)) == (PowerState.PAUSED, "paused")
    drv.unpause(iid)
    assert (drv.power_state(iid), domstate(iid)) == (PowerState.RUNNING, "running")

    drv.suspend(iid)  # managedSave
    assert (drv.power_state(iid), domstate(iid)) == (PowerState.SHUTDOWN, "shut off")
    assert drv.is_suspended(iid)
    assert "Managed save:   yes" in virsh("dominfo", name)
    drv.resume(iid)
    assert (drv.power_state(iid), domstate(iid)) == (PowerState.RUNNING, "running")
    assert "Managed save:   no" in virsh("dominfo", name)

    drv.power_off(iid)
    assert (drv.power_state(iid), domstate(iid)) == (PowerState.SHUTDOWN, "shut off")
    drv.power_on(iid)
    assert (drv.power_state(iid), domstate(iid)) == (PowerState.RUNNING, "running")

    # a hard reboot is a new QEMU process: libvirt gives the domain a new id
    before = virsh("domid", name).strip()
    assert drv.reboot(iid, hard=True) == "hard"
    after = virsh("domid", name).strip()
    assert after != before and domstate(iid) == "running"
    # soft: ACPI shutdown request; a guest with no OS ignores it, so after
    # soft_reboot_timeout the driver falls back to a hard reboot, as Nova does
    assert drv.reboot(iid) in ("soft", "hard")
    assert virsh("domid", name).strip() != after
    assert (drv.power_state(iid), domstate(iid)) == (PowerState.RUNNING, "running")


def test_destroy_removes_domain_and_disk(drv: LibvirtDriver, image: images.ImageInfo,
                                         spawned: list[str]) -> None:
    iid = spawn(drv, spawned, image)
    inst_dir = drv.instance_dir(iid)
    assert (inst_dir / "disk").exists()
    drv.suspend(iid)  # with a managed save image, which must go too
    drv.destroy(iid)
    assert domain_name(iid) not in virsh("list", "--all", "--name").split()
    assert not inst_dir.exists()
    assert iid not in drv.list_instances()
    with pytest.raises(InstanceNotFound):
        drv.power_state(iid)
    drv.destroy(iid)  # idempotent
    assert Path(image.path).exists()  # the image itself is never touched


def test_guest_destroyed_behind_the_drivers_back(drv: LibvirtDriver, image: images.ImageInfo,
                                                 spawned: list[str]) -> None:
    iid = spawn(drv, spawned, image)
    virsh("destroy", domain_name(iid))
    assert drv.power_state(iid) == PowerState.SHUTDOWN
    assert drv.list_instances()[iid] == PowerState.SHUTDOWN
    virsh("undefine", domain_name(iid))
    with pytest.raises(InstanceNotFound):
        drv.power_state(iid)
    assert iid not in drv.list_instances()


def test_a_new_driver_finds_its_guests(drv: LibvirtDriver, image: images.ImageInfo,
                                       workdir: Path, spawned: list[str]) -> None:
    running, paused = spawn(drv, spawned, image), spawn(drv, spawned, image)
    drv.pause(paused)
    restarted = LibvirtDriver(URI, instances_path=workdir / "instances")
    found = restarted.list_instances()
    assert found[running] == PowerState.RUNNING
    assert found[paused] == PowerState.PAUSED
    with pytest.raises(InstanceExists):
        restarted.spawn(running, "dup", 1, GUEST_MB, 1, image.path, "qcow2")
    restarted.unpause(paused)
    assert drv.power_state(paused) == PowerState.RUNNING
    restarted.close()


def test_spawn_without_image_gets_a_blank_disk(drv: LibvirtDriver,
                                               spawned: list[str]) -> None:
    iid = spawn(drv, spawned, None, root_gb=1)
    disk = images.image_info(drv.instance_dir(iid) / "disk")
    assert (disk.virtual_size, disk.backing_file) == (1 << 30, None)
    assert drv.power_state(iid) == PowerState.RUNNING


def test_spawn_failures_leave_nothing_behind(drv: LibvirtDriver, image: images.ImageInfo,
                                             workdir: Path) -> None:
    # an image larger than the flavor's root disk
    big = images.create_blank_image(workdir / "images" / "big.qcow2", 2048)
    iid = str(uuid.uuid4())
    with pytest.raises(SpawnFailed, match="smaller than the image"):
        drv.spawn(iid, "x", 1, GUEST_MB, 1, big.path, "qcow2")
    assert not drv.instance_dir(iid).exists()
    # the wrong format for the image
    with pytest.raises(SpawnFailed, match="is qcow2, not raw"):
        drv.spawn(iid, "x", 1, GUEST_MB, 1, image.path, "raw")
    # libvirt refuses to start: its message comes through, nothing is left defined
    broken = LibvirtDriver(URI, instances_path=workdir / "instances",
                           emulator="/usr/bin/no-such-qemu")
    with pytest.raises(SpawnFailed) as info:
        broken.spawn(iid, "x", 1, GUEST_MB, 1, image.path, "qcow2")
    assert "no-such-qemu" in str(info.value)
    assert domain_name(iid) not in virsh("list", "--all", "--name").split()
    assert not drv.instance_dir(iid).exists()
    with pytest.raises(InstanceNotFound):
        drv.power_state(iid)


def test_guests_from_several_threads(drv: LibvirtDriver, image: images.ImageInfo,
                                     spawned: list[str]) -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    spawned.extend(ids)
    errors: list[BaseException] = []

    def boot(iid: str) -> None:
        try:
            drv.spawn(iid, "t", 1, GUEST_MB, 1, image.path, "qcow2")
            drv.pause(iid)
            drv.unpause(iid)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=boot, args=(iid,)) for iid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    found = drv.list_instances()
    assert all(found[iid] == PowerState.RUNNING for iid in ids)
    running = virsh("list", "--name").split()
    assert all(domain_name(iid) in running for iid in ids)


def test_reconnects_when_the_connection_drops(drv: LibvirtDriver, image: images.ImageInfo,
                                              spawned: list[str]) -> None:
    iid = spawn(drv, spawned, image)
    drv._connection().close()  # behind the driver's back
    assert drv.power_state(iid) == PowerState.RUNNING
    assert drv.list_instances()[iid] == PowerState.RUNNING


# --- moves between two drivers on the one libvirtd ------------------------------------------

def test_two_drivers_share_libvirtd_and_each_step_of_a_move_may_be_repeated(
        drv: LibvirtDriver, workdir: Path, image: images.ImageInfo, spawned: list[str]) -> None:
    """Two hosts on this machine: each driver sees only its own guests; a move's
    steps, each done twice (as after a crash), leave one domain, on the side the
    move got to, running as it was (a live move: restored, not booted)."""
    other = LibvirtDriver(URI, instances_path=workdir / "instances-other")
    try:
        iid = spawn(drv, spawned, image)
        assert iid not in other.list_instances()
        with pytest.raises(InstanceNotFound):
            other.power_state(iid)  # the same domain name, another driver's guest
        [source] = {drv.migrate_disk_and_power_off(iid, live=True) for _ in range(2)}
        assert iid not in drv.list_instances()
        for _ in range(2):
            other.finish_migration(iid, "moved", 1, GUEST_MB, 1, source=source, power_on=True,
                                   image_path=image.path)
        assert other.list_instances() == {iid: PowerState.RUNNING}
        assert virsh("domstate", "--reason", domain_name(iid)).strip() == "running (restored)"
        # undone: the destination's copy goes, the source's is back, restored again
        other.destroy(iid)
        for _ in range(2):
            drv.finish_revert_migration(iid, power_on=False)
        assert drv.list_instances() == {iid: PowerState.RUNNING}
        assert not drv.has_stash(iid) and not (workdir / "instances-other" / iid).exists()
    finally:
        other.close()
