"""`novalite up` as a newcomer meets it: one data directory for every command, a
crashed service started again (or the cloud stopped, non-zero, naming it), and
`novalite down`. Simulated hosts only (the real-QEMU host is in test_e2e_qemu)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from helpers import clean_env, processes_with, reap_up, start_up, wait_until
from helpers import run_cli as novalite

# the REST API on a free port: other clouds (other test runs) may hold the default
UP = ("--no-real-host", "--hosts", "2", "--host-memory-mb", "8192", "--rest-listen",
      "127.0.0.1:0")


def serving(data_dir: Path, service: str) -> bool:
    """Whether the service answers its health check, at the address `up` gave it."""
    import tomllib

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    address = tomllib.loads((data_dir / "novalite.toml").read_text())["listen"][service]
    try:
        with grpc.insecure_channel(address) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def service_pid(data_dir: Path, service: str) -> int:
    """The pid of one service of the `up` on ``data_dir`` ("compute", "api", ...)."""
    [pid] = [p for p in processes_with(f"novalite.cli {service} --config {data_dir}/")]
    return pid


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home of its own: the default data directory is ~/.local/share/novalite."""
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


@pytest.fixture
def cloud_up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, dict[str, str]]]:
    data_dir = tmp_path / "data"
    env = clean_env(NOVALITE_DATA_DIR=str(data_dir))
    proc = start_up(*UP, "--max-restarts", "2", env=env)
    try:
        wait_until(lambda: (data_dir / "env").exists(), 90, "up", proc)
        yield proc, data_dir, env
    finally:
        reap_up(proc, data_dir)


def test_every_command_finds_the_same_data_directory(home: Path) -> None:
    """No --data-dir anywhere: `up`, `token create` and the client commands all use
    ~/.local/share/novalite, so the token `token create` signs is accepted."""
    env = clean_env(HOME=str(home))
    env.pop("XDG_DATA_HOME", None)
    data_dir = home / ".local" / "share" / "novalite"
    proc = start_up(*UP, env=env)
    try:
        wait_until(lambda: (data_dir / "env").exists(), 90, "up", proc)
        assert (data_dir / "secret.key").exists() and (data_dir / "novalite.db").exists()
        # the client commands find the API and an admin token without being told
        listed = novalite("host", "list", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        assert {h["name"] for h in json.loads(listed.stdout)} == {"compute-001", "compute-002"}
        token = novalite("token", "create", "--project", "p", "--user", "u", env=env)
        assert token.returncode == 0, token.stderr
        mine = novalite("server", "list", "--json", "--token", token.stdout.strip(), env=env)
        assert mine.returncode == 0, mine.stderr
        assert json.loads(mine.stdout) == []
        # a second `up` on the same directory is refused, saying how to stop the first
        second = novalite("up", *UP, env=env)
        assert second.returncode == 1 and "novalite down" in second.stderr
        down = novalite("down", env=env, timeout=120)
        assert down.returncode == 0, down.stderr
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert processes_with(str(data_dir)) == []
        assert not (data_dir / "up.pid").exists()
        again = novalite("down", env=env)
        assert again.returncode == 1 and "not running" in again.stderr
    finally:
        reap_up(proc, data_dir)


def test_a_service_killed_is_started_again_and_the_cloud_serves(
        cloud_up: tuple[subprocess.Popen[str], Path, dict[str, str]]) -> None:
    proc, data_dir, env = cloud_up
    flavor = novalite("flavor", "create", "m1.tiny", "--vcpus", "1", "--ram", "64", env=env)
    assert flavor.returncode == 0, flavor.stderr
    before = service_pid(data_dir, "compute")
    os.kill(before, signal.SIGKILL)
    wait_until(lambda: serving(data_dir, "compute") and service_pid(data_dir, "compute") != before,
               60, "compute serving again", proc)
    # a create while the scheduler is down waits for it, as through Nova's queue
    os.kill(service_pid(data_dir, "scheduler"), signal.SIGKILL)
    created = novalite("server", "create", "vm", "--flavor", "m1.tiny", "--count", "2", "--wait",
                       "--json", env=env, timeout=120)
    assert created.returncode == 0, created.stdout + created.stderr
    assert {s["status"] for s in json.loads(created.stdout)} == {"ACTIVE"}
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "compute was killed by SIGKILL; starting it again in 1 s" in out
    assert "scheduler was killed by SIGKILL; starting it again" in out
    assert "compute is serving again" in out and "Traceback" not in out


def test_past_max_restarts_up_stops_everything_and_exits_non_zero(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = clean_env(NOVALITE_DATA_DIR=str(data_dir))
    proc = start_up(*UP, "--max-restarts", "0", env=env)
    try:
        wait_until(lambda: (data_dir / "env").exists(), 90, "up", proc)
        os.kill(service_pid(data_dir, "compute"), signal.SIGKILL)
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode == 1, out
        assert "error: compute was killed by SIGKILL (once); stopping the cloud" in out
        assert str(data_dir / "logs" / "compute.log") in out
        assert processes_with(str(data_dir)) == []
    finally:
        reap_up(proc, data_dir)


def test_no_service_warns_while_the_cloud_starts(
        cloud_up: tuple[subprocess.Popen[str], Path, dict[str, str]]) -> None:
    """Each service starts after what it reports to, or says calmly that it is not
    up yet: a newcomer's first look at the logs finds no warning."""
    _, data_dir, _ = cloud_up
    time.sleep(1.0)  # the agents' first reports
    for log in sorted((data_dir / "logs").glob("*.log")):
        levels = [json.loads(line).get("level") for line in log.read_text().splitlines() if line.startswith("{")]
        assert levels, log
        assert not {"WARNING", "ERROR", "CRITICAL"} & set(levels), (log, log.read_text()[-2000:])


def test_the_openstack_command_finds_the_cloud_in_its_clouds_yaml(
        cloud_up: tuple[subprocess.Popen[str], Path, dict[str, str]]) -> None:
    """`OS_CLIENT_CONFIG_FILE=<data-dir>/clouds.yaml openstack --os-cloud novalite ...`
    works with nothing else set, as the README says."""
    proc, data_dir, env = cloud_up
    clouds = data_dir / "clouds.yaml"
    openstack_env = {k: v for k, v in clean_env(OS_CLIENT_CONFIG_FILE=str(clouds)).items()
                     if not k.startswith("OS_") or k == "OS_CLIENT_CONFIG_FILE"}
    command = [str(Path(sys.executable).with_name("openstack")), "--os-cloud", "novalite"]
    for args in (["server", "list", "-f", "json"], ["hypervisor", "list", "-f", "json"]):
        done = subprocess.run([*command, *args], env=openstack_env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
    assert {h["Hypervisor Hostname"] for h in json.loads(done.stdout)} == {
        "compute-001", "compute-002"}
