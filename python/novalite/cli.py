"""The `novalite` command.

    novalite up                      the whole cloud on this machine (one command)
    novalite down                    stop it
    novalite demo                    up, boot a batch of servers, summarise, tear down
    novalite api|conductor|scheduler|compute    one service (several machines)
    novalite server|flavor|host|aggregate|zone|quota|image|group ...   talk to a running cloud
    novalite token create            sign a token with the cloud's secret
    novalite config show             every option in force and where it came from
    novalite placement-demo          the placement core alone, at scale
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

SERVICE_NAMES = ("api", "conductor", "scheduler", "compute")
# in the data directory while `novalite up` runs: its pid, for `novalite down`
UP_PID_FILE = "up.pid"


def _positive(kind: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{kind} must be an integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{kind} must be >= 1, got {value}")
        return value
    return parse


def _non_negative(kind: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{kind} must be an integer, got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{kind} must be >= 0, got {value}")
        return value
    return parse


def _csv(text: str) -> list[str]:
    return [x for x in (p.strip() for p in text.split(",")) if x]


DATA_DIR_HELP = ("where the database, the token secret, logs and guests live (default: "
                 "$NOVALITE_DATA_DIR, else $XDG_DATA_HOME/novalite, i.e. ~/.local/share/novalite; "
                 "the same for every command)")


def _add_settings_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a TOML settings file (default: $NOVALITE_CONFIG)")
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.add_argument("--database-url", help="e.g. postgresql+psycopg://user@host/db (default: SQLite in the data dir)")
    p.add_argument("--listen", help="HOST:PORT to serve on (default from the settings)")


def _settings(args: argparse.Namespace, service: str | None = None) -> Any:
    from novalite.settings import load_settings

    overrides: dict[str, Any] = {
        "data_dir": getattr(args, "data_dir", None),
        "database_url": getattr(args, "database_url", None),
    }
    if service is not None and getattr(args, "listen", None):
        overrides[f"listen.{service}"] = args.listen
    if service == "compute":
        overrides["compute.virt_uri"] = args.virt_uri
        overrides["compute.hosts"] = _csv(args.hosts) if args.hosts else None
        overrides["compute.host_count"] = args.host_count
        overrides["compute.instances_path"] = args.instances_path
    return load_settings(getattr(args, "config", None), overrides=overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="novalite", description="novalite: OpenStack Nova rebuilt lean and fast.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    up = sub.add_parser("up", help="run the whole cloud on this machine",
                        description="Start every service (each its own process) on loopback with SQLite in the "
                                    "data directory and simulated hosts (plus this machine as a real host when "
                                    "libvirtd can run guests), print the endpoints and an admin token, and run "
                                    "until Ctrl-C.")
    up.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    up.add_argument("--database-url")
    up.add_argument("--hosts", type=_non_negative("--hosts"), default=20,
                    help="simulated hosts (default 20; 0: only this machine, as a real host)")
    up.add_argument("--host-vcpus", type=_positive("--host-vcpus"), default=16)
    up.add_argument("--host-memory-mb", type=_positive("--host-memory-mb"), default=65536)
    up.add_argument("--host-disk-gb", type=_positive("--host-disk-gb"), default=1000)
    real = up.add_mutually_exclusive_group()
    real.add_argument("--real-host", dest="real_host", action="store_true", default=None,
                      help="also run this machine as a real QEMU host (default: when libvirtd is reachable)")
    real.add_argument("--no-real-host", dest="real_host", action="store_false")
    up.add_argument("--rest-listen", metavar="HOST:PORT",
                    help="where the REST API (Keystone, Nova, Glance) serves (default: the "
                         "settings' rest.listen, 127.0.0.1:8780; port 0 picks a free one)")
    up.add_argument("--max-restarts", type=_non_negative("--max-restarts"), default=5,
                    help="a service that exits is started again, with a back-off, at most this many "
                         "times in 10 minutes; then every service stops and `up` exits with status 1 "
                         "(default 5; 0: the first exit stops the cloud)")

    down = sub.add_parser("down", help="stop the `novalite up` running on a data directory",
                          description="Ask the `novalite up` of the data directory to stop (as Ctrl-C "
                                      "does) and wait until every service has stopped. The data stays; "
                                      "remove the directory to start afresh.")
    down.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    down.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")

    demo_up = sub.add_parser("demo", help="run the cloud, boot a batch of servers through the API, summarise",
                             description="Start every service on this machine (as `novalite up` does), create a "
                                         "flavor, boot a batch of servers in one request as a member of project "
                                         "'demo' with a progress bar, print where they landed and how fast, then "
                                         "delete them and stop the cloud (unless --keep).")
    demo_up.add_argument("--data-dir", default=None, help="default: ./novalite-demo")
    demo_up.add_argument("--hosts", type=_positive("--hosts"), default=20, help="simulated hosts (default 20)")
    demo_up.add_argument("--servers", type=_positive("--servers"), default=100, help="servers to boot (default 100)")
    demo_up.add_argument("--keep", action="store_true", help="leave the cloud and the servers running")
    demo_up.add_argument("--guest-image", type=Path, default=None,
                         help="a guest image build (scripts/build_guest_image.sh's directory, "
                              "the setup's: .venv/guest): with a real host, two real guests "
                              "boot from it on one network and their consoles are shown")
    real2 = demo_up.add_mutually_exclusive_group()
    real2.add_argument("--real-host", dest="real_host", action="store_true", default=None)
    real2.add_argument("--no-real-host", dest="real_host", action="store_false")

    for name in SERVICE_NAMES:
        p = sub.add_parser(name, help=f"run the {name} service",
                           description=f"Run the {name} service in the foreground until SIGTERM/SIGINT.")
        _add_settings_arguments(p)
        if name == "compute":
            p.add_argument("--virt-uri", help="qemu:///system (real guests) or test:///default (simulated hosts)")
            p.add_argument("--hosts", help="comma-separated host names this agent serves")
            p.add_argument("--host-count", type=_positive("--host-count"), help="simulated hosts (without --hosts)")
            p.add_argument("--instances-path",
                           help="where this agent keeps its guests' disks (default from the settings); "
                                "two agents on one machine, each a host, need one each")
            p.add_argument("--fail-builds-on", type=_csv, default=[],
                           help=argparse.SUPPRESS)  # test hook: builds on these hosts fail
            p.add_argument("--move-step-delay", type=float, default=0.0,
                           help=argparse.SUPPRESS)  # test hook: each step of a move waits first

    config = sub.add_parser("config", help="the settings in force")
    cs = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = cs.add_parser("show", help="every option: its value, where it came from, its help",
                         description="Print every option in force, as a settings file (TOML) with "
                                     "each option's help, environment variable and source (defaults, "
                                     "the file, the environment, a flag) in comments. The secret is "
                                     "never shown.")
    _add_settings_arguments(show)
    show.add_argument("--json", action="store_true", help="print JSON: a list of options")

    token = sub.add_parser("token", help="tokens")
    ts = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    tc = ts.add_parser("create", help="sign a token with the cloud's secret (needs read access to it)")
    _add_settings_arguments(tc)
    tc.add_argument("--project", required=True)
    tc.add_argument("--user", required=True)
    tc.add_argument("--roles", type=_csv, default=["member"], help="comma-separated: admin, member, service")
    tc.add_argument("--ttl", type=_positive("--ttl"), default=3600, help="seconds (default 3600)")

    from novalite.client.commands import register

    register(sub, _positive)

    demo = sub.add_parser(
        "placement-demo", help="place thousands of servers on a simulated cloud with the placement core",
        description="Build a table of simulated hosts, place servers of mixed flavors (some in server groups) "
                    "with Nova's filters and weighers, and print a summary: hosts used, per-filter "
                    "rejections, decisions per second.")
    demo.add_argument("--hosts", type=_positive("--hosts"), default=100_000, help="simulated hosts (default 100000)")
    demo.add_argument("--servers", type=_positive("--servers"), default=10_000, help="servers to place (default 10000)")
    demo.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    demo.add_argument("--no-progress", action="store_true", help="do not draw a progress bar")
    return parser


def run_service(name: str, args: argparse.Namespace) -> int:
    settings = _settings(args, name)
    if name == "api":
        from novalite.api import service as api_service

        api_service.main(settings)
    elif name == "conductor":
        from novalite.conductor import service as conductor_service

        conductor_service.main(settings)
    elif name == "scheduler":
        from novalite.scheduler import service as scheduler_service

        scheduler_service.main(settings)
    else:
        from novalite.compute import service as compute_service

        compute_service.main(settings, fail_builds_on=frozenset(args.fail_builds_on),
                             move_step_delay=args.move_step_delay)
    return 0


def _up_pid(data_dir: Path) -> int | None:
    """The pid of the `novalite up` running on ``data_dir``, if one runs."""
    try:
        pid = int((data_dir / UP_PID_FILE).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def run_up(args: argparse.Namespace) -> int:
    from novalite.cloud import LocalCloud, RestartPolicy, Supervisor, libvirtd_reachable

    settings = _settings(args)
    data_dir = settings.data_dir
    running = _up_pid(data_dir)
    if running is not None:
        print(f"error: novalite up already runs on {data_dir} (pid {running}); stop it with "
              f"`novalite down --data-dir {data_dir}`, or pass another --data-dir", file=sys.stderr)
        return 1
    real = libvirtd_reachable() if args.real_host is None else args.real_host
    if args.hosts == 0 and not real:
        print("error: --hosts 0 leaves no host: libvirtd is not reachable here (or --no-real-host)",
              file=sys.stderr)
        return 1
    cloud = LocalCloud(data_dir, hosts=args.hosts, host_vcpus=args.host_vcpus,
                       host_memory_mb=args.host_memory_mb, host_disk_gb=args.host_disk_gb,
                       database_url=args.database_url, real_host=real,
                       rest_listen=args.rest_listen or settings.rest.listen)
    pid_file = cloud.data_dir / UP_PID_FILE
    pid_file.write_text(f"{os.getpid()}\n")
    print(f"starting novalite in {cloud.data_dir} ({args.hosts} simulated hosts"
          f"{' + this machine as a real QEMU host' if real else ''})", flush=True)
    stop = {"now": False}
    # Ctrl-C and SIGTERM ask to stop, neither raises: a KeyboardInterrupt in the
    # middle of starting a service would leave it running unknown to us, in a session
    # of its own that Ctrl-C does not reach. A start in progress finishes first.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.update(now=True))
    try:
        try:
            cloud.start()
        except (RuntimeError, TimeoutError) as e:
            print(f"error: {e}", file=sys.stderr)
            cloud.stop()
            return 1
        if stop["now"]:
            print("interrupted while starting; stopping...", flush=True)
            cloud.stop()
            return 0
        token = cloud.admin_token()
        env_file = cloud.data_dir / "env"
        env_file.write_text(f"export NOVALITE_API={cloud.endpoint('api')}\nexport NOVALITE_TOKEN={token}\n")
        os.chmod(env_file, 0o600)
        print("\nnovalite is up:")
        for s in [s for s in ("api", "conductor", "scheduler", "compute", "compute_real") if s in cloud.processes]:
            print(f"  {s:<13} {cloud.endpoint(s)}   log: {cloud.data_dir / 'logs' / (s + '.log')}")
        print(f"  {'REST API':<13} {cloud.rest_url}   (Keystone {cloud.auth_url}, Nova, Glance)")
        print(f"\nthe client commands find the API and an admin token in {env_file}; for other tools:\n"
              f"  source {env_file}    # NOVALITE_API={cloud.endpoint('api')}, NOVALITE_TOKEN=...\n"
              f"the OpenStack clients find the cloud 'novalite' (its admin) in {cloud.clouds_yaml}:\n"
              f"  OS_CLIENT_CONFIG_FILE={cloud.clouds_yaml} openstack --os-cloud novalite server list\n\n"
              f"A service that exits is started again (at most {args.max_restarts} times in 10 minutes).\n"
              "Ctrl-C (or `novalite down`) stops every service.", flush=True)
        supervisor = Supervisor(cloud, RestartPolicy(max_restarts=args.max_restarts),
                                say=lambda line: print(f"novalite up: {line}", file=sys.stderr, flush=True))
        while not stop["now"]:
            failure = supervisor.poll()
            if failure is not None:
                print(f"error: {failure}", file=sys.stderr, flush=True)
                cloud.stop()
                return 1
            time.sleep(0.2)
        print("stopping...", flush=True)
        cloud.stop()
        return 0
    finally:
        if _up_pid(cloud.data_dir) == os.getpid():
            pid_file.unlink(missing_ok=True)


def run_down(args: argparse.Namespace) -> int:
    data_dir = _settings(args).data_dir
    pid = _up_pid(data_dir)
    if pid is None:
        print(f"novalite up is not running on {data_dir}", file=sys.stderr)
        return 1
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while _up_pid(data_dir) == pid:
        if time.monotonic() > deadline:
            print(f"error: novalite up (pid {pid}) did not stop within {args.timeout:.0f} s", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print(f"stopped novalite up (pid {pid}) on {data_dir}")
    return 0


def _toml(value: object) -> str:
    """A value as a TOML literal (strings and paths quoted, lists, inline tables)."""
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def run_config_show(args: argparse.Namespace) -> int:
    import json

    from novalite.settings import explain_settings

    overrides = {"data_dir": args.data_dir, "database_url": args.database_url}
    options = explain_settings(args.config, overrides=overrides)
    if args.json:
        print(json.dumps([{**vars(o), "default": o.default if o.key != "secret" else None,
                           "value": o.value} for o in options], default=str, indent=2))
        return 0
    print("# the settings in force; each option's help, environment variable and source in comments")
    section = ""
    for o in options:
        head, dot, name = o.key.rpartition(".")
        if head != section and dot:
            section = head
            print(f"\n[{section}]")
        print(f"\n# {o.help}" if o.help else "")
        print(f"# type {o.type}; environment variable {o.env}")
        if o.key == "secret":
            print(f"# secret: {o.value}, from {o.source}")
        elif o.value is None:
            print(f"# {name or o.key} is unset    # from {o.source}")
        else:
            print(f"{name or o.key} = {_toml(o.value)}    # from {o.source}")
    return 0


def run_token(args: argparse.Namespace) -> int:
    from novalite.auth.tokens import TokenSigner

    settings = _settings(args)
    print(TokenSigner(settings.secret).issue(args.project, args.user, args.roles, args.ttl))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from novalite.errors import NovaliteError
    from novalite.settings import ConfigError

    try:
        if args.command == "placement-demo":
            from novalite import placement_demo

            result = placement_demo.run(args.hosts, args.servers, args.seed, progress=not args.no_progress)
            placement_demo.report(result)
            return 0 if result.servers_placed == result.servers_requested else 1
        if args.command == "up":
            return run_up(args)
        if args.command == "down":
            return run_down(args)
        if args.command == "demo":
            from novalite import demo

            return demo.run(Path(args.data_dir or "novalite-demo"), args.hosts, args.servers,
                            args.real_host, args.keep, args.guest_image)
        if args.command in SERVICE_NAMES:
            return run_service(args.command, args)
        if args.command == "token":
            return run_token(args)
        if args.command == "config":
            return run_config_show(args)
        from novalite.client.commands import run

        return run(args)
    except (ConfigError, NovaliteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
