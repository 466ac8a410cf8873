"""The consistency score: how alike the renders of a sheet are, from CLIP image embeddings.

Each cell (scene × version × weight) gets the mean cosine similarity of its render's embedding to the
reference images' embeddings, or — without references — to the renders of the other scenes in the same
column (same version and weight). Columns are then compared within each scene (the same prompt and seed:
a cell's score minus the mean of its scene's row) and those differences averaged over the scenes; the
column with the highest average is the best version and weight. It is a similarity of image features,
not a proof that the face is the same person.

Embeddings come from ``open_clip`` through the API of version 2.7.0 (what A1111 and Forge install):
``create_model_and_transforms(name, pretrained=tag)`` and ``model.encode_image``. Weights download on
first use; when the package, the network or the weights are missing, :func:`score_sheet` returns the
reason in ``message`` and no scores — the sheet is made all the same. torch is imported only here and
only when a score is asked for.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import numpy as np
from PIL import Image

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "openai"


class ScoreUnavailable(Exception):
    """The score cannot be computed (package, weights or network missing); ``str`` says why."""


class Embedder(Protocol):
    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(n, d) L2-normalised image embeddings."""
        ...


_TORCHVISION_OPS_LIB: Any = None
_IMPORT_LOCK = threading.Lock()


def import_open_clip() -> ModuleType:
    """``open_clip``; when torchvision's compiled ops cannot load (PyPI's torchvision beside a CPU-only
    torch: "operator torchvision::nms does not exist"), the two op names its Python part registers fakes
    for are declared so the Python part (the transforms open_clip uses) imports. Raises ImportError."""
    global _TORCHVISION_OPS_LIB
    with _IMPORT_LOCK:
        try:
            return importlib.import_module("open_clip")
        except RuntimeError as exc:
            if "torchvision::" not in str(exc) or _TORCHVISION_OPS_LIB is not None:
                raise ImportError(f"open_clip cannot be imported: {exc}") from exc
        for name in [m for m in sys.modules if m.split(".")[0] in ("torchvision", "open_clip")]:
            del sys.modules[name]
        import torch

        lib = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TORCHVISION_OPS_LIB = lib
        try:
            return importlib.import_module("open_clip")
        except RuntimeError as exc:
            raise ImportError(f"open_clip cannot be imported: {exc}") from exc


class ClipEmbedder:
    """Image embeddings from an open_clip model; ``pretrained`` "" or None builds random weights (tests,
    benchmarks). The model loads on the first :meth:`embed` (or :meth:`load`)."""

    def __init__(self, model: str = DEFAULT_MODEL, pretrained: str | None = DEFAULT_PRETRAINED,
                 device: str | None = None, batch_size: int = 16) -> None:
        self.model_name = model
        self.pretrained = pretrained or None
        self.device = device
        self.batch_size = max(1, batch_size)
        self._model: Any = None
        self._preprocess: Any = None

    def describe(self) -> str:
        return f"{self.model_name} ({self.pretrained or 'random weights'})"

    def load(self) -> None:
        if self._model is not None:
            return
        try:
            open_clip = import_open_clip()
        except ImportError as exc:
            raise ScoreUnavailable(f"open_clip is not installed or cannot load ({exc})") from None
        import torch

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            model, _train, preprocess = open_clip.create_model_and_transforms(
                self.model_name, pretrained=self.pretrained, device=device)
        except Exception as exc:  # unknown name, no network, missing or corrupt weights
            raise ScoreUnavailable(f"the CLIP model {self.describe()} could not be loaded: "
                                   f"{str(exc) or type(exc).__name__}") from None
        model.eval()
        self.device = device
        self._model, self._preprocess = model, preprocess

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        self.load()
        import torch

        out: list[np.ndarray] = []
        with torch.no_grad():
            for i in range(0, len(images), self.batch_size):
                batch = torch.stack([self._preprocess(im.convert("RGB")) for im in images[i : i + self.batch_size]])
                feats = self._model.encode_image(batch.to(self.device)).float().cpu().numpy()
                out.append(feats)
        if not out:
            return np.zeros((0, 1), dtype=np.float32)
        return normalise(np.concatenate(out, axis=0))


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.asarray(x / np.where(norms == 0, 1.0, norms), dtype=np.float32)


def cell_similarities(embeddings: np.ndarray, references: np.ndarray | None = None) -> np.ndarray:
    """(scenes, columns) scores from (scenes, columns, d) embeddings: mean cosine to ``references``
    (r, d) when given, else to the other scenes' renders of the same column (NaN with a single scene)."""
    e = normalise(embeddings)
    s, c, _d = e.shape
    if references is not None and len(references):
        r = normalise(references)
        return np.asarray(np.einsum("scd,rd->scr", e, r).mean(axis=2), dtype=np.float64)
    if s < 2:
        return np.full((s, c), np.nan)
    sims = np.einsum("scd,tcd->cst", e, e)  # per column: scene × scene
    total = sims.sum(axis=2) - np.einsum("css->cs", sims)
    return np.asarray((total / (s - 1)).T, dtype=np.float64)


def rank_columns(similarities: np.ndarray) -> tuple[np.ndarray, int | None]:
    """(score per column, best column): each cell minus its scene's mean, averaged over the scenes (NaN
    cells — not rendered — are left out); the best is the highest (the first on a tie)."""
    sim = np.asarray(similarities, dtype=np.float64)
    if sim.size == 0 or np.all(np.isnan(sim)):
        return np.full(sim.shape[1] if sim.ndim == 2 else 0, np.nan), None
    with np.errstate(invalid="ignore"):
        rel = sim - np.nanmean(sim, axis=1, keepdims=True)
        counts = np.sum(~np.isnan(rel), axis=0)
        scores = np.where(counts > 0, np.nansum(rel, axis=0) / np.maximum(counts, 1), np.nan)
    if np.all(np.isnan(scores)):
        return scores, None
    best = int(np.nanargmax(scores))
    return scores, best


@dataclass(frozen=True)
class SheetScore:
    cells: np.ndarray | None  # (scenes, columns) similarities; NaN where not rendered; None when skipped
    columns: np.ndarray | None  # relative score per column
    best_column: int | None
    message: str  # what was compared, or why the score was skipped


def score_sheet(images: Sequence[Sequence[Image.Image | None]], references: Sequence[Image.Image],
                embedder: Embedder | None) -> SheetScore:
    """Score a sheet's renders (``images[scene][column]``, None where not rendered)."""
    if embedder is None:
        return SheetScore(None, None, None, "score skipped: no CLIP model configured")
    flat = [(s, c, im) for s, row in enumerate(images) for c, im in enumerate(row) if im is not None]
    if not flat:
        return SheetScore(None, None, None, "score skipped: nothing was rendered")
    rows, cols = len(images), len(images[0]) if images else 0
    try:
        emb = embedder.embed([im for _s, _c, im in flat])
        refs = embedder.embed(list(references)) if references else None
    except ScoreUnavailable as exc:
        return SheetScore(None, None, None, f"score skipped: {exc}")
    full = np.zeros((rows, cols, emb.shape[1]), dtype=np.float32)
    present = np.zeros((rows, cols), dtype=bool)
    for (s, c, _im), vec in zip(flat, emb, strict=True):
        full[s, c] = vec
        present[s, c] = True
    if refs is None:
        # leave missing cells out of "the other scenes" by giving them no weight
        sims = np.full((rows, cols), np.nan)
        for c in range(cols):
            idx = np.nonzero(present[:, c])[0]
            if len(idx) >= 2:
                sims[idx, c] = cell_similarities(full[idx, c : c + 1])[:, 0]
        how = "similarity among the scenes of each version and weight (no reference images)"
    else:
        sims = cell_similarities(full, refs)
        sims[~present] = np.nan
        how = f"similarity to {len(references)} reference image(s)"
    describe = getattr(embedder, "describe", None)
    model = f" with {describe()}" if callable(describe) else ""
    columns, best = rank_columns(sims)
    if best is None:
        return SheetScore(sims, columns, None, "score skipped: at least two scenes are needed without references")
    return SheetScore(sims, columns, best, f"CLIP image {how}{model}; compared within each scene, averaged over scenes")


__all__ = ["DEFAULT_MODEL", "DEFAULT_PRETRAINED", "ClipEmbedder", "Embedder", "ScoreUnavailable", "SheetScore",
           "cell_similarities", "import_open_clip", "normalise", "rank_columns", "score_sheet"]
