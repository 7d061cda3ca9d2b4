"""What the tests with real QEMU guests share: libvirt's URI, the guests' size, the
check that libvirtd answers (a test FAILS without it, saying how to set it up;
NOVALITE_SKIP_QEMU=1 skips deliberately, which CI never does; the ``libvirtd``
fixture makes it for every test of a module that imports it) and virsh."""

from __future__ import annotations

import os
import subprocess

import pytest

from novalite.virt import HypervisorUnavailable, LibvirtDriver, domain_name
from novalite.virt import driver as driver_mod

URI = "qemu:///system"
GUEST_MB = 64


def skip_if_not_wanted() -> None:
    """Call at module level: NOVALITE_SKIP_QEMU=1 skips the whole module."""
    if os.environ.get("NOVALITE_SKIP_QEMU") == "1":
        pytest.skip("NOVALITE_SKIP_QEMU=1: real QEMU guests not tested", allow_module_level=True)


def setup_failure(reason: str) -> None:
    pytest.fail(
        f"real QEMU guests cannot be tested: {reason}\n"
        "Run `sudo PYTHON=<this python> scripts/setup_libvirt.sh` (packages, qemu.conf, "
        "virtlogd, libvirtd, libvirt-python), or set NOVALITE_SKIP_QEMU=1 to skip "
        "these tests deliberately.",
        pytrace=False,
    )


def require_libvirtd() -> None:
    """Fail (not skip) unless libvirt-python imports and libvirtd answers."""
    if driver_mod._libvirt is None:
        setup_failure("libvirt-python is not importable from this Python")
    try:
        with LibvirtDriver(URI):
            pass
    except HypervisorUnavailable as exc:
        setup_failure(str(exc))


@pytest.fixture(scope="module", autouse=True)
def libvirtd() -> None:
    require_libvirtd()


def virsh(*args: str, check: bool = True) -> str:
    """virsh's output; with ``check`` a failure fails the test, without it gives ""."""
    proc = subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True,
                          check=False, timeout=60)
    if check:
        assert proc.returncode == 0, f"virsh {' '.join(args)}: {proc.stderr.strip()}"
    return proc.stdout if proc.returncode == 0 else ""


def domstate(instance_id: str) -> str:
    return virsh("domstate", domain_name(instance_id)).strip()


def domid(instance_id: str) -> str:
    """The id of the guest's QEMU process ("-" while it does not run)."""
    return virsh("domid", domain_name(instance_id)).strip()


def all_domains() -> list[str]:
    return virsh("list", "--all", "--name").split()
