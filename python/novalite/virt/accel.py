"""Whether real guests may run under KVM here, found by trying (Nova's [libvirt]
virt_type, with an "auto" Nova does not have).

A /dev/kvm device is not proof that KVM works: on the machines this project runs
on it is a nested, paravirtual one on which a standard guest kernel hangs before
its init. So "auto" boots the setup's guest kernel once under KVM, straight from
QEMU with its serial port to a file, and takes KVM only if the guest's init
prints its line within PROBE_TIMEOUT seconds; software emulation (TCG, libvirt's
domain type 'qemu') otherwise. The verdict is kept in one file per machine
(VERDICT_PATH), keyed by what it depends on (the device, the QEMU binary and
version, the kernel), so it is found again at once and re-tried only when one of
those changes. The setup runs the probe (``python -m novalite.virt.accel probe
<guest image dir>``); an agent only reads the verdict, never waits for a probe.

    python -m novalite.virt.accel probe DIR [--timeout S] [--verdict PATH]
    python -m novalite.virt.accel show [--verdict PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

VIRT_TYPES = ("auto", "qemu", "kvm")
KVM_DEVICE = Path("/dev/kvm")
VERDICT_PATH = Path("/var/lib/novalite/kvm.json")
QEMU = "/usr/bin/qemu-system-x86_64"
# software emulation reaches the init in ~2 s here; a working KVM in well under that
PROBE_TIMEOUT = 12.0
INIT_LINE = b"novalite-guest: init started"


@dataclass(frozen=True)
class Verdict:
    works: bool
    key: str  # what it was found for (see probe_key)
    detail: str  # a sentence for the setup's log and `show`
    seconds: float


def probe_key(kernel: Path, *, qemu: str = QEMU, device: Path = KVM_DEVICE) -> str:
    """What a verdict depends on: the device's presence, the QEMU binary (path,
    size, mtime) and the kernel's contents."""
    h = hashlib.sha256()
    h.update(f"{device}:{device.exists()}\0".encode())
    try:
        st = os.stat(qemu)
        h.update(f"{qemu}:{st.st_size}:{int(st.st_mtime)}\0".encode())
    except OSError:
        h.update(f"{qemu}:missing\0".encode())
    with open(kernel, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:32]


def probe(kernel: Path, initrd: Path, kernel_args: str, *, qemu: str = QEMU,
          device: Path = KVM_DEVICE, timeout: float = PROBE_TIMEOUT,
          key: str | None = None) -> Verdict:
    """Boot ``kernel`` once under KVM; works if its init's line shows in time.
    ``key``: its probe_key, when the caller has it already."""
    key = key or probe_key(kernel, qemu=qemu, device=device)
    started = time.monotonic()
    if not device.exists():
        return Verdict(False, key, f"no {device}: software emulation", 0.0)
    with tempfile.TemporaryDirectory(prefix="novalite-kvm-") as tmp:
        serial = Path(tmp) / "serial.log"
        cmd = [qemu, "-accel", "kvm", "-m", "128", "-nographic", "-no-reboot",
               "-display", "none", "-monitor", "none", "-nodefaults",
               "-kernel", str(kernel), "-initrd", str(initrd), "-append", kernel_args,
               "-serial", f"file:{serial}"]
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
        except OSError as exc:
            return Verdict(False, key, f"{qemu} could not start: {exc}", 0.0)
        try:
            while time.monotonic() - started < timeout:
                if serial.exists() and INIT_LINE in serial.read_bytes():
                    took = time.monotonic() - started
                    return Verdict(True, key, f"a guest reached its init under KVM in "
                                              f"{took:.1f} s", round(took, 2))
                if proc.poll() is not None:
                    err = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace")
                    return Verdict(False, key, "QEMU with KVM exited with status "
                                   f"{proc.returncode}: {err.strip()[:300]}",
                                   round(time.monotonic() - started, 2))
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    return Verdict(False, key, f"a guest under KVM did not reach its init in {timeout:g} s "
                               "(a nested or paravirtual KVM): software emulation",
                   round(time.monotonic() - started, 2))


def save(verdict: Verdict, path: Path = VERDICT_PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(verdict.__dict__) + "\n")
    os.replace(tmp, path)


def load(path: Path = VERDICT_PATH) -> Verdict | None:
    """The verdict kept, or None (none yet, or unreadable: as if none)."""
    try:
        raw = json.loads(path.read_text())
        return Verdict(bool(raw["works"]), str(raw["key"]), str(raw["detail"]),
                       float(raw["seconds"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def domain_type(virt_type: str, *, verdict_path: Path = VERDICT_PATH,
                device: Path = KVM_DEVICE) -> str:
    """libvirt's domain type for ``virt_type``: 'kvm' or 'qemu'. "auto" is 'kvm'
    only where the kept verdict says a guest booted under KVM (and the device is
    still there)."""
    if virt_type == "qemu":
        return "qemu"
    if virt_type == "kvm":
        if not device.exists():
            raise ValueError(f"compute.virt_type is kvm but there is no {device}")
        return "kvm"
    if virt_type != "auto":
        raise ValueError(f"virt_type must be one of {', '.join(VIRT_TYPES)}, got {virt_type!r}")
    verdict = load(verdict_path)
    return "kvm" if verdict is not None and verdict.works and device.exists() else "qemu"


def _probe_dir(image_dir: Path, *, timeout: float, verdict_path: Path) -> Verdict:
    """The setup's step: the verdict for the guest image in ``image_dir``
    (vmlinuz, initrd.img), kept; found again without booting when nothing changed."""
    from novalite.client.guest_image import KERNEL_ARGS

    kernel, initrd = image_dir / "vmlinuz", image_dir / "initrd.img"
    for f in (kernel, initrd):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: not a guest image directory (run "
                                    "scripts/build_guest_image.sh first)")
    key = probe_key(kernel)
    kept = load(verdict_path)
    if kept is not None and kept.key == key:
        return kept
    verdict = probe(kernel, initrd, KERNEL_ARGS, timeout=timeout, key=key)
    save(verdict, verdict_path)
    return verdict


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m novalite.virt.accel",
        description="Find whether real guests may run under KVM here (compute.virt_type "
                    "auto); the verdict is kept for the compute agents.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probe", help="boot the guest image once under KVM and keep the verdict")
    p.add_argument("image_dir", type=Path, help="the guest image (vmlinuz, initrd.img)")
    p.add_argument("--timeout", type=float, default=PROBE_TIMEOUT,
                   help=f"seconds the guest has to reach its init (default {PROBE_TIMEOUT:g})")
    p.add_argument("--verdict", type=Path, default=VERDICT_PATH,
                   help=f"where the verdict is kept (default {VERDICT_PATH})")
    s = sub.add_parser("show", help="print the verdict kept")
    s.add_argument("--verdict", type=Path, default=VERDICT_PATH)
    args = parser.parse_args(argv)
    if args.command == "show":
        verdict = load(args.verdict)
        print("no verdict yet: software emulation" if verdict is None else
              f"{'kvm' if verdict.works else 'qemu'}: {verdict.detail}")
        return 0
    if args.timeout <= 0:
        parser.error(f"--timeout must be > 0, got {args.timeout:g}")
    try:
        verdict = _probe_dir(args.image_dir, timeout=args.timeout, verdict_path=args.verdict)
    except FileNotFoundError as exc:
        print(f"accel: {exc}", file=sys.stderr)
        return 2
    print(f"accel: {'kvm' if verdict.works else 'qemu'}: {verdict.detail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
