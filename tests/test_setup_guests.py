"""The setup's parts for real guests (issue 13): scripts/setup_network.sh (the
networks: a bridge and a dnsmasq each) and scripts/build_guest_image.sh (the image
from Debian's packages). On a machine the setup ran on, a re-run of each only
checks, quickly, and says so; what they made is what a guest needs."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NETWORKS = ROOT / "scripts" / "setup_network.sh"
BUILD = ROOT / "scripts" / "build_guest_image.sh"
NETWORKS_PATH = Path("/var/lib/novalite/networks")


def run(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run(list(args), cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    return proc, time.monotonic() - started


def test_a_rerun_of_the_network_setup_only_checks() -> None:
    proc, took = run(str(NETWORKS))
    assert proc.returncode == 0, proc.stderr
    assert "packages already installed" in proc.stdout
    for name, bridge in (("private", "novalite0"), ("second", "novalite1")):
        assert f"network {name} already set up (bridge {bridge}" in proc.stdout, proc.stdout
        description = json.loads((NETWORKS_PATH / name / "network.json").read_text())
        assert description["bridge"] == bridge
        # the host's address on the bridge, and no forwarding off it
        addr = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", bridge],
                              capture_output=True, text=True, check=True).stdout
        assert f"{description['gateway']}/{description['cidr'].split('/')[1]}" in addr
        assert Path(f"/proc/sys/net/ipv4/conf/{bridge}/forwarding").read_text().strip() == "0"
        pid = int(Path(description["pid_file"]).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"--dhcp-hostsdir=" + description["hosts_dir"].encode() in cmdline
    assert took < 5, f"a re-run took {took:.1f} s"


def test_a_rerun_of_the_image_build_only_checks() -> None:
    proc, took = run(str(BUILD))
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stdout, proc.stdout
    current = ROOT / ".venv" / "guest" / "current"
    manifest = json.loads((current / "manifest.json").read_text())
    assert manifest["kernel_package"].startswith("linux-image-")
    for name, entry in manifest["files"].items():
        assert (current / name).stat().st_size == entry["size"], name
    assert "virtio_net.ko" in manifest["modules"] and "isofs.ko" in manifest["modules"]
    assert took < 5, f"a re-run took {took:.1f} s"


def test_bad_arguments_are_refused() -> None:
    proc, _ = run(str(NETWORKS), "--bogus")
    assert proc.returncode != 0 and "unknown argument '--bogus'" in proc.stderr
    proc, _ = run(str(NETWORKS), "--help")
    assert proc.returncode == 0 and "--down" in proc.stdout
