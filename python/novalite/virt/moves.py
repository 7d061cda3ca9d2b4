"""The driver's part of moving a guest between hosts (resize, cold and live
migration), mixed into LibvirtDriver.

Nova's libvirt driver moves a guest without ever having two domains of it: the
source sets its guest aside (stopped, the domain undefined, its disk and XML kept
in ``<instance dir>_resize``), the destination defines a new domain with a copy of
the disk, and a confirm removes what was set aside while a revert defines it
again. The same holds here, which is also what lets two agents share one libvirtd
(one machine, two hosts): a domain's name and UUID are the instance's, and only
one of them exists at a time.

The set-aside copy (the *stash*) of a real guest is ``<instances>/<id>_resize/``:
``disk``, ``disk.config`` (its config drive), ``network_info.json`` (its NICs),
``console.log``, ``domain.xml`` (the inactive definition), and, for a live
migration, ``memory.state`` (virDomainSave: the running guest's memory and device
state) with ``live.json`` (whether it was paused). The destination copies the
disk, the config drive and the console log from there (a path on this machine:
hosts on several machines would need shared instance storage, which is not done),
plugs the NICs the conductor sends (the guest's GuestConfig: the server's own
fixed IPs) and defines the domain with them and the image's kernel, so that it has
the devices the source's had; for a live migration it restores the saved state
into that definition (virDomainRestoreFlags with the new XML), so the guest
carries on where it stopped: a move with downtime (save, copy, restore), not a
pre-copy live migration, which one libvirtd cannot do to itself. The config drive
is copied, not made again (Nova makes it again on a cold move): it is what the
guest was given, its admin password too, which nothing stores. A simulated host's
stash is the domain's XML and run state beside its node file.

A NIC's DHCP host entry stays on the source until the confirm (a revert needs it)
and is made again by a revert. Two hosts of one machine share the networks'
dnsmasq, so a guest's entry is one file for both: a host removes it only when no
domain of the guest is left on the libvirtd (the driver's _unplug).

Every step is idempotent: a step repeated after a crash finds its own work done
and does not do it twice.
"""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from contextlib import AbstractContextManager, suppress
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from novalite.objects.records import GuestConfig
from novalite.virt import images
from novalite.virt.errors import (
    ActionFailed,
    DriverError,
    ImageError,
    InstanceNotFound,
    SpawnFailed,
)

_T = TypeVar("_T")

STASH_SUFFIX = "_resize"
CONFIG_DRIVE = "disk.config"
CONSOLE_LOG = "console.log"
_DOMAIN_XML = "domain.xml"
_MEMORY = "memory.state"
_LIVE = "live.json"
# libvirt's ABI constants (see driver.py)
VIR_DOMAIN_XML_INACTIVE = 2
VIR_DOMAIN_SAVE_RUNNING = 2
VIR_DOMAIN_SAVE_PAUSED = 4
VIR_DOMAIN_PAUSED = 3
VIR_DOMAIN_RUNNING = 1


class MoveOperations:
    """LibvirtDriver's move steps (see the module's docstring). All block."""

    if TYPE_CHECKING:  # what LibvirtDriver gives them
        is_test: bool
        node_path: Path | None
        instances_path: Path

        def _locked(self, instance_id: str) -> AbstractContextManager[None]: ...
        def _lookup(self, instance_id: str) -> Any: ...
        def _state(self, dom: Any) -> int: ...
        def _do(self, instance_id: str, action: str, fn: Callable[[], _T]) -> _T: ...
        def _call(self, fn: Callable[[Any], _T]) -> _T: ...
        def _hard_stop(self, dom: Any) -> None: ...
        def _undefine(self, dom: Any) -> None: ...
        def _persist(self, instance_id: str) -> None: ...
        def _test_domain_xml(self, instance_id: str, name: str, vcpus: int, memory_mb: int,
                             root_gb: int) -> str: ...
        def _qemu_domain_xml(self, instance_id: str, name: str, vcpus: int, memory_mb: int,
                             root_gb: int, disk: Path | None, console_log: Path,
                             image_path: str | os.PathLike[str] | None,
                             guest: GuestConfig | None = None,
                             config_drive: Path | None = None) -> str: ...
        def _guest_files(self, instance_id: str, name: str, inst_dir: Path,
                         guest: GuestConfig | None, *, make_drive: bool = True) -> Path | None: ...
        def _replug(self, instance_id: str, inst_dir: Path) -> None: ...
        def _unplug(self, instance_id: str) -> None: ...
        def instance_dir(self, instance_id: str) -> Path: ...

    def stash_dir(self, instance_id: str) -> Path:
        """Where the guest set aside by a move is kept until confirmed or reverted."""
        if self.is_test:
            assert self.node_path is not None
            return self.node_path.parent / f"{self.node_path.stem}.moves" / instance_id
        return self.instances_path / f"{self.instance_dir(instance_id).name}{STASH_SUFFIX}"

    def has_stash(self, instance_id: str) -> bool:
        return (self.stash_dir(instance_id) / _DOMAIN_XML).is_file()

    def migrate_disk_and_power_off(self, instance_id: str, *,
                                   live: bool = False) -> str:
        """The source's half of a move: the guest stopped (``live``: its memory
        saved first, so it can carry on elsewhere), its domain undefined, its disk
        and definition set aside. Returns the stash's path, which the destination
        copies from. Done already: returns the same path."""
        with self._locked(instance_id):
            stash = self.stash_dir(instance_id)
            try:
                dom = self._lookup(instance_id)
            except InstanceNotFound:
                if self.has_stash(instance_id):
                    return str(stash)
                raise
            work = stash if self.is_test else self.instance_dir(instance_id)
            moved_already = not self.is_test and not work.exists() and stash.exists()
            if not moved_already:
                work.mkdir(parents=True, exist_ok=True)
                state = self._state(dom)
                if live and state in (VIR_DOMAIN_RUNNING, VIR_DOMAIN_PAUSED) and not self.is_test:
                    _write_json(work / _LIVE, {"paused": state == VIR_DOMAIN_PAUSED})
                    self._do(instance_id, "save", lambda: dom.save(str(work / _MEMORY)))
                elif live and self.is_test:
                    _write_json(work / _LIVE, {"paused": state == VIR_DOMAIN_PAUSED})
                self._do(instance_id, "power_off", lambda: self._hard_stop(dom))
                _atomic_text(work / _DOMAIN_XML,
                             self._do(instance_id, "xml", lambda: dom.XMLDesc(VIR_DOMAIN_XML_INACTIVE)))
                if not self.is_test:
                    if stash.exists():
                        shutil.rmtree(stash)  # a stale one, from an earlier move
                    os.replace(work, stash)
            self._undefine(dom)
            self._persist(instance_id)
            return str(stash)

    def finish_migration(self, instance_id: str, name: str, vcpus: int,
                         memory_mb: int, root_gb: int, *, source: str, power_on: bool,
                         image_path: str | None = None,
                         guest: GuestConfig | None = None) -> None:
        """The destination's half: the disk, the config drive and the console log
        copied from the source's stash (the disk grown to ``root_gb``), the NICs
        of ``guest`` plugged, the domain defined with them and its kernel, and
        then either restored from the saved memory (a live move: running or
        paused as it was, on the same devices) or started when ``power_on``. A
        cold move of a guest whose stash has no config drive gets one made (a
        live one must find the devices it had). A domain already here is left
        as it is."""
        stash = Path(source)
        with self._locked(instance_id):
            try:
                self._lookup(instance_id)
                return
            except InstanceNotFound:
                pass
            live = _read_json(stash / _LIVE)
            if self.is_test:
                xml = self._test_domain_xml(instance_id, name, vcpus, memory_mb, root_gb)
                dom = self._call(lambda c: c.defineXML(xml))
                if live is not None or power_on:
                    self._do(instance_id, "start", dom.create)
                    if live is not None and live.get("paused"):
                        self._do(instance_id, "pause", dom.suspend)
                self._persist(instance_id)
                return
            inst_dir = self.instance_dir(instance_id)
            try:
                disk = self._copy_disk(instance_id, stash, inst_dir, root_gb)
                drive = self._guest_files(instance_id, name, inst_dir, guest,
                                          make_drive=live is None)
                xml = self._qemu_domain_xml(instance_id, name, vcpus, memory_mb, root_gb,
                                            disk, inst_dir / CONSOLE_LOG, image_path,
                                            guest, drive)
                dom = self._call(lambda c: c.defineXML(xml))
                if live is not None and (stash / _MEMORY).is_file():
                    flags = VIR_DOMAIN_SAVE_PAUSED if live.get("paused") else VIR_DOMAIN_SAVE_RUNNING
                    self._do(instance_id, "restore", lambda: self._call(
                        lambda c: c.restoreFlags(str(stash / _MEMORY), xml, flags)))
                elif power_on:
                    self._do(instance_id, "start", dom.create)
            except BaseException:
                try:
                    self._undefine(self._lookup(instance_id))
                except Exception:  # noqa: BLE001 - nothing was defined
                    pass
                shutil.rmtree(inst_dir, ignore_errors=True)
                with suppress(DriverError):  # libvirt is down: the failure says so
                    self._unplug(instance_id)
                raise

    def _copy_disk(self, instance_id: str, stash: Path, inst_dir: Path,
                   root_gb: int) -> Path | None:
        """The stash's disk (grown to ``root_gb``; returned, None without one),
        config drive and console log (the guest's output goes on in it) copied
        into a fresh ``inst_dir``."""
        if inst_dir.exists():
            shutil.rmtree(inst_dir)  # no domain has it (checked by the caller): a leftover
        inst_dir.mkdir(parents=True)
        disk = inst_dir / "disk"
        try:
            for name in (CONFIG_DRIVE, CONSOLE_LOG, "disk"):
                if (stash / name).is_file():
                    tmp = inst_dir / f".{name}.part"
                    shutil.copyfile(stash / name, tmp)
                    os.replace(tmp, inst_dir / name)
            if not disk.is_file():
                return None
            if root_gb and images.image_info(disk).virtual_size < root_gb * (1 << 30):
                images.run_qemu_img("resize", "-q", str(disk), f"{root_gb}G")
        except (OSError, ImageError) as exc:
            raise SpawnFailed(instance_id, f"copying the disk from {stash}: {exc}") from exc
        return disk

    def finish_revert_migration(self, instance_id: str, *,
                                power_on: bool) -> None:
        """A revert (or a rollback) on the source: the set-aside guest defined
        again with its disk, restored from its saved memory if it was moving live,
        else started when ``power_on``. Nothing set aside: nothing to do (a domain
        already back is left alone)."""
        with self._locked(instance_id):
            stash = self.stash_dir(instance_id)
            try:
                self._lookup(instance_id)
                back = True
            except InstanceNotFound:
                back = False
            if back or not self.has_stash(instance_id):
                if back and self.is_test:
                    shutil.rmtree(stash, ignore_errors=True)  # defined again before a crash
                return
            xml = (stash / _DOMAIN_XML).read_text()
            live = _read_json(stash / _LIVE)
            work = stash if self.is_test else self.instance_dir(instance_id)
            if not self.is_test:
                # the DHCP host entries again: the destination's delete removed them
                # when it is a host of this machine (both hosts' guests have the same)
                self._replug(instance_id, stash)
                if work.exists():
                    shutil.rmtree(work)  # the destination's half, on a same-host move
                os.replace(stash, work)
            dom = self._call(lambda c: c.defineXML(xml))
            memory = work / _MEMORY
            if live is not None and memory.is_file():
                flags = VIR_DOMAIN_SAVE_PAUSED if live.get("paused") else VIR_DOMAIN_SAVE_RUNNING
                self._do(instance_id, "restore", lambda: self._call(
                    lambda c: c.restoreFlags(str(memory), xml, flags)))
            elif live is not None or power_on:
                self._do(instance_id, "start", dom.create)
                if live is not None and live.get("paused"):
                    self._do(instance_id, "pause", dom.suspend)
            for leftover in (memory, work / _LIVE, work / _DOMAIN_XML):
                leftover.unlink(missing_ok=True)
            if self.is_test:
                shutil.rmtree(stash, ignore_errors=True)
            self._persist(instance_id)

    def snapshot(self, instance_id: str) -> str | None:
        """A shelve's copy of the guest's disk, flattened (standalone: it outlives
        the guest and its image): ``<instances>/snapshots/<id>.qcow2``. Returns
        its path; None when the guest has no disk (a simulated one's)."""
        with self._locked(instance_id):
            self._lookup(instance_id)
            if self.is_test:
                return None
            disk = self.instance_dir(instance_id) / "disk"
            if not disk.is_file():
                return None
            target = self.instances_path / "snapshots" / f"{instance_id}.qcow2"
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.part")
            try:
                images.run_qemu_img("convert", "-U", "-O", "qcow2", str(disk), str(tmp))
            except ImageError as exc:
                tmp.unlink(missing_ok=True)
                raise ActionFailed(instance_id, "snapshot", str(exc)) from exc
            os.replace(tmp, target)
            return str(target)

    def confirm_migration(self, instance_id: str) -> None:
        """A confirm on the source: what was set aside is removed, and the
        guest's DHCP host entries (kept for a revert) unless the guest moved to
        another host of this machine (see _unplug). Idempotent."""
        with self._locked(instance_id):
            shutil.rmtree(self.stash_dir(instance_id), ignore_errors=True)
            if not self.is_test:
                self._unplug(instance_id)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_json(path: Path, value: object) -> None:
    _atomic_text(path, json.dumps(value))


def _read_json(path: Path) -> dict[str, object] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


__all__ = ["CONFIG_DRIVE", "MoveOperations", "STASH_SUFFIX"]
