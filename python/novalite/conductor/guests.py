"""What a real guest is given (records.GuestConfig: its NICs, the metadata of its
config drive, the kernel and ramdisk of an image booted directly), built in one
place for a build and for every move that defines the guest anew: a resize, a
cold or live migration, an evacuation, a rebuild, an unshelve. A moved or rebuilt
guest keeps what it was given.

A build hands out the server's fixed IPs first (ConductorManager, Nova's task
NETWORKING) and passes them here; a move passes the NICs the server has (its
network info, Nova's info cache): a move never hands out an address. The image
is the one the guest boots from now (a rebuild's new one, an unshelve's
snapshot, which has its original's properties), so its kernel, ramdisk and
os_command_line are the ones used. The admin password is never stored: only a
build has one. Blocking (database reads).
"""

from __future__ import annotations

import base64
from typing import Sequence

from novalite.db.database import Database
from novalite.objects import records
from novalite.virt.configdrive import sanitize_hostname


def boot_files(db: Database, image: records.Image | None) -> tuple[
        records.Image | None, records.Image | None]:
    """The kernel and ramdisk an image of Glance's AMI layout names (kernel_id,
    ramdisk_id), deleted ones too (a server keeps booting from them)."""
    if image is None:
        return None, None
    kernel, ramdisk = (db.get_image(str(image.properties[key]), include_deleted=True)
                       if image.properties.get(key) else None
                       for key in ("kernel_id", "ramdisk_id"))
    return kernel, ramdisk


def guest_config(inst: records.Instance, image: records.Image | None,
                 kernel: records.Image | None, ramdisk: records.Image | None,
                 vifs: Sequence[records.Vif], *, launch_index: int = 0,
                 admin_pass: str | None = None) -> records.GuestConfig:
    """The server's guest on ``vifs``, booting ``image`` (with its kernel and
    ramdisk, from boot_files)."""
    props = image.properties if image is not None else {}
    return records.GuestConfig(
        hostname=sanitize_hostname(inst.name), vifs=tuple(vifs), config_drive=inst.config_drive,
        user_data=base64.b64decode(inst.user_data) if inst.user_data else None,
        key_name=inst.key_name, key_data=inst.key_data, admin_pass=admin_pass,
        metadata=dict(inst.metadata), project_id=inst.project_id,
        availability_zone=inst.availability_zone or "", launch_index=launch_index,
        kernel_path=kernel.path if kernel is not None else None,
        ramdisk_path=ramdisk.path if ramdisk is not None else None,
        kernel_args=str(props["os_command_line"]) if "os_command_line" in props else None)


def moved_guest(db: Database, inst: records.Instance,
                image: records.Image | None) -> records.GuestConfig:
    """A move's guest: the server's own NICs, booting ``image``."""
    kernel, ramdisk = boot_files(db, image)
    return guest_config(inst, image, kernel, ramdisk, inst.network_info)


__all__ = ["boot_files", "guest_config", "moved_guest"]
