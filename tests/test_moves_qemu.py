"""Moves of real QEMU guests (issue 12, item 7): two compute agents on this
machine, each its own host with its own instances directory, sharing the one
libvirtd. What libvirt really runs is checked with `virsh` after each move: one
domain of the server, its disk in the destination's directory, its flavor's
memory, and for a live migration a guest that carried on ("restored") rather than
one that booted again.

Never skipped silently: without libvirtd these tests FAIL (NOVALITE_SKIP_QEMU=1
skips them deliberately; CI never sets it). Every domain is destroyed afterwards."""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterator

import pytest

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


def _boot(admin: MovesApi, flavors: dict[str, Any], image: Any, host: str = HOST_A) -> Any:
    return admin.boot(flavors["tiny"].id, zone=f"nova:{host}", image_id=image.id)


def _domain(instance_id: str) -> dict[str, Any]:
    """What libvirt runs of the server: its state (with the reason), memory and
    the disk file of its one domain."""
    name = domain_name(instance_id)
    assert all_domains().count(name) == 1
    xml = ET.fromstring(virsh("dumpxml", name))
    disk = xml.find("devices/disk/source")
    return {"state": virsh("domstate", "--reason", name).strip(),
            "memory_mib": int(xml.findtext("memory") or 0) // 1024,
            "disk": Path(disk.get("file", "")) if disk is not None else None}


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
    ledger.assert_settled(server.id)


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
    ledger.assert_settled(server.id)
