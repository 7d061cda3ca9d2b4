"""The one typed settings object of every novalite process.

Loaded once at start (``load_settings``) from, lowest precedence first:

1. the defaults below (Nova's where Nova has the option);
2. a TOML file: ``--config`` or ``NOVALITE_CONFIG``;
3. the environment: ``NOVALITE_<KEY>`` for a top-level key, ``NOVALITE_<SECTION>_<KEY>``
   for a key of a section (``NOVALITE_COMPUTE_HOST_COUNT=20``,
   ``NOVALITE_LISTEN_API=0.0.0.0:8774``, ``NOVALITE_SCHEDULER_ENABLED_FILTERS=A,B``);
4. explicit overrides (the command line's flags): ``{"compute.host_count": 20}`` or
   ``{"compute": {"host_count": 20}}``; a value of None means "not given".

An unknown key or a bad value raises ConfigError naming the key and where it came
from. Nothing else in the code base reads the environment for configuration.

The file's layout::

    data_dir = "/var/lib/novalite"       # default: $XDG_DATA_HOME/novalite
    database_url = "postgresql://..."    # default: sqlite:///<data_dir>/novalite.db
    log_level = "INFO"
    log_format = "json"                  # or "text"
    service_down_time = 60
    report_interval = 10
    graceful_shutdown_timeout = 60

    [listen]            # host:port each service binds; port 0 picks a free one
    api = "0.0.0.0:8774"
    [metrics_ports]     # Prometheus endpoint per service; 0 picks one, -1 turns it off
    api = 9774
    [scheduler]         # novalite.placement.config.SchedulerConfig, Nova's names
    enabled_filters = ["ComputeFilter", "ServerGroupAntiAffinityFilter"]
    [quotas]            # default limits of projects without their own
    instances = 10
    [compute]           # ComputeSettings
    virt_uri = "qemu:///system"
    [rest]              # the REST API (Keystone, Nova, Glance) of the API service
    listen = "127.0.0.1:8780"
    [token]             # Keystone's [token]
    expiration = 3600

The token secret is never read from a file of settings: it comes from
``NOVALITE_SECRET`` (or an override), else from ``<data_dir>/secret.key``, which the
first process that needs it creates (mode 0600). Every service of one cloud must share
it; on another machine, ``NOVALITE_SECRET=$(cat secret.key)`` gives the same secret.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import os
import re
import secrets as _secrets
import stat
import tempfile
import tomllib
import types
import typing
import collections.abc
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, TypeGuard, Union

from novalite.objects.records import CPU_TRAIT_PREFIX
from novalite.options import help_of, option
from novalite.placement.config import ConfigError as _SchedulerConfigError
from novalite.placement.config import SchedulerConfig

ENV_PREFIX = "NOVALITE_"
CONFIG_ENV = "NOVALITE_CONFIG"
SECRET_ENV = "NOVALITE_SECRET"
# Variables under these prefixes belong to the test harness, not to the settings.
_ENV_IGNORED_PREFIXES = ("NOVALITE_TEST_",)
# Nor do these: the client commands' endpoint and token (what `source
# <data_dir>/env` sets), and the tests' opt-out of real QEMU guests.
_ENV_IGNORED = frozenset({"NOVALITE_API", "NOVALITE_TOKEN", "NOVALITE_SKIP_QEMU"})
SECRET_FILE = "secret.key"
MIN_SECRET_BYTES = 16
# The services of one cloud; each has a listen address and a metrics port.
SERVICES = ("api", "conductor", "scheduler", "compute")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "text")
# Placement's trait names.
_TRAIT_NAME = re.compile(r"^[A-Z0-9_]{1,255}$")


class ConfigError(_SchedulerConfigError):
    """A setting is unknown or has a bad value. ``key`` is its dotted name (or the
    environment variable's), ``source`` where the value came from."""

    def __init__(self, key: str, message: str, source: str | None = None) -> None:
        super().__init__(key, message)
        self.args = (f"{key}: {message}" + (f" (from {source})" if source else ""),)
        self.key = key
        self.source = source

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.key, self.message, self.source))


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (IPv6 hosts in brackets: ``[::1]:8774``) as (host, port), the
    host without brackets. ValueError if it is not one, or the port is not 0..65535."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected host:port, got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host:
            raise ValueError(f"expected host:port, got {address!r}")
    elif ":" in host:
        raise ValueError(f"put an IPv6 host in brackets ([::1]:8774), got {address!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port must be 0..65535, got {port}")
    return host, port


def _advertisable(host: object) -> bool:
    """Empty, a host name, or an IP address that is not a wildcard (no port)."""
    if not isinstance(host, str):
        return False
    if ":" in host:  # only an IPv6 address has colons
        try:
            return not ipaddress.IPv6Address(host).is_unspecified
        except ValueError:
            return False
    return host not in ("0.0.0.0",) and all(c.isalnum() or c in ".-_" for c in host)


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect_address(listen: str) -> str:
    """Where a client on this machine reaches a server bound to ``listen``: a
    wildcard host (0.0.0.0, ::) becomes the loopback address."""
    host, port = split_address(listen)
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return join_address(host, port)


@dataclass(frozen=True)
class Listen:
    """The address (host:port) each service binds; port 0 picks a free one. Other
    services on this machine connect to the same address (``Settings.endpoint``);
    on several machines, point each at the machine that runs that service."""

    api: str = option("127.0.0.1:8774", help="host:port the API serves on (Nova's osapi_compute_listen)")
    conductor: str = option("127.0.0.1:8775", help="host:port the conductor serves on")
    scheduler: str = option("127.0.0.1:8776", help="host:port the scheduler serves on")
    compute: str = option("127.0.0.1:8777", help="host:port a compute agent serves on")

    def __post_init__(self) -> None:
        for name in SERVICES:
            try:
                split_address(getattr(self, name))
            except (TypeError, ValueError, AttributeError) as e:
                raise ConfigError(f"listen.{name}", str(e)) from None

    def of(self, service: str) -> str:
        return str(getattr(self, _known_service(service)))


@dataclass(frozen=True)
class MetricsPorts:
    """The port of each service's Prometheus endpoint (HTTP /metrics, on the host of
    its listen address): 0 picks a free one, -1 turns the endpoint off."""

    api: int = option(0, help="the API's Prometheus port (0 picks one, -1 off)")
    conductor: int = option(0, help="the conductor's Prometheus port (0 picks one, -1 off)")
    scheduler: int = option(0, help="the scheduler's Prometheus port (0 picks one, -1 off)")
    compute: int = option(0, help="a compute agent's Prometheus port (0 picks one, -1 off)")

    def __post_init__(self) -> None:
        for name in SERVICES:
            value = getattr(self, name)
            if not _is_int(value) or not -1 <= value <= 65535:
                raise ConfigError(f"metrics_ports.{name}",
                                  f"must be a port 0..65535 or -1 (off), got {value!r}")

    def of(self, service: str) -> int:
        return int(getattr(self, _known_service(service)))


@dataclass(frozen=True)
class Quotas:
    """Default limits of a project without its own (Nova's [quota]); -1 is unlimited."""

    instances: int = option(10, help="servers a project may have (Nova's [quota] instances)")
    cores: int = option(20, help="vCPUs a project's servers may have in all (Nova's [quota] cores)")
    ram: int = option(51200, help="MiB of RAM a project's servers may have in all (Nova's [quota] ram)")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not _is_int(value) or value < -1:
                raise ConfigError(f"quotas.{f.name}", f"must be an integer >= -1, got {value!r}")

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class RestSettings:
    """The REST API the OpenStack clients speak (Keystone v3, Nova v2.1, Glance v2
    under one port, each under its path: /identity, /compute, /image), served by
    the API service beside its gRPC."""

    listen: str = option("127.0.0.1:8780", help=(
        "host:port the REST API serves on; port 0 picks a free one"))
    public_url: str = option("", help=(
        "the base URL the service catalog gives clients (http://host:port, no path); "
        "empty: http:// and the listen address (loopback for 0.0.0.0)"))
    region: str = option("RegionOne", help="the region the service catalog names (Keystone's)")

    def __post_init__(self) -> None:
        try:
            split_address(self.listen)
        except (TypeError, ValueError, AttributeError) as e:
            raise ConfigError("rest.listen", str(e)) from None
        if not isinstance(self.public_url, str) or (
                self.public_url and not self.public_url.startswith(("http://", "https://"))):
            raise ConfigError("rest.public_url", f"expected an http:// or https:// URL, "
                                                 f"got {self.public_url!r}")
        if not isinstance(self.region, str) or not self.region:
            raise ConfigError("rest.region", "must not be empty")

    def base_url(self) -> str:
        """Where clients reach the REST API: public_url, else the listen address."""
        return (self.public_url or f"http://{connect_address(self.listen)}").rstrip("/")


@dataclass(frozen=True)
class TokenSettings:
    """Tokens, with Keystone's [token] names."""

    expiration: int = option(3600, help=(
        "seconds a token issued by password or token authentication lives (Keystone's)"))
    revocation_refresh_interval: float = option(1.0, help=(
        "seconds between each service's reads of the revoked tokens: a token revoked "
        "elsewhere is refused within this (at once by the API that revoked it)"))

    def __post_init__(self) -> None:
        if not _is_int(self.expiration) or not 1 <= self.expiration <= 30 * 24 * 3600:
            raise ConfigError("token.expiration", f"must be 1 second to 30 days, got "
                                                  f"{self.expiration!r}")
        if not _is_number(self.revocation_refresh_interval) \
                or not 0 < self.revocation_refresh_interval < math.inf:
            raise ConfigError("token.revocation_refresh_interval",
                              f"must be a number of seconds > 0, got "
                              f"{self.revocation_refresh_interval!r}")


# oslo.service's default spacing of a periodic task (Nova's interval 0).
DEFAULT_PERIODIC_SPACING = 60.0


@dataclass(frozen=True)
class ComputeSettings:
    """A compute agent's options, with Nova's names and defaults."""

    virt_uri: str = option("test:///default", help=(
        "libvirt URI: test:///... runs simulated hosts (one node description file per host, "
        "written by the agent); qemu:///system real guests"))
    virt_type: str = option("auto", help=(
        "real guests: libvirt's domain type, Nova's [libvirt] virt_type: qemu (software "
        "emulation), kvm, or auto: kvm only where the setup booted a guest under KVM "
        "(python -m novalite.virt.accel show), else qemu"))
    hosts: tuple[str, ...] = option((), help=(
        "the hosts this agent serves; empty: host_count simulated hosts named compute-001, ..."))
    host_count: int = option(1, help="how many simulated hosts, when hosts is empty")
    host_vcpus: int = option(16, help="vCPUs of each simulated host (test:/// only)")
    host_memory_mb: int = option(65536, help="MiB of RAM of each simulated host (test:/// only)")
    host_disk_gb: int = option(1000, help="GiB of disk of each simulated host (test:/// only)")
    cpu_traits: tuple[str, ...] = option((), help=(
        "the CPU traits each simulated host reports (test:/// only), e.g. HW_CPU_X86_AVX2; "
        "a real host reports its own, from libvirt's capabilities"))
    reserved_host_memory_mb: int = option(512, help="MiB of each host's RAM kept from guests (Nova's)")
    reserved_host_cpus: int = option(0, help="vCPUs of each host kept from guests (Nova's)")
    reserved_host_disk_mb: int = option(0, help="MiB of each host's disk kept from guests (Nova's)")
    cpu_allocation_ratio: float = option(4.0, help="vCPU overcommit (Nova's initial_cpu_allocation_ratio)")
    ram_allocation_ratio: float = option(1.0, help="RAM overcommit (Nova's initial_ram_allocation_ratio)")
    disk_allocation_ratio: float = option(1.0, help="disk overcommit (Nova's initial_disk_allocation_ratio)")
    instances_path: Path = option(Path("instances"), help=(
        "where guests' disks live; a relative path is taken under data_dir"))
    networks_path: Path = option(Path("/var/lib/novalite/networks"), help=(
        "real hosts: where this machine's networks are described (a bridge and a dnsmasq "
        "each, made by scripts/setup_network.sh) and their DHCP host entries written "
        "(Nova's networks_path); the agent reports those networks at start"))
    max_concurrent_builds: int = option(10, help=(
        "builds running at once on each host this agent serves (Nova's is per compute "
        "service, i.e. per host); 0 means no limit, as in Nova"))
    consecutive_build_service_disable_threshold: int = option(10, help=(
        "failed builds in a row after which a host disables itself; 0 never (Nova's)"))
    wait_soft_reboot_seconds: float = option(60.0, help=(
        "real guests: seconds a soft reboot waits for the guest OS to shut down before a "
        "hard reboot (Nova's [libvirt] option; 120 there)"))
    shutdown_timeout: float = option(0.0, help=(
        "real guests: seconds a stop waits for a clean shutdown before pulling the plug "
        "(Nova's; 60 there, 0 here: a guest without an OS never shuts down by itself)"))
    update_resources_interval: int = option(0, help=(
        "seconds between recounts of each host (Nova's update_resources_interval): 0 means "
        "Nova's default periodic spacing (60 s), negative never"))
    sync_power_state_interval: int = option(600, help=(
        "seconds between power-state syncs with the hypervisor (Nova's): 0 means 60 s, "
        "negative never"))

    def periodic_spacing(self, name: str) -> float:
        """Seconds between runs of the periodic task ``name`` ("update_resources" or
        "sync_power_state"), as Nova reads its interval: 0 is the default spacing
        (60 s); infinity when it never runs (a negative interval)."""
        value = int(getattr(self, f"{name}_interval"))
        if value < 0:
            return math.inf
        return float(value) if value > 0 else DEFAULT_PERIODIC_SPACING

    def __post_init__(self) -> None:
        if not isinstance(self.virt_uri, str) or "://" not in self.virt_uri:
            raise ConfigError("compute.virt_uri",
                              f"expected a libvirt URI such as test:///default, got {self.virt_uri!r}")
        hosts = self.hosts
        if isinstance(hosts, str) or not all(isinstance(h, str) and h.strip() == h and h
                                             for h in hosts):
            raise ConfigError("compute.hosts", "expected a list of non-empty host names")
        if len(set(hosts)) != len(hosts):
            raise ConfigError("compute.hosts", "a host is listed twice")
        traits = self.cpu_traits
        if isinstance(traits, str) or not all(
                isinstance(t, str) and t.startswith(CPU_TRAIT_PREFIX) and _TRAIT_NAME.match(t)
                for t in traits):
            raise ConfigError("compute.cpu_traits", f"expected a list of trait names starting "
                                                    f"with {CPU_TRAIT_PREFIX} (upper-case letters, "
                                                    f"digits and _), got {traits!r}")
        for name, low in (("host_count", 1), ("host_vcpus", 1), ("host_memory_mb", 1),
                          ("host_disk_gb", 1), ("reserved_host_memory_mb", 0),
                          ("reserved_host_cpus", 0), ("reserved_host_disk_mb", 0),
                          ("max_concurrent_builds", 0),
                          ("consecutive_build_service_disable_threshold", 0)):
            value = getattr(self, name)
            if not _is_int(value) or value < low:
                raise ConfigError(f"compute.{name}", f"must be an integer >= {low}, got {value!r}")
        for name in ("cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"compute.{name}", f"must be a number > 0, got {value!r}")
        for name in ("update_resources_interval", "sync_power_state_interval"):
            if not _is_int(getattr(self, name)):
                raise ConfigError(f"compute.{name}", f"must be an integer (seconds; 0 means "
                                                     f"60, negative never), got {getattr(self, name)!r}")
        for name in ("wait_soft_reboot_seconds", "shutdown_timeout"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < math.inf:
                raise ConfigError(f"compute.{name}", f"must be a number of seconds >= 0, got {value!r}")
        if self.virt_type not in ("auto", "qemu", "kvm"):
            raise ConfigError("compute.virt_type",
                              f"expected auto, qemu or kvm, got {self.virt_type!r}")
        if not isinstance(self.networks_path, Path):
            raise ConfigError("compute.networks_path", f"expected a path, got {self.networks_path!r}")
        if not isinstance(self.instances_path, Path):
            raise ConfigError("compute.instances_path", f"expected a path, got {self.instances_path!r}")

    @property
    def host_names(self) -> tuple[str, ...]:
        if self.hosts:
            return self.hosts
        width = max(3, len(str(self.host_count)))
        return tuple(f"compute-{i:0{width}d}" for i in range(1, self.host_count + 1))


def _default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return Path(base) / "novalite"


@dataclass(frozen=True)
class Settings:
    """Everything a novalite process is configured with. Build it with
    ``load_settings``; constructing it directly (tests) validates the same way."""

    data_dir: Path = option(factory=_default_data_dir, help=(
        "where the database, the token secret, logs and guests live; the same for every "
        "command (default: $XDG_DATA_HOME/novalite, i.e. ~/.local/share/novalite)"))
    database_url: str = option("", help=(
        "SQLAlchemy URL of the database; empty means sqlite:///<data_dir>/novalite.db"))
    listen: Listen = field(default_factory=Listen)
    advertise_host: str = option("", help=(
        "the host name or IP address other machines reach this machine's services at, "
        "recorded when a service registers; empty: the host each service listens on "
        "(loopback for 0.0.0.0), right on one machine"))
    metrics_ports: MetricsPorts = field(default_factory=MetricsPorts)
    service_down_time: int = option(60, help=(
        "seconds without a heartbeat after which a service is down (Nova's)"))
    report_interval: int = option(10, help="seconds between services' heartbeats (Nova's)")
    graceful_shutdown_timeout: float = option(60.0, help=(
        "seconds a stopping service gives calls in flight to finish (oslo.service's)"))
    allow_resize_to_same_host: bool = option(False, help=(
        "a resize may stay on the server's own host (Nova's); a cold migration never does"))
    resize_confirm_window: int = option(0, help=(
        "seconds after which a resize or cold migration waiting in VERIFY_RESIZE is "
        "confirmed automatically; 0 never (Nova's)"))
    shelved_offload_time: int = option(0, help=(
        "seconds a shelved server keeps its host's resources before it is offloaded: 0 at "
        "once, -1 never (Nova's)"))
    log_level: str = option("INFO", help=f"one of {', '.join(LOG_LEVELS)}")
    log_format: str = option("text", help="text (lines for people) or json (a record per line)")
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    quotas: Quotas = field(default_factory=Quotas)
    compute: ComputeSettings = field(default_factory=ComputeSettings)
    rest: RestSettings = field(default_factory=RestSettings)
    token: TokenSettings = field(default_factory=TokenSettings)
    # From NOVALITE_SECRET or an override; None means <data_dir>/secret.key.
    explicit_secret: bytes | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.data_dir, Path):
            raise ConfigError("data_dir", f"expected a path, got {self.data_dir!r}")
        data_dir = self.data_dir.expanduser().absolute()
        object.__setattr__(self, "data_dir", data_dir)
        if not isinstance(self.database_url, str):
            raise ConfigError("database_url", f"expected a URL, got {self.database_url!r}")
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{data_dir / 'novalite.db'}")
        elif "://" not in self.database_url:
            raise ConfigError("database_url", "expected a URL such as sqlite:////path/novalite.db "
                                              f"or postgresql://..., got {self.database_url!r}")
        instances_path = self.compute.instances_path.expanduser()
        if not instances_path.is_absolute():
            object.__setattr__(self, "compute", replace(self.compute, instances_path=data_dir / instances_path))
        for name in ("service_down_time", "report_interval"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ConfigError(name, f"must be an integer >= 1 (seconds), got {value!r}")
        if self.report_interval >= self.service_down_time:
            raise ConfigError("report_interval", f"must be less than service_down_time "
                                                 f"({self.service_down_time}), or every "
                                                 "service would look down between reports")
        if not isinstance(self.allow_resize_to_same_host, bool):
            raise ConfigError("allow_resize_to_same_host",
                              f"must be true or false, got {self.allow_resize_to_same_host!r}")
        if not _is_int(self.resize_confirm_window) or self.resize_confirm_window < 0:
            raise ConfigError("resize_confirm_window", "must be an integer >= 0 (seconds; 0 "
                                                       f"never), got {self.resize_confirm_window!r}")
        if not _is_int(self.shelved_offload_time) or self.shelved_offload_time < -1:
            raise ConfigError("shelved_offload_time", "must be an integer >= -1 (seconds; 0 at "
                                                      f"once, -1 never), got {self.shelved_offload_time!r}")
        if not _is_number(self.graceful_shutdown_timeout) \
                or not 0 <= self.graceful_shutdown_timeout < math.inf:
            raise ConfigError("graceful_shutdown_timeout",
                              f"must be a number of seconds >= 0, got {self.graceful_shutdown_timeout!r}")
        level = self.log_level.upper() if isinstance(self.log_level, str) else self.log_level
        if level not in LOG_LEVELS:
            raise ConfigError("log_level", f"must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        object.__setattr__(self, "log_level", level)
        if self.log_format not in LOG_FORMATS:
            raise ConfigError("log_format", f"must be json or text, got {self.log_format!r}")
        if self.explicit_secret is not None:
            _check_secret(self.explicit_secret, "secret")
        if not _advertisable(self.advertise_host):
            raise ConfigError("advertise_host", "expected a host name or IP address others "
                                                "can reach (no port, not 0.0.0.0), got "
                                                f"{self.advertise_host!r}")

    @property
    def secret_path(self) -> Path:
        return self.data_dir / SECRET_FILE

    @property
    def secret(self) -> bytes:
        """The shared token secret: NOVALITE_SECRET's, else <data_dir>/secret.key's
        (created with 32 random bytes, mode 0600, by the first process to ask)."""
        if self.explicit_secret is not None:
            return self.explicit_secret
        return load_or_create_secret(self.secret_path)

    def endpoint(self, service: str) -> str:
        """The address a client on this machine dials to reach ``service``."""
        return connect_address(self.listen.of(service))

    def advertised(self, service: str, port: int) -> str:
        """The address a service of this machine registers for others to dial, its
        server bound to ``port``: advertise_host, else the host of ``endpoint``."""
        return join_address(self.advertise_host or split_address(self.endpoint(service))[0], port)


def load_or_create_secret(path: Path) -> bytes:
    """The secret in ``path``, creating the file (0600, 32 random bytes as base64url
    text) if there is none. Safe when several processes start at once: the file
    appears whole, and all of them read the one that won."""
    source = f"file {path}"
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = base64.urlsafe_b64encode(_secrets.token_bytes(32)).rstrip(b"=") + b"\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret-")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
    except OSError as e:
        raise ConfigError("secret", f"cannot create the secret file: {e}", source) from None
    finally:
        os.unlink(tmp)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    source = f"file {path}"
    try:
        mode = path.stat().st_mode
        data = path.read_bytes().strip()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise ConfigError("secret", f"cannot read the secret file: {e}", source) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError("secret", f"the secret file is open to other users (mode "
                                    f"{stat.S_IMODE(mode):04o}); chmod 600 it", source)
    _check_secret(data, "secret", source)
    return data


def _check_secret(value: object, key: str, source: str | None = None) -> None:
    if not isinstance(value, bytes) or len(value) < MIN_SECRET_BYTES:
        raise ConfigError(key, f"must be at least {MIN_SECRET_BYTES} bytes", source)


# ---------------------------------------------------------------------------
# Loading

_SECTIONS: Mapping[str, type[Any]] = {
    "listen": Listen,
    "metrics_ports": MetricsPorts,
    "scheduler": SchedulerConfig,
    "quotas": Quotas,
    "compute": ComputeSettings,
    "rest": RestSettings,
    "token": TokenSettings,
}
# Top-level keys: the Settings fields that are not sections; "secret" is the
# explicit_secret field under the name operators use.
_TOP_LEVEL = tuple(f.name for f in fields(Settings)
                   if f.name not in _SECTIONS and f.name != "explicit_secret") + ("secret",)


@dataclass(frozen=True)
class _Value:
    value: object
    source: str
    text: bool  # came as text (environment, or a string override) to parse by type


def load_settings(config_file: str | os.PathLike[str] | None = None, *,
                  overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from defaults < TOML file < environment < ``overrides``.

    ``config_file`` defaults to NOVALITE_CONFIG (no file if neither is given);
    ``environ`` to os.environ. Raises ConfigError naming the key and its source.
    """
    return _build(_values(config_file, overrides, environ))


def _values(config_file: str | os.PathLike[str] | None, overrides: Mapping[str, Any] | None,
            environ: Mapping[str, str] | None) -> dict[str, _Value]:
    env = os.environ if environ is None else environ
    values: dict[str, _Value] = {}
    path = config_file if config_file is not None else env.get(CONFIG_ENV) or None
    if path is not None:
        values.update(_from_file(Path(path)))
    values.update(_from_environment(env))
    values.update(_from_overrides(overrides or {}))
    if "data_dir" not in values:
        values["data_dir"] = _Value(_default_data_dir(env), "defaults", text=False)
    return values


@dataclass(frozen=True)
class OptionInfo:
    """One option as `novalite config show` reports it."""

    key: str        # dotted: "report_interval", "compute.host_count"
    type: str       # "int", "list of str", ...
    default: object
    value: object   # in force
    source: str     # "defaults", "file ...", "environment variable ...", "overrides"
    env: str        # the environment variable that sets it
    help: str


def explain_settings(config_file: str | os.PathLike[str] | None = None, *,
                     overrides: Mapping[str, Any] | None = None,
                     environ: Mapping[str, str] | None = None) -> list[OptionInfo]:
    """Every option with the value in force and where it came from (load_settings's
    arguments; ConfigError as load_settings raises it). The secret is never shown."""
    values = _values(config_file, overrides, environ)
    settings = _build(values)
    out: list[OptionInfo] = []

    def add(key: str, f: Any, owner: Any, default: object) -> None:
        source = values[key].source if key in values else "defaults"
        if key == "data_dir" and source == "defaults":
            source = "defaults ($XDG_DATA_HOME or ~/.local/share)"
        out.append(OptionInfo(key, _type_name(_field_types(type(owner))[f.name]), default,
                              getattr(owner, f.name), source,
                              ENV_PREFIX + key.replace(".", "_").upper(), help_of(f)))

    for f in fields(Settings):
        if f.name in _SECTIONS or f.name == "explicit_secret":
            continue
        add(f.name, f, settings, _field_default(f))
    secret_source = values["secret"].source if "secret" in values else f"file {settings.secret_path}"
    out.append(OptionInfo("secret", "secret", None, "(not shown)", secret_source, SECRET_ENV,
                          "the token secret every service of one cloud shares; never read "
                          f"from a settings file (default: <data_dir>/{SECRET_FILE}, made on first use)"))
    for section, cls in _SECTIONS.items():
        for f in fields(cls):
            add(f"{section}.{f.name}", f, getattr(settings, section), _field_default(f))
    return out


def default(key: str) -> Any:
    """The declared default of an option ("service_down_time",
    "scheduler.default_availability_zone"), for code that takes the option as an
    argument and must default to the same value."""
    section, dot, name = key.rpartition(".")
    cls = _SECTIONS[section] if dot else Settings
    for f in fields(cls):
        if f.name == name:
            return _field_default(f)
    raise KeyError(key)


def _field_default(f: Any) -> object:
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else None


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        parts = [_type_name(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(parts) + (" (optional)" if type(None) in typing.get_args(tp) else "")
    if origin in (tuple, list, collections.abc.Sequence):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"list of {_type_name(args[0]) if args else 'str'}"
    if origin in (dict, collections.abc.Mapping):
        key, value = typing.get_args(tp) or (str, str)
        return f"table of {_type_name(key)} = {_type_name(value)}"
    return getattr(tp, "__name__", str(tp))


def _from_file(path: Path) -> dict[str, _Value]:
    source = f"file {path}"
    try:
        with path.open("rb") as f:
            document = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("config", "the settings file does not exist", source) from None
    except OSError as e:
        raise ConfigError("config", f"cannot read the settings file: {e}", source) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("config", f"not valid TOML: {e}", source) from None
    out: dict[str, _Value] = {}
    for key, value in document.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(key, f"expected a [{key}] table", source)
            for sub, sub_value in value.items():
                dotted = f"{key}.{sub}"
                if sub not in _section_fields(key):
                    raise ConfigError(dotted, _unknown(key), source)
                out[dotted] = _Value(sub_value, source, text=False)
        elif key == "secret":
            raise ConfigError(key, f"is never read from a file; set {SECRET_ENV} or let "
                                   f"<data_dir>/{SECRET_FILE} be created", source)
        elif key in _TOP_LEVEL:
            out[key] = _Value(value, source, text=False)
        else:
            raise ConfigError(key, _unknown(None), source)
    return out


def _from_environment(env: Mapping[str, str]) -> dict[str, _Value]:
    out: dict[str, _Value] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV or name in _ENV_IGNORED \
                or name.startswith(_ENV_IGNORED_PREFIXES):
            continue
        source = f"environment variable {name}"
        rest = name[len(ENV_PREFIX):].lower()
        if rest in _TOP_LEVEL:
            out[rest] = _Value(value, source, text=True)
            continue
        for section in sorted(_SECTIONS, key=len, reverse=True):
            if rest.startswith(section + "_") and rest[len(section) + 1:] in _section_fields(section):
                out[f"{section}.{rest[len(section) + 1:]}"] = _Value(value, source, text=True)
                break
        else:
            raise ConfigError(name, "unknown setting: expected NOVALITE_<KEY> or "
                                    "NOVALITE_<SECTION>_<KEY> for a known key", "environment")
    return out


def _from_overrides(overrides: Mapping[str, Any]) -> dict[str, _Value]:
    out: dict[str, _Value] = {}
    source = "overrides"
    for key, value in overrides.items():
        if value is None:
            continue
        if key in _SECTIONS and isinstance(value, Mapping):
            for sub, sub_value in value.items():
                if sub_value is not None:
                    out.update(_from_overrides({f"{key}.{sub}": sub_value}))
            continue
        section, dot, sub = key.partition(".")
        if dot:
            if section not in _SECTIONS:
                raise ConfigError(key, _unknown(None), source)
            if sub not in _section_fields(section):
                raise ConfigError(key, _unknown(section), source)
        elif key not in _TOP_LEVEL:
            raise ConfigError(key, _unknown(None), source)
        out[key] = _Value(value, source, text=isinstance(value, str))
    return out


def _build(values: Mapping[str, _Value]) -> Settings:
    kwargs: dict[str, Any] = {}
    top_types = _field_types(Settings)
    for key in _TOP_LEVEL:
        if key in values:
            if key == "secret":
                kwargs["explicit_secret"] = _convert(values[key], bytes, key)
            else:
                kwargs[key] = _convert(values[key], top_types[key], key)
    for section, cls in _SECTIONS.items():
        types_ = _field_types(cls)
        section_kwargs = {
            sub: _convert(values[f"{section}.{sub}"], types_[sub], f"{section}.{sub}")
            for sub in types_ if f"{section}.{sub}" in values
        }
        if section_kwargs:
            kwargs[section] = _construct(cls, section, section_kwargs, values)
    try:
        return Settings(**kwargs)
    except ConfigError as e:
        raise _with_source(e, values) from None


def _construct(cls: type[Any], section: str, kwargs: Mapping[str, Any],
               values: Mapping[str, _Value]) -> Any:
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise _with_source(e, values) from None
    except _SchedulerConfigError as e:
        key = f"{section}.{e.option}"
        if e.option not in kwargs:  # a default that clashes with what was given
            raise ConfigError(section, str(e), _sources_of(section, values)) from None
        raise ConfigError(key, e.message, values[key].source) from None


def _with_source(e: ConfigError, values: Mapping[str, _Value]) -> ConfigError:
    if e.source is not None:
        return e
    return ConfigError(e.key, e.message, values[e.key].source if e.key in values else "defaults")


def _sources_of(section: str, values: Mapping[str, _Value]) -> str:
    found = sorted({v.source for k, v in values.items() if k.startswith(section + ".")})
    return ", ".join(found) or "defaults"


def _unknown(section: str | None) -> str:
    if section is None:
        return (f"unknown setting; known: {', '.join(_TOP_LEVEL)} and the sections "
                f"{', '.join(_SECTIONS)}")
    return f"unknown setting of [{section}]; known: {', '.join(_section_fields(section))}"


def _section_fields(section: str) -> tuple[str, ...]:
    return tuple(f.name for f in fields(_SECTIONS[section]))


_TYPE_CACHE: dict[type[Any], dict[str, Any]] = {}


def _field_types(cls: type[Any]) -> dict[str, Any]:
    if cls not in _TYPE_CACHE:
        _TYPE_CACHE[cls] = typing.get_type_hints(cls)
    return _TYPE_CACHE[cls]


def _convert(item: _Value, tp: Any, key: str) -> Any:
    """``item`` as a value of the field type ``tp``: TOML and typed overrides are
    checked, text (the environment) is parsed. ConfigError if it does not fit."""
    try:
        return _as(item.value, tp, item.text)
    except _BadValue as e:
        raise ConfigError(key, f"{e}, got {item.value!r}", item.source) from None


class _BadValue(Exception):
    pass


def _as(value: object, tp: Any, text: bool) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if type(None) in typing.get_args(tp) and (value is None or value == ""):
            return None
        errors: list[str] = []
        for option in options:
            try:
                return _as(value, option, text)
            except _BadValue as e:
                errors.append(str(e))
        raise _BadValue(" or ".join(errors))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if text and isinstance(value, str) and value.strip().lower() in _BOOLS:
            return _BOOLS[value.strip().lower()]
        raise _BadValue("expected true or false")
    if tp is int:
        if _is_int(value):
            return value
        if text and isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise _BadValue("expected an integer")
    if tp is float:
        if _is_number(value):
            return float(value)
        if text and isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise _BadValue("expected a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise _BadValue("expected a string")
    if tp is bytes:
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode("utf-8")
        raise _BadValue("expected a string")
    if tp is Path:
        if isinstance(value, (str, Path)) and str(value):
            return Path(value).expanduser()
        raise _BadValue("expected a path")
    if origin in (tuple, list, collections.abc.Sequence):
        args = typing.get_args(tp)
        item_type = args[0] if args else str
        if text and isinstance(value, str):
            items: list[object] = [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise _BadValue("expected a list")
        return tuple(_as(v, item_type, text) for v in items)
    if origin in (dict, collections.abc.Mapping):
        key_type, value_type = typing.get_args(tp) or (str, str)
        if text and isinstance(value, str):
            pairs: list[tuple[object, object]] = []
            for part in value.split(","):
                if not part.strip():
                    continue
                name, eq, v = part.partition("=")
                if not eq:
                    raise _BadValue("expected name=value pairs separated by commas")
                pairs.append((name.strip(), v.strip()))
        elif isinstance(value, Mapping):
            pairs = list(value.items())
        else:
            raise _BadValue("expected a table of name = value")
        return {_as(k, key_type, text): _as(v, value_type, text) for k, v in pairs}
    raise _BadValue(f"unsupported setting type {tp!r}")  # pragma: no cover - a new field type


_BOOLS = {"true": True, "yes": True, "on": True, "1": True,
          "false": False, "no": False, "off": False, "0": False}


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _known_service(service: str) -> str:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
    return service


