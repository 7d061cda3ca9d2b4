"""Local disk images: a tiny image made at setup (nothing is downloaded), and what
`qemu-img info` says about an image (format, virtual size).

Blocking (runs `qemu-img`): from asyncio code call these through `asyncio.to_thread`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from novalite.virt.errors import ImageError

QEMU_IMG = "qemu-img"
#: formats the driver can put a qcow2 overlay on
DISK_FORMATS = ("qcow2", "raw")
#: the size of the image made by `create_blank_image` when none is given
TINY_IMAGE_MB = 64


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What `qemu-img info` reports about one image file."""

    path: str
    format: str
    virtual_size: int  # bytes the guest sees
    actual_size: int  # bytes used on the host
    backing_file: str | None

    @property
    def virtual_size_gb(self) -> int:
        """Virtual size rounded up to whole GiB (what a flavor's root_gb is compared with)."""
        return -(-self.virtual_size // (1 << 30))


def qemu_img_path() -> str:
    """The qemu-img executable, or ImageError saying how to get it."""
    found = shutil.which(QEMU_IMG)
    if found is None:
        raise ImageError(
            "qemu-img not found: install qemu-utils (scripts/setup_libvirt.sh does)"
        )
    return found


def run_qemu_img(*args: str) -> str:
    """Runs `qemu-img ARGS...` and returns its stdout; ImageError with qemu-img's own
    message if it fails."""
    cmd = [qemu_img_path(), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip()
        raise ImageError(f"qemu-img {args[0]} failed: {msg}")
    return proc.stdout


def create_blank_image(path: str | os.PathLike[str], size_mb: int = TINY_IMAGE_MB,
                       disk_format: str = "qcow2") -> ImageInfo:
    """Creates an empty disk image of `size_mb` MiB (a guest can start on it: the BIOS
    finds nothing to boot and waits, which is enough for every lifecycle action).
    Idempotent: an existing image of the same format is kept as it is."""
    if disk_format not in DISK_FORMATS:
        raise ImageError(f"disk_format must be one of {DISK_FORMATS}, not {disk_format!r}")
    if size_mb <= 0:
        raise ImageError(f"size_mb must be positive, not {size_mb}")
    target = Path(path)
    if target.exists():
        existing = image_info(target)
        if existing.format == disk_format:
            return existing
        raise ImageError(f"{target} exists with format {existing.format}, not {disk_format}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    run_qemu_img("create", "-q", "-f", disk_format, str(tmp), f"{size_mb}M")
    os.replace(tmp, target)
    return image_info(target)


def image_info(path: str | os.PathLike[str]) -> ImageInfo:
    """Format, virtual size, used size and backing file of an image, from
    `qemu-img info --output=json`."""
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"image {p} does not exist")
    # -U: readable even while a running guest holds the image's lock
    out = run_qemu_img("info", "-U", "--output=json", str(p))
    try:
        data = json.loads(out)
        return ImageInfo(
            path=str(p),
            format=str(data["format"]),
            virtual_size=int(data["virtual-size"]),
            actual_size=int(data.get("actual-size", 0)),
            backing_file=(str(data["backing-filename"]) if "backing-filename" in data else None),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageError(f"unreadable qemu-img info for {p}: {exc}") from exc


def image_format(path: str | os.PathLike[str]) -> str:
    """The image's format as qemu-img detects it ('qcow2', 'raw', ...)."""
    return image_info(path).format


def image_virtual_size(path: str | os.PathLike[str]) -> int:
    """The image's virtual size in bytes."""
    return image_info(path).virtual_size


def create_overlay(disk: str | os.PathLike[str], backing: str | os.PathLike[str],
                   backing_format: str, size_gb: int) -> None:
    """A qcow2 disk on top of `backing` (which is never written), `size_gb` GiB large,
    or as large as the backing image when size_gb is 0:
    `qemu-img create -f qcow2 -F FMT -b IMAGE DISK SIZEG`."""
    args = ["create", "-q", "-f", "qcow2", "-F", backing_format,
            "-b", str(Path(backing).resolve()), str(disk)]
    if size_gb > 0:
        args.append(f"{size_gb}G")
    run_qemu_img(*args)


def create_blank_disk(disk: str | os.PathLike[str], size_gb: int) -> None:
    """An empty qcow2 disk of `size_gb` GiB (allocated lazily: costs almost nothing)."""
    run_qemu_img("create", "-q", "-f", "qcow2", str(disk), f"{size_gb}G")
