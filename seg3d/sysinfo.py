"""What machine a figure was measured on: CPU, cores, memory, GPU and library versions."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch

__all__ = ["machine_info", "machine_slug"]


def machine_info() -> dict[str, object]:
    cpu = platform.processor() or "unknown"
    try:
        match = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        if match:
            cpu = match.group(1).strip()
    except OSError:
        pass
    memory_gib = None
    try:
        match = re.search(r"MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text())
        if match:
            memory_gib = round(int(match.group(1)) / 2**20, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "platform": platform.platform(),
    }


def machine_slug(info: dict[str, object]) -> str:
    """A file-name-safe name such as ``cpu2-amd-epyc`` or ``nvidia-h100-80gb-hbm3``."""
    name = str(info["gpu"] or info["cpu"])
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]
    return slug if info["gpu"] else f"cpu{info['logical_cores']}-{slug}"
