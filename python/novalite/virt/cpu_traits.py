"""The CPU traits a host reports: libvirt's CPU feature names as Placement's
standard HW_CPU_X86_* traits, as Nova's libvirt driver maps them
(nova/virt/libvirt/utils.py CPU_TRAITS_MAPPING, written out here from the
os-traits names it uses).

A flavor's ``trait:HW_CPU_X86_AVX2=required`` lands only on hosts that report the
trait. The compute agent owns every trait with the prefix ``CPU_TRAIT_PREFIX``:
it sets them from this mapping (real hosts) or from its settings (simulated
hosts) and drops the ones the host no longer has; other traits are the admins'.
The prefix's home is objects/records.py (the database and the API enforce it).
"""

from __future__ import annotations

from typing import Iterable

from novalite.objects.records import CPU_TRAIT_PREFIX as CPU_TRAIT_PREFIX

# libvirt feature name -> the traits it stands for.
CPU_TRAITS_MAPPING: dict[str, tuple[str, ...]] = {
    "3dnow": ("HW_CPU_X86_3DNOW",),
    "abm": ("HW_CPU_X86_ABM",),
    "aes": ("HW_CPU_X86_AESNI",),
    "amx-bf16": ("HW_CPU_X86_AMXBF16",),
    "amx-int8": ("HW_CPU_X86_AMXINT8",),
    "amx-tile": ("HW_CPU_X86_AMXTILE",),
    "avx": ("HW_CPU_X86_AVX",),
    "avx2": ("HW_CPU_X86_AVX2",),
    "avx512bw": ("HW_CPU_X86_AVX512BW",),
    "avx512cd": ("HW_CPU_X86_AVX512CD",),
    "avx512dq": ("HW_CPU_X86_AVX512DQ",),
    "avx512er": ("HW_CPU_X86_AVX512ER",),
    "avx512f": ("HW_CPU_X86_AVX512F",),
    "avx512pf": ("HW_CPU_X86_AVX512PF",),
    "avx512vl": ("HW_CPU_X86_AVX512VL",),
    "avx512vnni": ("HW_CPU_X86_AVX512VNNI",),
    "avx512vbmi": ("HW_CPU_X86_AVX512VBMI",),
    "avx512ifma": ("HW_CPU_X86_AVX512IFMA",),
    "avx512vbmi2": ("HW_CPU_X86_AVX512VBMI2",),
    "avx512bitalg": ("HW_CPU_X86_AVX512BITALG",),
    "vaes": ("HW_CPU_X86_AVX512VAES",),
    "gfni": ("HW_CPU_X86_AVX512GFNI",),
    "vpclmulqdq": ("HW_CPU_X86_AVX512VPCLMULQDQ",),
    "avx512-vpopcntdq": ("HW_CPU_X86_AVX512VPOPCNTDQ",),
    "bmi1": ("HW_CPU_X86_BMI",),
    "bmi2": ("HW_CPU_X86_BMI2",),
    "pclmuldq": ("HW_CPU_X86_CLMUL",),
    "f16c": ("HW_CPU_X86_F16C",),
    "fma": ("HW_CPU_X86_FMA3",),
    "fma4": ("HW_CPU_X86_FMA4",),
    "mmx": ("HW_CPU_X86_MMX",),
    "mpx": ("HW_CPU_X86_MPX",),
    "sha-ni": ("HW_CPU_X86_SHA",),
    "sse": ("HW_CPU_X86_SSE",),
    "sse2": ("HW_CPU_X86_SSE2",),
    "sse3": ("HW_CPU_X86_SSE3",),
    # libvirt's name for SSE3 ("Prescott New Instructions"), the one its CPU map
    # reports: without it no host would have the trait
    "pni": ("HW_CPU_X86_SSE3",),
    "sse4.1": ("HW_CPU_X86_SSE41",),
    "sse4.2": ("HW_CPU_X86_SSE42",),
    "sse4a": ("HW_CPU_X86_SSE4A",),
    "ssse3": ("HW_CPU_X86_SSSE3",),
    # the old generic traits of AMD's svm and Intel's vmx, kept as Nova keeps them
    "svm": ("HW_CPU_X86_SVM", "HW_CPU_X86_AMD_SVM"),
    "tbm": ("HW_CPU_X86_TBM",),
    "vmx": ("HW_CPU_X86_VMX", "HW_CPU_X86_INTEL_VMX"),
    "xop": ("HW_CPU_X86_XOP",),
}


def cpu_traits(features: Iterable[str]) -> frozenset[str]:
    """The traits of a CPU with these libvirt features (unknown ones add none)."""
    return frozenset(t for f in features for t in CPU_TRAITS_MAPPING.get(f, ()))
