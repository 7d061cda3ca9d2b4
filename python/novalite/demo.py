"""`novalite demo`: the whole stack on this machine, a batch of servers booted
through the public API, and a summary of what happened (then everything is torn
down, unless --keep)."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc

from novalite.cloud import LocalCloud, libvirtd_reachable
from novalite.rpc.novalite.compute.v1 import (
    flavors_pb2,
    flavors_pb2_grpc,
    hosts_pb2,
    hosts_pb2_grpc,
    images_pb2,
    images_pb2_grpc,
    quotas_pb2,
    quotas_pb2_grpc,
    servers_pb2,
    servers_pb2_grpc,
)
from novalite.services.client import sync_channel


def _watch(servers: Any, ids: list[str], timeout: float, label: str, final: set[str]) -> dict[str, Any]:
    from novalite.client.commands import Progress

    progress = Progress(len(ids), label)
    latest: dict[str, Any] = {}
    stream = servers.WatchServers(servers_pb2.WatchServersRequest(ids=ids), timeout=timeout)
    try:
        for event in stream:
            latest[event.server.id] = event.server
            counts = Counter(s.status for s in latest.values())
            progress.update(dict(counts))
            if len(latest) == len(ids) and all(s.status in final for s in latest.values()):
                progress.update(dict(counts), force=True)
                break
    finally:
        stream.cancel()
        progress.close()
    return latest


# the real guests' flavor: the guest image's min_ram
GUEST_FLAVOR_MB = 128


def _console_line(stub: Any, sid: str, marker: str, timeout: float) -> str:
    """The guest's console once it shows ``marker`` (what it printed by then)."""
    deadline = time.monotonic() + timeout
    output = ""
    while time.monotonic() < deadline:
        try:
            output = stub.GetConsoleOutput(servers_pb2.GetConsoleOutputRequest(id=sid)).output
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.FAILED_PRECONDITION:  # not built yet
                raise
        if marker in output:
            return output
        server = stub.GetServer(servers_pb2.GetServerRequest(id=sid))
        if server.status == "ERROR":
            raise TimeoutError(f"server {sid} is in ERROR: {server.fault.message}")
        time.sleep(0.2)
    raise TimeoutError(f"server {sid} did not print {marker!r} within {timeout:.0f} s:\n{output}")


def pinger(address: str, wait: int = 60) -> bytes:
    """User data that waits (up to ``wait`` seconds) for ``address`` to answer, the
    guests booting side by side, then pings it three times for the console."""
    return (f"#!/bin/sh\nfor i in $(seq {wait}); do ping -c 1 -W 1 {address} >/dev/null && break; "
            f"done\nping -c 3 -W 2 {address}\n").encode()


def real_guests(admin_ch: Any, stub: Any, guest_image: Path, flavor_id: str,
                keep: bool) -> int:
    """Two real Linux guests on one network: the first says hello, the second
    pings the first; both consoles are printed. They stay for the user to read
    (`novalite server console-log`) with ``keep``, else they are deleted."""
    from novalite.client.guest_image import register

    image = register(images_pb2_grpc.ImagesStub(admin_ch), guest_image)
    print(f"\nbooting 2 real guests from image {image.name} ({image.id}), on one network",
          flush=True)
    t0 = time.monotonic()
    first = stub.CreateServer(servers_pb2.CreateServerRequest(
        name="guest-1", flavor_id=flavor_id, image_id=image.id,
        user_data=b"#!/bin/sh\necho hello from $(hostname)\n")).servers[0]
    deadline = time.monotonic() + 60
    while not first.addresses and time.monotonic() < deadline:
        time.sleep(0.05)
        first = stub.GetServer(servers_pb2.GetServerRequest(id=first.id))
    if not first.addresses:
        print("  guest-1 got no address: does this cloud have a network? "
              "(scripts/setup_network.sh)", file=sys.stderr)
        return 1
    target = first.addresses[0].address
    second = stub.CreateServer(servers_pb2.CreateServerRequest(
        name="guest-2", flavor_id=flavor_id, image_id=image.id,
        user_data=pinger(target))).servers[0]
    failed = 0
    for server in (first, second):
        try:
            console = _console_line(stub, server.id, "novalite-guest: ready", 120)
        except TimeoutError as e:
            print(f"  {e}", file=sys.stderr)
            failed += 1
            continue
        shown = stub.GetServer(servers_pb2.GetServerRequest(id=server.id))
        addresses = ", ".join(f"{a.network}={a.address}" for a in shown.addresses)
        print(f"\n  {shown.name} ({shown.id}) {shown.status} {addresses}; its console "
              f"(novalite server console-log {shown.id}):")
        print("    " + console.rstrip("\n").replace("\n", "\n    "))
    print(f"\n  both guests ready {time.monotonic() - t0:.1f} s after the first create", flush=True)
    if not keep:
        for server in (first, second):
            stub.DeleteServer(servers_pb2.DeleteServerRequest(id=server.id))
        deadline = time.monotonic() + 60
        while stub.ListServers(servers_pb2.ListServersRequest(page_size=1)).servers:
            if time.monotonic() > deadline:
                print("  timed out waiting for the guests' deletion", file=sys.stderr)
                return failed + 1
            time.sleep(0.2)
        print("  guests deleted, their addresses free again", flush=True)
    return failed


def run(data_dir: Path, hosts: int, servers: int, real_host: bool | None, keep: bool,
        guest_image: Path | None = None) -> int:
    real = libvirtd_reachable() if real_host is None else real_host
    cloud = LocalCloud(data_dir, hosts=hosts, host_vcpus=16, host_memory_mb=65536, host_disk_gb=1000,
                       real_host=real, report_interval=5)
    print(f"starting the cloud in {cloud.data_dir}: api, conductor, scheduler, compute agents "
          f"({hosts} simulated hosts{' + this machine as a real QEMU host' if real else ''})", flush=True)
    t0 = time.monotonic()
    cloud.start()
    print(f"  up in {time.monotonic() - t0:.1f} s; api on {cloud.endpoint('api')}", flush=True)
    try:
        admin_ch = sync_channel(cloud.endpoint("api"), cloud.admin_token())
        flavors = flavors_pb2_grpc.FlavorsStub(admin_ch)
        # a data directory used before keeps its database: reuse what it has
        flavor = next((f for f in flavors.ListFlavors(flavors_pb2.ListFlavorsRequest(page_size=1000)).flavors
                       if f.name == "m1.demo"), None) or flavors.CreateFlavor(flavors_pb2.CreateFlavorRequest(
                           name="m1.demo", vcpus=1, memory_mb=64, root_gb=1))
        image_id = ""
        if real:
            from novalite.virt.images import create_blank_image

            images = images_pb2_grpc.ImagesStub(admin_ch)
            existing = [i for i in images.ListImages(images_pb2.ListImagesRequest(page_size=1000)).images
                        if i.name == "blank"]
            if existing:
                image_id = existing[0].id
            else:
                path = create_blank_image(cloud.data_dir / "images" / "blank.qcow2").path
                image_id = images.CreateImage(images_pb2.CreateImageRequest(
                    name="blank", path=str(path), properties={"hw_architecture": "x86_64"})).id
        # room for the batch, and for two real guests besides
        quotas_pb2_grpc.QuotasStub(admin_ch).SetQuota(quotas_pb2.SetQuotaRequest(
            project_id="demo", instances=servers + 2, cores=servers + 2,
            ram=servers * 64 + 2 * GUEST_FLAVOR_MB))
        user_ch = sync_channel(cloud.endpoint("api"), cloud.member_token("demo", "alice"))
        stub = servers_pb2_grpc.ServersStub(user_ch)
        print(f"\nbooting {servers} servers (one request, --count {servers}) as project 'demo'", flush=True)
        t1 = time.monotonic()
        reply = stub.CreateServer(servers_pb2.CreateServerRequest(
            name="demo", flavor_id=flavor.id, image_id=image_id, min_count=servers, max_count=servers))
        create_s = time.monotonic() - t1
        ids = [s.id for s in reply.servers]
        final = _watch(stub, ids, 600, "building", {"ACTIVE", "ERROR"})
        active_s = time.monotonic() - t1
        statuses = Counter(s.status for s in final.values())
        admin_servers = servers_pb2_grpc.ServersStub(admin_ch)
        by_host = Counter(admin_servers.GetServer(servers_pb2.GetServerRequest(id=i)).host for i in ids)
        print(f"\n  create call: {create_s * 1000:.0f} ms; all done in {active_s:.2f} s "
              f"({statuses.get('ACTIVE', 0) / active_s:.0f} servers/s to ACTIVE)")
        print(f"  status: {dict(statuses)}")
        print(f"  spread over {len(by_host)} hosts: " + ", ".join(f"{h}={n}" for h, n in sorted(by_host.items())))
        print("\nhosts (used/capacity):")
        for h in hosts_pb2_grpc.HostsStub(admin_ch).ListHosts(hosts_pb2.ListHostsRequest(page_size=1000)).hosts:
            res = {r.resource_class: f"{r.used}/{r.capacity}" for r in h.resources}
            print(f"  {h.name:<24} vcpus {res.get('VCPU', '-'):<8} ram_mb {res.get('MEMORY_MB', '-'):<14} "
                  f"instances {h.compute.num_instances}")
        errors = [s for s in final.values() if s.status == "ERROR"]
        for s in errors[:5]:
            print(f"  ERROR {s.id}: {s.fault.message}", file=sys.stderr)
        if not keep:
            print(f"\ndeleting the {len(ids)} servers", flush=True)
            for i in ids:
                stub.DeleteServer(servers_pb2.DeleteServerRequest(id=i))
            deadline = time.monotonic() + 300
            while stub.ListServers(servers_pb2.ListServersRequest(page_size=1)).servers:
                if time.monotonic() > deadline:
                    print("  timed out waiting for the deletions", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            print(f"  deleted in {time.monotonic() - t1 - active_s:.2f} s", flush=True)
        failed = 0
        if real and guest_image is not None and (guest_image / "current").exists():
            guest_flavor = next((f for f in flavors.ListFlavors(flavors_pb2.ListFlavorsRequest(
                page_size=1000)).flavors if f.name == "m1.guest"), None) or flavors.CreateFlavor(
                    flavors_pb2.CreateFlavorRequest(name="m1.guest", vcpus=1,
                                                    memory_mb=GUEST_FLAVOR_MB, root_gb=1))
            failed = real_guests(admin_ch, stub, guest_image, guest_flavor.id, keep)
        elif real:
            print(f"\nno guest image in {guest_image} (scripts/build_guest_image.sh makes it): "
                  "no real guests booted", flush=True)
        return 1 if errors or failed else 0
    finally:
        if keep:
            print(f"\nthe cloud keeps running (--keep); stop it with: kill the processes or "
                  f"`novalite up --data-dir {cloud.data_dir}` next time", flush=True)
        else:
            cloud.stop()
            print("cloud stopped", flush=True)
