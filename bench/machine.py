"""What the numbers were measured on: CPU, cores, memory, Python and tool versions."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import Any

__all__ = ["describe"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return sorted(flags & {"sha_ni", "avx2", "avx512f", "aes"})
    except OSError:
        pass
    return []


def _mem_total() -> int:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def describe() -> dict[str, Any]:
    import hashlib
    import ssl

    return {
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": len(os.sched_getaffinity(0)),
        "memory_bytes": _mem_total(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_openssl": ssl.OPENSSL_VERSION,
        "hashlib_sha256": type(hashlib.sha256()).__module__ or "builtin",
        "openssl": _version(["openssl", "version"]),
        "sha256sum": _version(["sha256sum", "--version"]),
        "sonic_registry": _dist_version("sonic-registry"),
        "model_signing": _dist_version("model-signing"),
        "safetensors": _dist_version("safetensors"),
        "torch": _dist_version("torch"),
        "blake3": _dist_version("blake3"),
        "load_average": list(os.getloadavg()),
    }
