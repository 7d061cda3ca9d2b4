"""The REST API with the real OpenStack clients from PyPI, unmodified: the
`openstack` command (python-openstackclient) and openstacksdk, against a LocalCloud
over real sockets, on SQLite and (with NOVALITE_TEST_POSTGRES_URL) PostgreSQL.

Authenticate with the clouds.yaml the cloud writes, list flavors and images,
create servers and wait for ACTIVE, run every lifecycle action, page through
lists, delete and wait until gone; another project's token sees nothing of the
first; missing, expired, forged and revoked tokens get 401 (the gRPC API refuses
a revoked one too), a member asking for an admin call 403, a malformed body 400
in Nova's fault shape with nothing changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import grpc
import openstack
import openstack.config
import openstack.connection
import pytest
import requests

from novalite.cloud import LocalCloud
from novalite.rpc.novalite.compute.v1 import images_pb2, images_pb2_grpc, servers_pb2
from novalite.services.client import sync_channel

from helpers import BACKENDS, Api, clean_env
from helpers import cloud_database as _db
from helpers import postgres_database as _postgres_database

OPENSTACK = str(Path(sys.executable).with_name("openstack"))
COMPUTE = "compute 2.95"


@pytest.fixture(scope="module", params=BACKENDS)
def cloud(request: Any, tmp_path_factory: Any) -> Iterator[LocalCloud]:
    url = _postgres_database() if request.param == "postgresql" else None
    c = LocalCloud(tmp_path_factory.mktemp(f"rest-{request.param}"), hosts=4, host_vcpus=8,
                   host_memory_mb=16384, host_disk_gb=200, database_url=url, report_interval=2)
    with c:
        yield c


def connect(cloud: LocalCloud, **auth: str) -> openstack.connection.Connection:
    """A connection as clouds.yaml describes the admin; ``auth`` overrides (another
    user, project)."""
    config = openstack.config.OpenStackConfig(config_files=[str(cloud.clouds_yaml)],
                                              vendor_files=[])
    region = config.get_one("novalite", auth=auth) if auth else config.get_one("novalite")
    return openstack.connection.Connection(config=region)


@pytest.fixture(scope="module")
def admin(cloud: LocalCloud) -> openstack.connection.Connection:
    return connect(cloud)


@pytest.fixture(scope="module")
def image(cloud: LocalCloud, tmp_path_factory: Any) -> Any:
    """An image registered the native way (novalite's gRPC API)."""
    disk = tmp_path_factory.mktemp("img") / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    with sync_channel(cloud.endpoint("api"), cloud.admin_token()) as ch:
        return images_pb2_grpc.ImagesStub(ch).CreateImage(images_pb2.CreateImageRequest(
            name=f"cirros-{uuid.uuid4().hex[:4]}", path=str(disk), properties={"os_distro": "cirros"}))


@pytest.fixture(scope="module")
def flavor(admin: openstack.connection.Connection) -> Any:
    return admin.compute.create_flavor(name=f"m1.tiny-{uuid.uuid4().hex[:4]}", vcpus=1, ram=256,
                                       disk=1)


@pytest.fixture(scope="module")
def member(cloud: LocalCloud, admin: openstack.connection.Connection) -> dict[str, Any]:
    """A project and its member, made through Keystone's API."""
    project = admin.identity.create_project(name=f"demo-{uuid.uuid4().hex[:6]}", domain_id="default")
    user = admin.identity.create_user(name=f"alice-{uuid.uuid4().hex[:6]}", password="s3cret-pw",
                                      default_project_id=project.id, domain_id="default")
    role = admin.identity.find_role("member")
    admin.identity.assign_project_role_to_user(project, user, role)
    conn = connect(cloud, username=user.name, password="s3cret-pw", project_name=project.name)
    return {"project": project, "user": user, "conn": conn}


def run_openstack(cloud: LocalCloud, *args: str, timeout: float = 120) -> str:
    """`openstack --os-cloud novalite ARGS` with nothing but OS_CLIENT_CONFIG_FILE set."""
    env = clean_env(OS_CLIENT_CONFIG_FILE=str(cloud.clouds_yaml))
    env = {k: v for k, v in env.items() if not k.startswith("OS_") or k == "OS_CLIENT_CONFIG_FILE"}
    done = subprocess.run([OPENSTACK, "--os-cloud", "novalite", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"openstack {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def wait_status(conn: openstack.connection.Connection, server_id: str, status: str) -> Any:
    return conn.compute.wait_for_server(conn.compute.get_server(server_id), status=status,
                                        failures=["ERROR"], interval=0.2, wait=120)


def raw(cloud: LocalCloud, method: str, path: str, token: str | None = None,
        body: Any = None, version: str | None = COMPUTE, **headers: str) -> requests.Response:
    if token is not None:
        headers["X-Auth-Token"] = token
    if version is not None:
        headers["OpenStack-API-Version"] = version
    return requests.request(method, cloud.rest_url + path, headers=headers,
                            data=body if isinstance(body, (str, bytes)) else
                            (json.dumps(body) if body is not None else None), timeout=30)


# ---- the openstack command ---------------------------------------------------------------

def test_openstack_command_drives_a_server_lifecycle(cloud: LocalCloud, image: Any,
                                                     flavor: Any) -> None:
    assert "novalite" in cloud.clouds_yaml.read_text()
    assert oct(cloud.clouds_yaml.stat().st_mode & 0o777) == "0o600"
    names = {f["Name"] for f in json.loads(run_openstack(cloud, "flavor", "list", "-f", "json"))}
    assert flavor.name in names
    images = json.loads(run_openstack(cloud, "image", "list", "-f", "json"))
    assert image.name in {i["Name"] for i in images}
    created = json.loads(run_openstack(cloud, "server", "create", "--flavor", flavor.name,
                                       "--image", image.name, "--wait", "-f", "json", "cli-vm"))
    assert created["status"] == "ACTIVE"
    assert flavor.name in str(created["flavor"])
    listed = json.loads(run_openstack(cloud, "server", "list", "-f", "json"))
    assert [s["ID"] for s in listed if s["Name"] == "cli-vm"] == [created["id"]]
    assert {s["Image"] for s in listed if s["ID"] == created["id"]} == {image.name}

    run_openstack(cloud, "server", "stop", created["id"])
    deadline = time.monotonic() + 60
    while run_openstack(cloud, "server", "show", "-c", "status", "-f", "value",
                        created["id"]).strip() != "SHUTOFF":
        assert time.monotonic() < deadline, "not SHUTOFF within 60 s"
        time.sleep(0.5)
    actions = json.loads(run_openstack(cloud, "server", "event", "list", "-f", "json",
                                       created["id"]))
    assert {a["Action"] for a in actions} >= {"create", "stop"}
    run_openstack(cloud, "server", "delete", "--wait", created["id"])
    assert created["id"] not in run_openstack(cloud, "server", "list", "-f", "value", "-c", "ID")


# ---- openstacksdk ------------------------------------------------------------------------

def test_sdk_creates_servers_runs_every_action_and_deletes_them(
        admin: openstack.connection.Connection, image: Any, flavor: Any) -> None:
    assert flavor.id in {f.id for f in admin.compute.flavors()}
    found = admin.image.find_image(image.name)
    assert found is not None and found.id == image.id
    assert found.os_distro == "cirros" and found.disk_format == "raw"

    server = admin.compute.create_server(name="sdk", flavor_id=flavor.id, image_id=image.id,
                                         networks="none", min_count=2, max_count=2)
    server = wait_status(admin, server.id, "ACTIVE")
    assert server.flavor.original_name == flavor.name and server.compute_host
    assert server.host_status == "UP"
    pairs = (("stop_server", "SHUTOFF"), ("start_server", "ACTIVE"), ("pause_server", "PAUSED"),
             ("unpause_server", "ACTIVE"), ("suspend_server", "SUSPENDED"),
             ("resume_server", "ACTIVE"))
    for method, status in pairs:
        getattr(admin.compute, method)(server)
        wait_status(admin, server.id, status)
    admin.compute.reboot_server(server, "HARD")
    wait_status(admin, server.id, "ACTIVE")
    actions = [a.action for a in admin.compute.server_actions(server)]
    assert actions[0] == "reboot" and "create" in actions and "suspend" in actions
    # 2.58's paging: the SDK follows the links, pages of 3
    assert [a.action for a in admin.compute.server_actions(server, limit=3)] == actions
    detail = admin.compute.get_server_action(list(admin.compute.server_actions(server))[-1].request_id,
                                             server)
    assert detail.events and detail.events[0].result == "Success"

    # a second action while the first runs, or one the state does not allow: 409
    admin.compute.stop_server(server)
    wait_status(admin, server.id, "SHUTOFF")
    with pytest.raises(openstack.exceptions.ConflictException, match="cannot"):
        admin.compute.pause_server(server)

    admin.compute.set_server_metadata(server, role="web", tier="1")
    admin.compute.delete_server_metadata(server, ["tier"])
    assert admin.compute.get_server_metadata(server).metadata == {"role": "web"}
    renamed = admin.compute.update_server(server, name="sdk-renamed")
    assert renamed.name == "sdk-renamed" and admin.compute.get_server(server.id).name == "sdk-renamed"
    mine = [s for s in admin.compute.servers(details=True) if s.name.startswith("sdk")]
    assert len(mine) == 2
    for s in mine:
        admin.compute.delete_server(s)
    for s in mine:
        admin.compute.wait_for_delete(s, interval=0.2, wait=120)
    assert not [s for s in admin.compute.servers() if s.name.startswith("sdk")]


def test_sdk_cloud_layer(admin: openstack.connection.Connection, image: Any, flavor: Any) -> None:
    """The layer Ansible's openstack.cloud modules call (by names, not ids). Its
    wait for ACTIVE wants an address, which servers get on a network (this cloud
    has none; test_rest_guests.py waits with one)."""
    server = admin.create_server("cloud-layer", image=image.name, flavor=flavor.name, wait=False)
    wait_status(admin, server.id, "ACTIVE")
    assert admin.get_server("cloud-layer").status == "ACTIVE"
    assert admin.delete_server("cloud-layer", wait=True, timeout=120)
    assert admin.get_server("cloud-layer") is None


def test_lists_are_paged(cloud: LocalCloud, admin: openstack.connection.Connection, image: Any,
                         flavor: Any) -> None:
    created = admin.compute.create_server(name="page", flavor_id=flavor.id, image_id=image.id,
                                          networks="none", min_count=5, max_count=5)
    ids = {s.id for s in admin.compute.servers(name="page")}
    assert len(ids) == 5, created
    # the SDK follows servers_links: every server once, in pages of 2
    assert [s.id for s in admin.compute.servers(name="page", limit=2)].__len__() == 5
    token = admin.session.get_token()
    first = raw(cloud, "GET", "/compute/v2.1/servers?name=page&limit=2", token).json()
    assert len(first["servers"]) == 2 and first["servers_links"][0]["rel"] == "next"
    seen = [s["id"] for s in first["servers"]]
    url = first["servers_links"][0]["href"]
    while url:
        page = requests.get(url, headers={"X-Auth-Token": token}, timeout=30).json()
        seen += [s["id"] for s in page["servers"]]
        url = page.get("servers_links", [{}])[0].get("href")
    assert len(seen) == 5 and set(seen) == ids
    # OSC's --marker, a server id, as Nova takes it
    after = json.loads(run_openstack(cloud, "server", "list", "--name", "page", "--marker",
                                     seen[1], "-f", "json"))
    assert [s["ID"] for s in after] == seen[2:]
    bad = raw(cloud, "GET", f"/compute/v2.1/servers?marker={uuid.uuid4()}", token)
    assert bad.status_code == 400 and "marker" in bad.json()["badRequest"]["message"]
    for sid in ids:
        admin.compute.delete_server(sid)


def test_no_valid_host_says_why(admin: openstack.connection.Connection, image: Any) -> None:
    huge = admin.compute.create_flavor(name=f"huge-{uuid.uuid4().hex[:4]}", vcpus=1, ram=32768,
                                       disk=1)
    server = admin.compute.create_server(name="huge", flavor_id=huge.id, image_id=image.id,
                                         networks="none")
    server = admin.compute.wait_for_server(server, status="ERROR", interval=0.2, wait=60)
    assert "No valid host" in server.fault["message"]
    assert any(r["check"] == "Placement" or r["hosts"] > 0 for r in server.fault["rejections"])
    admin.compute.delete_server(server)
    admin.compute.delete_flavor(huge)


# ---- projects and roles ------------------------------------------------------------------

def test_another_project_sees_nothing_of_the_first(
        cloud: LocalCloud, admin: openstack.connection.Connection, member: dict[str, Any],
        image: Any, flavor: Any) -> None:
    conn = member["conn"]
    theirs = admin.compute.create_server(name="admins", flavor_id=flavor.id, image_id=image.id,
                                         networks="none")
    mine = conn.compute.create_server(name="members", flavor_id=flavor.id, image_id=image.id,
                                      networks="none")
    wait_status(conn, mine.id, "ACTIVE")
    assert [s.id for s in conn.compute.servers()] == [mine.id]
    with pytest.raises(openstack.exceptions.NotFoundException):
        conn.compute.get_server(theirs.id)
    with pytest.raises(openstack.exceptions.NotFoundException):
        conn.compute.stop_server(theirs.id)
    # an admin sees their own project's by default, everyone's with all_projects
    assert mine.id not in {s.id for s in admin.compute.servers()}
    assert {mine.id, theirs.id} <= {s.id for s in admin.compute.servers(all_projects=True)}
    assert conn.compute.get_limits().absolute.instances_used == 1
    for conn_, server in ((conn, mine), (admin, theirs)):
        conn_.compute.delete_server(server)
        conn_.compute.wait_for_delete(server, interval=0.2, wait=60)


def test_a_member_asking_for_an_admin_call_gets_403(cloud: LocalCloud, member: dict[str, Any]) -> None:
    conn = member["conn"]
    for call in (lambda: conn.compute.create_flavor(name="x", vcpus=1, ram=64, disk=0),
                 lambda: list(conn.compute.hypervisors()),
                 lambda: list(conn.compute.services()),
                 lambda: list(conn.identity.users())):
        with pytest.raises(openstack.exceptions.ForbiddenException):
            call()
    token = conn.session.get_token()
    reply = raw(cloud, "GET", "/compute/v2.1/os-hypervisors", token)
    assert reply.status_code == 403 and "admin" in reply.json()["forbidden"]["message"]
    reader = raw(cloud, "GET", "/compute/v2.1/servers?all_tenants=1", token)
    assert reader.status_code == 403


def test_a_reader_may_look_but_not_change(cloud: LocalCloud, admin: openstack.connection.Connection,
                                          member: dict[str, Any], flavor: Any) -> None:
    user = admin.identity.create_user(name=f"rita-{uuid.uuid4().hex[:6]}", password="pw-reader",
                                      domain_id="default")
    admin.identity.assign_project_role_to_user(member["project"], user,
                                               admin.identity.find_role("reader"))
    conn = connect(cloud, username=user.name, password="pw-reader",
                   project_name=member["project"].name)
    assert list(conn.compute.servers()) == []
    assert flavor.id in {f.id for f in conn.compute.flavors()}
    with pytest.raises(openstack.exceptions.ForbiddenException):
        conn.compute.create_server(name="no", flavor_id=flavor.id, networks="none")


# ---- tokens ------------------------------------------------------------------------------

def test_missing_expired_forged_and_revoked_tokens_get_401(
        cloud: LocalCloud, member: dict[str, Any]) -> None:
    path = "/compute/v2.1/servers"
    missing = raw(cloud, "GET", path)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == 401
    assert missing.headers["WWW-Authenticate"].startswith("Keystone uri=")
    assert raw(cloud, "GET", path, "not-a-token").status_code == 401
    good = member["conn"].session.get_token()
    payload, signature = good.split(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature
    assert raw(cloud, "GET", path, forged).status_code == 401
    expired = cloud.signer.issue(member["project"].id, member["user"].id, ["member"], 1)
    time.sleep(1.1)
    reply = raw(cloud, "GET", path, expired)
    assert reply.status_code == 401 and "expired" in reply.json()["error"]["message"]

    # validate, then revoke: refused by REST at once, and by gRPC
    auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": member["user"].name, "domain": {"id": "default"}, "password": "s3cret-pw"}}},
        "scope": {"project": {"id": member["project"].id}}}}
    issued = raw(cloud, "POST", "/identity/v3/auth/tokens", body=auth, version=None)
    assert issued.status_code == 201
    token = issued.headers["X-Subject-Token"]
    body = issued.json()["token"]
    assert {r["name"] for r in body["roles"]} == {"member", "reader"}
    assert {c["type"] for c in body["catalog"]} == {"identity", "compute", "image"}
    check = raw(cloud, "GET", "/identity/v3/auth/tokens", token, version=None,
                **{"X-Subject-Token": token})
    assert check.status_code == 200 and check.json()["token"]["user"]["id"] == member["user"].id
    assert raw(cloud, "GET", path, token).status_code == 200
    api = Api(cloud, token)
    api.servers.ListServers(servers_pb2.ListServersRequest())
    revoke = raw(cloud, "DELETE", "/identity/v3/auth/tokens", token, version=None,
                 **{"X-Subject-Token": token})
    assert revoke.status_code == 204
    assert raw(cloud, "GET", path, token).status_code == 401
    gone = raw(cloud, "GET", "/identity/v3/auth/tokens", good, version=None,
               **{"X-Subject-Token": token})
    assert gone.status_code == 404
    with pytest.raises(grpc.RpcError) as refused:
        api.servers.ListServers(servers_pb2.ListServersRequest())
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in str(refused.value.details())

    wrong = json.loads(json.dumps(auth))
    wrong["auth"]["identity"]["password"]["user"]["password"] = "nope"
    denied = raw(cloud, "POST", "/identity/v3/auth/tokens", body=wrong, version=None)
    assert denied.status_code == 401 and "X-Subject-Token" not in denied.headers


# ---- bad input ---------------------------------------------------------------------------

def test_a_malformed_body_gets_400_naming_the_field_and_changes_nothing(
        cloud: LocalCloud, admin: openstack.connection.Connection, flavor: Any, image: Any) -> None:
    token = admin.session.get_token()
    db = _db(cloud)
    try:
        before = len(db.list_instances(include_deleted=True).instances)
        cases = [
            ("{not json", "body"),
            ({"server": {"flavorRef": flavor.id, "networks": "none"}}, "server.name"),
            ({"server": {"name": "x", "networks": "none"}}, "server.flavorRef"),
            ({"server": {"name": 7, "flavorRef": flavor.id, "networks": "none"}}, "server.name"),
            ({"server": {"name": "x", "flavorRef": flavor.id}}, "server.networks"),
            ({"server": {"name": "x", "flavorRef": flavor.id, "networks": "none",
                         "min_count": 0}}, "server.min_count"),
            ({"server": {"name": "x", "flavorRef": "nope", "networks": "none"}},
             "server.flavorRef"),
            ({"server": {"name": "x", "flavorRef": flavor.id, "networks": "none",
                         "key_name": "k"}}, "server.key_name"),
            ({"server": {"name": "x", "flavorRef": flavor.id, "networks": "none",
                         "bogus": 1}}, "server.bogus"),
            ({"server": {"name": "x", "flavorRef": flavor.id, "networks": "none",
                         "metadata": {"a": 1}}}, "server.metadata.a"),
            ({"server": {"name": "x", "flavorRef": flavor.id, "networks": "none"},
              "os:scheduler_hints": {"group": "not-a-uuid"}}, "os:scheduler_hints.group"),
        ]
        for body, field in cases:
            reply = raw(cloud, "POST", "/compute/v2.1/servers", token, body,
                        **{"Content-Type": "application/json"})
            assert reply.status_code == 400, (body, reply.text)
            fault = reply.json()["badRequest"]
            assert fault["code"] == 400 and field in fault["message"], (field, fault)
        action = raw(cloud, "POST", f"/compute/v2.1/servers/{uuid.uuid4()}/action", token,
                     {"reboot": {"type": "SIDEWAYS"}})
        assert action.status_code == 400 and "reboot.type" in action.json()["badRequest"]["message"]
        assert len(db.list_instances(include_deleted=True).instances) == before
    finally:
        db.close()


def test_versions_and_microversions(cloud: LocalCloud, admin: openstack.connection.Connection) -> None:
    token = admin.session.get_token()
    doc = raw(cloud, "GET", "/compute/v2.1/", version=None).json()["version"]
    assert (doc["min_version"], doc["version"]) == ("2.1", "2.95")
    reply = raw(cloud, "GET", "/compute/v2.1/flavors", token, version="compute 2.60")
    assert reply.headers["OpenStack-API-Version"] == "compute 2.60"
    legacy = raw(cloud, "GET", "/compute/v2.1/flavors", token, version=None,
                 **{"X-OpenStack-Nova-API-Version": "2.10"})
    assert legacy.headers["X-OpenStack-Nova-API-Version"] == "2.10"
    too_new = raw(cloud, "GET", "/compute/v2.1/flavors", token, version="compute 2.200")
    assert too_new.status_code == 406 and "maximum is 2.95" in too_new.json()["computeFault"]["message"]
    assert raw(cloud, "GET", "/compute/v2.1/nothing-here", token).json()["itemNotFound"]["code"] == 404
    console = raw(cloud, "POST", f"/compute/v2.1/servers/{uuid.uuid4()}/action", token,
                  {"os-getConsoleOutput": {"length": 10}})
    assert console.status_code == 404 and "itemNotFound" in console.json()
    snapshot = raw(cloud, "POST", f"/compute/v2.1/servers/{uuid.uuid4()}/action", token,
                   {"createImage": {"name": "snap"}})
    assert snapshot.status_code == 400 and "snapshots" in snapshot.text
    assert raw(cloud, "GET", "/identity", version=None).status_code == 300
    assert raw(cloud, "GET", "/image", version=None).status_code == 300


def test_admin_views_of_hosts_zones_quotas(cloud: LocalCloud,
                                          admin: openstack.connection.Connection,
                                          member: dict[str, Any]) -> None:
    hypervisors = list(admin.compute.hypervisors(details=True))
    assert len(hypervisors) == 4 and all(h.state == "up" for h in hypervisors)
    services = list(admin.compute.services())
    compute = [s for s in services if s.binary == "nova-compute"]
    assert len(compute) == 4
    admin.compute.disable_service(compute[0], disabled_reason="maintenance")
    assert {s.status for s in admin.compute.services() if s.id == compute[0].id} == {"disabled"}
    admin.compute.enable_service(compute[0])
    zones = [z.name for z in admin.compute.availability_zones()]
    assert zones == ["nova"]
    project = member["project"].id
    admin.compute.update_quota_set(project, instances=7)
    assert admin.compute.get_quota_set(project).instances == 7
    assert admin.compute.get_quota_set_defaults(project).instances == 10
    assert member["conn"].compute.get_limits().absolute.instances == 7
