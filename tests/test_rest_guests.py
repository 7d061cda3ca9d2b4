"""The REST API's guests and moves with the real OpenStack clients from PyPI
(openstacksdk, the `openstack` command), against a LocalCloud of simulated hosts
with two flat networks, on SQLite and (with NOVALITE_TEST_POSTGRES_URL) PostgreSQL.

* key pairs: generated (the private key in the answer), imported, listed, shown,
  deleted, another user's for admins (2.10); Nova's codes at each microversion;
* create: key_name, user_data, config_drive, adminPass and networks, each shown
  back (addresses in Nova's shape, /ips); what novalite cannot honour (ports,
  fixed IPs, tags) refused naming the field, with nothing created;
* moves: resize (VERIFY_RESIZE) then confirm or revert, cold and live migration
  by an admin (to a host given and not), refused to a member (403), rebuild,
  shelve and unshelve, lock (a member's action on an admin's lock: 409), rescue,
  the console output, os-migrations; every refusal changes nothing.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import openstack
import openstack.connection
import pytest

from novalite.cloud import LocalCloud
from novalite.rpc.novalite.compute.v1 import images_pb2, images_pb2_grpc
from novalite.services.client import sync_channel

from helpers import BACKENDS, cloud_database, postgres_database
from test_rest import connect, raw, run_openstack

HOSTS = [f"compute-{i:03d}" for i in range(1, 5)]
NETWORKS = {"private": "10.97.0.0/24", "second": "10.96.0.0/24"}


@pytest.fixture(scope="module", params=BACKENDS)
def cloud(request: Any, tmp_path_factory: Any) -> Iterator[LocalCloud]:
    url = postgres_database() if request.param == "postgresql" else None
    c = LocalCloud(tmp_path_factory.mktemp(f"rest-guests-{request.param}"), hosts=len(HOSTS),
                   host_vcpus=8, host_memory_mb=16384, host_disk_gb=200, database_url=url,
                   report_interval=2)
    with c:
        yield c


@pytest.fixture(scope="module")
def networks(cloud: LocalCloud) -> dict[str, Any]:
    """Two flat networks, as a real host's agent would report them (the conductor
    hands out their fixed IPs whatever the host)."""
    db = cloud_database(cloud)
    try:
        return {name: db.register_network(name=name, cidr=cidr, gateway=cidr[:-4] + "1",
                                          bridge=f"nlbr-{name}", dhcp_server=cidr[:-4] + "1")
                for name, cidr in NETWORKS.items()}
    finally:
        db.close()


@pytest.fixture(scope="module")
def admin(cloud: LocalCloud, networks: dict[str, Any]) -> openstack.connection.Connection:
    return connect(cloud)


@pytest.fixture(scope="module")
def images(cloud: LocalCloud, tmp_path_factory: Any) -> dict[str, Any]:
    disk = tmp_path_factory.mktemp("img") / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    with sync_channel(cloud.endpoint("api"), cloud.admin_token()) as ch:
        stub = images_pb2_grpc.ImagesStub(ch)
        return {name: stub.CreateImage(images_pb2.CreateImageRequest(name=name, path=str(disk)))
                for name in ("first", "second")}


@pytest.fixture(scope="module")
def flavors(admin: openstack.connection.Connection) -> dict[str, Any]:
    return {name: admin.compute.create_flavor(name=f"{name}-{uuid.uuid4().hex[:4]}",
                                              vcpus=vcpus, ram=ram, disk=1)
            for name, (vcpus, ram) in {"small": (1, 256), "medium": (2, 512),
                                       "large": (2, 1024)}.items()}


@pytest.fixture(scope="module")
def member(cloud: LocalCloud, admin: openstack.connection.Connection) -> dict[str, Any]:
    project = admin.identity.create_project(name=f"p-{uuid.uuid4().hex[:6]}", domain_id="default")
    user = admin.identity.create_user(name=f"bob-{uuid.uuid4().hex[:6]}", password="pw-bob-1",
                                      default_project_id=project.id, domain_id="default")
    admin.identity.assign_project_role_to_user(project, user, admin.identity.find_role("member"))
    conn = connect(cloud, username=user.name, password="pw-bob-1", project_name=project.name)
    return {"project": project, "user": user, "conn": conn, "token": conn.session.get_token()}


def settle(conn: openstack.connection.Connection, sid: str, status: str,
           timeout: float = 60) -> Any:
    """The server once it shows ``status`` with no task in flight (a rescue shows
    RESCUE while it is still rescuing, as Nova's)."""
    deadline = time.monotonic() + timeout
    while True:
        server = conn.compute.get_server(sid)
        if server.status == status and server.task_state is None:
            return server
        assert server.status != "ERROR", server.fault
        assert time.monotonic() < deadline, f"not {status} within {timeout:.0f} s: {server}"
        time.sleep(0.1)


def fault(reply: Any, status: int) -> str:
    """The message of Nova's fault, checking its status and shape."""
    assert reply.status_code == status, reply.text
    [(_, body)] = reply.json().items()
    assert body["code"] == status
    return str(body["message"])


def ssh_public_key(tmp_path: Path) -> str:
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "me@here", "-f",
                    str(key)], check=True)
    return key.with_suffix(".pub").read_text().strip()


# ---- key pairs ---------------------------------------------------------------------------

def test_key_pairs(cloud: LocalCloud, admin: openstack.connection.Connection,
                   member: dict[str, Any], tmp_path: Path) -> None:
    conn, token = member["conn"], member["token"]
    made = conn.compute.create_keypair(name="made")
    assert made.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert made.type == "ssh" and made.user_id == member["user"].id
    public = ssh_public_key(tmp_path)
    imported = conn.compute.create_keypair(name="laptop", public_key=public)
    assert imported.public_key == public and imported.private_key is None
    assert [k.name for k in conn.compute.keypairs()] == ["laptop", "made"]
    shown = conn.compute.get_keypair("laptop")
    assert (shown.fingerprint, shown.user_id) == (imported.fingerprint, member["user"].id)
    assert not any(k.private_key for k in conn.compute.keypairs())  # shown once only

    # the `openstack` command (as the admin) imports a key, or generates one
    # itself (Nova 2.92 no longer does) and imports it
    cli = json.loads(run_openstack(cloud, "keypair", "create", "--public-key",
                                   str(tmp_path / "id.pub"), "-f", "json", "cli-key"))
    assert cli["fingerprint"] == imported.fingerprint
    assert run_openstack(cloud, "keypair", "list", "-f", "value", "-c", "Name").split() == [
        "cli-key"]

    # Nova's shapes and codes by microversion
    body = {"keypair": {"name": "old", "public_key": public}}
    old = raw(cloud, "POST", "/compute/v2.1/os-keypairs", token, body, version="compute 2.1")
    assert old.status_code == 200 and "type" not in old.json()["keypair"]
    assert raw(cloud, "DELETE", "/compute/v2.1/os-keypairs/old", token,
               version="compute 2.1").status_code == 202
    for reply in (raw(cloud, "POST", "/compute/v2.1/os-keypairs", token,
                      {"keypair": {"name": "dot.ted", "public_key": public}}),
                  raw(cloud, "GET", "/compute/v2.1/os-keypairs/dot.ted", token)):
        assert reply.status_code in (200, 201) and reply.json()["keypair"]["type"] == "ssh"
    page = raw(cloud, "GET", "/compute/v2.1/os-keypairs?limit=2", token).json()
    assert [k["keypair"]["name"] for k in page["keypairs"]] == ["dot.ted", "laptop"]
    assert "marker=laptop" in page["keypairs_links"][0]["href"]
    assert raw(cloud, "DELETE", "/compute/v2.1/os-keypairs/dot.ted", token).status_code == 204

    # refused, naming the field, and nothing stored
    refusals = [
        ("2.95", {"name": "gen"}, "keypair.public_key"),  # 2.92: no more generated pairs
        ("2.91", {"name": "a@b"}, "keypair.name"),  # '@' and '.' came with 2.92
        ("2.95", {"name": "x", "public_key": "ssh-rsa nope"}, "keypair.public_key"),
        ("2.95", {"name": "x", "public_key": public, "type": "x509"}, "keypair.type"),
        ("2.1", {"name": "x", "public_key": public, "type": "ssh"}, "keypair.type"),
        ("2.95", {"name": " lead", "public_key": public}, "keypair.name"),
    ]
    for version, keypair, field in refusals:
        reply = raw(cloud, "POST", "/compute/v2.1/os-keypairs", token, {"keypair": keypair},
                    version=f"compute {version}")
        assert field in fault(reply, 400), (keypair, reply.text)
    with pytest.raises(openstack.exceptions.ConflictException):
        conn.compute.create_keypair(name="laptop", public_key=public)
    assert [k.name for k in conn.compute.keypairs()] == ["laptop", "made"]

    # another user's: an admin's (2.10), never a member's
    user = member["user"].id
    assert {k.name for k in admin.compute.keypairs(user_id=user)} >= {"laptop", "made"}
    assert "laptop" not in {k.name for k in admin.compute.keypairs()}
    reply = raw(cloud, "GET", f"/compute/v2.1/os-keypairs?user_id={admin.current_user_id}",
                token)
    assert "admin" in fault(reply, 403)
    conn.compute.delete_keypair("made")
    with pytest.raises(openstack.exceptions.NotFoundException):
        conn.compute.get_keypair("made")
    run_openstack(cloud, "keypair", "delete", "cli-key")


# ---- what a server is given ----------------------------------------------------------------

def test_a_server_gets_its_key_user_data_config_drive_password_and_networks(
        cloud: LocalCloud, admin: openstack.connection.Connection, member: dict[str, Any],
        networks: dict[str, Any], images: dict[str, Any], flavors: dict[str, Any],
        tmp_path: Path) -> None:
    conn, token = member["conn"], member["token"]
    conn.compute.create_keypair(name="boot-key", public_key=ssh_public_key(tmp_path))
    user_data = base64.b64encode(b"#!/bin/sh\necho hello\n").decode()
    created = conn.compute.create_server(
        name="given", flavor_id=flavors["small"].id, image_id=images["first"].id,
        key_name="boot-key", user_data=user_data, config_drive=True, admin_password="pw-given",
        networks=[{"uuid": networks["second"].id}])
    assert created.admin_password == "pw-given"
    server = settle(conn, created.id, "ACTIVE")
    [nic] = server.addresses["second"]
    assert list(server.addresses) == ["second"]
    assert nic["version"] == 4 and nic["addr"].startswith("10.96.0.")
    assert nic["OS-EXT-IPS:type"] == "fixed" and nic["OS-EXT-IPS-MAC:mac_addr"].count(":") == 5
    assert (server.key_name, server.has_config_drive) == ("boot-key", "True")
    # the user data for admins only (2.3)
    assert admin.compute.get_server(server.id).user_data == user_data
    shown = raw(cloud, "GET", f"/compute/v2.1/servers/{server.id}", token).json()["server"]
    assert "OS-EXT-SRV-ATTR:user_data" not in shown
    ips = raw(cloud, "GET", f"/compute/v2.1/servers/{server.id}/ips", token).json()
    assert ips == {"addresses": {"second": [{"version": 4, "addr": nic["addr"]}]}}
    one = raw(cloud, "GET", f"/compute/v2.1/servers/{server.id}/ips/second", token).json()
    assert one == {"second": [{"version": 4, "addr": nic["addr"]}]}
    assert "not a member" in fault(raw(cloud, "GET", f"/compute/v2.1/servers/{server.id}"
                                                     "/ips/private", token), 404)

    # every network when none is named ("auto", or nothing before 2.37), none with "none";
    # a generated password when none is given
    auto = conn.compute.create_server(name="auto", flavor_id=flavors["small"].id,
                                      networks="auto")
    assert len(auto.admin_password) >= 8
    empty = conn.compute.create_server(name="empty", flavor_id=flavors["small"].id,
                                       networks="none")
    assert set(settle(conn, auto.id, "ACTIVE").addresses) == {"private", "second"}
    empty = settle(conn, empty.id, "ACTIVE")
    assert (empty.addresses, empty.key_name) == ({}, None)

    # the `openstack` command: a network by name (through Nova's os-networks proxy,
    # there being no Neutron), a key, a user data file
    (tmp_path / "hello.sh").write_text("#!/bin/sh\necho hello\n")
    shown = json.loads(run_openstack(
        cloud, "server", "create", "--flavor", flavors["small"].name, "--image", "first",
        "--network", "private", "--user-data", str(tmp_path / "hello.sh"), "--config-drive",
        "True", "--wait", "-f", "json", "cli-given"))
    assert shown["status"] == "ACTIVE"
    assert str(shown["addresses"]).startswith("{'private': ['10.97.0.")
    run_openstack(cloud, "server", "delete", "--wait", shown["id"])
    for s in (server, auto, empty):
        conn.compute.delete_server(s)
    for s in (server, auto, empty):
        conn.compute.wait_for_delete(s, interval=0.2, wait=60)


def test_create_refuses_what_it_cannot_honour_naming_the_field(
        cloud: LocalCloud, member: dict[str, Any], networks: dict[str, Any],
        flavors: dict[str, Any]) -> None:
    token = member["token"]
    net = networks["private"].id
    db = cloud_database(cloud)
    try:
        before = len(db.list_instances(include_deleted=True).instances)
        cases: list[tuple[dict[str, Any], str, str]] = [
            ({"key_name": "nobody's"}, "2.95", "server.key_name"),
            ({"user_data": "not base64!"}, "2.95", "server.user_data"),
            ({"user_data": "A" * 65536}, "2.95", "server.user_data"),
            ({"config_drive": "maybe"}, "2.95", "server.config_drive"),
            ({"adminPass": "p" * 256}, "2.95", "server.adminPass"),
            ({"networks": [{"port": str(uuid.uuid4())}]}, "2.95", "server.networks.0.port"),
            ({"networks": [{"uuid": net, "fixed_ip": "10.97.0.9"}]}, "2.95",
             "server.networks.0.fixed_ip"),
            ({"networks": [{"uuid": net, "tag": "nic1"}]}, "2.95", "server.networks.0.tag"),
            ({"networks": [{}]}, "2.95", "server.networks.0.uuid"),
            ({"networks": [{"uuid": str(uuid.uuid4())}]}, "2.95", "server.networks"),
            ({"networks": "auto"}, "2.36", "server.networks"),
            ({"networks": "everything"}, "2.95", "server.networks"),
        ]
        for fields, version, field in cases:
            body = {"server": {"name": "no", "flavorRef": flavors["small"].id,
                               "networks": "none", **fields}}
            reply = raw(cloud, "POST", "/compute/v2.1/servers", token, body,
                        version=f"compute {version}")
            assert field in fault(reply, 400), (fields, reply.text)
        assert len(db.list_instances(include_deleted=True).instances) == before
    finally:
        db.close()


def test_the_cloud_layer_waits_for_an_address(admin: openstack.connection.Connection,
                                              images: dict[str, Any],
                                              flavors: dict[str, Any]) -> None:
    """Ansible's openstack.cloud.server with wait: true waits until the server has
    an address; with networks, it gets one. auto_ip false: there are no floating
    IPs to add (without it, a cloud with no Neutron is asked for one of
    nova-network's)."""
    server = admin.create_server("cloud-layer", image="first", flavor=flavors["small"].name,
                                 wait=True, timeout=60, auto_ip=False)
    assert server.status == "ACTIVE" and server.private_v4.startswith("10.9")
    assert admin.delete_server("cloud-layer", wait=True, timeout=60)


# ---- moves -------------------------------------------------------------------------------

def boot(conn: openstack.connection.Connection, flavor: Any, image: Any, name: str) -> Any:
    """A server on no network, ACTIVE."""
    server = conn.compute.create_server(name=name, flavor_id=flavor.id, image_id=image.id,
                                        networks="none")
    return settle(conn, server.id, "ACTIVE")


def _where(admin: openstack.connection.Connection, sid: str) -> tuple[str, str, str, Any]:
    """What a refused action must leave as it was: status, host, flavor, task."""
    s = admin.compute.get_server(sid)
    return s.status, s.compute_host, s.flavor.original_name, s.task_state


def test_resize_then_confirm_or_revert(cloud: LocalCloud, admin: openstack.connection.Connection,
                                       member: dict[str, Any], images: dict[str, Any],
                                       flavors: dict[str, Any]) -> None:
    conn, token = member["conn"], member["token"]
    server = boot(conn, flavors["small"], images["first"], "resized")
    source = admin.compute.get_server(server.id).compute_host
    conn.compute.resize_server(server, flavors["medium"].id)
    resized = settle(conn, server.id, "VERIFY_RESIZE")
    assert resized.flavor.original_name == flavors["medium"].name
    assert admin.compute.get_server(server.id).compute_host != source
    conn.compute.confirm_server_resize(server)
    confirmed = settle(conn, server.id, "ACTIVE")
    assert confirmed.flavor.original_name == flavors["medium"].name
    here = admin.compute.get_server(server.id).compute_host

    conn.compute.resize_server(server, flavors["large"].id)
    settle(conn, server.id, "VERIFY_RESIZE")
    conn.compute.revert_server_resize(server)
    reverted = settle(conn, server.id, "ACTIVE")
    assert reverted.flavor.original_name == flavors["medium"].name
    assert admin.compute.get_server(server.id).compute_host == here
    actions = [a.action for a in conn.compute.server_actions(server)]
    assert actions[:4] == ["revertResize", "resize", "confirmResize", "resize"]

    # refused, naming the field or the state, and nothing changed
    before = _where(admin, server.id)
    path = f"/compute/v2.1/servers/{server.id}/action"
    for body, status, words in (
            ({"resize": {"flavorRef": flavors["medium"].id}}, 400, "resize.flavorRef"),
            ({"resize": {"flavorRef": "no-such-flavor"}}, 400, "resize.flavorRef"),
            ({"resize": None}, 400, "resize"),
            ({"confirmResize": None}, 409, "cannot confirmResize"),
            ({"revertResize": None}, 409, "cannot revertResize")):
        assert words in fault(raw(cloud, "POST", path, token, body), status), body
    assert _where(admin, server.id) == before
    conn.compute.delete_server(server)


def test_an_admin_migrates_a_members_server(cloud: LocalCloud,
                                            admin: openstack.connection.Connection,
                                            member: dict[str, Any], images: dict[str, Any],
                                            flavors: dict[str, Any]) -> None:
    conn, token = member["conn"], member["token"]
    server = boot(conn, flavors["small"], images["first"], "moved")
    path = f"/compute/v2.1/servers/{server.id}/action"
    # a member may not move it (Nova's default policy): 403, and nothing changes
    before = _where(admin, server.id)
    for call in (lambda: conn.compute.migrate_server(server),
                 lambda: conn.compute.live_migrate_server(server, block_migration="auto"),
                 lambda: list(conn.compute.migrations())):
        with pytest.raises(openstack.exceptions.ForbiddenException):
            call()
    with pytest.raises(openstack.exceptions.ConflictException, match="is up"):
        admin.compute.evacuate_server(server)  # its host is up
    for body, field in (({"migrate": {"host": "no-such-host"}}, "migrate.host"),
                        ({"migrate": {"host": before[1]}}, "migrate.host"),
                        ({"os-migrateLive": {"host": None, "force": True}},
                         "os-migrateLive.force"),
                        ({"os-migrateLive": {"host": None, "disk_over_commit": False}},
                         "os-migrateLive.disk_over_commit"),  # gone in 2.25
                        ({"evacuate": {"onSharedStorage": False}},
                         "evacuate.onSharedStorage")):  # gone in 2.14
        reply = raw(cloud, "POST", path, admin.session.get_token(), body)
        assert field in fault(reply, 400), body
    assert _where(admin, server.id) == before

    # cold: to a host given, then to any; confirmed by REST (Nova's 204) and by the sdk
    target = next(h for h in HOSTS if h != before[1])
    admin.compute.migrate_server(server, host=target)
    assert settle(conn, server.id, "VERIFY_RESIZE").flavor.original_name == flavors["small"].name
    assert admin.compute.get_server(server.id).compute_host == target
    assert raw(cloud, "POST", path, token, {"confirmResize": None}).status_code == 204
    settle(conn, server.id, "ACTIVE")
    admin.compute.migrate_server(server)
    settle(conn, server.id, "VERIFY_RESIZE")
    assert admin.compute.get_server(server.id).compute_host not in (target, None)
    admin.compute.confirm_server_resize(server)
    settle(conn, server.id, "ACTIVE")
    # live: to a host given, then to any
    here = admin.compute.get_server(server.id).compute_host
    target = next(h for h in HOSTS if h != here)
    admin.compute.live_migrate_server(server, host=target, block_migration="auto")
    settle(conn, server.id, "ACTIVE")
    assert admin.compute.get_server(server.id).compute_host == target
    admin.compute.live_migrate_server(server, block_migration="auto")
    settle(conn, server.id, "ACTIVE")
    assert admin.compute.get_server(server.id).compute_host != target

    # os-migrations: the server's four, newest first
    moves = [(m.migration_type, m.status) for m in admin.compute.migrations(server_id=server.id)]
    assert moves == [("live-migration", "completed")] * 2 + [("migration", "confirmed")] * 2
    admin_token = admin.session.get_token()
    live = raw(cloud, "GET", f"/compute/v2.1/os-migrations?instance_uuid={server.id}"
                             "&migration_type=live-migration&limit=1", admin_token).json()
    assert len(live["migrations"]) == 1 and "migrations_links" in live
    newest = live["migrations"][0]
    assert (newest["source_compute"], newest["dest_compute"]) == (
        target, admin.compute.get_server(server.id).compute_host)
    old = raw(cloud, "GET", f"/compute/v2.1/os-migrations?instance_uuid={server.id}",
              admin_token, version="compute 2.1").json()["migrations"]
    assert len(old) == 4 and isinstance(old[0]["id"], int) and "migration_type" not in old[0]
    # a server's live migrations in progress (2.23): none now
    assert list(admin.compute.server_migrations(server)) == []
    assert raw(cloud, "GET", f"/compute/v2.1/servers/{server.id}/migrations", admin_token,
               version="compute 2.22").status_code == 404
    conn.compute.delete_server(server)


def test_rebuild_shelve_rescue_and_the_console(cloud: LocalCloud,
                                               admin: openstack.connection.Connection,
                                               member: dict[str, Any], images: dict[str, Any],
                                               flavors: dict[str, Any]) -> None:
    conn, token = member["conn"], member["token"]
    server = boot(conn, flavors["small"], images["first"], "kept")
    rebuilt = conn.compute.rebuild_server(server, images["second"].id, name="rebuilt",
                                          metadata={"role": "db"})
    assert (rebuilt.status, rebuilt.name, rebuilt.metadata) == ("REBUILD", "rebuilt",
                                                               {"role": "db"})
    assert settle(conn, server.id, "ACTIVE").image.id == images["second"].id
    path = f"/compute/v2.1/servers/{server.id}/action"
    for body, field in (({"rebuild": {"imageRef": "no-such-image"}}, "rebuild.imageRef"),
                        ({"rebuild": {"imageRef": images["first"].id, "key_name": "k"}},
                         "rebuild.key_name"),
                        ({"rescue": {"adminPass": "pw"}}, "rescue.adminPass"),
                        ({"unshelve": {"availability_zone": "nova"}}, "unshelve"),
                        ({"lock": {"locked_reason": "why"}}, "lock")):
        reply = raw(cloud, "POST", path, token, body,
                    version="compute 2.72" if "lock" in body or "unshelve" in body else None)
        assert field in fault(reply, 400), body
    assert conn.compute.get_server(server.id).image.id == images["second"].id

    assert conn.compute.get_server_console_output(server) == {"output": ""}  # simulated
    assert conn.compute.get_server_console_output(server, length=5) == {"output": ""}
    with pytest.raises(openstack.exceptions.NotFoundException):
        conn.compute.get_server_console_output(str(uuid.uuid4()))

    conn.compute.rescue_server(server)
    settle(conn, server.id, "RESCUE")
    conn.compute.unrescue_server(server)
    settle(conn, server.id, "ACTIVE")

    conn.compute.shelve_server(server)
    assert settle(conn, server.id, "SHELVED_OFFLOADED").compute_host is None
    with pytest.raises(openstack.exceptions.ConflictException):
        conn.compute.get_server_console_output(server)  # no guest anywhere
    conn.compute.unshelve_server(server)
    settle(conn, server.id, "ACTIVE")
    assert admin.compute.get_server(server.id).compute_host in HOSTS
    actions = [a.action for a in conn.compute.server_actions(server)]
    assert actions[:5] == ["unshelve", "shelve", "unrescue", "rescue", "rebuild"]
    conn.compute.delete_server(server)


def test_lock(cloud: LocalCloud, admin: openstack.connection.Connection, member: dict[str, Any],
              images: dict[str, Any], flavors: dict[str, Any]) -> None:
    conn, token = member["conn"], member["token"]
    server = boot(conn, flavors["small"], images["first"], "locked")
    admin.compute.lock_server(server, locked_reason="maintenance")
    shown = conn.compute.get_server(server.id)
    assert (shown.is_locked, shown.locked_reason) == (True, "maintenance")
    before = _where(admin, server.id)
    path = f"/compute/v2.1/servers/{server.id}/action"
    for body in ({"os-stop": None}, {"resize": {"flavorRef": flavors["medium"].id}},
                 {"shelve": None}, {"rebuild": {"imageRef": images["second"].id}}):
        reply = raw(cloud, "POST", path, token, body)
        assert "locked: maintenance" in fault(reply, 409) and "conflictingRequest" in reply.json()
    with pytest.raises(openstack.exceptions.ForbiddenException, match="admin"):
        conn.compute.unlock_server(server)  # only an admin lifts an admin's lock
    assert conn.compute.get_server(server.id).is_locked
    assert _where(admin, server.id) == before
    assert raw(cloud, "GET", f"/compute/v2.1/servers/{server.id}", token,
               version="compute 2.8").json()["server"].get("locked") is None

    admin.compute.unlock_server(server)
    shown = conn.compute.get_server(server.id)
    assert (shown.is_locked, shown.locked_reason) == (False, None)
    conn.compute.lock_server(server)  # the owner's own lock: still only admins get past
    with pytest.raises(openstack.exceptions.ConflictException):
        conn.compute.stop_server(server)
    conn.compute.unlock_server(server)
    conn.compute.stop_server(server)
    settle(conn, server.id, "SHUTOFF")
    assert [a.action for a in conn.compute.server_actions(server)][:5] == [
        "stop", "unlock", "lock", "unlock", "lock"]
    conn.compute.delete_server(server)
