"""A stand-in for the WebUI's generation in consistency-sheet tests and the benchmark: a StandaloneHost
that says it is a WebUI and renders a deterministic picture per (LoRA, weight, seed) — a LoRA's colour
mixed by its weight over seed-dependent shapes — recording every request."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from lib_lora.host import GenerationRequest, StandaloneHost

_TAG = re.compile(r"<lora:([^:>]+):([-0-9.]+)>")


def render(prompt: str, width: int, height: int, seed: int) -> Image.Image:
    m = _TAG.search(prompt)
    name, weight = (m.group(1), float(m.group(2))) if m else ("", 0.0)
    digest = hashlib.sha256(name.encode()).digest()
    colour = np.frombuffer(digest[:3], dtype=np.uint8).astype(np.float32)
    rng = np.random.default_rng(seed)
    base = (rng.random(3) * 255).astype(np.float32)
    fill = tuple(int(v) for v in (base * (1 - min(weight, 1.0)) + colour * min(weight, 1.0)))
    im = Image.new("RGB", (width, height), tuple(int(v) for v in base))
    d = ImageDraw.Draw(im)
    x0, y0 = rng.integers(0, max(1, width // 3)), rng.integers(0, max(1, height // 3))
    d.ellipse((int(x0), int(y0), int(x0) + width // 2, int(y0) + height // 2), fill=fill)
    return im


class RenderHost(StandaloneHost):
    kind = "webui"

    def __init__(self, *args: Any, delay: float = 0.0, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.requests: list[GenerationRequest] = []
        self.delay = delay
        self.gate: threading.Event | None = None  # when set up, each render waits for it
        self.rendered = threading.Semaphore(0)
        self.refreshes = 0
        self.staged_seen: list[list[str]] = []

    def refresh_lora_list(self) -> None:
        self.refreshes += 1
        root = Path(self.lora_roots()[0]) / "LoRA Studio"
        self.staged_seen.append(sorted(p.name for p in root.rglob("*.safetensors")) if root.exists() else [])

    def generate(self, request: GenerationRequest) -> Image.Image:
        if self.gate is not None:
            self.gate.wait(30)
        with self.queue_lock():
            self.requests.append(request)
            if self.delay:
                time.sleep(self.delay)
            im = render(request.prompt, request.width, request.height, request.seed)
        self.rendered.release()
        return im


class ColourEmbedder:
    """A known embedding: the mean colour of the image and of its centre (6 numbers), normalised."""

    def describe(self) -> str:
        return "mean colour"

    def embed(self, images: Any) -> np.ndarray:
        out = []
        for im in images:
            a = np.asarray(im.convert("RGB"), dtype=np.float32)
            h, w, _ = a.shape
            c = a[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]
            out.append(np.concatenate([a.reshape(-1, 3).mean(0), c.reshape(-1, 3).mean(0)]))
        v = np.array(out, dtype=np.float32) - 127.0
        return v / np.linalg.norm(v, axis=1, keepdims=True)
