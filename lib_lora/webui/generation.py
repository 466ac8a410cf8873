"""Renders and captions through the WebUI's own machinery, for the consistency sheet and the dataset
captions: one txt2img image with the loaded checkpoint (``modules.processing``), the built-in Lora's list
refreshed after epoch files were staged, and the built-in taggers (DeepDanbooru, CLIP/BLIP interrogator).

Real names, as in AUTOMATIC1111 v1.10.1 and Forge: ``StableDiffusionProcessingTxt2Img(prompt=...,
negative_prompt=..., seed=..., steps=..., width=..., height=..., cfg_scale=..., sampler_name=...,
do_not_save_samples=True, do_not_save_grid=True)`` then ``process_images(p)`` (always-on scripts are not
run: ``p.scripts`` stays None); ``modules.deepbooru.model`` with ``start()``, ``tag_multi(pil_image,
force_disable_ranks=True)`` (``tag(pil_image)`` where that is missing) and ``stop()``;
``shared.interrogator.interrogate(pil_image)``, which reports its own failures as ``"<error>"`` in the text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from PIL import Image

from lib_lora.errors import LoraStudioError
from lib_lora.host import GenerationRequest
from lib_lora.webui.adapter import _m
from lib_lora.webui.builtin_lora import builtin_networks

DEFAULT_SAMPLER = "Euler a"  # exists in A1111 1.10 and Forge

#: the WebUI's taggers: id -> label
TAGGERS: dict[str, str] = {
    "deepbooru": "DeepDanbooru (booru tags)",
    "interrogate": "CLIP/BLIP interrogator (a sentence)",
}


class TaggerError(LoraStudioError):
    """The WebUI's tagger failed (weights missing and not downloadable, out of memory …)."""


def txt2img(request: GenerationRequest) -> Image.Image:
    """One image from the loaded checkpoint; the caller holds the generation queue."""
    processing = _m("modules.processing")
    shared = _m("modules.shared")
    p = processing.StableDiffusionProcessingTxt2Img(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        seed=int(request.seed),
        steps=int(request.steps),
        width=int(request.width),
        height=int(request.height),
        cfg_scale=float(request.cfg_scale),
        sampler_name=request.sampler_name or DEFAULT_SAMPLER,
        batch_size=1,
        n_iter=1,
        do_not_save_samples=True,
        do_not_save_grid=True,
    )
    p.scripts = None
    p.script_args = []
    state = getattr(shared, "state", None)
    begin = getattr(state, "begin", None)
    if callable(begin):
        begin(job="lora_studio_consistency")
    try:
        processed = processing.process_images(p)
    finally:
        close = getattr(p, "close", None)
        if callable(close):
            close()
        end = getattr(state, "end", None)
        if callable(end):
            end()
    images = list(getattr(processed, "images", None) or [])
    if not images or not isinstance(images[0], Image.Image):
        raise LoraStudioError("the WebUI's generation returned no image")
    return images[0]


def refresh_lora_list() -> None:
    """Let the built-in Lora find files added to or removed from the LoRA folders."""
    net = builtin_networks()
    refresh = getattr(net, "list_available_networks", None)
    if callable(refresh):
        refresh()


def available_taggers() -> dict[str, str]:
    """The taggers this WebUI has (id -> label)."""
    out: dict[str, str] = {}
    for kind, label in TAGGERS.items():
        try:
            if kind == "deepbooru":
                _m("modules.deepbooru")
            elif getattr(_m("modules.shared"), "interrogator", None) is None:
                continue
        except Exception:
            continue
        out[kind] = label
    return out


@contextlib.contextmanager
def tagger(kind: str) -> Iterator[Callable[[Image.Image], str]]:
    """A function image -> caption text for the duration of the block (DeepDanbooru stays loaded
    between images); raises :class:`TaggerError` with the WebUI's reason when it fails."""
    if kind not in TAGGERS:
        raise TaggerError(f"unknown tagger {kind!r} (one of: {', '.join(TAGGERS)})")
    if kind == "deepbooru":
        model = _m("modules.deepbooru").model
        try:
            model.start()
        except Exception as exc:
            raise TaggerError(f"DeepDanbooru could not start (its weights download on first use): {exc}") from exc
        multi = getattr(model, "tag_multi", None)

        def tag(im: Image.Image) -> str:
            try:
                return str(multi(im, force_disable_ranks=True) if callable(multi) else model.tag(im))
            except Exception as exc:
                raise TaggerError(f"DeepDanbooru failed: {exc}") from exc

        try:
            yield tag
        finally:
            model.stop()
        return
    interrogator: Any = getattr(_m("modules.shared"), "interrogator", None)
    if interrogator is None:
        raise TaggerError("this WebUI has no CLIP interrogator")

    def interrogate(im: Image.Image) -> str:
        text = str(interrogator.interrogate(im))
        if "<error>" in text:
            raise TaggerError("the CLIP/BLIP interrogator failed (see the WebUI console; its weights download "
                              "on first use)")
        return text

    yield interrogate


__all__ = ["DEFAULT_SAMPLER", "TAGGERS", "TaggerError", "available_taggers", "refresh_lora_list", "tagger", "txt2img"]
