"""Test helpers that write real ``.safetensors`` LoRA / checkpoint files from :mod:`lib_lora.synth` presets.

Use from a test module next to this file (pytest puts ``tests/`` on ``sys.path``)::

    from factory import make_lora

    def test_something(tmp_path):
        path = make_lora(tmp_path, "alice", "kohya-sdxl", rank=8)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lib_lora import synth
from lib_lora.safetensors_header import write_file

__all__ = ["PRESETS", "make_checkpoint", "make_file", "make_lora", "wait_for"]

PRESETS = tuple(synth.PRESETS)


def make_file(directory: Path, name: str, tensors: synth.Tensors, metadata: dict[str, str] | None = None, *,
              subdir: str | None = None, suffix: str = ".safetensors", sparse: bool = True) -> Path:
    """Write ``tensors``/``metadata`` as ``directory[/subdir]/name.safetensors`` and return the path."""
    folder = Path(directory) / subdir if subdir else Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}{suffix}"
    write_file(path, tensors, metadata or {}, sparse=sparse)
    return path


def make_lora(directory: Path, name: str, preset: str = "kohya-sd1", *, rank: int = 4,
              metadata: dict[str, str | None] | None = None, replace_metadata: dict[str, str] | None = None,
              subdir: str | None = None, sparse: bool = True, **_ignored: Any) -> Path:
    """Write a LoRA from ``preset`` at ``rank`` as ``directory[/subdir]/name.safetensors``.

    ``metadata`` overrides keys (``None`` deletes one); ``replace_metadata`` replaces the whole metadata.
    """
    tensors, md = synth.build(preset, rank, metadata)
    if replace_metadata is not None:
        md = dict(replace_metadata)
    return make_file(directory, name, tensors, md, subdir=subdir, sparse=sparse)


def make_checkpoint(directory: Path, name: str, preset: str = "ckpt-sdxl", *, metadata: dict[str, str | None] | None = None,
                    subdir: str | None = None) -> Path:
    """Write a minimal checkpoint header (``ckpt-sd1``, ``ckpt-sdxl``, ``ckpt-flux1`` …) with sparse data."""
    if not preset.startswith("ckpt-"):
        raise ValueError(f"{preset!r} is not a checkpoint preset; use one of {synth.CHECKPOINT_PRESETS}")
    return make_lora(directory, name, preset, metadata=metadata, subdir=subdir)


def make_images(folder: Path, n: int = 16, caption: str | None = "zed, photo") -> Path:
    """A training folder of ``n`` 512x576 PNGs (deterministic noise), each with a caption unless None."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rng = np.random.default_rng(i)
        Image.fromarray((rng.random((4, 4, 3)) * 255).astype(np.uint8)).resize((512, 576)).save(
            folder / f"{i:02d}.png", compress_level=1
        )
        if caption is not None:
            (folder / f"{i:02d}.txt").write_text(caption, encoding="utf-8")
    return folder


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
