"""Moves of real QEMU guests (issue 12, item 7): two compute agents on this
machine, each its own host with its own instances directory, sharing the one
libvirtd. What libvirt really runs is checked with `virsh` after each move: one
domain of the server, its disk in the destination's directory, its flavor's
memory, and for a live migration a guest that carried on ("restored") rather than
one that booted again. A guest booted from the setup's image (issue 13) on a
network with a config drive keeps, through a cold and a live migration, its
addresses, its DHCP host entry (shared by the two hosts of this machine), its
config drive and its kernel, as its console shows.

Never skipped silently: without libvirtd these tests FAIL (NOVALITE_SKIP_QEMU=1
skips them deliberately; CI never sets it). Every domain is destroyed afterwards."""

from __future__ import annotations

import socket
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterator

import pytest

from novalite.client.guest_image import register
from novalite.cloud import LocalCloud
from novalite.rpc.novalite.compute.v1 import (
    flavors_pb2,
    images_pb2,
    images_pb2_grpc,
    servers_pb2,
    states_pb2,
)
from novalite.virt import LibvirtDriver, domain_name, images

from moving import Ledger, MovesApi
from qemu import libvirtd  # noqa: F401 - the fixture, for every test here
from qemu import GUEST_MB, URI, all_domains, skip_if_not_wanted, virsh
from test_guests_qemu import BOOT_TIMEOUT, GUEST_IMAGE, NETWORKS_PATH, READY, GuestApi, host_entries

skip_if_not_wanted()

# two hosts on this machine, named after it
HOST_A = f"{socket.gethostname()}-a"
HOST_B = f"{socket.gethostname()}-b"


def _dirs(cloud: LocalCloud) -> dict[str, Path]:
    return {HOST_A: cloud.data_dir / "instances-a", HOST_B: cloud.data_dir / "instances-b"}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    # one simulated host beside them (a LocalCloud has one); the image's
    # img_hv_type=qemu keeps the servers off it
    c = LocalCloud(tmp_path_factory.mktemp("qemu-moves"), hosts=1, report_interval=1)
    try:
        with c:
            for name, host in (("qemu_a", HOST_A), ("qemu_b", HOST_B)):
                c.start_agent(name, [host], virt_uri=URI, instances_path=_dirs(c)[host])
            yield c
    finally:
        for path in _dirs(c).values():
            with LibvirtDriver(URI, instances_path=path) as driver:
                for iid in driver.list_instances():
                    driver.destroy(iid)


@pytest.fixture(scope="module")
def admin(cloud: LocalCloud) -> MovesApi:
    return MovesApi(cloud, cloud.admin_token())


@pytest.fixture
def ledger(cloud: LocalCloud) -> Iterator[Ledger]:
    ledger = Ledger(cloud, _dirs(cloud))
    yield ledger
    ledger.close()


@pytest.fixture(scope="module")
def flavors(admin: MovesApi) -> dict[str, Any]:
    return {name: admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
        name=f"qemu.{name}", vcpus=1, memory_mb=ram, root_gb=disk))
        for name, (ram, disk) in {"tiny": (GUEST_MB, 1), "bigger": (GUEST_MB + 32, 2)}.items()}


@pytest.fixture(scope="module")
def image(cloud: LocalCloud, admin: MovesApi) -> Any:
    path = images.create_blank_image(cloud.data_dir / "images" / "tiny.qcow2", GUEST_MB).path
    return images_pb2_grpc.ImagesStub(admin.channel).CreateImage(images_pb2.CreateImageRequest(
        name="tiny", path=path, properties={"img_hv_type": "qemu"}))


@pytest.fixture(scope="module")
def guest_image(admin: MovesApi) -> Any:
    for what, path in (("networks", NETWORKS_PATH / "private" / "network.json"),
                       ("guest image", GUEST_IMAGE / "current" / "manifest.json")):
        if not path.exists():
            pytest.fail(f"the setup's {what} are missing ({path}): run `sudo make setup`",
                        pytrace=False)
    return register(images_pb2_grpc.ImagesStub(admin.channel), GUEST_IMAGE)


def _boot(admin: MovesApi, flavors: dict[str, Any], image: Any, host: str = HOST_A) -> Any:
    return admin.boot(flavors["tiny"].id, zone=f"nova:{host}", image_id=image.id)


def _domain(instance_id: str) -> dict[str, Any]:
    """What libvirt runs of the server: its state (with the reason), memory, the
    disk file, the disks and the NICs' MAC addresses of its one domain."""
    name = domain_name(instance_id)
    assert all_domains().count(name) == 1
    xml = ET.fromstring(virsh("dumpxml", name))
    disk = xml.find("devices/disk/source")
    return {"state": virsh("domstate", "--reason", name).strip(),
            "memory_mib": int(xml.findtext("memory") or 0) // 1024,
            "disk": Path(disk.get("file", "")) if disk is not None else None,
            "disks": [Path(d.get("file", "")).name for d in xml.findall("devices/disk/source")],
            "macs": sorted(m.get("address", "") for m in xml.findall("devices/interface/mac"))}


def test_resize_of_a_real_guest_copies_its_disk_to_the_other_host(
        cloud: LocalCloud, admin: MovesApi, ledger: Ledger, flavors: dict[str, Any],
        image: Any) -> None:
    server = _boot(admin, flavors, image)
    assert _domain(server.id)["disk"].parent.parent == _dirs(cloud)[HOST_A]
    admin.servers.ResizeServer(servers_pb2.ResizeServerRequest(id=server.id,
                                                                flavor_id=flavors["bigger"].id))
    resized = admin.settle(server.id, timeout=120)
    assert (resized.status, resized.host) == ("VERIFY_RESIZE", HOST_B), resized
    domain = _domain(server.id)
    assert domain["state"].startswith("running") and domain["memory_mib"] == GUEST_MB + 32
    assert domain["disk"].parent.parent == _dirs(cloud)[HOST_B]
    assert images.image_info(domain["disk"]).virtual_size == 2 << 30  # grown to the new root disk
    stash = _dirs(cloud)[HOST_A] / f"{server.id}_resize"
    assert (stash / "disk").is_file()  # the old copy, kept until the verdict
    admin.servers.ConfirmResize(servers_pb2.ConfirmResizeRequest(id=server.id))
    assert admin.settle(server.id).status == "ACTIVE"
    assert not stash.exists()
    assert not (_dirs(cloud)[HOST_A] / server.id).exists()
    ledger.assert_settled(server.id)
    assert _domain(server.id)["disk"].parent.parent == _dirs(cloud)[HOST_B]


def test_cold_migration_of_a_real_guest_and_its_revert(
        cloud: LocalCloud, admin: MovesApi, ledger: Ledger, flavors: dict[str, Any],
        image: Any) -> None:
    server = _boot(admin, flavors, image)
    admin.servers.MigrateServer(servers_pb2.MigrateServerRequest(id=server.id))
    moved = admin.settle(server.id, timeout=120)
    assert (moved.status, moved.host) == ("VERIFY_RESIZE", HOST_B)
    assert _domain(server.id)["disk"].parent.parent == _dirs(cloud)[HOST_B]
    admin.servers.RevertResize(servers_pb2.RevertResizeRequest(id=server.id))
    back = admin.settle(server.id, timeout=120)
    assert (back.status, back.host, back.power_state) == ("ACTIVE", HOST_A, 1)
    domain = _domain(server.id)
    assert domain["state"].startswith("running") and domain["memory_mib"] == GUEST_MB
    assert domain["disk"].parent.parent == _dirs(cloud)[HOST_A]
    assert not (_dirs(cloud)[HOST_B] / server.id).exists()
    # the destination's delete removed the DHCP host entry it shares with the
    # source (one machine): the revert made it again
    assert server.id in host_entries()
    ledger.assert_settled(server.id)


def _addresses(server: Any) -> list[tuple[str, str, str]]:
    return sorted((a.network, a.address, a.mac) for a in server.addresses)


def test_a_real_guest_keeps_its_network_and_config_drive_through_cold_and_live_migration(
        cloud: LocalCloud, admin: MovesApi, ledger: Ledger, guest_image: Any) -> None:
    guests = GuestApi(cloud, cloud.admin_token())
    flavor = admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
        name="qemu.guest", vcpus=1, memory_mb=128, root_gb=1))
    [created] = admin.servers.CreateServer(servers_pb2.CreateServerRequest(
        name="mover", flavor_id=flavor.id, image_id=guest_image.id, networks=["private"],
        availability_zone=f"nova:{HOST_A}",
        user_data=b"#!/bin/sh\necho user data of mover\n")).servers
    server = admin.settle(created.id, timeout=BOOT_TIMEOUT)
    assert (server.status, server.host) == ("ACTIVE", HOST_A), server
    [(_, address, mac)] = addresses = _addresses(server)
    guests.until_console(server.id, READY)
    try:
        # a cold migration: the guest boots again on the other host, from its own
        # disk (its second boot), with its config drive and its address
        admin.servers.MigrateServer(servers_pb2.MigrateServerRequest(id=server.id))
        moved = admin.settle(server.id, timeout=120)
        assert (moved.status, moved.host) == ("VERIFY_RESIZE", HOST_B), moved
        assert _addresses(moved) == addresses
        out = guests.until_console(server.id, READY, count=2)
        assert "root disk /dev/vda: boot 2 of this disk" in out
        assert out.count("config drive on /dev/vdb") == 2
        assert out.count(f"novalite-guest: ip eth0 {address}/16 mac {mac}") == 2, out
        assert out.count("user data of mover") == 2
        assert out.count("admin password set") == 2  # the drive it was given, copied
        admin.servers.ConfirmResize(servers_pb2.ConfirmResizeRequest(id=server.id))
        assert admin.settle(server.id).status == "ACTIVE"
        # the source's confirm left the entry: the guest uses it on this machine
        assert server.id in host_entries()

        # a live migration back: it carries on (no third boot) with its address
        admin.servers.LiveMigrateServer(servers_pb2.LiveMigrateServerRequest(
            id=server.id, host=HOST_A))
        back = admin.settle(server.id, timeout=120)
        assert (back.status, back.host) == ("ACTIVE", HOST_A), back
        assert _addresses(back) == addresses
        domain = _domain(server.id)
        assert domain["state"] == "running (restored)", domain
        assert domain["disk"].parent.parent == _dirs(cloud)[HOST_A]
        assert server.id in host_entries()
        ping = subprocess.run(["ping", "-c", "1", "-W", "5", address],
                              capture_output=True, text=True, check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert guests.console(server.id).count("init started") == 2
        ledger.assert_settled(server.id)

        # a rebuild: a fresh disk from the image, booted with the same NICs
        admin.servers.RebuildServer(servers_pb2.RebuildServerRequest(
            id=server.id, image_id=guest_image.id))
        rebuilt = admin.settle(server.id, timeout=120)
        assert (rebuilt.status, rebuilt.host) == ("ACTIVE", HOST_A), rebuilt
        assert _addresses(rebuilt) == addresses
        out = guests.until_console(server.id, READY)
        assert "root disk /dev/vda: boot 1 of this disk" in out
        assert "config drive on /dev/vdb" in out
        assert f"novalite-guest: ip eth0 {address}/16 mac {mac}" in out, out
    finally:
        admin.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=server.id))
        admin.gone(server.id)
    assert server.id not in host_entries()


@pytest.mark.parametrize("paused", [False, True])
def test_live_migration_of_a_real_guest_carries_on_on_the_other_host(
        cloud: LocalCloud, admin: MovesApi, ledger: Ledger, flavors: dict[str, Any],
        image: Any, paused: bool) -> None:
    server = _boot(admin, flavors, image, HOST_B)
    if paused:
        admin.servers.PauseServer(servers_pb2.PauseServerRequest(id=server.id))
        admin.settle(server.id)
    admin.servers.LiveMigrateServer(servers_pb2.LiveMigrateServerRequest(id=server.id, host=HOST_A))
    moved = admin.settle(server.id, timeout=120)
    assert (moved.status, moved.host) == ("PAUSED" if paused else "ACTIVE", HOST_A)
    assert moved.power_state == (states_pb2.POWER_STATE_PAUSED if paused
                                 else states_pb2.POWER_STATE_RUNNING)
    domain = _domain(server.id)
    # the guest's memory and devices were restored there, not booted afresh
    # (libvirt's reasons: a restore from the saved state, left paused when it was)
    assert domain["state"] == ("paused (migrating)" if paused else "running (restored)"), domain
    assert domain["disk"].parent.parent == _dirs(cloud)[HOST_A]
    assert not (_dirs(cloud)[HOST_B] / server.id).exists()
    assert not (_dirs(cloud)[HOST_B] / f"{server.id}_resize").exists()
    ledger.assert_settled(server.id)
    admin.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=server.id))
    admin.gone(server.id)
    assert domain_name(server.id) not in all_domains()


def test_shelve_snapshots_a_real_guests_disk_and_unshelve_boots_it_on_the_other_host(
        cloud: LocalCloud, admin: MovesApi, ledger: Ledger, flavors: dict[str, Any],
        image: Any) -> None:
    server = _boot(admin, flavors, image)
    admin.servers.ShelveServer(servers_pb2.ShelveServerRequest(id=server.id))
    shelved = admin.settle(server.id, timeout=120)
    assert (shelved.status, shelved.host) == ("SHELVED_OFFLOADED", "")
    assert domain_name(server.id) not in all_domains()
    snapshot = _dirs(cloud)[HOST_A] / "snapshots" / f"{server.id}.qcow2"
    assert images.image_info(snapshot).backing_file is None  # standalone, outlives the image
    admin.servers.UnshelveServer(servers_pb2.UnshelveServerRequest(id=server.id, host=HOST_B))
    back = admin.settle(server.id, timeout=120)
    assert (back.status, back.host) == ("ACTIVE", HOST_B)
    domain = _domain(server.id)
    assert domain["state"].startswith("running")
    assert images.image_info(domain["disk"]).backing_file == str(snapshot)
    # built again with what it was given: its NICs and a config drive
    assert domain["macs"] == sorted(a.mac for a in back.addresses) != []
    assert domain["disks"] == ["disk", "disk.config"]
    assert _addresses(back) == _addresses(server)
    ledger.assert_settled(server.id)
