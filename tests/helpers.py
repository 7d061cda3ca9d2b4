"""What several test modules share: the `novalite` command as a subprocess, the
processes a `novalite up` runs, a LocalCloud's API and database, the backends the
end-to-end clouds run on, and how a failed call is looked at."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

import grpc
import grpc.aio
import pytest

from novalite.cloud import LocalCloud
from novalite.db.database import Database
from novalite.placement import errors as placement_errors
from novalite.rpc.novalite.compute.v1 import (
    flavors_pb2_grpc,
    hosts_pb2_grpc,
    quotas_pb2_grpc,
    server_groups_pb2_grpc,
    servers_pb2,
    servers_pb2_grpc,
)
from novalite.services.client import sync_channel

NOVALITE = [sys.executable, "-m", "novalite.cli"]
PG_URL = os.environ.get("NOVALITE_TEST_POSTGRES_URL")
# What a LocalCloud of the end-to-end tests runs on: SQLite, and PostgreSQL when
# NOVALITE_TEST_POSTGRES_URL names a server.
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any NOVALITE_* variable (the test's own settings must
    not leak into a cloud it starts), plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("NOVALITE_")}, **extra}


def processes_with(text: str) -> list[int]:
    """Pids of live processes whose command line mentions ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if text in cmdline and stat.rsplit(")", 1)[1].split()[0] != "Z":
            found.append(int(entry.name))
    return found


def run_cli(*args: str, env: Mapping[str, str],
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`novalite ARGS...`, run to its end: its status, stdout and stderr."""
    return subprocess.run([*NOVALITE, *args], capture_output=True, text=True, env=dict(env),
                          timeout=timeout, check=False)


def cloud_env(cloud: LocalCloud, token: str | None = None) -> dict[str, str]:
    """The environment of a client command of ``cloud``: its API, ``token`` (an
    admin's by default), and no other NOVALITE_* variable."""
    return clean_env(NOVALITE_API=cloud.endpoint("api"), NOVALITE_TOKEN=token or cloud.admin_token())


def start_up(*args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """`novalite up ARGS...` in the background, its stdout and stderr in one pipe."""
    return subprocess.Popen([*NOVALITE, "up", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env=dict(env) if env is not None else clean_env())


def wait_until(check: Callable[[], bool], timeout: float, what: str,
               proc: subprocess.Popen[str] | None = None) -> None:
    """Poll ``check`` until it holds; fail saying ``what`` (and what ``proc`` printed,
    should it have exited) otherwise."""
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"novalite up exited ({proc.returncode}) before {what}:\n"
                                 f"{proc.communicate()[0]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout:.0f} s")
        time.sleep(0.1)


def stop_up(proc: subprocess.Popen[str], sig: int) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"novalite up did not stop on signal {sig}:\n{out}") from None
    return proc.returncode, out


def reap_up(proc: subprocess.Popen[str], data_dir: Path) -> None:
    """Whatever happened, leave nothing of this `up` running."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    for pid in processes_with(str(data_dir)):  # services it left behind
        os.kill(pid, signal.SIGKILL)


# ---- a LocalCloud ------------------------------------------------------------------------

def postgres_database() -> str:
    """A fresh database on the test server, for one cloud."""
    import psycopg

    name = f"nv_{uuid.uuid4().hex[:12]}"
    assert PG_URL is not None
    with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def cloud_database(cloud: LocalCloud) -> Database:
    """The cloud's database, opened for the test's own checks."""
    return Database(cloud.database_url or f"sqlite:///{cloud.data_dir / 'novalite.db'}")


class Api:
    """Stubs over one channel with one token."""

    def __init__(self, cloud: LocalCloud, token: str) -> None:
        self.channel = sync_channel(cloud.endpoint("api"), token)
        self.servers = servers_pb2_grpc.ServersStub(self.channel)
        self.flavors = flavors_pb2_grpc.FlavorsStub(self.channel)
        self.hosts = hosts_pb2_grpc.HostsStub(self.channel)
        self.quotas = quotas_pb2_grpc.QuotasStub(self.channel)
        self.groups = server_groups_pb2_grpc.ServerGroupsStub(self.channel)

    def wait(self, ids: list[str], statuses: set[str], timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            for sid in ids:
                try:
                    last[sid] = self.servers.GetServer(servers_pb2.GetServerRequest(id=sid))
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                    last[sid] = None
            if all(s is not None and s.status in statuses for s in last.values()):
                return last
            time.sleep(0.2)
        states = defaultdict(int)
        for s in last.values():
            states[s.status if s is not None else "GONE"] += 1
        raise AssertionError(f"timed out waiting for {statuses}: {dict(states)}")


# ---- failures ----------------------------------------------------------------------------

async def failure(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    try:
        await call
    except grpc.aio.AioRpcError as e:
        return e
    raise AssertionError("the call succeeded")


def code_of(fn: Callable[[], Any]) -> grpc.StatusCode:
    """The status code the blocking call ``fn()`` fails with."""
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code()


def outcome(fn: Callable[[], Any]) -> tuple[Any, ...]:
    """A placement result, or the error in a comparable form."""
    try:
        return ("ok", fn())
    except placement_errors.NoValidHost as e:
        return ("NoValidHost", e.rejections, e.instance_index)
    except placement_errors.PlacementError as e:
        return (type(e).__name__,)
