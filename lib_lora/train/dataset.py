"""Dataset check: what sd-scripts will see in a folder of training images, before any training starts.

``check_dataset`` reads the folder and returns a :class:`DatasetReport` (frozen dataclasses) with one
:class:`DatasetIssue` per finding, each with a severity (error / warning / info) and the file:

- the layout: a flat folder of images, or a kohya parent of ``<repeats>_<class tokens>`` sub-folders
  (what ``--train_data_dir`` expects); images sd-scripts would not see (files beside the repeat folders,
  sub-folders of a flat folder, other formats, ``.Jpg``-style extensions on case-sensitive systems);
- the image count against the guidance LoRA trainers follow (under 15 too few, 15–20 minimum viable,
  30–50 recommended, 80–100 ideal);
- unreadable, corrupt or truncated images (PIL ``verify`` + a full decode + the end-of-image marker, so a
  truncated JPEG is caught even where ``ImageFile.LOAD_TRUNCATED_IMAGES`` was switched on by someone else);
- images below the base model's native resolution (512 SD1.5, 768 SD2, 1024 SDXL / Flux), EXIF rotations
  (sd-scripts ignores them and trains the image sideways), transparency (becomes black), 16-bit images;
- captions: missing (sd-scripts then trains on the class tokens), empty files (sd-scripts stops with
  "caption file is empty"), blank or multi-line captions (only the first line is read), not UTF-8, a UTF-8
  byte-order mark, a caption file with another extension, and captions without the trigger word
  (whole word, case-insensitive);
- near-duplicate images: a 64-bit difference hash per image plus its mean colour, compared pairwise —
  O(n²), about half a million comparisons for 1,000 images, which numpy does in well under a second;
  fine up to a few thousand images;
- aspect-ratio buckets as sd-scripts makes them (``enable_bucket``, steps of 64 px, min 256, max 1024 for
  SD1.5 and 2048 for SDXL / Flux), with the number of images in each.

Nothing in the user's folder is written, except by :func:`write_missing_captions`, which the user calls
explicitly and which only creates caption files that do not exist.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from lib_lora.errors import TrainingError

ERROR = "error"
WARNING = "warning"
INFO = "info"
_SEVERITY_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}

#: what sd-scripts (library/train_util.py IMAGE_EXTENSIONS) globs: each extension in lower or upper case
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
#: image formats people drop in a dataset that sd-scripts skips (avif / jxl only with optional plugins)
OTHER_IMAGE_EXTENSIONS = (".gif", ".tif", ".tiff", ".avif", ".jxl", ".heic", ".heif", ".jfif", ".psd")
OTHER_CAPTION_EXTENSIONS = (".txt", ".caption", ".tags", ".cap")

#: native training resolution (square side, px) of each base architecture
NATIVE_RESOLUTION = {"sd1": 512, "sd2": 768, "sdxl": 1024, "sd3": 1024, "flux1": 1024}
MAX_BUCKET_RESO = {"sd1": 1024, "sd2": 1024, "sdxl": 2048, "sd3": 2048, "flux1": 2048}
MIN_BUCKET_RESO = 256
BUCKET_RESO_STEPS = 64

#: two images are near-duplicates when their difference hashes differ in at most this many of 64 bits
#: and their mean colours differ by at most DUPLICATE_COLOUR_DELTA per channel (0..255)
DUPLICATE_MAX_DISTANCE = 6
DUPLICATE_COLOUR_DELTA = 16.0

_KOHYA_DIR = re.compile(r"^(\d+)(?:_(.*))?$", re.DOTALL)
_EXIF_ORIENTATION = 0x0112
_ORIENTATION_TEXT = {
    2: "mirrored",
    3: "rotated 180°",
    4: "flipped upside down",
    5: "mirrored and rotated 90°",
    6: "rotated 90°",
    7: "mirrored and rotated 270°",
    8: "rotated 270°",
}

ProgressCallback = Callable[[int, int, str], None]  # (done, total, current file)


@dataclass(frozen=True)
class DatasetIssue:
    severity: str  # "error" | "warning" | "info"
    code: str  # stable id, e.g. "corrupt-image", "missing-caption", "no-trigger", "near-duplicate"
    message: str  # one line for the user
    file: str | None = None
    related: tuple[str, ...] = ()  # other files of the same finding (the duplicates of ``file``)


@dataclass(frozen=True)
class ImageInfo:
    path: str
    subset_dir: str
    width: int | None  # as stored (sd-scripts ignores EXIF rotation too); None when unreadable
    height: int | None
    readable: bool
    caption_path: str  # where sd-scripts looks for the caption
    caption_status: str  # "ok" | "missing" | "empty-file" | "blank" | "unreadable"
    caption: str | None  # the first line, stripped, as sd-scripts reads it; None when there is none
    bucket: tuple[int, int] | None = None
    dhash: int | None = field(default=None, repr=False)
    mean_rgb: tuple[float, float, float] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SubsetInfo:
    """One image folder sd-scripts will read (a ``[[datasets.subsets]]`` entry)."""

    image_dir: str
    num_repeats: int  # from the folder name in the kohya layout; 1 for a flat folder
    class_tokens: str  # the caption of images without one (kohya: folder name after ``<n>_``)
    image_count: int


@dataclass(frozen=True)
class BucketCount:
    width: int
    height: int
    count: int


@dataclass(frozen=True)
class DatasetReport:
    folder: str
    layout: str  # "flat" | "kohya" | "empty"
    base_arch: str
    trigger: str
    caption_extension: str
    resolution: int
    subsets: tuple[SubsetInfo, ...]
    images: tuple[ImageInfo, ...]
    issues: tuple[DatasetIssue, ...]
    buckets: tuple[BucketCount, ...]
    count_level: str  # "none" | "too-few" | "minimum" | "fair" | "recommended" | "good" | "ideal" | "plenty"

    @property
    def image_count(self) -> int:
        return len(self.images)

    @property
    def errors(self) -> tuple[DatasetIssue, ...]:
        return tuple(i for i in self.issues if i.severity == ERROR)

    @property
    def warnings(self) -> tuple[DatasetIssue, ...]:
        return tuple(i for i in self.issues if i.severity == WARNING)

    @property
    def ok(self) -> bool:
        """True when nothing would make sd-scripts fail (warnings may still hurt the result)."""
        return not self.errors

    def missing_captions(self) -> tuple[ImageInfo, ...]:
        return tuple(i for i in self.images if i.caption_status == "missing")

    def issues_with(self, code: str) -> tuple[DatasetIssue, ...]:
        return tuple(i for i in self.issues if i.code == code)

    def format(self, max_per_code: int = 5) -> str:
        """A plain-text report for a terminal or a log."""
        layout = {
            "flat": "a flat folder of images",
            "kohya": "a kohya parent folder of <repeats>_<name> sub-folders",
            "empty": "no images",
        }[self.layout]
        lines = [
            f"Dataset: {self.folder}",
            f"  layout: {layout}",
            f"  images: {self.image_count}  (base {self.base_arch}, {self.resolution} px, "
            f"captions *{self.caption_extension}, trigger {self.trigger!r})",
        ]
        for s in self.subsets:
            lines.append(
                f"  folder {os.path.basename(s.image_dir) or s.image_dir}: {s.image_count} images × "
                f"{s.num_repeats} repeats, class tokens {s.class_tokens!r}"
            )
        if self.buckets:
            lines.append("  buckets: " + ", ".join(f"{b.width}×{b.height}: {b.count}" for b in self.buckets))
        counts = {sev: sum(1 for i in self.issues if i.severity == sev) for sev in (ERROR, WARNING, INFO)}
        lines.append(f"  {counts[ERROR]} errors, {counts[WARNING]} warnings, {counts[INFO]} notes")
        by_code: dict[str, list[DatasetIssue]] = {}
        for issue in sorted(self.issues, key=lambda i: _SEVERITY_ORDER[i.severity]):
            by_code.setdefault(issue.code, []).append(issue)
        for code, group in by_code.items():
            for issue in group[:max_per_code]:
                lines.append(f"  [{issue.severity}] {issue.message}")
            if len(group) > max_per_code:
                lines.append(f"  [{group[0].severity}] ... and {len(group) - max_per_code} more ({code})")
        return "\n".join(lines)


# -- image count guidance ----------------------------------------------------------------------------


def count_guidance(n: int) -> tuple[str, str, str]:
    """(severity, level, message) for an image count, after the guidance LoRA trainers follow."""
    if n == 0:
        return ERROR, "none", "no training images found"
    if n < 15:
        return WARNING, "too-few", f"{n} images is too few: 15–20 is the minimum, 30–50 is recommended"
    if n <= 20:
        return INFO, "minimum", f"{n} images is the minimum viable (30–50 recommended, 80–100 ideal)"
    if n < 30:
        return INFO, "fair", f"{n} images: workable; 30–50 is recommended"
    if n <= 50:
        return INFO, "recommended", f"{n} images: in the recommended 30–50"
    if n < 80:
        return INFO, "good", f"{n} images: more than the recommended 30–50 (80–100 is ideal)"
    if n <= 100:
        return INFO, "ideal", f"{n} images: in the ideal 80–100"
    return INFO, "plenty", f"{n} images: more than the 80–100 a character needs (fine for a style)"


# -- buckets (sd-scripts' enable_bucket behaviour, without bucket_no_upscale) --------------------------


def bucket_resolutions(
    resolution: int, min_size: int = MIN_BUCKET_RESO, max_size: int = 1024, step: int = BUCKET_RESO_STEPS
) -> list[tuple[int, int]]:
    """The (width, height) buckets for a square training resolution: every width from ``min_size`` to
    ``max_size`` in ``step`` px with the tallest height (a multiple of ``step``, within the limits) whose
    area stays at most ``resolution²``; both orientations, plus the square."""
    area = resolution * resolution
    side = int(math.isqrt(area) // step) * step
    out = {(side, side)}
    w = min_size
    while w <= max_size:
        h = min(max_size, (area // w) // step * step)
        if h >= min_size:
            out.add((w, h))
            out.add((h, w))
        w += step
    return sorted(out)


def select_bucket(width: int, height: int, buckets: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is nearest the image's (an exact size match wins)."""
    if (width, height) in buckets:
        return (width, height)
    ratio = width / height
    return min(buckets, key=lambda b: abs(b[0] / b[1] - ratio))


# -- reading one image --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ImageResult:
    width: int | None
    height: int | None
    error: str | None
    notes: tuple[tuple[str, str, str], ...]  # (severity, code, message)
    dhash: int | None
    mean_rgb: tuple[float, float, float] | None


def _has_end_marker(path: str, fmt: str | None) -> bool:
    """A JPEG ends with FF D9 and a PNG with an IEND chunk (within the last KiB, allowing trailing bytes)."""
    marker = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}.get(fmt or "")
    if marker is None:
        return True
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 1024))
        return marker in f.read()


def _difference_hash(gray9x8: np.ndarray) -> int:
    bits = (gray9x8[:, 1:] > gray9x8[:, :-1]).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def _read_image(path: str) -> _ImageResult:
    notes: list[tuple[str, str, str]] = []
    name = os.path.basename(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
            fmt = im.format
            im.verify()
        with Image.open(path) as im:
            orientation = im.getexif().get(_EXIF_ORIENTATION)
            im.load()
            mode = im.mode
            has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info)
            if has_alpha:
                alpha = im.convert("RGBA").getchannel("A")
                lo, _hi = alpha.getextrema()
                if int(lo) < 255:
                    notes.append(
                        (
                            WARNING,
                            "transparency",
                            f"{name} has transparent pixels: sd-scripts drops the alpha channel, so they train "
                            "as whatever colour is stored under them (often black); flatten it onto a background",
                        )
                    )
            if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                notes.append(
                    (
                        WARNING,
                        "high-bit-depth",
                        f"{name} is a {mode} (16/32-bit) image: converting it to 8-bit RGB clips it; save it as 8-bit",
                    )
                )
                im_rgb = im.convert("L").convert("RGB") if mode.startswith("I;16") else im.convert("RGB")
            else:
                im_rgb = im.convert("RGB")
            small = im_rgb.resize((32, 32), Image.Resampling.BILINEAR, reducing_gap=2.0)
    except Image.DecompressionBombError as exc:
        return _ImageResult(None, None, f"too large to open safely ({exc})", (), None, None)
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, ValueError, struct.error ...)
        msg = str(exc) or type(exc).__name__
        return _ImageResult(None, None, msg, (), None, None)
    if not _has_end_marker(path, fmt):
        return _ImageResult(width, height, f"the {fmt} data is truncated (no end-of-image marker)", (), None, None)
    if orientation not in (None, 1) and isinstance(orientation, int):
        how = _ORIENTATION_TEXT.get(orientation, f"orientation {orientation}")
        notes.append(
            (
                WARNING,
                "exif-rotation",
                f"{name} is stored {how} with an EXIF rotation tag: sd-scripts ignores the tag and trains it "
                "as stored; save it rotated",
            )
        )
    arr = np.asarray(small, dtype=np.float32)
    mean = arr.reshape(-1, 3).mean(axis=0)
    gray = np.asarray(small.convert("L").resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    return _ImageResult(
        width,
        height,
        None,
        tuple(notes),
        _difference_hash(gray),
        (float(mean[0]), float(mean[1]), float(mean[2])),
    )


# -- captions -------------------------------------------------------------------------------------------


def trigger_pattern(trigger: str) -> re.Pattern[str]:
    """The trigger as a whole word (no letter, digit or ``_`` right before or after), case-insensitive."""
    return re.compile(r"(?<!\w)" + re.escape(trigger.strip()) + r"(?!\w)", re.IGNORECASE)


def _read_caption(path: str) -> tuple[str, str | None, list[tuple[str, str, str]]]:
    """(status, first line, notes) of a caption file as sd-scripts reads it."""
    name = os.path.basename(path)
    notes: list[tuple[str, str, str]] = []
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return "missing", None, notes
    except OSError as exc:
        return "unreadable", None, [(ERROR, "caption-unreadable", f"{name}: cannot read the caption ({exc.strerror})")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "unreadable", None, [
            (ERROR, "caption-not-utf8", f"{name} is not UTF-8 text: sd-scripts stops on it; save it as UTF-8")
        ]
    if text.startswith("\ufeff"):
        notes.append(
            (
                WARNING,
                "caption-bom",
                f"{name} starts with a UTF-8 byte-order mark: sd-scripts keeps it, so the first word gets an "
                "invisible character; save it without BOM",
            )
        )
        text = text[1:]
    lines = text.splitlines()
    if not data or not lines:
        return "empty-file", None, [
            (
                ERROR,
                "empty-caption-file",
                f"{name} is an empty file: sd-scripts stops with 'caption file is empty'; write a caption or "
                "delete the file",
            )
        ]
    first = lines[0].strip()
    if sum(1 for line in lines if line.strip()) > 1:
        notes.append((INFO, "multiline-caption", f"{name} has several lines: sd-scripts reads only the first"))
    if not first:
        notes.append((WARNING, "blank-caption", f"{name}: the first line is blank, so the image trains with no caption"))
        return "blank", "", notes
    return "ok", first, notes


# -- folder layout --------------------------------------------------------------------------------------


def _is_image_name(name: str) -> bool:
    ext = os.path.splitext(name)[1]
    return ext.lower() in IMAGE_EXTENSIONS


def _sd_scripts_sees(name: str) -> bool:
    """sd-scripts globs ``*.png`` and ``*.PNG`` ...: mixed-case extensions only match on Windows, and
    dot-files (macOS ``._x.jpg``) never match."""
    if name.startswith("."):
        return False
    ext = os.path.splitext(name)[1]
    return ext in IMAGE_EXTENSIONS or ext in tuple(e.upper() for e in IMAGE_EXTENSIONS) or os.name == "nt"


def _list_dir(path: str) -> tuple[list[str], list[str]]:
    """(files, sub-folders), names sorted."""
    files: list[str] = []
    dirs: list[str] = []
    try:
        with os.scandir(path) as it:
            for entry in it:
                try:
                    if entry.is_dir():
                        dirs.append(entry.name)
                    elif entry.is_file():
                        files.append(entry.name)
                except OSError:
                    continue
    except OSError as exc:
        raise TrainingError(f"cannot read the dataset folder {path}: {exc.strerror}") from exc
    return sorted(files), sorted(dirs)


def _collect_images(
    folder: str, files: Sequence[str], issues: list[DatasetIssue]
) -> list[str]:
    images: list[str] = []
    others: list[str] = []
    for name in files:
        full = os.path.join(folder, name)
        if _is_image_name(name):
            if name.startswith("."):
                continue  # hidden files (macOS ._ resource forks): sd-scripts never sees them
            if _sd_scripts_sees(name):
                images.append(full)
            else:
                issues.append(
                    DatasetIssue(
                        WARNING,
                        "extension-case",
                        f"{name}: sd-scripts only reads extensions in all lower or all upper case on this "
                        f"system, so it skips this image; rename it to {os.path.splitext(name)[0]}"
                        f"{os.path.splitext(name)[1].lower()}",
                        full,
                    )
                )
        elif os.path.splitext(name)[1].lower() in OTHER_IMAGE_EXTENSIONS:
            others.append(full)
    for full in others:
        issues.append(
            DatasetIssue(
                INFO,
                "unsupported-format",
                f"{os.path.basename(full)}: sd-scripts does not read this format (use PNG, JPEG, WebP or BMP)",
                full,
            )
        )
    return images


def _count_images(folder: str) -> int:
    try:
        files, _ = _list_dir(folder)
    except TrainingError:
        return 0
    return sum(1 for n in files if _is_image_name(n) and not n.startswith("."))


# -- the check ------------------------------------------------------------------------------------------


def check_dataset(
    folder: str | os.PathLike[str],
    trigger: str,
    base_arch: str = "sd1",
    caption_extension: str = ".txt",
    *,
    resolution: int | None = None,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
    duplicate_max_distance: int = DUPLICATE_MAX_DISTANCE,
) -> DatasetReport:
    """Check a training folder for ``base_arch`` ("sd1" | "sd2" | "sdxl" | "sd3" | "flux1").

    ``resolution`` is the training resolution (default: the base's native one). ``progress(done, total,
    path)`` is called after each image. Images are decoded on ``workers`` threads (default up to 4).
    Raises :class:`TrainingError` only when the folder itself cannot be used (missing, not a folder,
    unreadable) or an argument is wrong; everything about its content is an issue in the report.
    """
    arch = base_arch.strip().lower()
    if arch in ("sd15", "sd1.5"):
        arch = "sd1"
    if arch not in NATIVE_RESOLUTION:
        raise TrainingError(
            f"unknown base architecture {base_arch!r} for the dataset check (one of: {', '.join(NATIVE_RESOLUTION)})"
        )
    if not caption_extension.startswith(".") or len(caption_extension) < 2 or os.sep in caption_extension:
        raise TrainingError(f"caption extension must look like '.txt' (got {caption_extension!r})")
    trig = trigger.strip()
    if not trig:
        raise TrainingError("the trigger word is empty")
    root = os.path.abspath(os.fspath(folder))
    if not os.path.exists(root):
        raise TrainingError(f"dataset folder not found: {root}")
    if not os.path.isdir(root):
        raise TrainingError(f"the dataset path is not a folder: {root}")
    native = NATIVE_RESOLUTION[arch]
    reso = resolution or native
    issues: list[DatasetIssue] = []

    files, dirs = _list_dir(root)
    repeat_dirs = [(d, _KOHYA_DIR.match(d)) for d in dirs]
    kohya = [(d, m) for d, m in repeat_dirs if m is not None]
    m: re.Match[str] | None
    subset_specs: list[tuple[str, int, str]] = []  # (dir, repeats, class tokens)
    if kohya:
        layout = "kohya"
        for d, m in kohya:
            repeats = int(m.group(1))
            class_tokens = m.group(2) or ""
            full = os.path.join(root, d)
            if repeats < 1:
                issues.append(
                    DatasetIssue(WARNING, "zero-repeats", f"folder {d}: 0 repeats, so sd-scripts skips it", full)
                )
                continue
            subset_specs.append((full, repeats, class_tokens))
        loose = [n for n in files if _is_image_name(n) and not n.startswith(".")]
        if loose:
            issues.append(
                DatasetIssue(
                    WARNING,
                    "ignored-images",
                    f"{len(loose)} images lie directly in {os.path.basename(root)} beside the <repeats>_<name> "
                    "folders: sd-scripts does not train on them; move them into a repeat folder",
                    os.path.join(root, loose[0]),
                )
            )
        for d, m in repeat_dirs:
            if m is None and _count_images(os.path.join(root, d)):
                issues.append(
                    DatasetIssue(
                        INFO,
                        "ignored-folder",
                        f"folder {d} does not start with a repeat count (like 10_{d}), so sd-scripts skips it",
                        os.path.join(root, d),
                    )
                )
    else:
        layout = "flat"
        subset_specs.append((root, 1, trig))
        for d in dirs:
            n = _count_images(os.path.join(root, d))
            if n:
                issues.append(
                    DatasetIssue(
                        INFO,
                        "ignored-folder",
                        f"sub-folder {d} ({n} images) is not searched: only images directly in the folder train",
                        os.path.join(root, d),
                    )
                )

    # image paths per subset
    per_subset: list[tuple[str, int, str, list[str]]] = []
    for full, repeats, class_tokens in subset_specs:
        sub_files = files if full == root else _list_dir(full)[0]
        per_subset.append((full, repeats, class_tokens, _collect_images(full, sub_files, issues)))
    all_images = [(sub, path) for sub, _r, _c, paths in per_subset for path in paths]
    if not all_images:
        layout = "empty" if layout == "flat" else layout

    # decode images (threads: PIL releases the GIL while decoding)
    total = len(all_images)
    results: list[_ImageResult] = []
    n_workers = max(1, min(workers or min(4, os.cpu_count() or 1), 16))
    if total:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            for i, res in enumerate(pool.map(_read_image, [p for _s, p in all_images])):
                results.append(res)
                if progress is not None:
                    progress(i + 1, total, all_images[i][1])

    trig_re = trigger_pattern(trig)
    buckets = bucket_resolutions(reso, MIN_BUCKET_RESO, max(MAX_BUCKET_RESO[arch], reso), BUCKET_RESO_STEPS)
    class_tokens_of = {full: ct for full, _r, ct, _p in per_subset}
    images: list[ImageInfo] = []
    for (sub, path), res in zip(all_images, results, strict=True):
        name = os.path.basename(path)
        if res.error is not None:
            issues.append(DatasetIssue(ERROR, "corrupt-image", f"{name} cannot be read: {res.error}", path))
        for severity, code, message in res.notes:
            issues.append(DatasetIssue(severity, code, message, path))
        bucket = None
        if res.width and res.height and res.error is None:
            bucket = select_bucket(res.width, res.height, buckets)
            if res.width * res.height < native * native:
                scale = math.sqrt(native * native / (res.width * res.height))
                issues.append(
                    DatasetIssue(
                        WARNING,
                        "low-resolution",
                        f"{name} is {res.width}×{res.height}, below the {native}×{native} the base was trained "
                        f"at: it is upscaled ×{scale:.1f} and will look soft",
                        path,
                    )
                )
        caption_path = os.path.splitext(path)[0] + caption_extension
        status, caption, notes = _read_caption(caption_path)
        for severity, code, message in notes:
            issues.append(DatasetIssue(severity, code, message, caption_path))
        class_tokens = class_tokens_of[sub]
        if status == "missing":
            alternatives = [
                os.path.basename(os.path.splitext(path)[0] + ext)
                for ext in OTHER_CAPTION_EXTENSIONS
                if ext != caption_extension and os.path.isfile(os.path.splitext(path)[0] + ext)
            ]
            if alternatives:
                issues.append(
                    DatasetIssue(
                        WARNING,
                        "caption-other-extension",
                        f"{name} has no {caption_extension} caption but has {alternatives[0]}: set the caption "
                        f"extension to {os.path.splitext(alternatives[0])[1]}",
                        path,
                    )
                )
            else:
                fallback = f"the folder's class tokens {class_tokens!r}" if class_tokens else "an empty caption"
                issues.append(
                    DatasetIssue(
                        WARNING,
                        "missing-caption",
                        f"{name} has no caption ({os.path.basename(caption_path)}): it trains with {fallback}",
                        path,
                    )
                )
            if not trig_re.search(class_tokens):
                issues.append(
                    DatasetIssue(
                        WARNING,
                        "no-trigger",
                        f"{name}: no caption and the folder's class tokens {class_tokens!r} lack the trigger "
                        f"{trig!r}, so the LoRA will not learn it",
                        path,
                    )
                )
        elif status == "ok" and caption is not None and not trig_re.search(caption):
            issues.append(
                DatasetIssue(
                    WARNING,
                    "no-trigger",
                    f"{os.path.basename(caption_path)} does not contain the trigger {trig!r}",
                    caption_path,
                )
            )
        images.append(
            ImageInfo(
                path=path,
                subset_dir=sub,
                width=res.width,
                height=res.height,
                readable=res.error is None,
                caption_path=caption_path,
                caption_status=status,
                caption=caption,
                bucket=bucket,
                dhash=res.dhash,
                mean_rgb=res.mean_rgb,
            )
        )

    issues.extend(_duplicate_issues(images, duplicate_max_distance))

    severity, level, message = count_guidance(len(images))
    count_issue = DatasetIssue(severity, "image-count", message)
    if not images and layout == "empty":
        count_issue = DatasetIssue(
            ERROR,
            "image-count",
            f"no training images in {root} (sd-scripts reads .png .jpg .jpeg .webp .bmp directly in the folder, "
            "or in <repeats>_<name> sub-folders)",
        )

    bucket_counts: dict[tuple[int, int], int] = {}
    for img in images:
        if img.bucket is not None:
            bucket_counts[img.bucket] = bucket_counts.get(img.bucket, 0) + 1
    subsets = tuple(
        SubsetInfo(image_dir=full, num_repeats=r, class_tokens=ct, image_count=len(paths))
        for full, r, ct, paths in per_subset
    )
    for s in subsets:
        if layout == "kohya" and s.image_count == 0:
            issues.append(
                DatasetIssue(WARNING, "empty-folder", f"folder {os.path.basename(s.image_dir)} has no images", s.image_dir)
            )
    ordered = [count_issue] + sorted(issues, key=lambda i: _SEVERITY_ORDER[i.severity])
    return DatasetReport(
        folder=root,
        layout=layout,
        base_arch=arch,
        trigger=trig,
        caption_extension=caption_extension,
        resolution=reso,
        subsets=subsets,
        images=tuple(images),
        issues=tuple(ordered),
        buckets=tuple(BucketCount(w, h, c) for (w, h), c in sorted(bucket_counts.items())),
        count_level=level,
    )


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def hamming_distances(hashes: np.ndarray, index: int) -> np.ndarray:
    """Bit differences between ``hashes[index]`` and every later hash (``hashes`` is uint64)."""
    x = hashes[index + 1 :] ^ hashes[index]
    return _POPCOUNT[x.view(np.uint8).reshape(-1, 8)].sum(axis=1)


def _duplicate_issues(images: Sequence[ImageInfo], max_distance: int) -> list[DatasetIssue]:
    usable = [i for i in images if i.dhash is not None and i.mean_rgb is not None]
    n = len(usable)
    if n < 2:
        return []
    hashes = np.array([i.dhash for i in usable], dtype=np.uint64)
    colours = np.array([i.mean_rgb for i in usable], dtype=np.float32)
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i in range(n - 1):
        dist = hamming_distances(hashes, i)
        near = np.nonzero(dist <= max_distance)[0]
        if near.size == 0:
            continue
        cand = near + i + 1
        close = np.abs(colours[cand] - colours[i]).max(axis=1) <= DUPLICATE_COLOUR_DELTA
        for j in cand[close]:
            ra, rb = find(i), find(int(j))
            if ra != rb:
                parent[rb] = ra
    groups: dict[int, list[int]] = {}
    for k in range(n):
        groups.setdefault(find(k), []).append(k)
    out: list[DatasetIssue] = []
    for members in groups.values():
        if len(members) < 2:
            continue
        paths = [usable[k].path for k in members]
        names = ", ".join(os.path.basename(p) for p in paths[:6]) + (" ..." if len(paths) > 6 else "")
        out.append(
            DatasetIssue(
                WARNING,
                "near-duplicate",
                f"{len(paths)} near-identical images ({names}): duplicates weigh that picture {len(paths)}× — "
                "keep one unless that is intended",
                paths[0],
                tuple(paths[1:]),
            )
        )
    return out


# -- writing captions (only on request) -------------------------------------------------------------------


def write_missing_captions(report: DatasetReport, trigger: str, template: str = "{trigger}") -> tuple[str, ...]:
    """Create the caption file of every image the report found without one; return the paths written.

    The text is ``template`` with ``{trigger}`` replaced (e.g. ``"{trigger}, 1girl"``). Existing files —
    empty ones included — are never touched: each file is created with exclusive-create mode, so a
    caption that appeared since the check is kept as it is.
    """
    trig = trigger.strip()
    if not trig:
        raise TrainingError("the trigger word is empty")
    text = template.replace("{trigger}", trig).strip()
    if not text:
        raise TrainingError("the caption template gives an empty caption")
    if "\n" in text or "\r" in text:
        raise TrainingError("the caption template must be one line (sd-scripts reads only the first line)")
    written: list[str] = []
    for img in report.missing_captions():
        try:
            with open(img.caption_path, "x", encoding="utf-8", newline="\n") as f:
                f.write(text + "\n")
        except FileExistsError:
            continue
        except OSError as exc:
            raise TrainingError(
                f"cannot write the caption {img.caption_path}: {exc.strerror} ({len(written)} written before it)"
            ) from exc
        written.append(img.caption_path)
    return tuple(written)
