"""Writing what Civitai (or a model card) tells about a LoRA into the files beside it.

- ``<stem>.civitai.info``: the model-version object unchanged, ``json.dumps(obj, indent=4)`` — byte for
  byte what Civitai Helper writes, so Civitai Helper and Civitai Browser+ read it.
- ``<stem>.api_info.json``: the model object (tags, license fields, every version) in the same format.
- ``<stem>.json`` (A1111's user metadata): only fields that are **empty** are filled — "activation text"
  from ``trainedWords``, "sd version" in A1111's vocabulary (``SD1``/``SD2``/``SDXL``/``SD3``/``Flux``;
  Pony, Illustrious and NoobAI are ``SDXL`` there), "description" as plain text. A value the user wrote
  is never changed; when nothing is empty the file is not rewritten at all. The family (Pony,
  Illustrious, NoobAI, SDXL Lightning…) is *not* copied into ``<stem>.json``: ``lora studio base`` is the
  user's own override, and a family written there would pose as the user's choice, outlive a later
  Civitai correction and hide what the user set. Civitai's family is read from ``baseModel`` in the
  ``.civitai.info`` written here (detection's "civitai" evidence, shown as such); a Hugging Face model
  card's goes into ``lora studio family`` (:data:`~lib_lora.sidecars.KEY_FAMILY`), replaced on each
  download and, like Civitai's, below the user's override.
- ``<stem>.preview.png``: the first allowed image as a real PNG, only when the LoRA has no preview.
  Videos are skipped; images above the NSFW limit (Civitai's numeric ``nsfwLevel`` bit flags 1 PG,
  2 PG-13, 4 R, 8 X, 16 XXX; older answers only have ``nsfw``) are skipped or blurred (setting).

Every write is atomic (temp file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import html
import html.parser
import io
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lib_lora import sidecars as sc
from lib_lora.remote.common import Auth, RemoteError, send

API_INFO_SUFFIX = ".api_info.json"
PREVIEW_SUFFIX = ".preview.png"
MAX_PREVIEW_BYTES = 32 * 1024 * 1024
MAX_PREVIEW_SIDE = 1536

NSFW_LEVELS = {"pg": 1, "pg13": 2, "r": 4, "x": 8, "xxx": 16}
NSFW_SKIP = "skip"
NSFW_BLUR = "blur"
_OLD_NSFW = {"none": 1, "soft": 2, "mature": 4, "x": 8}


def dump_civitai(obj: Any) -> str:
    """Civitai Helper's format: ``json.dumps(obj, indent=4)`` (ASCII, no trailing newline)."""
    return json.dumps(obj, indent=4)


def write_civitai_info(model_path: str, version: Mapping[str, Any]) -> str:
    path = sc.stem_path(model_path) + sc.CIVITAI_INFO_SUFFIX
    sc.atomic_write_text(path, dump_civitai(version))
    return path


def write_api_info(model_path: str, model: Mapping[str, Any]) -> str:
    path = sc.stem_path(model_path) + API_INFO_SUFFIX
    sc.atomic_write_text(path, dump_civitai(model))
    return path


class _Text(html.parser.HTMLParser):
    _BREAKS = {"p", "br", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "ul", "ol", "blockquote", "pre"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self._BREAKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(text: str | None) -> str:
    """Civitai's HTML description as plain text (paragraphs kept as lines)."""
    if not text:
        return ""
    p = _Text()
    try:
        p.feed(text)
        p.close()
        raw = "".join(p.parts)
    except Exception:  # html.parser is lenient; be safe anyway
        raw = html.unescape(text)
    lines = [" ".join(line.split()) for line in raw.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def base_model_vocab(base_model: str | None) -> tuple[str | None, str | None]:
    """Civitai ``baseModel`` (or a model card's ``base_model``) -> (A1111 "sd version", family id)."""
    if not base_model:
        return None, None
    from lib_lora import architecture

    archs, family = architecture.civitai_base(base_model)
    if not archs:
        low = base_model.lower()
        name = low.rsplit("/", 1)[-1]
        for key, arch in (("xl", "sdxl"), ("flux", "flux1"), ("v1-5", "sd1"), ("1.5", "sd1"), ("2-1", "sd2"),
                          ("sd3", "sd3")):
            if key in name:
                archs = (arch,)
                family = architecture.name_family(name, arch, loose=True)
                break
    if not archs:
        return None, None
    version = sc.sd_version_for(archs[0])
    return (version if version != "Unknown" else None), family


def activation_from_words(words: Any) -> str:
    if isinstance(words, str):
        words = [words]
    if not isinstance(words, list):
        return ""
    phrases = [" ".join(w.split()).strip(" ,") for w in words if isinstance(w, str)]
    return ", ".join(p for p in phrases if p)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in ("", "Unknown"))


def fill_user_metadata(model_path: str, *, activation: str = "", sd_version: str | None = None,
                       description: str = "", family: str | None = None) -> tuple[str, ...]:
    """Fill the empty A1111 fields of ``<stem>.json``; the keys written (nothing written if none).

    ``family`` (a model card's, see the module docstring) goes into ``lora studio family`` — ours, so it
    replaces an older value — never into the user's ``lora studio base``. A malformed ``<stem>.json``
    raises :class:`~lib_lora.errors.SidecarError` and is left as it is.
    """
    current = sc.read_user_metadata(model_path)
    keys = {"activation_text": "activation text", "sd_version": "sd version", "description": "description",
            "family": sc.KEY_FAMILY}
    wanted = {"activation_text": activation, "sd_version": sd_version, "description": description}
    changes: dict[str, Any] = {}
    for name, value in wanted.items():
        if not value:
            continue
        if current is not None and keys[name] in current.extra:
            continue  # a value of another type the user put there: leave it
        if _empty(getattr(current, name) if current is not None else None):
            changes[name] = value
    if family and (current is None or (current.family != family and sc.KEY_FAMILY not in current.extra)):
        changes["family"] = family
    if not changes:
        return ()
    sc.update_user_metadata(model_path, **changes)
    return tuple(keys[n] for n in changes)


def fill_from_version(model_path: str, version: Mapping[str, Any],
                      model: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """Fill ``<stem>.json`` from a Civitai model-version object (the family stays in ``.civitai.info``)."""
    base = version.get("baseModel")
    sd_version, _family = base_model_vocab(base if isinstance(base, str) else None)
    desc = version.get("description") if isinstance(version.get("description"), str) else None
    if not desc and model is not None and isinstance(model.get("description"), str):
        desc = model["description"]
    return fill_user_metadata(
        model_path,
        activation=activation_from_words(version.get("trainedWords")),
        sd_version=sd_version,
        description=html_to_text(desc)[:20_000],
    )


# --- previews ------------------------------------------------------------------------------------


def image_level(image: Mapping[str, Any]) -> int:
    """An image's NSFW level as Civitai's bit value (1 PG … 16 XXX); old ``nsfw`` fields mapped."""
    level = image.get("nsfwLevel")
    if isinstance(level, int) and not isinstance(level, bool) and level > 0:
        return level
    old = image.get("nsfw")
    if isinstance(old, bool):
        return 8 if old else 1
    if isinstance(old, str):
        return _OLD_NSFW.get(old.strip().lower(), 8)
    return 1


def _is_video(image: Mapping[str, Any]) -> bool:
    if str(image.get("type") or "image").lower() != "image":
        return True
    url = str(image.get("url") or "").lower().split("?", 1)[0]
    return url.endswith((".mp4", ".webm", ".mov", ".gif"))


@dataclass(frozen=True)
class PreviewChoice:
    url: str
    blur: bool
    level: int


def pick_preview(images: Any, max_level: int, mode: str = NSFW_BLUR) -> PreviewChoice | None:
    """The first still image at or below ``max_level``; with ``mode == "blur"`` the first still image
    (blurred when above the limit) when none is allowed."""
    if not isinstance(images, list):
        return None
    stills = [i for i in images if isinstance(i, dict) and isinstance(i.get("url"), str) and not _is_video(i)]
    for img in stills:
        level = image_level(img)
        if level <= max_level:
            return PreviewChoice(img["url"], False, level)
    if mode == NSFW_BLUR and stills:
        return PreviewChoice(stills[0]["url"], True, image_level(stills[0]))
    return None


def has_preview(model_path: str) -> bool:
    stem = sc.stem_path(model_path)
    return any(os.path.isfile(stem + s) for s in sc.PREVIEW_SUFFIXES)


def png_bytes(data: bytes, *, blur: bool) -> bytes:
    """Decode any image Pillow reads and encode it as PNG (blurred when asked)."""
    from PIL import Image, ImageFilter

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            img = im.convert("RGBA" if "A" in im.getbands() else "RGB")
    except Image.DecompressionBombError:
        raise RemoteError("preview image is too large", kind="verify") from None
    except Exception as exc:
        raise RemoteError(f"preview is not an image Pillow can read ({type(exc).__name__})", kind="verify") from None
    if max(img.size) > MAX_PREVIEW_SIDE:
        img.thumbnail((MAX_PREVIEW_SIDE, MAX_PREVIEW_SIDE))
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(radius=max(8, max(img.size) // 24)))
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=False)
    return out.getvalue()


def atomic_write_bytes(path: str, data: bytes) -> None:
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def download_preview(model_path: str, choice: PreviewChoice, auth: Auth,
                     should_stop: Callable[[], bool] | None = None) -> str:
    """Fetch ``choice.url`` and save it as ``<stem>.preview.png``; the path written."""
    resp = send("GET", choice.url, auth, stream=True, should_stop=should_stop, what="preview image")
    try:
        if resp.status_code != 200:
            raise RemoteError(f"preview image: HTTP {resp.status_code}", status=resp.status_code)
        buf = bytearray()
        for chunk in resp.iter_content(1 << 16):
            buf += chunk
            if len(buf) > MAX_PREVIEW_BYTES:
                raise RemoteError("preview image is larger than 32 MB", kind="verify")
    except RemoteError:
        raise
    except Exception as exc:
        raise RemoteError(f"preview image: download broke off ({type(exc).__name__})") from None
    finally:
        resp.close()
    path = sc.stem_path(model_path) + PREVIEW_SUFFIX
    try:
        atomic_write_bytes(path, png_bytes(bytes(buf), blur=choice.blur))
    except OSError as exc:
        raise RemoteError(f"{path}: cannot write: {exc.strerror or exc}", kind="disk") from None
    return path
