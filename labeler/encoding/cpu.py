"""The CPU the encoder runs on: its model name, its vector instruction sets, and a short kind.

The kind keys what was measured on a CPU (the int8 recipe that keeps its fidelity there), since
the same ONNX file gives different vectors on different instruction sets: without VNNI, ONNX
Runtime's u8×s8 int8 dot products go through 16-bit sums that saturate.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

# The flags that change which int8 and fp32 kernels ONNX Runtime picks (as /proc/cpuinfo spells them).
VECTOR_FLAGS = ("sse4_1", "avx", "fma", "avx2", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


@dataclass(frozen=True)
class CpuKind:
    """A CPU as far as the encoder cares: ``model`` (e.g. 'AMD EPYC') and its vector ``flags``."""

    model: str
    flags: frozenset[str]
    machine: str = "x86_64"

    @property
    def vnni(self) -> bool:
        """Whether int8 dot products run without 16-bit saturation (VNNI or AMX)."""
        return bool(self.flags & VNNI_FLAGS)

    @property
    def key(self) -> str:
        """A short name of the kind, e.g. ``avx2``, ``avx512+vnni``, ``avx512+vnni+amx``."""
        if self.machine not in ("x86_64", "AMD64", "i686", "i386"):
            return self.machine.lower()
        if {"avx512f", "avx512bw"} <= self.flags:
            base = "avx512"
        elif "avx2" in self.flags:
            base = "avx2"
        elif "avx" in self.flags:
            base = "avx"
        else:
            base = "sse"
        return base + ("+vnni" if self.vnni else "") + ("+amx" if "amx_int8" in self.flags else "")

    def describe(self) -> dict:
        """The ``{model, kind, flags}`` a report shows."""
        return {"model": self.model, "kind": self.key, "flags": sorted(self.flags)}


def from_flags(flags, model: str = "", machine: str = "x86_64") -> CpuKind:
    """A kind from a set of cpuinfo flags (only the vector ones are kept), e.g. to force a no-VNNI path."""
    return CpuKind(model, frozenset(f for f in flags if f in VECTOR_FLAGS), machine)


def detect(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuKind:
    """This machine's CPU, from ``/proc/cpuinfo`` (first processor); no flags where it cannot be read."""
    model, flags = "", set()
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            name, _, value = line.partition(":")
            name = name.strip()
            if name == "model name" and not model:
                model = value.strip()
            elif name == "flags" and not flags:
                flags = set(value.split())
            if model and flags:
                break
    except OSError:
        pass
    return from_flags(flags, model or platform.processor() or "unknown", platform.machine() or "unknown")
