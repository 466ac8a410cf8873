"""Write the missing caption files of a dataset with an image tagger (the WebUI's DeepDanbooru or its
CLIP/BLIP interrogator, reached through the host): the trigger word first, then the tagger's text.

Only images the dataset check found without a caption get one; each file is created in exclusive mode,
so a caption that appeared since the check (or any existing file, empty ones included) is never touched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from lib_lora.errors import TrainingError
from lib_lora.train.dataset import DatasetReport, trigger_pattern

Tagger = Callable[[Image.Image], str]
ProgressCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class CaptionResult:
    written: tuple[str, ...]  # caption files created
    skipped: tuple[str, ...]  # images whose caption file appeared meanwhile
    failed: tuple[tuple[str, str], ...] = ()  # (image, why) when the tagger failed on it


def caption_text(trigger: str, tagged: str) -> str:
    """One caption line: the trigger first, then the tagger's text without a repeat of the trigger."""
    trig = trigger.strip()
    text = re.sub(r"\s+", " ", tagged.replace("\r", " ").replace("\n", " ")).strip(" ,")
    if text:
        text = trigger_pattern(trig).sub("", text)
        text = re.sub(r"(\s*,\s*)+", ", ", text)
        text = re.sub(r" {2,}", " ", text).strip(" ,")
    return f"{trig}, {text}" if text else trig


def write_tagged_captions(report: DatasetReport, trigger: str, tagger: Tagger, *,
                          progress: ProgressCallback | None = None,
                          cancelled: Callable[[], bool] | None = None) -> CaptionResult:
    """Caption every image of ``report`` that has no caption file with ``tagger`` (an image → text
    function); ``progress(done, total, image)`` after each image. A tagger error on one image is recorded
    and the others go on; writing errors stop with :class:`TrainingError`."""
    if not trigger.strip():
        raise TrainingError("the trigger word is empty")
    todo = report.missing_captions()
    written: list[str] = []
    skipped: list[str] = []
    failed: list[tuple[str, str]] = []
    for i, img in enumerate(todo):
        if cancelled is not None and cancelled():
            break
        if os.path.exists(img.caption_path):
            skipped.append(img.path)
        else:
            try:
                with Image.open(img.path) as im:
                    tagged = tagger(im.convert("RGB"))
            except Exception as exc:  # a tagger or image failure: keep going with the other images
                failed.append((img.path, str(exc) or type(exc).__name__))
                tagged = None
            if tagged is not None:
                try:
                    with open(img.caption_path, "x", encoding="utf-8", newline="\n") as f:
                        f.write(caption_text(trigger, str(tagged)) + "\n")
                    written.append(img.caption_path)
                except FileExistsError:
                    skipped.append(img.path)
                except OSError as exc:
                    raise TrainingError(f"cannot write the caption {img.caption_path}: {exc.strerror} "
                                        f"({len(written)} written before it)") from exc
        if progress is not None:
            progress(i + 1, len(todo), img.path)
    return CaptionResult(tuple(written), tuple(skipped), tuple(failed))


__all__ = ["CaptionResult", "Tagger", "caption_text", "write_tagged_captions"]
