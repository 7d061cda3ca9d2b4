"""Registering the guest image scripts/build_guest_image.sh built (its
``current/`` directory: vmlinuz, initrd.img, disk.qcow2, manifest.json) through the
Images API, in Glance's AMI layout: a kernel (aki), a ramdisk (ari), and the disk
(qcow2) whose properties name them, with the kernel's command line and what the
scheduler needs (img_hv_type=qemu: only real hosts run it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from novalite.rpc.novalite.compute.v1 import images_pb2

DEFAULT_NAME = "novalite-tiny"
# The serial console, quietly: the init's lines are what a user reads there. The
# rest skips probes that cost a few tenths of a second under software emulation
# (the PS/2 controller, serial ports beyond ttyS0, the TSC's checks, the crypto
# self-tests), measured here: guest uptime at the init 1.7-2.1 s -> 1.4-1.5 s.
KERNEL_ARGS = ("console=ttyS0 quiet i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd "
               "8250.nr_uarts=1 tsc=reliable no_timer_check cryptomgr.notests")
# Debian's cloud kernel does not come up in less (silently: before its console)
MIN_RAM_MB = 128


def _existing(images: Any, name: str, checksum: str) -> Any | None:
    for image in images.ListImages(images_pb2.ListImagesRequest(page_size=1000)).images:
        if image.name == name and image.checksum == checksum:
            return image
    return None


def register(images: Any, build_dir: str | Path, name: str = DEFAULT_NAME) -> Any:
    """The disk image (an images_pb2.Image) of the build in ``build_dir`` (its
    ``current`` link resolved, so the images keep their files when the script
    builds a newer one), registered unless images of that name and checksum are
    there already. ``images``: an ImagesStub with an admin's token."""
    root = Path(build_dir)
    root = (root / "current" if (root / "current").exists() else root).resolve()
    manifest = json.loads((root / "manifest.json").read_text())
    checksums = {f: v["md5"] for f, v in manifest["files"].items()}

    def one(file: str, image_name: str, disk_format: str, properties: dict[str, str]) -> Any:
        found = _existing(images, image_name, checksums[file])
        if found is not None:
            return found
        return images.CreateImage(images_pb2.CreateImageRequest(
            name=image_name, path=str(root / file), disk_format=disk_format,
            properties=properties))

    kernel = one("vmlinuz", f"{name}-kernel", "aki", {})
    ramdisk = one("initrd.img", f"{name}-ramdisk", "ari", {})
    return one("disk.qcow2", name, "qcow2", {
        "kernel_id": kernel.id, "ramdisk_id": ramdisk.id, "os_command_line": KERNEL_ARGS,
        "img_hv_type": "qemu", "hw_architecture": "x86_64", "min_ram": str(MIN_RAM_MB),
        "os_distro": "debian-" + manifest["kernel_version"]})
