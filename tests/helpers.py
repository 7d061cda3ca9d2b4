"""What several test modules share: the `novalite` command as a subprocess, and the
processes a `novalite up` runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Mapping

NOVALITE = [sys.executable, "-m", "novalite.cli"]


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
