"""The setup's package step on today's image, replayed: the image ships qemu-utils 10
from bookworm-backports and no qemu-system-x86, and Debian 12's qemu-system-x86 7.2
cannot be installed beside it. The replay gives apt and dpkg a package database
(DPKG_ADMINDIR) that is this machine's with every QEMU and libvirt package taken out
and the image's own qemu-utils 10 put back (its stanza, copied from a fresh machine,
is in tests/fixtures/dpkg), then runs `scripts/setup_libvirt.sh --dry-run`: apt's own
resolver plans the install against the machine's real package lists, and nothing
changes. Needs root and apt (CI has both); NOVALITE_SKIP_QEMU=1 skips it with the
other tests of real QEMU."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

import qemu

qemu.skip_if_not_wanted()

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "setup_libvirt.sh"
IMAGE_QEMU_UTILS = (Path(__file__).parent / "fixtures" / "dpkg" / "qemu-utils-10.0.2-bpo12.status").read_text()
IMAGE_VERSION = "1:10.0.2+ds-2+deb13u1~bpo12+1"
# what the setup installs
PACKAGES = ["libvirt-dev", "pkg-config", "libvirt-daemon", "libvirt-daemon-driver-qemu",
            "libvirt-clients", "qemu-system-x86", "qemu-utils"]

if os.geteuid() != 0:
    pytest.fail("the setup's tests replay apt as root (the setup itself runs as root); "
                "run them as root, or set NOVALITE_SKIP_QEMU=1", pytrace=False)


def stanzas(status: str) -> list[str]:
    return [s for s in status.split("\n\n") if s.strip()]


def field(stanza: str, name: str) -> str | None:
    m = re.search(rf"^{name}: (\S+)", stanza, re.M)
    return m.group(1) if m else None


def source(stanza: str) -> str | None:
    return field(stanza, "Source") or field(stanza, "Package")


def image_like(tmp_path: Path, *extra: str) -> dict[str, str]:
    """A package database like a fresh image's: this machine's, without QEMU and
    libvirt, with the image's qemu-utils 10 (and ``extra`` stanzas). The environment
    that points dpkg and apt at it."""
    live = Path("/var/lib/dpkg/status").read_text()
    kept = [s for s in stanzas(live) if source(s) not in ("qemu", "libvirt")]
    admin = tmp_path / "dpkg"
    admin.mkdir()
    (admin / "status").write_text("\n\n".join([*kept, IMAGE_QEMU_UTILS.strip(), *extra]) + "\n")
    return {**os.environ, "DPKG_ADMINDIR": str(admin)}


def dry_run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), "--dry-run"], env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_the_image_reproduces_the_broken_install(tmp_path: Path) -> None:
    """The replay is faithful: a plain install of the packages, as the setup did
    before, fails on it as it failed on a fresh machine."""
    env = image_like(tmp_path)
    proc = subprocess.run(
        ["apt-get", "-s", "-o", f"Dir::State::status={env['DPKG_ADMINDIR']}/status",
         "install", "--no-install-recommends", *PACKAGES],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0
    assert "held broken packages" in proc.stderr
    assert "qemu-utils : Breaks: qemu-system-common" in proc.stdout


def test_setup_brings_the_images_qemu_utils_to_qemu_system_x86s_release(tmp_path: Path) -> None:
    proc = dry_run(image_like(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    target = re.search(r"qemu-system-x86 (\S+): it goes to", out)
    assert target, out
    release = target.group(1)
    assert release.startswith("1:7.2+"), out
    assert f"qemu-utils {IMAGE_VERSION} is of another QEMU release" in out
    # apt's plan: the downgrade of qemu-utils, qemu-system-x86 and libvirt installed
    assert re.search(rf"Inst qemu-utils \[{re.escape(IMAGE_VERSION)}\] \({re.escape(release)} ", out), out
    assert re.search(rf"Inst qemu-system-x86 \({re.escape(release)} ", out), out
    assert "Inst libvirt-daemon-driver-qemu " in out
    assert "dry run: nothing changed" in out
    # nothing changed on the machine itself
    live = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "qemu-utils"], capture_output=True,
                          text=True, check=False, env={k: v for k, v in os.environ.items() if k != "DPKG_ADMINDIR"})
    assert live.stdout != IMAGE_VERSION


def test_every_qemu_package_of_another_release_is_brought_along(tmp_path: Path) -> None:
    """Not only qemu-utils: any package of QEMU's source at another release (here
    qemu-block-extra 10, which qemu-utils 10 recommends) is pinned to the same one."""
    block_extra = IMAGE_QEMU_UTILS.strip().replace("Package: qemu-utils", "Package: qemu-block-extra", 1)
    proc = dry_run(image_like(tmp_path, block_extra))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"qemu-block-extra {IMAGE_VERSION} is of another QEMU release" in proc.stdout
    assert re.search(r"Inst qemu-block-extra \[" + re.escape(IMAGE_VERSION) + r"\] \(1:7\.2\+", proc.stdout), \
        proc.stdout


def test_a_qemu_package_with_no_matching_release_is_named_with_the_fix(tmp_path: Path) -> None:
    orphan = IMAGE_QEMU_UTILS.strip().replace("Package: qemu-utils", "Package: qemu-system-novalite-test", 1)
    proc = dry_run(image_like(tmp_path, orphan))
    assert proc.returncode == 1
    assert "qemu-system-novalite-test" in proc.stderr
    assert "apt-get remove qemu-system-novalite-test" in proc.stderr


def test_this_machine_is_set_up_at_one_qemu_release() -> None:
    """After the setup (CI runs it first), a re-run has nothing to install, and every
    installed QEMU package is of qemu-system-x86's release."""
    env = {k: v for k, v in os.environ.items() if k != "DPKG_ADMINDIR"}
    proc = dry_run(env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "packages already installed" in proc.stdout
    rows = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Version} ${source:Package} ${db:Status-Status}\n"],
                          capture_output=True, text=True, check=True, env=env).stdout.split("\n")
    qemu_pkgs = {r.split()[0]: r.split()[1] for r in rows if r and r.split()[2] == "qemu" and r.split()[3] == "installed"}
    assert {"qemu-system-x86", "qemu-utils"} <= set(qemu_pkgs)
    releases = {re.sub(r"\+b\d+$", "", v) for v in qemu_pkgs.values()}
    assert len(releases) == 1, qemu_pkgs


def test_bad_arguments_are_refused() -> None:
    proc = subprocess.run(["bash", str(SCRIPT), "--frobnicate"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "unknown argument '--frobnicate'" in proc.stderr
