"""The compute agent with a real QEMU guest on `qemu:///system` (issue 4, sections 1, 3
and 5 as far as the agent goes): the machine registered as a real host, a 64 MiB
guest on a blank 64 MiB image built through the agent's gRPC service, every
lifecycle action seen by libvirt (virsh), a guest destroyed behind the agent's back
reported STOPPED by the sync, an agent killed with -9 and restarted finding the same
guest (the same QEMU process) and usage, and delete removing the domain and its disk.

Never skipped silently: if libvirtd cannot be reached these tests FAIL and say to
run `sudo scripts/setup_libvirt.sh`. A developer without root may skip them
explicitly with NOVALITE_SKIP_QEMU=1 (CI never sets it).
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

from novalite.objects import records
from novalite.objects.states import PowerState, VmState
from novalite.settings import ComputeSettings
from novalite.virt import LibvirtDriver, domain_name, images

from qemu import libvirtd  # noqa: F401 - the fixture, for every test here
from qemu import GUEST_MB, URI, all_domains, domstate, skip_if_not_wanted, virsh
from test_compute import (Cloud, agent_env, agent_process, eventually, run, stop_process,
                          wait_registered)

skip_if_not_wanted()


def qemu_compute(tmp_path: Path, host: str) -> ComputeSettings:
    return ComputeSettings(virt_uri=URI, hosts=(host,), reserved_host_memory_mb=512,
                           instances_path=tmp_path / "instances")


async def guest_image(cloud: Cloud) -> records.Image:
    info = await asyncio.to_thread(images.create_blank_image,
                                   cloud.tmp_path / "images" / "tiny.qcow2", GUEST_MB)
    image: records.Image = await cloud.q(cloud.db.register_image, name="tiny", path=str(info.path),
                                         disk_format="qcow2")
    return image


async def boot(cloud: Cloud, host: str, image: records.Image, spawned: list[str]) -> records.Instance:
    flavor = await cloud.flavor("qemu.tiny", vcpus=1, memory_mb=GUEST_MB, root_gb=1, swap=0)
    inst = await cloud.server(flavor, "real", image_id=image.id)
    spawned.append(inst.id)
    inst, allocation = await cloud.place(inst, host, flavor)
    power = await cloud.rpc.build(host, inst, flavor, image, allocation)
    assert power == PowerState.RUNNING
    await cloud.q(cloud.db.update_instance, inst.id, vm_state=VmState.ACTIVE, task_state=None,
                  power_state=power)
    got: records.Instance = await cloud.q(cloud.db.get_instance, inst.id)
    return got


def cleanup(spawned: list[str], instances_path: Path) -> None:
    with LibvirtDriver(URI, instances_path=instances_path) as drv:
        for iid in spawned:
            drv.destroy(iid)


def test_real_guest_lifecycle_through_the_agent(tmp_path: Path) -> None:
    host = f"qemu-{uuid.uuid4().hex[:6]}"
    compute = qemu_compute(tmp_path, host)
    spawned: list[str] = []

    async def scenario(cloud: Cloud) -> None:
        # the machine itself, registered as a real host
        h = await cloud.q(cloud.db.get_host, host)
        assert h.hypervisor_type == "QEMU" and ["x86_64", "qemu", "hvm"] in h.supported_instances
        assert h.inventories["VCPU"].total == os.cpu_count()
        assert h.inventories["MEMORY_MB"].reserved == 512
        image = await guest_image(cloud)
        inst = await boot(cloud, host, image, spawned)
        assert domain_name(inst.id) in virsh("list", "--name").split()
        assert domstate(inst.id) == "running"
        disk = cloud.settings.compute.instances_path / inst.id / "disk"
        assert images.image_info(disk).backing_file == image.path
        view = await cloud.view(host)
        assert view["num_instances"] == 1
        assert view["free_ram_mb"] == h.inventories["MEMORY_MB"].total - 512 - GUEST_MB

        for action, power, state in (
                ("pause", PowerState.PAUSED, "paused"),
                ("unpause", PowerState.RUNNING, "running"),
                ("suspend", PowerState.SHUTDOWN, "shut off"),  # managed save, as Nova
                ("resume", PowerState.RUNNING, "running"),
                ("stop", PowerState.SHUTDOWN, "shut off"),
                ("start", PowerState.RUNNING, "running"),
                ("reboot_hard", PowerState.RUNNING, "running"),
                ("reboot_soft", PowerState.RUNNING, "running")):
            before = virsh("domid", domain_name(inst.id)).strip()
            assert await cloud.rpc.action(host, inst.id, action) == power, action
            assert domstate(inst.id) == state, action
            if action == "suspend":
                assert "Managed save:   yes" in virsh("dominfo", domain_name(inst.id))
            if action.startswith("reboot"):  # a new QEMU process
                assert virsh("domid", domain_name(inst.id)).strip() != before

        # destroyed behind the agent's back: the sync stops the server
        virsh("destroy", domain_name(inst.id))
        await cloud.agent.sync_power_states(host)
        got = await cloud.q(cloud.db.get_instance, inst.id)
        assert (got.vm_state, got.power_state, got.status) == \
            (VmState.STOPPED, PowerState.SHUTDOWN, "SHUTOFF")

        # delete: the domain and its disk are gone, the usage freed
        await cloud.rpc.delete(host, inst.id)
        assert domain_name(inst.id) not in all_domains()
        assert not disk.parent.exists()
        assert (await cloud.view(host))["num_instances"] == 0

    try:
        run(tmp_path, f"sqlite:///{tmp_path}/novalite.db", scenario, compute=compute,
            soft_reboot_timeout=1.0)
    finally:
        cleanup(spawned, compute.instances_path)


def test_a_killed_agent_finds_its_real_guest_again(tmp_path: Path) -> None:
    host = f"qemu-{uuid.uuid4().hex[:6]}"
    compute = qemu_compute(tmp_path, host)
    url = f"sqlite:///{tmp_path}/novalite.db"
    spawned: list[str] = []

    async def scenario(cloud: Cloud) -> None:
        proc = agent_process(agent_env(cloud.settings.data_dir, url, compute,
                                       cloud.scheduler_server.port))
        try:
            await asyncio.to_thread(wait_registered, proc, cloud.db, 1)
            image = await guest_image(cloud)
            inst = await boot(cloud, host, image, spawned)
            qemu_id = virsh("domid", domain_name(inst.id)).strip()

            async def written() -> bool:  # the agent writes its view shortly after the build
                return (await cloud.view(host))["num_instances"] == 1
            await eventually(written)
            before = await cloud.view(host)
            await asyncio.to_thread(stop_process, proc, signal.SIGKILL)
        finally:
            await asyncio.to_thread(stop_process, proc, signal.SIGKILL)
        assert domstate(inst.id) == "running"  # the guest outlives its agent

        agent = await cloud.start_agent()
        # the same guest, still the same QEMU process; the same usage; nothing new
        assert virsh("domid", domain_name(inst.id)).strip() == qemu_id
        assert dict(cloud.driver(host).list_instances()) == {inst.id: PowerState.RUNNING}
        assert await cloud.view(host) == before
        assert agent.claims.consumers() == [inst.id]
        assert [s.host for s in await cloud.q(cloud.db.list_services, binary="compute")] == [host]
        assert [h.name for h in await cloud.q(cloud.db.list_hosts)] == [host]
        got = await cloud.q(cloud.db.get_instance, inst.id)
        assert (got.vm_state, got.power_state) == (VmState.ACTIVE, PowerState.RUNNING)
        await cloud.rpc.delete(host, inst.id)
        assert domain_name(inst.id) not in all_domains()

    try:
        run(tmp_path, url, scenario, start=False, compute=compute)
    finally:
        cleanup(spawned, compute.instances_path)
