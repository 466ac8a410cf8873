"""What the machine has for training: the NVIDIA GPUs ``nvidia-smi`` lists, the GPU ids a user types,
and the CUDA version of the torch the WebUI already loaded. Never imports torch."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from lib_lora.errors import TrainingError


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_total_mib: int | None = None
    memory_free_mib: int | None = None

    def label(self) -> str:
        free = f", {self.memory_free_mib / 1024:.1f} of {self.memory_total_mib / 1024:.0f} GiB free" if (
            self.memory_free_mib is not None and self.memory_total_mib) else ""
        return f"{self.index}: {self.name}{free}"


def list_gpus(nvidia_smi: str = "nvidia-smi", timeout: float = 10.0) -> list[GpuInfo]:
    """The NVIDIA GPUs ``nvidia-smi`` sees (empty without the tool or a GPU). Never imports torch."""
    import subprocess

    exe = shutil.which(nvidia_smi)
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    gpus: list[GpuInfo] = []
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2 or not parts[0].isdigit():
            continue

        def mib(text: str) -> int | None:
            try:
                return int(float(text))
            except ValueError:
                return None

        gpus.append(GpuInfo(int(parts[0]), parts[1], mib(parts[2]) if len(parts) > 2 else None,
                            mib(parts[3]) if len(parts) > 3 else None))
    return gpus


def parse_gpu_ids(text: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"0,1"`` -> ``(0, 1)``; empty -> ``None`` (the default GPU)."""
    if text is None:
        return None
    if not isinstance(text, str):
        return tuple(int(g) for g in text) or None
    if not text.strip():
        return None
    ids: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part.isdigit():
            raise TrainingError(f"GPUs must be numbers separated by commas, like 0,1 (got {text!r})")
        ids.append(int(part))
    return tuple(ids)


def webui_cuda() -> str | None:
    """The CUDA version of the torch the running process has already imported (never imports it)."""
    torch = sys.modules.get("torch")
    version = getattr(getattr(torch, "version", None), "cuda", None)
    return str(version) if version else None


__all__ = ["GpuInfo", "list_gpus", "parse_gpu_ids", "webui_cuda"]
