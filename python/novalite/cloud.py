"""A whole novalite cloud on one machine: each service its own process, talking
gRPC over loopback, sharing one database (SQLite in the data directory by default).
`novalite up` runs one; the end-to-end tests run them too.

The API also serves the REST API the OpenStack clients speak; the cloud has a
Keystone admin (project and user ``admin``, its password kept in the data
directory's ``clouds.yaml``, which names the cloud ``novalite``)."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from novalite.auth.tokens import ADMIN, MEMBER, TokenSigner
from novalite.settings import load_or_create_secret, split_address

if TYPE_CHECKING:
    from novalite.db.database import Database

SERVICES = ("compute", "scheduler", "conductor", "api")
CLOUDS_YAML = "clouds.yaml"
# the name of the cloud clouds.yaml describes (`openstack --os-cloud novalite`)
CLOUD_NAME = "novalite"
_PASSWORD_RE = re.compile(r'^\s*password: ("[^"]*")\s*$', re.MULTILINE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def libvirtd_reachable() -> bool:
    """Whether real guests can run here (libvirtd answers on qemu:///system)."""
    try:
        import libvirt  # type: ignore[import-untyped]
    except ImportError:
        return False
    try:
        libvirt.registerErrorHandler(lambda *_: None, None)
        conn = libvirt.open("qemu:///system")
    except libvirt.libvirtError:
        return False
    conn.close()
    return True


@dataclass
class Process:
    name: str
    args: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class LocalCloud:
    """``hosts`` simulated hosts (one agent serving them all; 0: no simulated agent)
    and, with ``real_host``, a second agent running this machine itself as a real
    host on qemu:///system (its guests' disks under ``<data_dir>/instances``). At
    least one of the two. ``wait_soft_reboot_seconds`` / ``shutdown_timeout``: the
    real host's (settings.compute), None for the settings' defaults."""

    data_dir: Path
    hosts: int = 20
    host_vcpus: int = 16
    host_memory_mb: int = 65536
    host_disk_gb: int = 1000
    database_url: str | None = None
    real_host: bool = False
    fail_builds_on: Sequence[str] = ()
    # seconds each step of a move waits first (tests that kill a service mid-move)
    move_step_delay: float = 0.0
    report_interval: int = 10
    # [compute] update_resources_interval / sync_power_state_interval (Nova's
    # defaults when None)
    update_resources_interval: int | None = None
    sync_power_state_interval: int | None = None
    wait_soft_reboot_seconds: float | None = None
    shutdown_timeout: float | None = None
    # top-level settings beyond these (service_down_time, resize_confirm_window...)
    settings: dict[str, object] = field(default_factory=dict)
    # more options of the settings' [scheduler] and [compute] sections
    scheduler_options: Mapping[str, object] = field(default_factory=dict)
    compute_options: Mapping[str, object] = field(default_factory=dict)
    # host:port of the REST API; None (or port 0): a free port on loopback
    rest_listen: str | None = None
    python: str = sys.executable
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.hosts < 0 or (self.hosts == 0 and not self.real_host):
            raise ValueError(f"hosts must be >= 1, or 0 with real_host, got {self.hosts}")
        self.data_dir = Path(self.data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        self.signer = TokenSigner(load_or_create_secret(self.data_dir / "secret.key"))

    # ---- configuration -------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.data_dir / "novalite.toml"

    def endpoint(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    @property
    def rest_address(self) -> str:
        host, port = split_address(self.rest_listen or "127.0.0.1:0")
        return f"{host}:{port or self.ports['rest']}"

    @property
    def rest_url(self) -> str:
        """The REST API's base URL (Keystone's is <this>/identity/v3)."""
        host, port = split_address(self.rest_address)
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"

    @property
    def auth_url(self) -> str:
        return f"{self.rest_url}/identity/v3"

    @property
    def clouds_yaml(self) -> Path:
        return self.data_dir / CLOUDS_YAML

    def write_config(self) -> Path:
        from novalite.cli import _toml

        for name in (*SERVICES, "compute_real", "rest"):
            self.ports.setdefault(name, free_port())
        url = self.database_url or f"sqlite:///{self.data_dir / 'novalite.db'}"
        lines = [
            f'data_dir = "{self.data_dir}"',
            f'database_url = "{url}"',
            f"report_interval = {self.report_interval}",
            'log_format = "json"',
            *(f"{key} = {_toml(value)}" for key, value in self.settings.items()),
            "",
            "[listen]",
            *(f'{s} = "127.0.0.1:{self.ports[s]}"' for s in SERVICES),
            "",
            "[metrics_ports]",
            *(f"{s} = 0" for s in SERVICES),
            "",
            "[rest]",
            f'listen = "{self.rest_address}"',
            "",
            "[compute]",
            'virt_uri = "test:///default"',
            # with no simulated host the simulated agent does not run at all
            f"host_count = {max(self.hosts, 1)}",
            f"host_vcpus = {self.host_vcpus}",
            f"host_memory_mb = {self.host_memory_mb}",
            f"host_disk_gb = {self.host_disk_gb}",
            *(f"{name} = {float(value)}" for name, value in (
                ("wait_soft_reboot_seconds", self.wait_soft_reboot_seconds),
                ("shutdown_timeout", self.shutdown_timeout)) if value is not None),
            *(f"{name} = {int(value)}" for name, value in (
                ("update_resources_interval", self.update_resources_interval),
                ("sync_power_state_interval", self.sync_power_state_interval))
              if value is not None),
            *(f"{name} = {_toml(value)}" for name, value in self.compute_options.items()),
            "",
            "[scheduler]",
            *(f"{name} = {_toml(value)}" for name, value in self.scheduler_options.items()),
            "",
        ]
        self.config_path.write_text("\n".join(lines))
        return self.config_path

    # ---- the Keystone admin and clouds.yaml ---------------------------------------

    def admin_password(self) -> str:
        """The admin's password: the one clouds.yaml has, else a new one."""
        try:
            found = _PASSWORD_RE.search(self.clouds_yaml.read_text())
        except OSError:
            found = None
        return str(json.loads(found.group(1))) if found else secrets.token_urlsafe(18)

    def bootstrap_admin(self, db: Database) -> None:
        """The admin project and user (Keystone's bootstrap), and clouds.yaml for
        them: `openstack --os-cloud novalite` with OS_CLIENT_CONFIG_FILE pointing
        at it needs nothing else."""
        from novalite.identity.manager import IdentityManager

        password = self.admin_password()
        IdentityManager(db, self.signer).bootstrap(password=password)
        text = "\n".join([
            "# written by novalite up: its admin (project admin, user admin). Use it with",
            f"#   OS_CLIENT_CONFIG_FILE={self.clouds_yaml} openstack --os-cloud {CLOUD_NAME} ...",
            "clouds:",
            f"  {CLOUD_NAME}:",
            "    auth:",
            f"      auth_url: {json.dumps(self.auth_url)}",
            '      username: "admin"',
            f"      password: {json.dumps(password)}",
            '      project_name: "admin"',
            '      user_domain_name: "Default"',
            '      project_domain_name: "Default"',
            '    region_name: "RegionOne"',
            "    identity_api_version: 3",
            "    interface: public",
            ""])
        tmp = self.clouds_yaml.with_suffix(".tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.clouds_yaml)

    # ---- tokens --------------------------------------------------------------------

    def admin_token(self, ttl: int = 86400) -> str:
        return self.signer.issue("admin", "admin", [ADMIN], ttl)

    def member_token(self, project: str, user: str = "user", ttl: int = 86400) -> str:
        return self.signer.issue(project, user, [MEMBER], ttl)

    # ---- processes -----------------------------------------------------------------

    def _command(self, service: str) -> list[str]:
        args = [self.python, "-m", "novalite.cli", service, "--config", str(self.config_path)]
        if service == "compute" and self.fail_builds_on:
            args += ["--fail-builds-on", ",".join(self.fail_builds_on)]
        if service == "compute" and self.move_step_delay:
            args += ["--move-step-delay", str(self.move_step_delay)]
        return args

    def start(self, timeout: float = 90.0) -> None:
        self.write_config()
        from novalite.db.database import Database

        db = Database(self.database_url or f"sqlite:///{self.data_dir / 'novalite.db'}")
        try:
            db.upgrade()
            self.bootstrap_admin(db)
        finally:
            db.close()
        order = [s for s in SERVICES if s != "compute" or self.hosts > 0]
        commands = {s: self._command(s) for s in order}
        if self.real_host:
            # after the scheduler, so that its first report finds one listening
            order.insert(order.index("scheduler") + 1, "compute_real")
            commands["compute_real"] = [
                *self._command("compute"), "--virt-uri", "qemu:///system",
                "--listen", self.endpoint("compute_real"), "--hosts", socket.gethostname()]
        for service in order:
            self.spawn(service, commands[service])
            self.wait_serving(service, timeout)

    def start_agent(self, name: str, hosts: Sequence[str], *, virt_uri: str | None = None,
                    instances_path: Path | None = None, timeout: float = 90.0) -> Process:
        """One more compute agent, serving ``hosts`` (simulated ones by default;
        ``virt_uri`` qemu:///system makes the first one this machine under that
        name, its guests' disks in ``instances_path``), started as ``name``."""
        self.ports.setdefault(name, free_port())
        args = [*self._command("compute"), "--listen", self.endpoint(name),
                "--hosts", ",".join(hosts)]
        if virt_uri is not None:
            args += ["--virt-uri", virt_uri]
        if instances_path is not None:
            args += ["--instances-path", str(instances_path)]
        proc = self.spawn(name, args)
        self.wait_serving(name, timeout)
        return proc

    def spawn(self, service: str, args: list[str]) -> Process:
        log = self.data_dir / "logs" / f"{service}.log"
        proc = Process(service, args, log)
        env = dict(os.environ)
        env.pop("NOVALITE_CONFIG", None)
        with log.open("ab") as out:
            proc.popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True)
        self.processes[service] = proc
        return proc

    def wait_serving(self, service: str, timeout: float = 90.0) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        proc = self.processes[service]
        deadline = time.monotonic() + timeout
        target = self.endpoint(service)
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"{service} exited (status {proc.popen.returncode if proc.popen else '?'}):\n"
                                   f"{proc.log_tail()}")
            try:
                with grpc.insecure_channel(target) as ch:
                    reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{service} did not start serving on {target} within {timeout:.0f} s:\n"
                           f"{proc.log_tail()}")

    def kill(self, service: str) -> None:
        """kill -9, as a crash would."""
        proc = self.processes[service]
        if proc.popen is not None and proc.alive():
            proc.popen.send_signal(signal.SIGKILL)
            proc.popen.wait(10)

    def restart(self, service: str, timeout: float = 90.0) -> None:
        proc = self.processes[service]
        if proc.alive():
            self.stop_service(service)
        self.spawn(service, proc.args)
        self.wait_serving(service, timeout)

    def stop_service(self, service: str, timeout: float = 30.0) -> None:
        proc = self.processes.get(service)
        if proc is None or proc.popen is None:
            return
        if proc.alive():
            proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every service, the API first (no new work), the agents last."""
        for service in reversed(list(self.processes)):
            self.stop_service(service, timeout)

    def __enter__(self) -> "LocalCloud":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def remove(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)


def describe_exit(returncode: int | None) -> str:
    """How a process ended, in words: "exited with status 1", "was killed by SIGKILL"."""
    if returncode is None:
        return "is running"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


@dataclass(frozen=True)
class RestartPolicy:
    """What `novalite up` does with a service that exits on its own: start it again
    after a back-off that doubles from ``first_delay`` to at most ``max_delay``
    seconds (back to ``first_delay`` once it has run ``stable_after`` seconds), until
    it has exited more than ``max_restarts`` times within ``window`` seconds; then
    the whole cloud stops and `up` exits non-zero naming it. ``max_restarts`` 0: the
    first exit stops the cloud."""

    max_restarts: int = 5
    window: float = 600.0
    first_delay: float = 1.0
    max_delay: float = 30.0
    stable_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {self.max_restarts}")
        if not 0 < self.first_delay <= self.max_delay:
            raise ValueError("need 0 < first_delay <= max_delay")


class Supervisor:
    """Keeps a started LocalCloud's services running under a RestartPolicy. Call
    ``poll()`` every fraction of a second: it notices a service that has exited,
    says so (``say``), starts it again when its back-off is over, and returns a
    message naming the service once the policy gives up on it (None until then)."""

    def __init__(self, cloud: LocalCloud, policy: RestartPolicy = RestartPolicy(),
                 say: Callable[[str], None] = print, clock: Callable[[], float] = time.monotonic) -> None:
        self.cloud = cloud
        self.policy = policy
        self.say = say
        self.clock = clock
        now = clock()
        self._since = {name: now for name in cloud.processes}   # when each last started
        self._exits: dict[str, list[float]] = {}
        self._delay: dict[str, float] = {}
        self._due: dict[str, float] = {}                        # restarts waiting out a back-off
        self.restarts = 0

    def poll(self) -> str | None:
        now = self.clock()
        policy = self.policy
        for name, proc in self.cloud.processes.items():
            if name in self._due:
                continue
            if proc.alive():
                if now - self._since[name] >= policy.stable_after:
                    self._delay.pop(name, None)
                continue
            how = describe_exit(proc.popen.returncode if proc.popen else None)
            exits = [t for t in self._exits.get(name, []) if now - t < policy.window] + [now]
            self._exits[name] = exits
            if len(exits) > policy.max_restarts:
                times = "once" if len(exits) == 1 else f"{len(exits)} times in {policy.window:.0f} s"
                return (f"{name} {how} ({times}); stopping the cloud. Its log, {proc.log}, ends:\n"
                        f"{proc.log_tail()}")
            delay = self._delay.get(name, policy.first_delay)
            self._delay[name] = min(delay * 2, policy.max_delay)
            self._due[name] = now + delay
            self.say(f"{name} {how}; starting it again in {delay:.0f} s (exit {len(exits)} of at "
                     f"most {policy.max_restarts} in {policy.window:.0f} s; log: {proc.log})")
        for name, due in list(self._due.items()):
            if now < due:
                continue
            del self._due[name]
            self._since[name] = self.clock()
            try:
                self.cloud.restart(name)
            except (RuntimeError, TimeoutError, OSError) as e:
                self.cloud.stop_service(name)  # counted as an exit at the next poll
                self.say(f"{name} did not start again: {str(e).splitlines()[0]}")
                continue
            self.restarts += 1
            popen = self.cloud.processes[name].popen
            self.say(f"{name} is serving again (pid {popen.pid if popen else '?'})")
        return None
