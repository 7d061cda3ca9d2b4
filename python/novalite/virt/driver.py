"""One libvirt driver for real guests (`qemu:///system`) and simulated hosts
(`test:///ABS/PATH.xml`, one node description file per host).

Every method blocks (libvirt calls, qemu-img, polling for a state change): the compute
agent calls them through `asyncio.to_thread` so that its event loop never waits on
libvirt. A driver object is safe to use from several threads at once:

* it holds one libvirt connection, opened lazily and guarded by a lock; a connection
  that dropped (libvirtd restarted) is reopened and the call retried once;
* actions on one instance are serialised by a per-instance lock (spawn, reboot and
  destroy of the same instance never interleave); actions on different instances run
  in parallel for qemu:///system (libvirt connections are thread-safe);
* for test:/// every action holds one lock, because the test driver keeps its state in
  memory per connection and this driver writes it back to the node file after each
  change (see below).

Domains are named `novalite-<instance id>` and carry the instance id in their metadata
(namespace `INSTANCE_NS`), so an agent finds its domains again after a restart:
`list_instances()` reads the metadata, not the names, and ignores foreign domains.
A real guest's metadata also names the instances directory of the driver that made
it: two agents sharing one libvirtd (two "hosts" on one machine, each with its own
directory) each see only their own guests, and a guest that moved from one to the
other belongs to the one it moved to.

A real guest's NICs are plugged into their networks' bridges, each with a DHCP host
entry (linux_net) for the fixed IP the conductor chose; the entries are noted in the
instance directory (``network_info.json``), so that a guest a move set aside gets
them back when it is defined again (virt/moves.py). Two hosts on one machine share
the networks' dnsmasq and so the entries: a host removes a guest's only when no
domain of it is left on the libvirtd.

Simulated hosts. libvirt's test driver loads `test:///path.xml` into memory each time
a connection opens it and forgets every change on close. So that a simulated host
survives an agent restart like a real one does, the driver rewrites the node file
after each change with the domains it holds (their XML, plus the test driver's own
`<test:runstate>` and `<test:hasmanagedsave/>`), atomically. `write_test_node()`
creates such a file with the host's CPUs, memory, disk and name.

Power states follow Nova's libvirt driver (`nova/virt/libvirt/driver.py`,
LIBVIRT_POWER_STATE): running and blocked -> RUNNING, paused -> PAUSED, shutting down and
shut off -> SHUTDOWN, crashed -> CRASHED, pmsuspended -> SUSPENDED. suspend() is
libvirt's managedSave, as in Nova: the guest's memory goes to disk and the domain is
shut off, so its power state is SHUTDOWN (the vm_state SUSPENDED lives in the
database); `is_suspended()` tells the two apart (a managed save image exists).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, cast
from urllib.parse import urlsplit
from xml.sax.saxutils import escape, quoteattr

from novalite.objects.records import GuestConfig, Vif
from novalite.objects.states import PowerState
from novalite.virt import configdrive, images, linux_net
from novalite.virt.cpu_traits import cpu_traits
from novalite.virt.moves import CONFIG_DRIVE, MoveOperations
from novalite.virt.errors import (
    ActionFailed,
    DriverError,
    HypervisorUnavailable,
    ImageError,
    InstanceExists,
    InstanceNotFound,
    InvalidInstanceId,
    SpawnFailed,
)

try:
    import libvirt as _libvirt  # type: ignore[import-untyped, import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - reported when a driver is created
    _libvirt = None
else:
    # libvirt prints every error to stderr by default; we raise them instead
    _libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

LOG = logging.getLogger(__name__)

SETUP_HINT = "run `sudo scripts/setup_libvirt.sh` (installs and starts libvirtd and virtlogd)"
DOMAIN_PREFIX = "novalite-"
INSTANCE_NS = "https://novalite.dev/xmlns/libvirt/instance/1.0"
NODE_NS = "https://novalite.dev/xmlns/libvirt/node/1.0"
TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
DEFAULT_INSTANCES_PATH = "/var/lib/novalite/instances"
QEMU_EMULATOR = "/usr/bin/qemu-system-x86_64"
GIB = 1 << 30
# Nova's libvirt get_console_output reads at most this much of the log's end
MAX_CONSOLE_BYTES = 100 * 1024
# in an instance directory, beside its config drive (moves.CONFIG_DRIVE): the NICs
# the guest was plugged with
NETWORK_INFO = "network_info.json"

ET.register_namespace("novalite", NODE_NS)
ET.register_namespace("test", TEST_NS)
ET.register_namespace("novalite-instance", INSTANCE_NS)

# libvirt's ABI constants (stable across releases; checked against the module in tests)
VIR_DOMAIN_NOSTATE = 0
VIR_DOMAIN_RUNNING = 1
VIR_DOMAIN_BLOCKED = 2
VIR_DOMAIN_PAUSED = 3
VIR_DOMAIN_SHUTDOWN = 4
VIR_DOMAIN_SHUTOFF = 5
VIR_DOMAIN_CRASHED = 6
VIR_DOMAIN_PMSUSPENDED = 7
VIR_DOMAIN_METADATA_ELEMENT = 2
VIR_DOMAIN_XML_INACTIVE = 2
VIR_DOMAIN_UNDEFINE_MANAGED_SAVE = 1
VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA = 2
VIR_DOMAIN_UNDEFINE_NVRAM = 4
VIR_ERR_NO_DOMAIN = 42
VIR_ERR_OPERATION_INVALID = 55
VIR_ERR_NO_DOMAIN_METADATA = 80


#: nova/virt/libvirt/driver.py LIBVIRT_POWER_STATE
LIBVIRT_POWER_STATE: dict[int, PowerState] = {
    VIR_DOMAIN_NOSTATE: PowerState.NOSTATE,
    VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    # Xen's "running, vCPU idle"
    VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
    VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    # "being shut down": Nova maps it with SHUTOFF to SHUTDOWN
    VIR_DOMAIN_SHUTDOWN: PowerState.SHUTDOWN,
    VIR_DOMAIN_SHUTOFF: PowerState.SHUTDOWN,
    VIR_DOMAIN_CRASHED: PowerState.CRASHED,
    VIR_DOMAIN_PMSUSPENDED: PowerState.SUSPENDED,
}


def nova_power_state(libvirt_state: int) -> PowerState:
    """Nova's power state for a libvirt domain state (unknown values -> NOSTATE)."""
    return LIBVIRT_POWER_STATE.get(libvirt_state, PowerState.NOSTATE)


@dataclass(frozen=True, slots=True)
class HostInfo:
    """What the compute agent reports as its host's inventory and hypervisor."""

    hostname: str
    vcpus: int
    memory_mb: int
    disk_gb: int
    architecture: str
    hypervisor_type: str  # 'QEMU' or 'test'
    hypervisor_version: int  # libvirt's getVersion(): major * 1e6 + minor * 1e3 + release
    cpu_info: dict[str, Any] = field(default_factory=dict)
    supported_instances: list[tuple[str, str, str]] = field(default_factory=list)
    # Placement traits of the CPU (cpu_traits.py); none for a simulated host,
    # whose agent takes them from its settings
    traits: frozenset[str] = frozenset()


# --- typed view of the parts of libvirt-python used here (it ships no stubs) ----------


class _Domain(Protocol):
    def name(self) -> str: ...
    def state(self, flags: int = 0) -> list[int]: ...
    def isActive(self) -> int: ...
    def create(self) -> int: ...
    def destroy(self) -> int: ...
    def shutdown(self) -> int: ...
    def suspend(self) -> int: ...
    def resume(self) -> int: ...
    def managedSave(self, flags: int = 0) -> int: ...
    def save(self, to: str) -> int: ...
    def hasManagedSaveImage(self, flags: int = 0) -> int: ...
    def managedSaveRemove(self, flags: int = 0) -> int: ...
    def undefineFlags(self, flags: int = 0) -> int: ...
    def metadata(self, type: int, uri: str | None, flags: int = 0) -> str: ...
    def XMLDesc(self, flags: int = 0) -> str: ...


class _Connection(Protocol):
    def getInfo(self) -> list[Any]: ...
    def getCapabilities(self) -> str: ...
    def baselineCPU(self, xml_cpus: list[str], flags: int = 0) -> str: ...
    def getVersion(self) -> int: ...
    def getHostname(self) -> str: ...
    def lookupByName(self, name: str) -> _Domain: ...
    def listAllDomains(self, flags: int = 0) -> list[_Domain]: ...
    def defineXML(self, xml: str) -> _Domain: ...
    def restoreFlags(self, frm: str, dxml: str | None = None, flags: int = 0) -> int: ...
    def isAlive(self) -> int: ...
    def close(self) -> int: ...


def _error_code(exc: BaseException) -> int | None:
    get = getattr(exc, "get_error_code", None)
    if get is None:
        return None
    code = get()
    return int(code) if code is not None else None


def _is_libvirt_error(exc: BaseException) -> bool:
    return _libvirt is not None and isinstance(exc, _libvirt.libvirtError)


_T = TypeVar("_T")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _check_id(instance_id: str) -> str:
    if not isinstance(instance_id, str) or not _ID_RE.match(instance_id):
        raise InvalidInstanceId(
            f"instance id {instance_id!r}: 1-128 characters of letters, digits, '.', '_', '-'"
        )
    return instance_id


def domain_name(instance_id: str) -> str:
    """The libvirt domain name of an instance."""
    return DOMAIN_PREFIX + _check_id(instance_id)


# --- simulated hosts ---------------------------------------------------------------------


def write_test_node(
    path: str | os.PathLike[str],
    name: str,
    vcpus: int,
    memory_mb: int,
    *,
    disk_gb: int = 1000,
    architecture: str = "x86_64",
    sockets: int = 1,
    threads: int = 1,
    mhz: int = 2000,
) -> Path:
    """Writes the node description of one simulated host for `test:///<path>`: its
    name, CPUs (vcpus = sockets * cores * threads), memory and disk. Overwrites any
    previous file (and so the domains it held). Returns the absolute path; the URI is
    `node_uri(path)`."""
    if vcpus <= 0 or memory_mb <= 0 or disk_gb < 0:
        raise ValueError("vcpus and memory_mb must be positive, disk_gb not negative")
    if sockets <= 0 or threads <= 0 or vcpus % (sockets * threads):
        raise ValueError(f"vcpus {vcpus} is not a multiple of sockets*threads")
    if not name or "\n" in name:
        raise ValueError("a simulated host needs a one-line name")
    cores = vcpus // (sockets * threads)
    target = Path(path).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        f"<node xmlns:novalite='{NODE_NS}'>\n"
        f"  <novalite:host name={quoteattr(name)} disk_gb='{disk_gb}'"
        f" architecture={quoteattr(architecture)}/>\n"
        "  <cpu>\n"
        "    <nodes>1</nodes>\n"
        f"    <sockets>{sockets}</sockets>\n"
        f"    <cores>{cores}</cores>\n"
        f"    <threads>{threads}</threads>\n"
        f"    <active>{vcpus}</active>\n"
        f"    <mhz>{mhz}</mhz>\n"
        f"    <model>{escape(architecture)}</model>\n"
        "  </cpu>\n"
        f"  <memory>{memory_mb * 1024}</memory>\n"
        "</node>\n"
    )
    _atomic_write(target, text)
    return target


def node_uri(path: str | os.PathLike[str]) -> str:
    """`test:///ABS/PATH.xml` for a node file."""
    return "test://" + str(Path(path).resolve())


def _atomic_write(target: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- the driver --------------------------------------------------------------------------


class LibvirtDriver(MoveOperations):
    """See the module's docstring. All methods block; all are thread-safe. The
    steps of a move (virt/moves.py) are mixed in.

    uri: `qemu:///system` (real guests, domain type 'qemu': software emulation, or
        'kvm': ``domain_type``, which virt/accel.py decides) or
        `test:///ABS/PATH.xml` (a simulated host made by `write_test_node`).
    instances_path: where each instance gets `<id>/disk` and `<id>/console.log`
        (qemu only; its free space is the host's disk_gb).
    disk_gb: the host's disk for test:/// (default: the node file's, else 1000).
    shutdown_timeout: seconds power_off() waits for the guest to shut down after an
        ACPI request before pulling the plug; 0 (default) destroys at once, which is
        what a guest without an OS (the setup's blank image) needs.
    soft_reboot_timeout: seconds a soft reboot waits for the guest to shut down before
        falling back to a hard reboot, as Nova does (wait_soft_reboot_seconds).
    networks_path: where this host's networks are described (linux_net): a guest's
        NICs get their DHCP host entries there.
    """

    def __init__(
        self,
        uri: str,
        *,
        instances_path: str | os.PathLike[str] = DEFAULT_INSTANCES_PATH,
        disk_gb: int | None = None,
        shutdown_timeout: float = 0.0,
        soft_reboot_timeout: float = 60.0,
        emulator: str = QEMU_EMULATOR,
        networks_path: str | os.PathLike[str] = linux_net.DEFAULT_NETWORKS_PATH,
        domain_type: str = "qemu",
    ) -> None:
        parts = urlsplit(uri)
        if parts.scheme == "test":
            if not parts.path or parts.path == "/default" or not parts.path.endswith(".xml"):
                raise ValueError(f"{uri}: simulated hosts need test:///ABS/PATH.xml")
            self.is_test = True
            self.node_path: Path | None = Path(parts.path)
        elif parts.scheme.startswith("qemu"):
            self.is_test = False
            self.node_path = None
        else:
            raise ValueError(f"unsupported libvirt URI {uri!r}: qemu:///system or test:///PATH.xml")
        if _libvirt is None:
            raise HypervisorUnavailable(f"libvirt-python is not installed: {SETUP_HINT}")
        self.uri = uri
        self.instances_path = Path(instances_path).resolve()
        self.shutdown_timeout = shutdown_timeout
        self.soft_reboot_timeout = soft_reboot_timeout
        self.emulator = emulator
        # real guests' libvirt domain type: 'qemu' (software emulation) or 'kvm'
        self.domain_type = "test" if self.is_test else domain_type
        self.networks_path = Path(networks_path)
        self._disk_gb = disk_gb
        self._conn: _Connection | None = None
        self._conn_lock = threading.Lock()
        # test:///: one lock around every action and the node file it rewrites
        self._test_lock = threading.RLock()
        self._locks_guard = threading.Lock()
        self._instance_locks: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
        self._node_host: dict[str, str] = {}
        self._node_domains: dict[str, str] = {}
        self._node_text = ("", "")
        if self.is_test:
            self._load_node_file()
        # fail early and clearly if libvirt is not there
        self._connection()

    # -- connection ----------------------------------------------------------------------

    def _open(self) -> _Connection:
        try:
            conn = _libvirt.open(self.uri)
        except Exception as exc:
            if not _is_libvirt_error(exc):
                raise
            hint = "" if self.is_test else f"; {SETUP_HINT}"
            raise HypervisorUnavailable(f"cannot connect to {self.uri}: {exc}{hint}") from exc
        if conn is None:  # pragma: no cover - old bindings returned None
            raise HypervisorUnavailable(f"cannot connect to {self.uri}")
        return cast(_Connection, conn)

    def _connection(self) -> _Connection:
        """The open connection, reopened if it dropped."""
        with self._conn_lock:
            conn = self._conn
            if conn is not None:
                try:
                    if conn.isAlive() == 1:
                        return conn
                except Exception as exc:
                    if not _is_libvirt_error(exc):
                        raise
                LOG.warning("libvirt connection to %s lost, reconnecting", self.uri)
                self._drop(conn)
            self._conn = self._open()
            return self._conn

    def _drop(self, conn: _Connection) -> None:
        """Forgets a connection (the caller holds _conn_lock)."""
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - it is already broken
            pass
        if self._conn is conn:
            self._conn = None

    def _call(self, fn: Callable[[_Connection], _T]) -> _T:
        """Runs fn(connection); if the connection turns out to have dropped, reconnects
        and runs it once more. Other libvirt errors go to the caller."""
        conn = self._connection()
        try:
            return fn(conn)
        except Exception as exc:
            if not _is_libvirt_error(exc) or self._alive(conn):
                raise
            LOG.warning("libvirt connection to %s dropped (%s), retrying once", self.uri, exc)
            with self._conn_lock:
                self._drop(conn)
            return fn(self._connection())

    def _alive(self, conn: _Connection) -> bool:
        try:
            return conn.isAlive() == 1
        except Exception:  # noqa: BLE001
            return False

    def close(self) -> None:
        """Closes the connection (domains keep running). The driver reconnects if used again."""
        with self._conn_lock:
            if self._conn is not None:
                self._drop(self._conn)

    def __enter__(self) -> LibvirtDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- locking -------------------------------------------------------------------------

    @contextmanager
    def _locked(self, instance_id: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._instance_locks.get(instance_id)
            if lock is None:
                lock = threading.RLock()
                self._instance_locks[instance_id] = lock
        with lock:
            if self.is_test:
                with self._test_lock:
                    yield
            else:
                yield

    # -- lookups -------------------------------------------------------------------------

    def _lookup(self, instance_id: str) -> _Domain:
        name = domain_name(instance_id)
        try:
            dom = self._call(lambda c: c.lookupByName(name))
            if not self.is_test and self._instance_id_of(dom) != instance_id:
                raise InstanceNotFound(instance_id)  # another agent's guest of that name
            return dom
        except Exception as exc:
            if _is_libvirt_error(exc) and _error_code(exc) == VIR_ERR_NO_DOMAIN:
                raise InstanceNotFound(instance_id) from None
            raise self._wrap(exc, instance_id, "lookup") from exc

    def _wrap(self, exc: BaseException, instance_id: str, action: str) -> DriverError:
        """The DriverError for an exception raised while acting on an instance."""
        if isinstance(exc, DriverError):
            return exc
        if _is_libvirt_error(exc):
            if _error_code(exc) == VIR_ERR_NO_DOMAIN:
                return InstanceNotFound(instance_id)
            lost = self._lost(exc)
            if lost is not None:
                return lost
            return ActionFailed(instance_id, action, str(exc))
        raise exc

    def _lost(self, exc: BaseException) -> HypervisorUnavailable | None:
        """HypervisorUnavailable if the connection died under `exc` (it is dropped, the
        next call reconnects), else None."""
        with self._conn_lock:
            conn = self._conn
            if conn is None or self._alive(conn):
                return None
            self._drop(conn)
        return HypervisorUnavailable(f"lost the connection to {self.uri}: {exc}")

    def _state(self, dom: _Domain) -> int:
        return int(dom.state()[0])

    def _do(self, instance_id: str, action: str, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except Exception as exc:
            raise self._wrap(exc, instance_id, action) from exc

    def _wait_state(self, dom: _Domain, states: set[int], timeout: float) -> bool:
        """Polls until the domain is in one of `states`; False after `timeout` s."""
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            if self._state(dom) in states:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.25)

    def _instance_id_of(self, dom: _Domain) -> str | None:
        """The instance id in a domain's metadata, or None if it is not ours."""
        try:
            raw = dom.metadata(VIR_DOMAIN_METADATA_ELEMENT, INSTANCE_NS)
        except Exception as exc:
            if _is_libvirt_error(exc) and _error_code(exc) == VIR_ERR_NO_DOMAIN_METADATA:
                return None  # not made by novalite
            raise  # a vanished domain or a lost connection: the caller decides
        try:
            meta = ET.fromstring(raw)
        except ET.ParseError:
            return None
        instance_id = meta.get("id")
        if self.is_test or instance_id is None or not _ID_RE.match(instance_id):
            return instance_id if self.is_test else None
        owner = meta.get("instances")
        # a guest made before the directory was recorded: ours if its directory is
        mine = (owner == str(self.instances_path) if owner is not None
                else self.instance_dir(instance_id).exists())
        return instance_id if mine else None

    # -- host ----------------------------------------------------------------------------

    def host_info(self) -> HostInfo:
        """The host's CPUs, memory, disk, architecture and hypervisor, from libvirt."""
        info, caps_xml, version, hostname = self._call(
            lambda c: (c.getInfo(), c.getCapabilities(), c.getVersion(),
                       c.getHostname() if not self.is_test else ""))
        caps = ET.fromstring(caps_xml)
        nodes, sockets, cores, threads = (int(x) for x in info[4:8])
        topology = {"sockets": nodes * sockets, "cores": cores, "threads": threads}
        if self.is_test:
            arch = self._node_host.get("architecture") or str(info[0])
            disk = self._disk_gb if self._disk_gb is not None else int(
                self._node_host.get("disk_gb", "1000"))
            return HostInfo(
                hostname=self._node_host.get("name") or (self.node_path.stem if self.node_path else "test"),
                vcpus=int(info[2]),
                memory_mb=int(info[1]),
                disk_gb=disk,
                architecture=arch,
                hypervisor_type="test",
                hypervisor_version=int(version),
                cpu_info={"arch": arch, "model": None, "vendor": None,
                          "topology": topology, "features": []},
                # the test driver's capabilities are hard-wired to i686: the node
                # file's architecture stands for the simulated host's
                supported_instances=[(arch, "test", "hvm")],
            )
        cpu = caps.find("host/cpu")
        arch = (cpu.findtext("arch") if cpu is not None else None) or str(info[0])
        features = self._cpu_features(cpu)
        cpu_info: dict[str, Any] = {
            "arch": arch,
            "model": cpu.findtext("model") if cpu is not None else None,
            "vendor": cpu.findtext("vendor") if cpu is not None else None,
            "topology": topology,
            "features": features,
        }
        topo = cpu.find("topology") if cpu is not None else None
        if topo is not None:
            cpu_info["topology"] = {k: int(topo.get(k, "0")) for k in ("sockets", "cores", "threads")}
        supported: list[tuple[str, str, str]] = []
        for guest in caps.findall("guest"):
            os_type = guest.findtext("os_type") or ""
            for arch_el in guest.findall("arch"):
                for dom_el in arch_el.findall("domain"):
                    # only what spawn() makes: its domain type
                    if dom_el.get("type") == self.domain_type:
                        entry = (arch_el.get("name", ""), self.domain_type, os_type)
                        if entry not in supported:
                            supported.append(entry)
        return HostInfo(
            hostname=hostname,
            vcpus=int(info[2]),
            memory_mb=int(info[1]),
            disk_gb=self._free_disk_gb(),
            architecture=arch,
            hypervisor_type="QEMU",
            hypervisor_version=int(version),
            cpu_info=cpu_info,
            supported_instances=supported,
            traits=cpu_traits(features),
        )

    def _cpu_features(self, cpu: ET.Element | None) -> list[str]:
        """The host CPU's features, sorted: the capabilities list only those beyond
        its model's, so they are expanded with the model's own, as Nova's
        Host.get_capabilities does (baselineCPU with EXPAND_FEATURES)."""
        if cpu is None:
            return []
        listed = [f for f in cpu.findall("feature") if f.get("policy") != "disable"]
        if cpu.findtext("model") is None:
            return sorted({f.get("name", "") for f in listed})
        try:
            expanded = ET.fromstring(self._call(lambda c: c.baselineCPU(
                [ET.tostring(cpu, encoding="unicode")],
                _libvirt.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES)))
        except Exception as e:
            if not (_is_libvirt_error(e) or isinstance(e, ET.ParseError)):
                raise
            LOG.warning("could not expand the host CPU's features (%s); reporting those "
                        "the capabilities list", e)
            return sorted({f.get("name", "") for f in listed})
        return sorted({f.get("name", "") for f in expanded.findall("feature")
                       if f.get("policy") != "disable"})

    def _free_disk_gb(self) -> int:
        if self._disk_gb is not None:
            return self._disk_gb
        p = self.instances_path
        while not p.exists():
            p = p.parent
        return shutil.disk_usage(p).free // GIB

    # -- instances -----------------------------------------------------------------------

    def instance_dir(self, instance_id: str) -> Path:
        """Where an instance's disk and console log live (qemu only)."""
        return self.instances_path / _check_id(instance_id)

    def spawn(
        self,
        instance_id: str,
        name: str,
        vcpus: int,
        memory_mb: int,
        root_gb: int,
        image_path: str | os.PathLike[str] | None = None,
        image_format: str = "qcow2",
        guest: GuestConfig | None = None,
    ) -> None:
        """Creates the instance's disk (a qcow2 overlay on the image sized to root_gb, a
        blank qcow2 of root_gb without an image, no disk when both are absent/0), defines
        the domain and starts it. SpawnFailed (libvirt's or qemu-img's message) leaves
        nothing behind; InstanceExists if the instance already has a domain here.
        `name` is the server's display name, kept in the metadata. ``guest`` (real
        guests only): its NICs (plugged into their bridges, with DHCP host entries),
        its config drive, the kernel and ramdisk of an image booted directly."""
        _check_id(instance_id)
        if vcpus <= 0 or memory_mb <= 0 or root_gb < 0:
            raise SpawnFailed(instance_id, f"invalid flavor: vcpus={vcpus} "
                                           f"memory_mb={memory_mb} root_gb={root_gb}")
        with self._locked(instance_id):
            try:
                self._lookup(instance_id)
            except InstanceNotFound:
                pass
            else:
                raise InstanceExists(instance_id)
            if self.is_test:
                xml = self._test_domain_xml(instance_id, name, vcpus, memory_mb, root_gb)
                self._define_and_start(instance_id, xml)
                self._persist(instance_id)
                return
            inst_dir = self.instance_dir(instance_id)
            try:
                disk = self._create_disk(instance_id, inst_dir, root_gb, image_path, image_format)
                config = self._guest_files(instance_id, name, inst_dir, guest)
                xml = self._qemu_domain_xml(instance_id, name, vcpus, memory_mb, root_gb,
                                            disk, inst_dir / "console.log", image_path,
                                            guest, config)
                self._define_and_start(instance_id, xml)
            except BaseException:
                shutil.rmtree(inst_dir, ignore_errors=True)
                with suppress(DriverError):  # libvirt is down: the failure says so
                    self._unplug(instance_id)
                raise

    def _guest_files(self, instance_id: str, name: str, inst_dir: Path,
                     guest: GuestConfig | None, *, make_drive: bool = True) -> Path | None:
        """The guest's NICs plugged (_plug), its kernel and ramdisk checked, and its
        config drive, returned: the one in the instance directory already (a move
        copied it), else made when the guest has one and ``make_drive``. SpawnFailed
        if a NIC's network is not on this host or the drive cannot be made."""
        drive = inst_dir / CONFIG_DRIVE
        if guest is None:
            return drive if drive.is_file() else None
        try:
            self._plug(instance_id, inst_dir, guest.hostname, guest.vifs)
            for path in (guest.kernel_path, guest.ramdisk_path):
                if path is not None and not Path(path).is_file():
                    raise SpawnFailed(instance_id, f"{path} (the image's kernel or ramdisk) "
                                                   "does not exist on this host")
            if drive.is_file():
                return drive
            if not (guest.config_drive and make_drive):
                return None
            configdrive.make_config_drive(drive, configdrive.files(instance_id, name, guest))
            return drive
        except (ValueError, OSError, ImageError) as exc:
            raise SpawnFailed(instance_id, str(exc)) from exc

    def _plug(self, instance_id: str, inst_dir: Path, hostname: str,
              vifs: Iterable[Vif]) -> None:
        """The NICs' DHCP host entries, noted in the instance directory too
        (``network_info.json``), so that the guest defined again from a move's
        set-aside copy gets them back (_replug). ValueError if this host does not
        have a NIC's network."""
        vifs = tuple(vifs)
        for vif in vifs:
            linux_net.add_dhcp_host(self.networks_path, instance_id, vif, hostname)
        _atomic_write(inst_dir / NETWORK_INFO, json.dumps(
            {"hostname": hostname, "vifs": [v.as_dict() for v in vifs]}))

    def _replug(self, instance_id: str, inst_dir: Path) -> None:
        """The DHCP host entries noted in ``inst_dir`` (by _plug) made again.
        SpawnFailed if a NIC's network is not on this host."""
        try:
            noted = json.loads((inst_dir / NETWORK_INFO).read_text())
        except FileNotFoundError:
            return  # a guest without NICs (or made before they were noted)
        try:
            self._plug(instance_id, inst_dir, str(noted["hostname"]),
                       [Vif(**v) for v in noted["vifs"]])
        except (ValueError, OSError, KeyError, TypeError) as exc:
            raise SpawnFailed(instance_id, f"the NICs of {inst_dir}: {exc}") from exc

    def _unplug(self, instance_id: str) -> None:
        """The guest's DHCP host entries removed (their leases released), unless a
        domain of the instance is still defined on this libvirtd: another host's
        of this machine, where a move between its two hosts took the guest, on
        the same networks (one dnsmasq each, so one entry for both)."""
        try:
            self._call(lambda c: c.lookupByName(domain_name(instance_id)))
        except Exception as exc:
            if not (_is_libvirt_error(exc) and _error_code(exc) == VIR_ERR_NO_DOMAIN):
                raise self._wrap(exc, instance_id, "unplug") from exc
            linux_net.remove_dhcp_hosts(self.networks_path, instance_id)

    def _create_disk(self, instance_id: str, inst_dir: Path, root_gb: int,
                     image_path: str | os.PathLike[str] | None, image_format: str) -> Path | None:
        if inst_dir.exists():
            # no domain has this id (checked by the caller): a leftover of a crash
            LOG.warning("removing stale instance directory %s", inst_dir)
            shutil.rmtree(inst_dir)
        inst_dir.mkdir(parents=True)
        disk = inst_dir / "disk"
        try:
            if image_path is not None:
                if image_format not in images.DISK_FORMATS:
                    raise SpawnFailed(instance_id, f"image format {image_format!r} is not "
                                                   f"one of {images.DISK_FORMATS}")
                info = images.image_info(image_path)
                if info.format != image_format:
                    raise SpawnFailed(instance_id, f"image {image_path} is {info.format}, "
                                                   f"not {image_format}")
                if root_gb and info.virtual_size > root_gb * GIB:
                    raise SpawnFailed(instance_id, f"flavor's root disk ({root_gb} GB) is "
                                                   f"smaller than the image "
                                                   f"({info.virtual_size_gb} GB)")
                images.create_overlay(disk, image_path, image_format, root_gb)
            elif root_gb > 0:
                images.create_blank_disk(disk, root_gb)
            else:
                return None
        except ImageError as exc:
            raise SpawnFailed(instance_id, str(exc)) from exc
        return disk

    def _define_and_start(self, instance_id: str, xml: str) -> None:
        dom: _Domain | None = None
        try:
            dom = self._call(lambda c: c.defineXML(xml))
            dom.create()
        except Exception as exc:
            if not _is_libvirt_error(exc):
                raise
            if dom is not None:
                self._undefine(dom)
            raise SpawnFailed(instance_id, str(exc)) from exc

    def _metadata_xml(self, instance_id: str, name: str, vcpus: int, memory_mb: int,
                      root_gb: int, image: str | None) -> str:
        attrs = {"id": instance_id, "name": name, "vcpus": str(vcpus),
                 "memory_mb": str(memory_mb), "root_gb": str(root_gb),
                 "created_at": f"{time.time():.3f}"}
        if image is not None:
            attrs["image"] = image
        if not self.is_test:
            attrs["instances"] = str(self.instances_path)
        body = " ".join(f"{k}={quoteattr(v)}" for k, v in attrs.items())
        return f"<metadata><novalite:instance xmlns:novalite={quoteattr(INSTANCE_NS)} {body}/></metadata>"

    def _uuid_line(self, instance_id: str) -> str:
        # Nova's domain UUID is the instance's: keep it when the id is a UUID
        try:
            return f"<uuid>{uuid.UUID(instance_id)}</uuid>"
        except ValueError:
            return ""

    def _test_domain_xml(self, instance_id: str, name: str, vcpus: int, memory_mb: int,
                         root_gb: int) -> str:
        return (
            "<domain type='test'>"
            f"<name>{domain_name(instance_id)}</name>{self._uuid_line(instance_id)}"
            f"{self._metadata_xml(instance_id, name, vcpus, memory_mb, root_gb, None)}"
            f"<memory unit='MiB'>{memory_mb}</memory><vcpu>{vcpus}</vcpu>"
            "<os><type arch='x86_64'>hvm</type></os>"
            "</domain>"
        )

    def _qemu_domain_xml(self, instance_id: str, name: str, vcpus: int, memory_mb: int,
                         root_gb: int, disk: Path | None, console_log: Path,
                         image_path: str | os.PathLike[str] | None,
                         guest: GuestConfig | None = None, config_drive: Path | None = None) -> str:
        image = str(Path(image_path).resolve()) if image_path is not None else None
        disk_xml = ""
        if disk is not None:
            disk_xml = (
                "<disk type='file' device='disk'>"
                "<driver name='qemu' type='qcow2' cache='none'/>"
                f"<source file={quoteattr(str(disk))}/>"
                "<target dev='vda' bus='virtio'/></disk>"
            )
        if config_drive is not None:
            # a read-only virtio disk rather than Nova's IDE cdrom: the guest finds it
            # by its label (config-2) either way, and needs no ATA drivers
            disk_xml += (
                "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                f"<source file={quoteattr(str(config_drive))}/>"
                "<target dev='vdb' bus='virtio'/><readonly/></disk>"
            )
        boot = "<boot dev='hd'/>"
        nics = ""
        if guest is not None:
            if guest.kernel_path is not None:
                # Glance's AMI layout: the kernel and ramdisk booted directly
                boot = f"<kernel>{escape(guest.kernel_path)}</kernel>"
                if guest.ramdisk_path is not None:
                    boot += f"<initrd>{escape(guest.ramdisk_path)}</initrd>"
                if guest.kernel_args:
                    boot += f"<cmdline>{escape(guest.kernel_args)}</cmdline>"
            # no option ROM: the guest boots no faster from the network than without
            nics = "".join(
                f"<interface type='bridge'><mac address={quoteattr(v.mac)}/>"
                f"<source bridge={quoteattr(v.bridge)}/><model type='virtio'/>"
                "<rom enabled='no'/></interface>" for v in guest.vifs)
        return (
            f"<domain type={quoteattr(self.domain_type)}>"
            f"<name>{domain_name(instance_id)}</name>{self._uuid_line(instance_id)}"
            f"<title>{escape(name)}</title>"
            f"{self._metadata_xml(instance_id, name, vcpus, memory_mb, root_gb, image)}"
            f"<memory unit='MiB'>{memory_mb}</memory>"
            f"<currentMemory unit='MiB'>{memory_mb}</currentMemory>"
            f"<vcpu placement='static'>{vcpus}</vcpu>"
            f"<os><type arch='x86_64' machine='pc'>hvm</type>{boot}</os>"
            "<features><acpi/><apic/></features>"
            "<clock offset='utc'/>"
            "<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot>"
            "<on_crash>destroy</on_crash>"
            "<devices>"
            f"<emulator>{escape(self.emulator)}</emulator>"
            f"{disk_xml}{nics}"
            # the serial console goes to a file, kept across restarts (the guest's
            # console output is every boot's); no graphics
            f"<serial type='file'><source path={quoteattr(str(console_log))} append='on'/>"
            "<target port='0'/></serial>"
            "<controller type='usb' model='none'/>"
            "<memballoon model='none'/>"
            "</devices>"
            "</domain>"
        )

    def destroy(self, instance_id: str) -> None:
        """Stops the guest, undefines the domain (with its managed save image),
        removes the instance directory and disk and its NICs' DHCP host entries
        (_unplug). A missing domain is fine."""
        with self._locked(instance_id):
            try:
                dom: _Domain | None = self._lookup(instance_id)
            except InstanceNotFound:
                dom = None
            if dom is not None:
                self._do(instance_id, "destroy", lambda: self._hard_stop(dom))
                self._undefine(dom)
            if not self.is_test:
                shutil.rmtree(self.instance_dir(instance_id), ignore_errors=True)
                self._unplug(instance_id)
            else:
                self._persist(instance_id)

    def console_output(self, instance_id: str) -> str:
        """The end of the guest's serial console log (at most MAX_CONSOLE_BYTES, as
        Nova's), decoded leniently; "" for a simulated host's guest, which prints
        nothing. InstanceNotFound if the instance has no domain here."""
        with self._locked(instance_id):
            self._lookup(instance_id)
            if self.is_test:
                return ""
            log = self.instance_dir(instance_id) / "console.log"
            try:
                with log.open("rb") as f:
                    size = f.seek(0, os.SEEK_END)
                    f.seek(max(0, size - MAX_CONSOLE_BYTES))
                    data = f.read()
            except FileNotFoundError:
                return ""
            if size > MAX_CONSOLE_BYTES:
                data = data.split(b"\n", 1)[-1]  # from the first whole line
            return data.decode("utf-8", errors="replace")

    def _hard_stop(self, dom: _Domain) -> None:
        """virDomainDestroy, retried: QEMU can take a moment to let go of its process."""
        for attempt in range(5):
            try:
                if not dom.isActive():
                    return
                dom.destroy()
                return
            except Exception as exc:
                if not _is_libvirt_error(exc):
                    raise
                code = _error_code(exc)
                if code in (VIR_ERR_NO_DOMAIN, VIR_ERR_OPERATION_INVALID):
                    return  # gone or not running any more
                if attempt == 4:
                    raise
                time.sleep(0.1 * (attempt + 1))

    def _undefine(self, dom: _Domain) -> None:
        flags = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        if not self.is_test:  # the test driver rejects the NVRAM flag
            flags |= VIR_DOMAIN_UNDEFINE_NVRAM
        try:
            dom.undefineFlags(flags)
        except Exception as exc:
            if not (_is_libvirt_error(exc) and _error_code(exc) == VIR_ERR_NO_DOMAIN):
                raise

    def reboot(self, instance_id: str, hard: bool = False) -> Literal["soft", "hard"]:
        """Soft: as Nova, ask the guest to shut down (ACPI), wait up to
        soft_reboot_timeout for it to power off, start it again; a guest that is not
        running or does not shut down in time gets a hard reboot. Hard: pull the plug
        (dropping any suspended state) and start it. Returns which one happened."""
        with self._locked(instance_id):
            dom = self._lookup(instance_id)
            try:
                if not hard and self._state(dom) == VIR_DOMAIN_RUNNING:
                    dom.shutdown()
                    if self._wait_state(dom, {VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_CRASHED},
                                        self.soft_reboot_timeout):
                        dom.create()
                        return "soft"
                    LOG.info("instance %s did not shut down within %.1f s: hard reboot",
                             instance_id, self.soft_reboot_timeout)
                if dom.hasManagedSaveImage():
                    dom.managedSaveRemove()
                self._hard_stop(dom)
                dom.create()
            except Exception as exc:
                raise self._wrap(exc, instance_id, "reboot") from exc
            finally:
                self._persist(instance_id)
            return "hard"

    def power_off(self, instance_id: str, timeout: float | None = None) -> None:
        """Stops the guest: an ACPI shutdown request first if `timeout` (default:
        shutdown_timeout) is positive, then destroy. Already off: nothing to do."""
        wait = self.shutdown_timeout if timeout is None else timeout
        with self._locked(instance_id):
            dom = self._lookup(instance_id)

            def off() -> None:
                state = self._state(dom)
                if state in (VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_CRASHED):
                    return
                if wait > 0 and state == VIR_DOMAIN_RUNNING:
                    dom.shutdown()
                    if self._wait_state(dom, {VIR_DOMAIN_SHUTOFF}, wait):
                        return
                self._hard_stop(dom)

            try:
                self._do(instance_id, "power_off", off)
            finally:
                self._persist(instance_id)

    def power_on(self, instance_id: str) -> None:
        """Starts a stopped guest afresh (as Nova's power_on, any managed save image is
        discarded: use resume() to restore a suspended guest). A paused guest is
        unpaused; a running one is left alone."""
        with self._locked(instance_id):
            dom = self._lookup(instance_id)

            def on() -> None:
                state = self._state(dom)
                if state == VIR_DOMAIN_PAUSED:
                    dom.resume()
                elif state in (VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_CRASHED, VIR_DOMAIN_NOSTATE):
                    if dom.hasManagedSaveImage():
                        dom.managedSaveRemove()
                    dom.create()

            try:
                self._do(instance_id, "power_on", on)
            finally:
                self._persist(instance_id)

    def pause(self, instance_id: str) -> None:
        """Freezes the guest's vCPUs in memory (virDomainSuspend). Already paused: no-op."""
        self._simple(instance_id, "pause", {VIR_DOMAIN_PAUSED},
                     {VIR_DOMAIN_RUNNING, VIR_DOMAIN_BLOCKED}, lambda d: d.suspend())

    def unpause(self, instance_id: str) -> None:
        """Lets a paused guest run again (virDomainResume). Already running: no-op."""
        self._simple(instance_id, "unpause", {VIR_DOMAIN_RUNNING, VIR_DOMAIN_BLOCKED},
                     {VIR_DOMAIN_PAUSED}, lambda d: d.resume())

    def suspend(self, instance_id: str) -> None:
        """Saves the guest's memory to disk and stops it (virDomainManagedSave, as Nova);
        its power state is then SHUTDOWN and is_suspended() is True."""
        with self._locked(instance_id):
            dom = self._lookup(instance_id)

            def save() -> None:
                state = self._state(dom)
                if state not in (VIR_DOMAIN_RUNNING, VIR_DOMAIN_BLOCKED, VIR_DOMAIN_PAUSED):
                    if state == VIR_DOMAIN_SHUTOFF and dom.hasManagedSaveImage():
                        return  # already suspended
                    raise ActionFailed(instance_id, "suspend", "the guest is not running")
                dom.managedSave()

            try:
                self._do(instance_id, "suspend", save)
            finally:
                self._persist(instance_id)

    def resume(self, instance_id: str) -> None:
        """Restores a suspended guest from its managed save image. Running: no-op."""
        with self._locked(instance_id):
            dom = self._lookup(instance_id)

            def restore() -> None:
                state = self._state(dom)
                if state in (VIR_DOMAIN_RUNNING, VIR_DOMAIN_BLOCKED):
                    return
                if state != VIR_DOMAIN_SHUTOFF or not dom.hasManagedSaveImage():
                    raise ActionFailed(instance_id, "resume", "the guest is not suspended")
                dom.create()

            try:
                self._do(instance_id, "resume", restore)
            finally:
                self._persist(instance_id)

    def rescue(self, instance_id: str) -> None:
        """Nova's rescue: the guest boots again from a fresh overlay of its own image
        (``disk.rescue``), its own disk attached as the second disk (vdb), the kernel
        told so (``novalite.rescue`` on its command line); the domain's definition
        is kept for unrescue(). Already rescued: nothing to do."""
        with self._locked(instance_id):
            dom = self._lookup(instance_id)
            if self.is_test:  # a simulated guest: only its power state shows
                self._do(instance_id, "rescue", lambda: self._start_if_off(dom))
                self._persist(instance_id)
                return
            inst_dir = self.instance_dir(instance_id)
            saved = inst_dir / "unrescue.xml"
            if saved.exists():
                return
            try:
                xml = dom.XMLDesc(VIR_DOMAIN_XML_INACTIVE)
                root = ET.fromstring(xml)
                meta = root.find(f"metadata/{{{INSTANCE_NS}}}instance")
                image = meta.get("image") if meta is not None else None
                if image is None:
                    raise ActionFailed(instance_id, "rescue", "the server has no image to "
                                                             "rescue it with")
                rescue_disk = inst_dir / "disk.rescue"
                rescue_disk.unlink(missing_ok=True)
                images.create_overlay(rescue_disk, image, images.image_info(image).format,
                                      int(meta.get("root_gb", "0")) if meta is not None else 0)
                _atomic_write(saved, xml)
                self._hard_stop(dom)
                self._call(lambda c: c.defineXML(_rescue_xml(root, rescue_disk)))
                dom.create()
            except ImageError as exc:
                raise ActionFailed(instance_id, "rescue", str(exc)) from exc
            except Exception as exc:
                raise self._wrap(exc, instance_id, "rescue") from exc

    def unrescue(self, instance_id: str) -> None:
        """Back from rescue: the domain as it was defined before, started; the rescue
        disk removed. Not rescued: nothing to do."""
        with self._locked(instance_id):
            dom = self._lookup(instance_id)
            if self.is_test:
                self._do(instance_id, "unrescue", lambda: self._start_if_off(dom))
                self._persist(instance_id)
                return
            inst_dir = self.instance_dir(instance_id)
            saved = inst_dir / "unrescue.xml"
            if not saved.exists():
                return
            try:
                self._hard_stop(dom)
                self._call(lambda c: c.defineXML(saved.read_text()))
                dom.create()
            except Exception as exc:
                raise self._wrap(exc, instance_id, "unrescue") from exc
            saved.unlink()
            (inst_dir / "disk.rescue").unlink(missing_ok=True)

    def _start_if_off(self, dom: _Domain) -> None:
        if self._state(dom) in (VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_CRASHED, VIR_DOMAIN_NOSTATE):
            if dom.hasManagedSaveImage():
                dom.managedSaveRemove()
            dom.create()

    def _simple(self, instance_id: str, action: str, done: set[int], allowed: set[int],
                fn: Callable[[_Domain], object]) -> None:
        with self._locked(instance_id):
            dom = self._lookup(instance_id)

            def run() -> None:
                state = self._state(dom)
                if state in done:
                    return
                if state not in allowed:
                    raise ActionFailed(instance_id, action,
                                       f"not allowed in power state "
                                       f"{nova_power_state(state).name}")
                fn(dom)

            try:
                self._do(instance_id, action, run)
            finally:
                self._persist(instance_id)

    def power_state(self, instance_id: str) -> PowerState:
        """Nova's power state of the instance's domain; InstanceNotFound if it has none."""
        with self._locked(instance_id):
            dom = self._lookup(instance_id)
            return nova_power_state(self._do(instance_id, "power_state", lambda: self._state(dom)))

    def is_suspended(self, instance_id: str) -> bool:
        """True when the guest is shut off with a managed save image (suspended)."""
        with self._locked(instance_id):
            dom = self._lookup(instance_id)
            return bool(self._do(instance_id, "is_suspended",
                                 lambda: not dom.isActive() and dom.hasManagedSaveImage()))

    def list_instances(self) -> dict[str, PowerState]:
        """{instance id: power state} of every domain this driver made (found by the
        metadata, so it works after an agent restart); other domains are ignored."""
        ctx = self._test_lock if self.is_test else _NULL_LOCK
        with ctx:
            domains = self._call(lambda c: c.listAllDomains(0))
            found: dict[str, PowerState] = {}
            for dom in domains:
                try:
                    if not dom.name().startswith(DOMAIN_PREFIX):
                        continue
                    instance_id = self._instance_id_of(dom)
                    if instance_id is None:
                        continue
                    found[instance_id] = nova_power_state(self._state(dom))
                except Exception as exc:
                    if not _is_libvirt_error(exc):
                        raise
                    if _error_code(exc) == VIR_ERR_NO_DOMAIN:
                        continue  # destroyed while we were listing
                    # never a partial answer: a missing instance would look deleted
                    raise self._lost(exc) or DriverError(
                        f"listing domains on {self.uri} failed: {exc}") from exc
            return found

    # -- test:/// persistence ------------------------------------------------------------

    def _persist(self, instance_id: str) -> None:
        """test:///: writes the host's domains back into its node file after a change to
        one instance. Each domain's XML is cached, so only the changed one is read from
        libvirt; the file is rewritten atomically."""
        if not self.is_test or self.node_path is None:
            return
        name = domain_name(instance_id)
        with self._test_lock:
            try:
                dom = self._call(lambda c: c.lookupByName(name))
            except Exception as exc:
                if not (_is_libvirt_error(exc) and _error_code(exc) == VIR_ERR_NO_DOMAIN):
                    raise
                self._node_domains.pop(name, None)
            else:
                el = ET.fromstring(dom.XMLDesc(0))
                el.attrib.pop("id", None)
                state = self._state(dom)
                ET.SubElement(el, f"{{{TEST_NS}}}runstate").text = str(state)
                if state == VIR_DOMAIN_SHUTOFF and dom.hasManagedSaveImage():
                    ET.SubElement(el, f"{{{TEST_NS}}}hasmanagedsave")
                self._node_domains[name] = ET.tostring(el, encoding="unicode")
            head, tail = self._node_text
            _atomic_write(self.node_path,
                          head + "\n".join(self._node_domains.values()) + tail)

    def _load_node_file(self) -> None:
        """Reads the node file once: the host's attributes, the text around its domains
        and each domain's XML (what the test driver loads at every connection)."""
        assert self.node_path is not None
        try:
            root = ET.parse(self.node_path).getroot()
        except (OSError, ET.ParseError) as exc:
            raise HypervisorUnavailable(f"cannot read node file {self.node_path}: {exc}") from exc
        host = root.find(f"{{{NODE_NS}}}host")
        self._node_host = dict(host.attrib) if host is not None else {}
        for el in root.findall("domain"):
            root.remove(el)
            name = el.findtext("name") or ""
            el.tail = None
            self._node_domains[name] = ET.tostring(el, encoding="unicode")
        text = ET.tostring(root, encoding="unicode")
        cut = text.rindex("</node>") if text.endswith("</node>") else len(text)
        if cut == len(text):  # an empty <node/>
            text = text[: text.rindex("/>")] + "></node>"
            cut = text.rindex("</node>")
        self._node_text = ("<?xml version='1.0' encoding='UTF-8'?>\n" + text[:cut] + "\n",
                           "\n" + text[cut:] + "\n")


def _rescue_xml(root: ET.Element, rescue_disk: Path) -> str:
    """A domain's definition for rescue: the rescue disk first (vda), the server's
    own disk second (vdb), the other disks after; the kernel told of it."""
    devices = root.find("devices")
    assert devices is not None
    disks = [d for d in devices.findall("disk") if d.get("device") == "disk"]
    for i, disk in enumerate(disks):
        target = disk.find("target")
        if target is not None:
            target.set("dev", f"vd{chr(ord('b') + i)}")
        # the guest names virtio disks in PCI slot order: without their old slots
        # libvirt gives the disks new ones in this order
        for address in disk.findall("address"):
            disk.remove(address)
    rescue = ET.fromstring(
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none'/>"
        f"<source file={quoteattr(str(rescue_disk))}/><target dev='vda' bus='virtio'/></disk>")
    devices.insert(list(devices).index(disks[0]) if disks else 0, rescue)
    cmdline = root.find("os/cmdline")
    if cmdline is not None:
        cmdline.text = f"{cmdline.text or ''} novalite.rescue".strip()
    return ET.tostring(root, encoding="unicode")


class _NullLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NULL_LOCK = _NullLock()
