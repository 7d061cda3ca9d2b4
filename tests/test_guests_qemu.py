"""Guests a user can use (issue 13), end to end with real QEMU guests: a cloud of
separate processes (LocalCloud) whose only host is this machine, on the networks
scripts/setup_network.sh made, booting the image scripts/build_guest_image.sh made
from Debian's packages (registered through the Images API), driven only through
the public gRPC API and the `novalite` command.

* two servers on one network: each prints its address and its config drive's user
  data on its console; one pings the other; the addresses in the API are the ones
  the guests got by DHCP; the host reaches them; the key pair reaches the guest;
  delete frees the addresses (and the DHCP host entries);
* GetConsoleOutput's last N lines, and `novalite server console-log`;
* a soft reboot is a real one (the guest powers off on ACPI's request and boots
  again: its disk counts a second boot), and the guest's own poweroff is seen by
  the power sync: the server goes SHUTOFF, as in Nova.

Never skipped silently: without libvirtd these tests FAIL (NOVALITE_SKIP_QEMU=1
skips them deliberately); without the setup's networks or image they fail naming
the script that makes them.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
import pytest

from novalite.client.guest_image import register
from novalite.cloud import LocalCloud
from novalite.demo import pinger
from novalite.rpc.novalite.compute.v1 import (
    flavors_pb2,
    images_pb2,
    keypairs_pb2,
    keypairs_pb2_grpc,
    networks_pb2,
    networks_pb2_grpc,
    servers_pb2,
    states_pb2,
)

from helpers import cloud_database, cloud_env, run_cli
from qemu import libvirtd  # noqa: F401 - the fixture, for every test here
from qemu import skip_if_not_wanted
from test_e2e_qemu_only_host import QemuApi, _cleanup_guests

ROOT = Path(__file__).resolve().parent.parent
GUEST_IMAGE = ROOT / ".venv" / "guest"
NETWORKS_PATH = Path("/var/lib/novalite/networks")
READY = "novalite-guest: ready"
# a guest boots in 3-5 s here (software emulation); under load, much more
BOOT_TIMEOUT = 120.0

skip_if_not_wanted()


class GuestApi(QemuApi):
    def __init__(self, cloud: LocalCloud, token: str) -> None:
        super().__init__(cloud, token)
        self.keypairs = keypairs_pb2_grpc.KeypairsStub(self.channel)
        self.networks = networks_pb2_grpc.NetworksStub(self.channel)

    def console(self, sid: str, length: int | None = None) -> str:
        req = servers_pb2.GetConsoleOutputRequest(id=sid)
        if length is not None:
            req.length = length
        return str(self.servers.GetConsoleOutput(req).output)

    def until_console(self, sid: str, pattern: str, timeout: float = BOOT_TIMEOUT,
                      count: int = 1) -> str:
        """The console once ``pattern`` (a regular expression) shows ``count`` times."""
        deadline = time.monotonic() + timeout
        output = ""
        while time.monotonic() < deadline:
            try:
                output = self.console(sid)
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e  # still building
            if len(re.findall(pattern, output)) >= count:
                return output
            server = self.get(sid)
            assert server.status != "ERROR", server.fault
            time.sleep(0.2)
        raise AssertionError(f"{sid}: {pattern!r} not on the console within {timeout:.0f} s:\n{output}")

    def until_status(self, sid: str, status: str, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            server = self.get(sid)
            if server.status == status and not server.task_state:
                return server
            assert time.monotonic() < deadline, f"{sid} not {status}: {server.status}"
            time.sleep(0.1)


def host_entries(network: str = "private") -> set[str]:
    """The DHCP host entries (instance ids) the network's dnsmasq has."""
    return {p.name for p in (NETWORKS_PATH / network / "hosts").iterdir()
            if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def cloud(libvirtd: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    for what, path, script in (("networks", NETWORKS_PATH / "private" / "network.json",
                                "scripts/setup_network.sh"),
                               ("guest image", GUEST_IMAGE / "current" / "manifest.json",
                                "scripts/build_guest_image.sh")):
        if not path.exists():
            pytest.fail(f"the setup's {what} are missing ({path}): run `sudo make setup` "
                        f"(it runs {script})", pytrace=False)
    # the power sync every second, so the guest's own poweroff shows at once; a stop
    # waits for the guest's clean shutdown (it has an OS now)
    c = LocalCloud(tmp_path_factory.mktemp("guests"), hosts=0, real_host=True,
                   report_interval=1, sync_power_state_interval=1,
                   wait_soft_reboot_seconds=30.0, shutdown_timeout=30.0)
    with c:
        try:
            yield c
        finally:
            _cleanup_guests(c)


@pytest.fixture(scope="module")
def admin(cloud: LocalCloud) -> GuestApi:
    return GuestApi(cloud, cloud.admin_token())


@pytest.fixture(scope="module")
def user(cloud: LocalCloud) -> GuestApi:
    return GuestApi(cloud, cloud.member_token("guests", "alice"))


@pytest.fixture(scope="module")
def image(admin: GuestApi) -> Any:
    return register(admin.images, GUEST_IMAGE)


@pytest.fixture(scope="module")
def flavor(admin: GuestApi) -> Any:
    return admin.flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
        name="guest.small", vcpus=1, memory_mb=128, root_gb=1))


@pytest.fixture
def boot(user: GuestApi, flavor: Any, image: Any) -> Iterator[Callable[..., Any]]:
    """boot(name, user_data=..., **CreateServerRequest fields): the server, once
    ACTIVE. Every server a test booted is deleted afterwards."""
    booted: list[str] = []

    def create(name: str, **fields: Any) -> Any:
        fields.setdefault("networks", ["private"])
        server = user.servers.CreateServer(servers_pb2.CreateServerRequest(
            name=name, flavor_id=flavor.id, image_id=image.id, **fields)).servers[0]
        booted.append(server.id)
        return user.until_status(server.id, "ACTIVE", BOOT_TIMEOUT)

    yield create
    for sid in booted:
        try:
            user.delete(sid)
        except (grpc.RpcError, AssertionError):
            pass


def test_the_image_is_registered_with_its_checksum_size_and_properties(admin: GuestApi,
                                                                        image: Any) -> None:
    manifest = json.loads((GUEST_IMAGE / "current" / "manifest.json").read_text())
    disk = manifest["files"]["disk.qcow2"]
    assert (image.checksum, image.size_bytes) == (disk["md5"], disk["size"])
    assert image.properties["img_hv_type"] == "qemu"
    kernel = admin.images.GetImage(images_pb2.GetImageRequest(
        id=image.properties["kernel_id"]))
    assert (kernel.disk_format, kernel.checksum) == ("aki", manifest["files"]["vmlinuz"]["md5"])
    # registering again finds the same images
    assert register(admin.images, GUEST_IMAGE).id == image.id


def test_two_guests_on_one_network_reach_each_other(cloud: LocalCloud, user: GuestApi,
                                                    boot: Callable[..., Any]) -> None:
    networks = {n.name: n for n in user.networks.ListNetworks(
        networks_pb2.ListNetworksRequest()).networks}
    assert "private" in networks and networks["private"].bridge == ""  # members: no bridge
    key = user.keypairs.CreateKeypair(keypairs_pb2.CreateKeypairRequest(name="alice-key"))
    assert key.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")

    first = boot("first", key_name="alice-key",
                 user_data=b"#!/bin/sh\necho user data of first: hello\n")
    [address] = first.addresses
    assert (address.network, address.type, address.version) == ("private", "fixed", 4)
    assert first.key_name == "alice-key" and first.config_drive
    # the two boot side by side: the second waits for the first to answer
    second = boot("second", user_data=b"#!/bin/sh\necho user data of second\n"
                  + pinger(address.address).removeprefix(b"#!/bin/sh\n"))
    [other] = second.addresses
    assert other.address != address.address

    out1 = user.until_console(first.id, READY)
    assert f"novalite-guest: ip eth0 {address.address}/16 mac {address.mac}" in out1
    assert "user data of first: hello" in out1
    assert f"ssh key installed: {key.public_key.split()[0]} {key.public_key.split()[-1]}" in out1
    assert "admin password set" in out1
    out2 = user.until_console(second.id, READY)
    assert f"novalite-guest: ip eth0 {other.address}/16 mac {other.mac}" in out2
    assert "user data of second" in out2
    assert "3 packets transmitted, 3 packets received, 0% packet loss" in out2, out2
    # the host reaches them too
    ping = subprocess.run(["ping", "-c", "1", "-W", "5", address.address],
                          capture_output=True, text=True, check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr

    # the last lines, through the API and the command line
    assert user.console(first.id, 1) == out1.splitlines(keepends=True)[-1]
    assert user.console(first.id, 0) == ""
    cli = run_cli("server", "console-log", first.id, "--lines", "2",
                  env=cloud_env(cloud, cloud.member_token("guests", "alice")))
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.splitlines()[-1].startswith(READY)

    # delete frees the addresses and the DHCP host entries
    assert {first.id, second.id} <= host_entries()
    db = cloud_database(cloud)
    try:
        user.delete(first.id)
        user.delete(second.id)
        assert db.fixed_ips_of(first.id) == () and db.fixed_ips_of(second.id) == ()
    finally:
        db.close()
    assert not {first.id, second.id} & host_entries()


def test_a_soft_reboot_is_real_and_the_guests_own_poweroff_is_seen(user: GuestApi,
                                                                   boot: Callable[..., Any]) -> None:
    server = boot("rebooted")
    user.until_console(server.id, READY)
    user.servers.RebootServer(servers_pb2.RebootServerRequest(
        id=server.id, type=servers_pb2.REBOOT_TYPE_SOFT))
    # ACPI's power button: the guest powers itself off, and boots again on its disk
    out = user.until_console(server.id, READY, count=2)
    assert "power button: powering off" in out
    assert "root disk /dev/vda: boot 2 of this disk" in out
    assert user.until_status(server.id, "ACTIVE").power_state == 1

    # the guest powers itself off: the power sync stops the server, as Nova's
    user.until_console(server.id, READY, count=2)
    shut = boot("shuts-down", user_data=b"#!/bin/sh\necho powering off now\npoweroff -f\n")
    user.until_console(shut.id, "powering off now")
    stopped = user.until_status(shut.id, "SHUTOFF", timeout=30.0)
    assert stopped.power_state == 4  # SHUTDOWN
    actions = user.servers.ListServerActions(servers_pb2.ListServerActionsRequest(id=shut.id))
    assert actions.actions[0].action == "stop"


def test_rescue_boots_the_image_with_the_servers_disk_beside_it(user: GuestApi,
                                                               boot: Callable[..., Any]) -> None:
    server = boot("rescued")
    user.until_console(server.id, READY)
    reply = user.servers.RescueServer(servers_pb2.RescueServerRequest(id=server.id))
    assert reply.task_state == states_pb2.TASK_STATE_RESCUING
    rescued = user.until_status(server.id, "RESCUE")
    assert (rescued.vm_state, rescued.power_state) == (states_pb2.VM_STATE_RESCUED,
                                                       states_pb2.POWER_STATE_RUNNING)
    out = user.until_console(server.id, READY, count=2)
    assert "rescue mode: the server's own disk is /dev/vdb" in out
    # the server's own disk, untouched by the rescue boot: booted once so far
    assert "rescue: the server's disk has booted 1 times" in out
    with pytest.raises(grpc.RpcError) as refused:
        user.servers.StopServer(servers_pb2.StopServerRequest(id=server.id))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    user.servers.UnrescueServer(servers_pb2.UnrescueServerRequest(id=server.id))
    assert user.until_status(server.id, "ACTIVE").power_state == 1
    out = user.until_console(server.id, READY, count=3)
    assert "root disk /dev/vda: boot 2 of this disk" in out
    log = user.servers.ListServerActions(servers_pb2.ListServerActionsRequest(id=server.id))
    assert [a.action for a in log.actions][:2] == ["unrescue", "rescue"]


def test_the_lifecycle_with_a_real_guest(user: GuestApi, boot: Callable[..., Any]) -> None:
    """What each action does to a guest with an OS, as its console and its disk tell."""
    server = boot("lifecycle")
    user.until_console(server.id, READY)

    def act(rpc: str, status: str) -> None:
        getattr(user.servers, rpc)(getattr(servers_pb2, f"{rpc}Request")(id=server.id))
        user.until_status(server.id, status)

    # a stop asks the guest to shut down (its power button): a clean poweroff
    act("StopServer", "SHUTOFF")
    assert user.console(server.id).count("power button: powering off") == 1
    act("StartServer", "ACTIVE")
    assert "boot 2 of this disk" in user.until_console(server.id, READY, count=2)
    # pause and suspend keep the guest as it was: no new boot
    act("PauseServer", "PAUSED")
    act("UnpauseServer", "ACTIVE")
    act("SuspendServer", "SUSPENDED")
    act("ResumeServer", "ACTIVE")
    user.servers.RebootServer(servers_pb2.RebootServerRequest(
        id=server.id, type=servers_pb2.REBOOT_TYPE_HARD))
    user.until_status(server.id, "ACTIVE")
    out = user.until_console(server.id, READY, count=3)
    # a hard reboot pulls the plug: no power button, a third boot of the same disk
    assert out.count("init started") == 3
    assert out.count("power button: powering off") == 1
    assert "boot 3 of this disk" in out
