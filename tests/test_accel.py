"""KVM where it works, software emulation elsewhere (novalite.virt.accel).

The probe's two outcomes are driven through real QEMU: the "works" path by a
wrapper that swaps KVM for TCG (a guest that reaches its init, which is what a
working KVM shows), and this machine's own KVM, which hangs, by the setup's
verdict. The rest (the kept verdict, its key, the domain type, the option) needs
no guest."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from novalite.client.guest_image import KERNEL_ARGS
from novalite.settings import ConfigError, load_settings
from novalite.virt import accel

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / ".venv" / "guest" / "current"


def _wrapper(tmp_path: Path, body: str) -> str:
    path = tmp_path / "qemu"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture()
def device(tmp_path: Path) -> Path:
    dev = tmp_path / "kvm"
    dev.touch()
    return dev


def test_a_guest_that_reaches_its_init_makes_the_verdict_kvm(tmp_path: Path, device: Path) -> None:
    # real QEMU and the setup's guest, under TCG in place of the KVM asked for
    qemu = _wrapper(tmp_path, 'args=""; for a in "$@"; do [ "$a" = kvm ] && a=tcg; '
                              'args="$args \'$a\'"; done; eval exec /usr/bin/qemu-system-x86_64 $args')
    verdict = accel.probe(IMAGE / "vmlinuz", IMAGE / "initrd.img", KERNEL_ARGS, qemu=qemu,
                          device=device, timeout=30)
    assert verdict.works, verdict
    assert 0 < verdict.seconds < 30 and "reached its init" in verdict.detail


def test_a_guest_that_hangs_or_a_qemu_that_fails_means_software_emulation(
        tmp_path: Path, device: Path) -> None:
    hangs = accel.probe(IMAGE / "vmlinuz", IMAGE / "initrd.img", KERNEL_ARGS,
                        qemu=_wrapper(tmp_path, "exec sleep 30"), device=device, timeout=1.0)
    assert not hangs.works and "did not reach its init in 1 s" in hangs.detail
    fails = accel.probe(IMAGE / "vmlinuz", IMAGE / "initrd.img", KERNEL_ARGS,
                        qemu=_wrapper(tmp_path, "echo 'Could not access KVM kernel module' >&2; "
                                                "exit 1"), device=device, timeout=5)
    assert not fails.works and "status 1" in fails.detail and "KVM kernel module" in fails.detail
    absent = accel.probe(IMAGE / "vmlinuz", IMAGE / "initrd.img", KERNEL_ARGS,
                         device=tmp_path / "no-kvm")
    assert not absent.works and absent.seconds == 0.0


def test_the_setup_found_this_machines_kvm_hangs_and_kept_it() -> None:
    """This machine's /dev/kvm is nested and paravirtual: the setup's probe found
    the guest kernel hangs on it, so real guests run as 'qemu' domains."""
    kept = accel.load()
    assert kept is not None, "the setup keeps a verdict (make setup)"
    assert kept.key == accel.probe_key(IMAGE / "vmlinuz")
    assert not kept.works and accel.domain_type("auto") == "qemu"


def test_the_verdict_is_kept_and_read_back_by_its_key(tmp_path: Path, device: Path) -> None:
    path = tmp_path / "kvm.json"
    assert accel.load(path) is None and accel.domain_type("auto", verdict_path=path) == "qemu"
    accel.save(accel.Verdict(True, "k", "booted", 1.0), path)
    assert accel.load(path) == accel.Verdict(True, "k", "booted", 1.0)
    assert accel.domain_type("auto", verdict_path=path, device=device) == "kvm"
    # the device gone since: not kvm, whatever was kept
    assert accel.domain_type("auto", verdict_path=path, device=tmp_path / "gone") == "qemu"
    assert accel.domain_type("qemu", verdict_path=path, device=device) == "qemu"
    path.write_text("{not json")
    assert accel.load(path) is None  # unreadable: as if none
    with pytest.raises(ValueError, match="no .*gone"):
        accel.domain_type("kvm", device=tmp_path / "gone")
    with pytest.raises(ValueError, match="one of auto, qemu, kvm"):
        accel.domain_type("xen")


def test_the_key_changes_with_the_kernel_and_the_device(tmp_path: Path, device: Path) -> None:
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"a kernel")
    key = accel.probe_key(kernel, device=device)
    assert accel.probe_key(kernel, device=device) == key
    assert accel.probe_key(kernel, device=tmp_path / "none") != key
    kernel.write_bytes(b"another kernel")
    assert accel.probe_key(kernel, device=device) != key


def test_the_command_keeps_a_verdict_and_does_not_boot_again(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "kvm.json"
    key = accel.probe_key(IMAGE / "vmlinuz")
    accel.save(accel.Verdict(False, key, "kept from before", 12.0), path)
    assert accel.main(["probe", str(IMAGE), "--verdict", str(path)]) == 0
    assert "kept from before" in capsys.readouterr().out
    assert json.loads(path.read_text())["detail"] == "kept from before"
    assert accel.main(["probe", str(tmp_path), "--verdict", str(path)]) == 2
    assert "not a guest image directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        accel.main(["probe", str(IMAGE), "--timeout", "0"])


def test_virt_type_is_an_option_with_a_precise_error() -> None:
    assert load_settings(environ={}).compute.virt_type == "auto"
    assert load_settings(environ={}, overrides={"compute.virt_type": "qemu"}).compute.virt_type \
        == "qemu"
    with pytest.raises(ConfigError, match="auto, qemu or kvm"):
        load_settings(environ={}, overrides={"compute.virt_type": "xen"})


def test_the_driver_defines_guests_of_its_domain_type() -> None:
    if os.environ.get("NOVALITE_SKIP_QEMU") == "1":
        pytest.skip("NOVALITE_SKIP_QEMU=1")
    from novalite.virt.driver import LibvirtDriver

    driver = LibvirtDriver("qemu:///system", domain_type="qemu")
    try:
        assert driver.domain_type == "qemu"
        xml = driver._qemu_domain_xml("0" * 8 + "-0000-0000-0000-" + "0" * 12, "x", 1, 64, 0,
                                      None, Path("/tmp/console.log"), None)
        assert xml.startswith("<domain type=\"qemu\">")
        assert ("x86_64", "qemu", "hvm") in driver.host_info().supported_instances
    finally:
        driver.close()
