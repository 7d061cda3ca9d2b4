"""Guests a user can use (issue 13), without real guests: the public API over real
sockets with fake neighbours (test_api's), on SQLite and PostgreSQL; the database's
fixed IPs; the config drive's layout.

* key pairs: create (a private key that matches), import (Nova's fingerprint),
  list and delete, per user; bad keys and names refused naming the field;
* CreateServer's key_name, user_data, admin_pass, config_drive and networks: what
  the server row and the conductor get, and INVALID_ARGUMENT naming each bad one;
* fixed IPs: in the subnet, never twice (racing allocations too), the same on a
  second call, freed on delete, Conflict when a network is full;
* GetConsoleOutput: the last N lines, control characters removed, refused while
  building and below -1;
* the config drive: an ISO 9660 labelled config-2 with Nova's files;
* what a moved or rebuilt guest is given (conductor/guests.py): the server's own
  NICs (a move hands out no address), the kernel of the image it boots now.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest

from novalite import errors
from novalite.conductor import guests
from novalite.db import Database
from novalite.objects.records import GuestConfig, Vif
from novalite.rpc.novalite.compute.v1 import (
    keypairs_pb2,
    keypairs_pb2_grpc,
    networks_pb2,
    networks_pb2_grpc,
    servers_pb2,
)
from novalite.virt import configdrive

from helpers import failure
from test_api import Api, bad_field, run, seeded

Code = grpc.StatusCode


def keypairs(api: Api, who: str = "a") -> keypairs_pb2_grpc.KeypairsStub:
    return keypairs_pb2_grpc.KeypairsStub(api.channel(who))


def ssh_keygen(tmp_path: Path, name: str = "id") -> Path:
    key = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "me@here", "-f", str(key)],
                   check=True)
    return key


def md5_fingerprint(public_key_file: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-E", "md5", "-f", str(public_key_file)],
                         capture_output=True, text=True, check=True).stdout
    return out.split()[1].removeprefix("MD5:")


def test_key_pairs_are_a_users_own(tmp_path: Path, db_url: str) -> None:
    key = ssh_keygen(tmp_path)

    async def scenario(api: Api) -> None:
        alice, bob = keypairs(api, "a"), keypairs(api, "b")
        imported = await alice.ImportKeypair(keypairs_pb2.ImportKeypairRequest(
            name="laptop", public_key=key.with_suffix(".pub").read_text()))
        assert imported.fingerprint == md5_fingerprint(key.with_suffix(".pub"))
        assert imported.public_key == key.with_suffix(".pub").read_text().strip()
        assert (imported.user_id, imported.private_key) == ("alice", "")

        made = await alice.CreateKeypair(keypairs_pb2.CreateKeypairRequest(name="made"))
        private = tmp_path / "made"
        private.write_text(made.private_key)
        private.chmod(0o600)
        derived = subprocess.run(["ssh-keygen", "-y", "-f", str(private)], capture_output=True,
                                 text=True, check=True).stdout.split()[:2]
        assert derived == made.public_key.split()[:2]

        listed = await alice.ListKeypairs(keypairs_pb2.ListKeypairsRequest())
        assert [k.name for k in listed.keypairs] == ["laptop", "made"]
        assert all(not k.private_key for k in listed.keypairs)  # shown once only
        assert not (await bob.ListKeypairs(keypairs_pb2.ListKeypairsRequest())).keypairs
        e = await failure(bob.DeleteKeypair(keypairs_pb2.DeleteKeypairRequest(name="laptop")))
        assert e.code() == Code.NOT_FOUND
        e = await failure(bob.ListKeypairs(keypairs_pb2.ListKeypairsRequest(user_id="alice")))
        assert e.code() == Code.PERMISSION_DENIED
        admin = keypairs(api, "admin")
        seen = await admin.ListKeypairs(keypairs_pb2.ListKeypairsRequest(user_id="alice"))
        assert len(seen.keypairs) == 2

        e = await failure(alice.CreateKeypair(keypairs_pb2.CreateKeypairRequest(name="made")))
        assert e.code() == Code.ABORTED
        for bad in ("", "ssh-ed25519", "ssh-foo AAAA", "ssh-ed25519 not-base64!",
                    "ssh-rsa " + key.with_suffix(".pub").read_text().split()[1],
                    "ssh-ed25519 AAAA\nssh-ed25519 AAAA"):
            e = await failure(alice.ImportKeypair(keypairs_pb2.ImportKeypairRequest(
                name="bad", public_key=bad)))
            assert bad_field(e) == "public_key", bad
        for name in ("", " lead", "sl/ash", "x" * 256):
            e = await failure(alice.CreateKeypair(keypairs_pb2.CreateKeypairRequest(name=name)))
            assert bad_field(e) == "name", name

        await alice.DeleteKeypair(keypairs_pb2.DeleteKeypairRequest(name="laptop"))
        listed = await alice.ListKeypairs(keypairs_pb2.ListKeypairsRequest())
        assert [k.name for k in listed.keypairs] == ["made"]
    run(tmp_path, db_url, scenario)


def test_create_server_takes_what_the_guest_is_given(tmp_path: Path, db_url: str) -> None:
    key = ssh_keygen(tmp_path)

    async def scenario(api: Api) -> None:
        flavor, image = await seeded(api, tmp_path)
        net = api.db.register_network(name="private", cidr="10.99.0.0/24", gateway="10.99.0.1",
                                      bridge="nlbr-test", dhcp_server="10.99.0.1")
        await keypairs(api).ImportKeypair(keypairs_pb2.ImportKeypairRequest(
            name="laptop", public_key=key.with_suffix(".pub").read_text()))
        reply = await api.servers().CreateServer(servers_pb2.CreateServerRequest(
            name="vm", flavor_id=flavor, image_id=image, key_name="laptop",
            user_data=b"#!/bin/sh\necho hi\n", networks=["private"]))
        [server] = reply.servers
        assert len(reply.admin_pass) == 12 and reply.admin_pass.isalnum()
        assert api.conductor.builds[-1]["admin_pass"] == reply.admin_pass
        assert (server.key_name, server.config_drive) == ("laptop", True)
        row = api.db.get_instance(server.id)
        assert row.key_data == key.with_suffix(".pub").read_text().strip()
        assert base64.b64decode(row.user_data or "") == b"#!/bin/sh\necho hi\n"
        assert row.requested_networks == (net.id,)
        members = networks_pb2_grpc.NetworksStub(api.channel("a"))
        [shown] = (await members.ListNetworks(networks_pb2.ListNetworksRequest())).networks
        assert (shown.name, shown.cidr, shown.bridge) == ("private", "10.99.0.0/24", "")

        reply = await api.servers().CreateServer(servers_pb2.CreateServerRequest(
            name="plain", flavor_id=flavor, image_id=image, admin_pass="s3cret",
            config_drive=False, networks=["none"]))
        assert reply.admin_pass == "s3cret"
        row = api.db.get_instance(reply.servers[0].id)
        assert (row.config_drive, row.requested_networks, row.key_name) == (False, (), None)

        before = len(api.instances())
        for fields, name in (({"key_name": "nope"}, "key_name"),
                             ({"user_data": b"x" * 50_000}, "user_data"),
                             ({"admin_pass": ""}, "admin_pass"),
                             ({"networks": ["elsewhere"]}, "networks"),
                             ({"networks": ["private", "none"]}, "networks")):
            e = await failure(api.servers().CreateServer(servers_pb2.CreateServerRequest(
                name="bad", flavor_id=flavor, image_id=image, **fields)))
            assert bad_field(e) == name, fields
        # another user's key pair is not the caller's
        e = await failure(api.servers("b").CreateServer(servers_pb2.CreateServerRequest(
            name="bad", flavor_id=flavor, image_id=image, key_name="laptop")))
        assert bad_field(e) == "key_name"
        assert len(api.instances()) == before
    run(tmp_path, db_url, scenario)


def test_fixed_ips_are_never_given_twice_and_freed_on_delete(db_url: str) -> None:
    db = Database(db_url)
    try:
        db.upgrade()
        # a /29: six addresses, the gateway (also the DHCP server) takes one
        net = db.register_network(name="tiny", cidr="10.98.0.0/29", gateway="10.98.0.1",
                                  bridge="nlbr-tiny", dhcp_server="10.98.0.1")
        flavor = db.create_flavor(name="f", vcpus=1, memory_mb=64)
        servers = db.create_instances(project_id="p", user_id="u", name="s", flavor_id=flavor.id,
                                      min_count=6, max_count=6)
        got: dict[str, Any] = {}
        failed: list[Exception] = []

        def allocate(sid: str) -> None:
            try:
                got[sid] = db.allocate_fixed_ips(sid)
            except errors.Conflict as e:
                failed.append(e)

        threads = [threading.Thread(target=allocate, args=(s.id,)) for s in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got) == 5 and len(failed) == 1  # the sixth finds the network full
        addresses = [v[0].address for v in got.values()]
        assert sorted(addresses) == [f"10.98.0.{i}" for i in range(2, 7)]
        assert len({v[0].mac for v in got.values()}) == 5
        assert all(v[0].mac.startswith("fa:16:3e:") for v in got.values())
        first = next(iter(got))
        assert db.allocate_fixed_ips(first) == got[first]  # again: the same NIC
        assert db.get_instance(first).network_info == got[first]  # Server.addresses' source
        db.delete_instance(first)
        assert db.fixed_ips_of(first) == ()
        unlucky = next(s.id for s in servers if s.id not in got)
        [vif] = db.allocate_fixed_ips(unlucky)
        assert vif.address == got[first][0].address and vif.network_id == net.id
        with pytest.raises(errors.Invalid) as bad:
            db.register_network(name="x", cidr="10.98.1.0/24", gateway="10.97.0.1",
                                bridge="b", dhcp_server="10.98.1.1")
        assert bad.value.field == "gateway"
    finally:
        db.close()


def test_a_moved_or_rebuilt_guest_keeps_its_nics_and_boots_its_images_kernel(
        db_url: str) -> None:
    db = Database(db_url)
    try:
        db.upgrade()
        db.register_network(name="private", cidr="10.97.0.0/24", gateway="10.97.0.1",
                            bridge="nlbr-moves", dhcp_server="10.97.0.1")
        flavor = db.create_flavor(name="f", vcpus=1, memory_mb=128)

        def ami(name: str, args: str) -> Any:
            kernel = db.register_image(name=f"{name}-kernel", path=f"/k/{name}", disk_format="aki")
            ramdisk = db.register_image(name=f"{name}-ramdisk", path=f"/r/{name}",
                                        disk_format="ari")
            return db.register_image(name=name, path=f"/d/{name}.qcow2", disk_format="qcow2",
                                     properties={"kernel_id": kernel.id, "ramdisk_id": ramdisk.id,
                                                 "os_command_line": args})
        old, new = ami("old", "console=ttyS0"), ami("new", "console=ttyS0 quiet")
        [inst] = db.create_instances(
            project_id="p", user_id="u", name="Web 1", flavor_id=flavor.id, image_id=old.id,
            key_name="k", key_data="ssh-ed25519 AAAA me",
            user_data=base64.b64encode(b"#!/bin/sh\n").decode(), config_drive=True,
            metadata={"role": "web"})
        [offline] = db.create_instances(project_id="p", user_id="u", name="offline",
                                        flavor_id=flavor.id, image_id=old.id)
        nics = db.allocate_fixed_ips(inst.id)
        built = guests.guest_config(db.get_instance(inst.id), old, *guests.boot_files(db, old),
                                    nics, admin_pass="pw")

        # rebuilt from another image: that image's kernel, the same NICs
        rebuilt = guests.moved_guest(db, db.get_instance(inst.id), db.get_image(new.id))
        assert (rebuilt.kernel_path, rebuilt.ramdisk_path, rebuilt.kernel_args) == (
            "/k/new", "/r/new", "console=ttyS0 quiet")
        assert rebuilt.vifs == built.vifs == nics != ()
        # moved with its own image: what its build gave it, but the password (never stored)
        moved = guests.moved_guest(db, db.get_instance(inst.id), old)
        assert moved == dataclasses.replace(built, admin_pass=None, launch_index=0)
        assert (moved.hostname, moved.user_data, moved.config_drive) == (
            "web-1", b"#!/bin/sh\n", True)
        assert db.fixed_ips_of(inst.id) == nics
        # a server that got no address (no network then) is given none by a move
        assert guests.moved_guest(db, db.get_instance(offline.id), old).vifs == ()
        assert db.fixed_ips_of(offline.id) == ()
    finally:
        db.close()


class FakeCompute:
    output = "line 1\r\nline\x07 2\n\x1b[0mline 3\n"

    async def console_output(self, host: str, instance_id: str) -> str:
        return self.output


def test_console_output_is_the_last_lines(tmp_path: Path, db_url: str) -> None:
    async def scenario(api: Api) -> None:
        flavor, image = await seeded(api, tmp_path)
        [server] = await api.boot(flavor, image)
        stub = api.servers()
        e = await failure(stub.GetConsoleOutput(servers_pb2.GetConsoleOutputRequest(id=server.id)))
        assert e.code() == Code.FAILED_PRECONDITION  # building: no guest yet
        api.db.update_instance(server.id, host="h1", vm_state="active", task_state=None)
        full = await stub.GetConsoleOutput(servers_pb2.GetConsoleOutputRequest(id=server.id))
        assert full.output == "line 1\nline 2\n[0mline 3\n"
        for length, want in ((2, "line 2\n[0mline 3\n"), (-1, full.output), (0, ""),
                             (10, full.output)):
            reply = await stub.GetConsoleOutput(servers_pb2.GetConsoleOutputRequest(
                id=server.id, length=length))
            assert reply.output == want, length
        e = await failure(stub.GetConsoleOutput(servers_pb2.GetConsoleOutputRequest(
            id=server.id, length=-2)))
        assert bad_field(e) == "length"
        e = await failure(api.servers("b").GetConsoleOutput(
            servers_pb2.GetConsoleOutputRequest(id=server.id)))
        assert e.code() == Code.NOT_FOUND  # another project's
    run(tmp_path, db_url, scenario, compute=FakeCompute())


def test_the_config_drive_is_novas_layout(tmp_path: Path) -> None:
    vif = Vif(network_id="n-1", network="private", bridge="br", mac="fa:16:3e:00:00:01",
              address="10.0.0.5", cidr="10.0.0.0/24", gateway="10.0.0.1", dhcp_server="10.0.0.1")
    guest = GuestConfig(hostname="web-1", vifs=(vif,), config_drive=True, user_data=b"#!/bin/sh\n",
                        key_name="k", key_data="ssh-ed25519 AAAA me", admin_pass="pw",
                        metadata={"role": "web"}, project_id="p", availability_zone="nova")
    drive = tmp_path / "disk.config"
    configdrive.make_config_drive(drive, configdrive.files("uuid-1", "Web 1", guest))
    label = subprocess.run(["isoinfo", "-d", "-i", str(drive)], capture_output=True, text=True,
                           check=True).stdout
    assert "Volume id: config-2" in label

    def read(path: str) -> bytes:
        return subprocess.run(["isoinfo", "-J", "-i", str(drive), "-x", path],
                              capture_output=True, check=True).stdout
    md = json.loads(read("/openstack/latest/meta_data.json"))
    assert {k: md[k] for k in ("uuid", "name", "hostname", "meta", "public_keys", "admin_pass",
                               "availability_zone", "project_id", "launch_index")} == {
        "uuid": "uuid-1", "name": "Web 1", "hostname": "web-1.novalocal", "meta": {"role": "web"},
        "public_keys": {"k": "ssh-ed25519 AAAA me"}, "admin_pass": "pw",
        "availability_zone": "nova", "project_id": "p", "launch_index": 0}
    assert md["keys"] == [{"name": "k", "type": "ssh", "data": "ssh-ed25519 AAAA me"}]
    assert read("/openstack/latest/user_data") == b"#!/bin/sh\n"
    net = json.loads(read("/openstack/latest/network_data.json"))
    assert net["links"][0]["ethernet_mac_address"] == vif.mac
    assert net["networks"][0] == {"id": "network0", "type": "ipv4_dhcp",
                                  "link": net["links"][0]["id"], "network_id": "n-1"}
    assert configdrive.sanitize_hostname("Web Server_1!") == "web-server-1"
