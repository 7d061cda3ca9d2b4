"""The REST API's guests with the real OpenStack clients from PyPI (openstacksdk,
the `openstack` command), against a LocalCloud of simulated hosts, on SQLite and
(with NOVALITE_TEST_POSTGRES_URL) PostgreSQL.

* key pairs: generated (the private key in the answer), imported, listed, shown,
  deleted, another user's for admins (2.10); Nova's codes at each microversion.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any, Iterator

import openstack
import openstack.connection
import pytest

from novalite.cloud import LocalCloud

from helpers import BACKENDS, postgres_database
from test_rest import connect, raw, run_openstack

HOSTS = [f"compute-{i:03d}" for i in range(1, 5)]


@pytest.fixture(scope="module", params=BACKENDS)
def cloud(request: Any, tmp_path_factory: Any) -> Iterator[LocalCloud]:
    url = postgres_database() if request.param == "postgresql" else None
    c = LocalCloud(tmp_path_factory.mktemp(f"rest-guests-{request.param}"), hosts=len(HOSTS),
                   host_vcpus=8, host_memory_mb=16384, host_disk_gb=200, database_url=url,
                   report_interval=2)
    with c:
        yield c


@pytest.fixture(scope="module")
def admin(cloud: LocalCloud) -> openstack.connection.Connection:
    return connect(cloud)


@pytest.fixture(scope="module")
def member(cloud: LocalCloud, admin: openstack.connection.Connection) -> dict[str, Any]:
    project = admin.identity.create_project(name=f"p-{uuid.uuid4().hex[:6]}", domain_id="default")
    user = admin.identity.create_user(name=f"bob-{uuid.uuid4().hex[:6]}", password="pw-bob-1",
                                      default_project_id=project.id, domain_id="default")
    admin.identity.assign_project_role_to_user(project, user, admin.identity.find_role("member"))
    conn = connect(cloud, username=user.name, password="pw-bob-1", project_name=project.name)
    return {"project": project, "user": user, "conn": conn, "token": conn.session.get_token()}


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
