"""Nova's enum fields the scheduler matches images and hosts on
(nova/objects/fields.py: Architecture, HVType, VMMode): the canonical names, and
the canonicalisation Nova applies to what an image or a host says."""

from __future__ import annotations

ARCHITECTURES = frozenset((
    "alpha", "armv6", "armv7l", "armv7b", "aarch64", "cris", "i686", "ia64", "lm32",
    "m68k", "microblaze", "microblazeel", "mips", "mipsel", "mips64", "mips64el",
    "openrisc", "parisc", "parisc64", "ppc", "ppcle", "ppc64", "ppc64le", "ppcemb",
    "s390", "s390x", "sh4", "sh4eb", "sparc", "sparc64", "unicore32", "x86_64",
    "xtensa", "xtensaeb",
))
HV_TYPES = frozenset((
    "baremetal", "bhyve", "docker", "fake", "hyperv", "ironic", "kqemu", "kvm", "lxc",
    "lxd", "openvz", "parallels", "phyp", "qemu", "test", "uml", "vbox", "vz",
    "vmware", "xen", "zvm", "prsm",
))
VM_MODES = frozenset(("hvm", "xen", "uml", "exe"))



def canonicalize_arch(name: str | None) -> str | None:
    if name is None:
        return None
    n = name.lower()
    if n in ("i386", "i486", "i586", "x86_32", "x86_32p"):
        n = "i686"
    if n == "amd64":
        n = "x86_64"
    return n if n in ARCHITECTURES else None


def canonicalize_hv_type(name: str | None) -> str | None:
    if name is None:
        return None
    n = name.lower()
    if n == "xapi":
        n = "xen"
    return n if n in HV_TYPES else None


def canonicalize_vm_mode(name: str | None) -> str | None:
    if name is None:
        return None
    n = name.lower()
    n = {"pv": "xen", "hv": "hvm", "baremetal": "hvm"}.get(n, n)
    return n if n in VM_MODES else None
