"""Dataset coverage: what a character dataset has and lacks in angles, expressions, lighting, backgrounds
and outfits, with concrete advice and the evidence behind each finding.

Sources, combined per image and kept as :class:`Evidence`:

- the captions, read through the word table in :mod:`lib_lora.train.coverage_table` (booru tags and
  plain-language phrases);
- the pixels, where no model is needed (numpy on a 128 px thumbnail): a simple / solid background when the
  border strip is nearly one colour, low light from the mean brightness, backlight when the centre is much
  darker than a bright border, dramatic side light when one side is much brighter than the other;
- the near-duplicates the dataset check already found (a group counts as one distinct image).

Counts are judged against the guidance character-LoRA trainers follow: 15–20 images minimum, 30–50
recommended, 80–100 ideal; every angle, expression and lighting present; about 30% simple backgrounds and
70% varied scenes; 3–4 outfits. Caption evidence wins over pixel evidence when both say something.
Nothing is written; images are only read.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from lib_lora.train import coverage_table as table
from lib_lora.train.dataset import DatasetReport, count_guidance

ADVICE = "advice"  # something to add or change
NOTE = "note"  # the report cannot tell (captions silent) or a fact worth knowing
OK = "ok"  # the dimension meets the guidance

#: pixel thresholds (0..255 luminance) — measured on a 128 px thumbnail
BORDER_SHARE = 0.08  # width of the border strip, share of the short side
BORDER_TOLERANCE = 24.0  # a border pixel is "the background colour" within this per channel
SIMPLE_UNIFORMITY = 0.90  # share of border pixels of one colour for a simple background
BUSY_UNIFORMITY = 0.50  # below this the border is a busy scene
LOW_LIGHT_LUMINANCE = 60.0
BACKLIT_BORDER = 150.0
BACKLIT_DROP = 80.0
BACKLIT_CENTRE_MAX = 100.0  # a backlit subject is dark (a lit figure on white is not backlit)
SIDE_LIGHT_DIFFERENCE = 60.0
SIDE_LIGHT_CONTRAST = 45.0
THUMBNAIL = 128

ProgressCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Evidence:
    file: str
    source: str  # "caption" | "pixels" | "duplicates"
    detail: str  # the words matched, or the measurement


@dataclass(frozen=True)
class PixelStats:
    luminance: float  # mean, 0..255
    contrast: float  # standard deviation of luminance
    border_uniformity: float  # share of border pixels within BORDER_TOLERANCE of the border's median colour
    border_colour: tuple[int, int, int]
    border_luminance: float
    centre_minus_border: float  # mean luminance of the centre minus that of the border
    side_difference: float  # left third minus right third (signed)

    @property
    def simple_background(self) -> bool:
        return self.border_uniformity >= SIMPLE_UNIFORMITY

    @property
    def busy_background(self) -> bool:
        return self.border_uniformity < BUSY_UNIFORMITY

    @property
    def low_light(self) -> bool:
        return self.luminance < LOW_LIGHT_LUMINANCE

    @property
    def backlit(self) -> bool:
        centre = self.border_luminance + self.centre_minus_border
        return (self.border_luminance >= BACKLIT_BORDER and self.centre_minus_border <= -BACKLIT_DROP
                and centre <= BACKLIT_CENTRE_MAX)

    @property
    def side_light(self) -> bool:
        return abs(self.side_difference) >= SIDE_LIGHT_DIFFERENCE and self.contrast >= SIDE_LIGHT_CONTRAST

    def findings(self) -> list[tuple[str, str, str]]:
        """(dimension, category, measurement) the pixels say, the first per dimension winning."""
        out: list[tuple[str, str, str]] = []
        if self.backlit:
            out.append(("lighting", "backlit", f"bright border (luminance {self.border_luminance:.0f}), centre "
                                               f"{-self.centre_minus_border:.0f} darker"))
        if self.low_light:
            out.append(("lighting", "low-light", f"mean luminance {self.luminance:.0f}/255"))
        if self.side_light:
            side = "left" if self.side_difference > 0 else "right"
            out.append(("lighting", "side-light", f"{side} side {abs(self.side_difference):.0f} brighter, "
                                                  f"contrast {self.contrast:.0f}"))
        if self.simple_background:
            out.append(("backgrounds", "simple", f"{self.border_uniformity:.0%} of the border is one colour "
                                                 f"{self.border_colour}"))
        elif self.busy_background:
            out.append(("backgrounds", "varied", f"only {self.border_uniformity:.0%} of the border is one colour"))
        return out


@dataclass(frozen=True)
class ImageCoverage:
    path: str
    angle: str | None  # category ids of coverage_table, None when nothing says
    expression: str | None
    lighting: str | None
    background: str | None
    outfit: str | None  # "red dress + black jacket"; None when the caption names no clothing
    evidence: tuple[Evidence, ...]
    pixels: PixelStats | None = None
    duplicate_of: str | None = None  # the first image of its near-duplicate group (then it counts once)

    def value(self, dimension: str) -> str | None:
        return {
            "angles": self.angle,
            "expressions": self.expression,
            "lighting": self.lighting,
            "backgrounds": self.background,
            "outfits": self.outfit,
        }[dimension]


@dataclass(frozen=True)
class CategoryCoverage:
    id: str
    label: str
    count: int
    files: tuple[str, ...]


@dataclass(frozen=True)
class Finding:
    dimension: str  # "count" or a dimension id
    level: str  # ADVICE | NOTE | OK
    code: str  # stable: "missing-category", "dominant", "unknown", "background-share", "few-outfits" ...
    message: str
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True)
class DimensionCoverage:
    id: str
    label: str
    categories: tuple[CategoryCoverage, ...]
    unknown: tuple[str, ...]  # distinct images nothing says anything about
    findings: tuple[Finding, ...]

    def count(self, category: str) -> int:
        return next((c.count for c in self.categories if c.id == category), 0)

    def summary(self) -> str:
        """"front 12, profile 0, ...; 4 unknown"."""
        counts = ", ".join(f"{c.id} {c.count}" for c in self.categories) or "none found"
        return counts + (f"; {len(self.unknown)} unknown" if self.unknown else "")


@dataclass(frozen=True)
class CoverageReport:
    folder: str
    image_count: int
    distinct_count: int  # near-duplicate groups count once
    count_level: str
    count_findings: tuple[Finding, ...]
    dimensions: tuple[DimensionCoverage, ...]
    images: tuple[ImageCoverage, ...]
    pixels_checked: bool

    @property
    def findings(self) -> tuple[Finding, ...]:
        return self.count_findings + tuple(f for d in self.dimensions for f in d.findings)

    @property
    def advice(self) -> tuple[str, ...]:
        return tuple(f.message for f in self.findings if f.level == ADVICE)

    def dimension(self, dim_id: str) -> DimensionCoverage:
        for d in self.dimensions:
            if d.id == dim_id:
                return d
        raise KeyError(dim_id)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["advice"] = list(self.advice)
        return d

    def format(self, max_evidence: int = 3) -> str:
        """Plain text for a terminal or a log."""
        lines = [
            f"Coverage: {self.distinct_count} distinct images"
            + (f" of {self.image_count}" if self.distinct_count != self.image_count else "")
            + " (minimum 15–20, recommended 30–50, ideal 80–100)"
            + ("" if self.pixels_checked else "; pixels not checked")
        ]
        for f in self.count_findings:
            lines.append(f"  [{f.level}] {f.message}")
        for dim in self.dimensions:
            lines.append(f"  {dim.label}: {dim.summary()}")
            for f in dim.findings:
                lines.append(f"    [{f.level}] {f.message}")
                for ev in f.evidence[:max_evidence]:
                    lines.append(f"        {os.path.basename(ev.file)}: {ev.source} {ev.detail}")
        return "\n".join(lines)


# -- caption matching -----------------------------------------------------------------------------------


_NEGATED = re.compile(r"(?:^|[^0-9a-z])(?:" + "|".join(table.NEGATIONS) + r")[\s-]+(?:(?:a|an|the)\s+)?$")


def _phrase_pattern(words: Sequence[str]) -> re.Pattern[str]:
    alts = sorted({w.lower() for w in words}, key=len, reverse=True)
    return re.compile(r"(?<![0-9a-z])(?:" + "|".join(re.escape(a) for a in alts) + r")(?![0-9a-z])")


@dataclass(frozen=True)
class _Matcher:
    phrases: re.Pattern[str] | None
    tags: frozenset[str]  # words written "=word": whole tags only

    @classmethod
    def of(cls, words: Sequence[str]) -> _Matcher:
        tags = frozenset(w[1:].lower() for w in words if w.startswith("="))
        free = [w for w in words if not w.startswith("=")]
        return cls(_phrase_pattern(free) if free else None, tags)

    def find(self, text: str, tags: frozenset[str]) -> list[str]:
        found = sorted(self.tags & tags)
        if self.phrases is not None:
            for m in self.phrases.finditer(text):
                if not _NEGATED.search(text[: m.start()]):
                    found.append(m.group(0))
        return found


_MATCHERS: dict[str, tuple[tuple[table.Category, _Matcher], ...]] = {
    dim.id: tuple((cat, _Matcher.of(cat.words)) for cat in dim.categories) for dim in table.DIMENSIONS
}
_GARMENT = re.compile(
    r"(?<![0-9a-z])(?:(" + "|".join(re.escape(c) for c in sorted(table.OUTFIT_COLOURS, key=len, reverse=True))
    + r")\s+)?(" + "|".join(re.escape(g) for g in sorted(table.GARMENTS, key=len, reverse=True)) + r")(?![0-9a-z])"
)


def normalise_caption(caption: str) -> tuple[str, frozenset[str]]:
    """(lower-case text with ``_`` as a space, the set of its comma-separated tags)."""
    text = caption.lower().replace("_", " ")
    text = re.sub(r"\s+", " ", text)
    tags = frozenset(t.strip(" .;()[]{}") for t in text.split(","))
    return text, tags


def classify_caption(caption: str, dimension: str) -> tuple[str | None, tuple[str, ...]]:
    """(category id, the words that said so) of one caption for a dimension of the table; the first
    category in table order with a match wins."""
    text, tags = normalise_caption(caption)
    for cat, matcher in _MATCHERS[dimension]:
        words = matcher.find(text, tags)
        if words:
            return cat.id, tuple(dict.fromkeys(words))
    return None, ()


def outfit_of(caption: str) -> tuple[str, ...]:
    """The garments a caption names, each with its colour word when it has one, deduplicated (a bare
    ``shirt`` beside ``white shirt`` and ``skirt`` beside ``pleated skirt`` are dropped), sorted."""
    text, _tags = normalise_caption(caption)
    found: list[str] = []
    for m in _GARMENT.finditer(text):
        if _NEGATED.search(text[: m.start()]):
            continue
        found.append(f"{m.group(1)} {m.group(2)}" if m.group(1) else m.group(2))
    unique = set(found)
    kept = {g for g in unique if not any(o != g and o.endswith(" " + g) for o in unique)}
    return tuple(sorted(kept))


# -- pixels ---------------------------------------------------------------------------------------------


def pixel_stats(path: str) -> PixelStats | None:
    """Brightness, contrast and border measurements of one image; None when it cannot be read."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (THUMBNAIL * 2, THUMBNAIL * 2))
            rgb = im.convert("RGB")
        rgb.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR)
    except Exception:  # PIL raises many types; the dataset check already reports unreadable images
        return None
    return stats_of_array(np.asarray(rgb, dtype=np.float32))


def stats_of_array(a: np.ndarray) -> PixelStats:
    """:class:`PixelStats` of an RGB array (H, W, 3) with values 0..255."""
    lum = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    h, w = lum.shape
    b = max(1, round(min(h, w) * BORDER_SHARE))
    mask = np.zeros((h, w), dtype=bool)
    mask[:b, :] = mask[-b:, :] = mask[:, :b] = mask[:, -b:] = True
    border = a[mask]
    median = np.median(border, axis=0)
    uniform = float((np.abs(border - median).max(axis=1) <= BORDER_TOLERANCE).mean())
    border_lum = float(lum[mask].mean())
    centre = lum[h // 4 : max(h // 4 + 1, 3 * h // 4), w // 4 : max(w // 4 + 1, 3 * w // 4)]
    third = max(1, w // 3)
    return PixelStats(
        luminance=float(lum.mean()),
        contrast=float(lum.std()),
        border_uniformity=uniform,
        border_colour=(int(median[0]), int(median[1]), int(median[2])),
        border_luminance=border_lum,
        centre_minus_border=float(centre.mean()) - border_lum,
        side_difference=float(lum[:, :third].mean() - lum[:, -third:].mean()),
    )


# -- one image ------------------------------------------------------------------------------------------


def classify_image(path: str, caption: str | None, pixels: PixelStats | None,
                   duplicate_of: str | None = None) -> ImageCoverage:
    """Combine the caption and the pixels of one image (the caption wins where both say something)."""
    evidence: list[Evidence] = []
    values: dict[str, str | None] = {}
    for dim in table.DIMENSIONS:
        cat, words = classify_caption(caption, dim.id) if caption else (None, ())
        if cat is not None:
            evidence.append(Evidence(path, "caption", f"{dim.id}={cat}: " + ", ".join(repr(w) for w in words)))
        values[dim.id] = cat
    for dim_id, cat, detail in (pixels.findings() if pixels is not None else ()):
        if values[dim_id] is None:  # the caption wins where it says something
            values[dim_id] = cat
            evidence.append(Evidence(path, "pixels", f"{dim_id}={cat}: {detail}"))
    garments = outfit_of(caption) if caption else ()
    if garments:
        evidence.append(Evidence(path, "caption", "outfit: " + " + ".join(garments)))
    if duplicate_of is not None:
        evidence.append(Evidence(path, "duplicates", f"near-duplicate of {os.path.basename(duplicate_of)}"))
    return ImageCoverage(
        path=path,
        angle=values["angles"],
        expression=values["expressions"],
        lighting=values["lighting"],
        background=values["backgrounds"],
        outfit=" + ".join(garments) if garments else None,
        evidence=tuple(evidence),
        pixels=pixels,
        duplicate_of=duplicate_of,
    )


# -- the report -----------------------------------------------------------------------------------------


def add_range(n: int) -> str:
    """How many images of a missing kind to add for a dataset of ``n`` distinct images: "2–3" up to
    about 25 images, then about a tenth."""
    k = max(2, round(0.1 * max(n, 20)))
    return f"{k}–{k + 1}"


def _evidence_for(images: Sequence[ImageCoverage], dimension: str, limit: int = 5) -> tuple[Evidence, ...]:
    out: list[Evidence] = []
    prefix = "outfit:" if dimension == "outfits" else f"{dimension}="
    for img in images:
        out += [e for e in img.evidence if e.detail.startswith(prefix)]
        if len(out) >= limit:
            break
    return tuple(out[:limit])


def _dimension(dim: table.Dimension, images: Sequence[ImageCoverage]) -> DimensionCoverage:
    n = len(images)
    by_cat = {c.id: [i for i in images if i.value(dim.id) == c.id] for c in dim.categories}
    unknown = tuple(i.path for i in images if i.value(dim.id) is None)
    known = n - len(unknown)
    cats = tuple(CategoryCoverage(c.id, c.label, len(by_cat[c.id]), tuple(i.path for i in by_cat[c.id]))
                 for c in dim.categories)
    findings: list[Finding] = []
    if n == 0:
        return DimensionCoverage(dim.id, dim.label, cats, unknown, ())
    if known == 0:
        findings.append(Finding(dim.id, NOTE, "unknown",
                                f"nothing says anything about {dim.label.lower()} — {dim.add_hint} so it can be checked"))
        return DimensionCoverage(dim.id, dim.label, cats, unknown, tuple(findings))
    if dim.id == "backgrounds":
        findings += _background_findings(by_cat, images, n)
    else:
        for c in dim.categories:
            count = len(by_cat[c.id])
            if c.required and count == 0:
                findings.append(Finding(dim.id, ADVICE, "missing-category", f"no {c.label} — add {add_range(n)}"))
            elif c.required and count == 1 and n >= 20:
                findings.append(Finding(dim.id, ADVICE, "few-category",
                                        f"{c.label}: only one — add {add_range(n)} more",
                                        _evidence_for(by_cat[c.id], dim.id)))
        top = max(dim.categories, key=lambda c: len(by_cat[c.id]))
        top_n = len(by_cat[top.id])
        if known >= 5 and top_n > table.DOMINANT_SHARE * known:
            findings.append(Finding(dim.id, ADVICE, "dominant",
                                    f"{top_n} of {known} images are {top.label} — vary {dim.label.lower()} more",
                                    _evidence_for(by_cat[top.id], dim.id)))
    if unknown and len(unknown) * 2 > n:
        findings.append(Finding(dim.id, NOTE, "unknown",
                                f"{len(unknown)} of {n} images say nothing about {dim.label.lower()} — {dim.add_hint} "
                                "so they can be counted"))
    if not any(f.level == ADVICE for f in findings):
        findings.insert(0, Finding(dim.id, OK, "covered", f"{dim.label}: " + ", ".join(
            f"{c.id} {len(by_cat[c.id])}" for c in dim.categories if by_cat[c.id])))
    return DimensionCoverage(dim.id, dim.label, cats, unknown, tuple(findings))


def _background_findings(by_cat: dict[str, list[ImageCoverage]], images: Sequence[ImageCoverage],
                         n: int) -> list[Finding]:
    simple, varied = by_cat["simple"], by_cat["varied"]
    known = len(simple) + len(varied)
    share = len(simple) / known
    aim = round(table.SIMPLE_SHARE_TARGET * n)
    lo, hi = table.SIMPLE_SHARE_RANGE
    if not varied:
        return [Finding("backgrounds", ADVICE, "background-share",
                        f"all backgrounds simple — 30% is enough; put about {n - aim} in varied scenes "
                        "(indoors, outdoors, streets)", _evidence_for(simple, "backgrounds"))]
    if not simple:
        return [Finding("backgrounds", ADVICE, "background-share",
                        f"no simple or solid backgrounds — about 30% ({aim}) on a plain background helps the LoRA "
                        "separate the character from the scene", _evidence_for(varied, "backgrounds"))]
    if share > hi:
        return [Finding("backgrounds", ADVICE, "background-share",
                        f"{share:.0%} simple backgrounds — 30% is enough; more varied scenes help",
                        _evidence_for(simple, "backgrounds"))]
    if share < lo:
        return [Finding("backgrounds", ADVICE, "background-share",
                        f"only {share:.0%} simple backgrounds — about 30% ({aim}) is the aim",
                        _evidence_for(simple, "backgrounds"))]
    return []


def _outfits(images: Sequence[ImageCoverage]) -> DimensionCoverage:
    groups: dict[str, list[ImageCoverage]] = {}
    for img in images:
        if img.outfit is not None:
            groups.setdefault(img.outfit, []).append(img)
    cats = tuple(CategoryCoverage(k, k, len(v), tuple(i.path for i in v))
                 for k, v in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])))
    unknown = tuple(i.path for i in images if i.outfit is None)
    findings: list[Finding] = []
    lo, hi = table.OUTFITS_TARGET
    if images and not groups:
        findings.append(Finding("outfits", NOTE, "unknown",
                                "no caption names the clothing — tag the outfit (`school uniform`, `red dress`) so "
                                "outfits can be counted"))
    elif groups and len(groups) < lo:
        names = "; ".join(c.id for c in cats)
        findings.append(Finding("outfits", ADVICE, "few-outfits",
                                f"only {len(groups)} outfit{'s' if len(groups) > 1 else ''} ({names}) — {lo}–{hi} "
                                "different outfits keep the character apart from the clothes",
                                _evidence_for([g[0] for g in groups.values()], "outfits")))
    elif groups:
        findings.append(Finding("outfits", OK, "covered", f"{len(groups)} different outfits"))
    if unknown and groups and len(unknown) * 2 > len(images):
        findings.append(Finding("outfits", NOTE, "unknown",
                                f"{len(unknown)} of {len(images)} images name no clothing — tag the outfit so they "
                                "can be counted"))
    return DimensionCoverage("outfits", "Outfits", cats, unknown, tuple(findings))


def _count_findings(n_all: int, distinct: int, duplicate_images: Sequence[ImageCoverage]) -> tuple[str, list[Finding]]:
    _severity, level, message = count_guidance(distinct)
    findings: list[Finding] = []
    if distinct != n_all:
        message = f"{distinct} distinct images ({n_all - distinct} near-duplicates count once): " + message.split(": ", 1)[-1]
    lo_rec = table.COUNT_RECOMMENDED[0]
    if distinct < lo_rec:
        findings.append(Finding("count", ADVICE, "image-count",
                                f"{message} — add {lo_rec - distinct} or more distinct images toward 30–50",
                                tuple(e for i in duplicate_images for e in i.evidence if e.source == "duplicates")[:5]))
    else:
        findings.append(Finding("count", OK, "image-count", message))
    return level, findings


def build_coverage(folder: str, entries: Sequence[tuple[str, str | None]],
                   pixels: dict[str, PixelStats | None] | None = None,
                   duplicate_groups: Sequence[Sequence[str]] = ()) -> CoverageReport:
    """The coverage of ``entries`` ((image path, caption or None) pairs); ``pixels`` maps paths to their
    stats (None: pixels not checked); each of ``duplicate_groups`` counts as one distinct image."""
    first_of: dict[str, str] = {}
    for group in duplicate_groups:
        for p in group[1:]:
            first_of[p] = group[0]
    images = [classify_image(p, c, (pixels or {}).get(p), first_of.get(p)) for p, c in entries]
    distinct = [i for i in images if i.duplicate_of is None]
    level, count_findings = _count_findings(len(images), len(distinct), [i for i in images if i.duplicate_of])
    dims = tuple(_dimension(d, distinct) for d in table.DIMENSIONS) + (_outfits(distinct),)
    return CoverageReport(
        folder=folder,
        image_count=len(images),
        distinct_count=len(distinct),
        count_level=level,
        count_findings=tuple(count_findings),
        dimensions=dims,
        images=tuple(images),
        pixels_checked=pixels is not None,
    )


def check_coverage(report: DatasetReport, *, pixels: bool = True, progress: ProgressCallback | None = None,
                   workers: int | None = None) -> CoverageReport:
    """The coverage of a checked dataset: its captions, its pixels (unless ``pixels`` is False) and its
    near-duplicate groups. ``progress(done, total, path)`` is called after each image's pixels."""
    readable = [i for i in report.images if i.readable]
    stats: dict[str, PixelStats | None] | None = None
    if pixels and readable:
        stats = {}
        n_workers = max(1, min(workers or min(4, os.cpu_count() or 1), 16))
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            for k, (img, st) in enumerate(zip(readable, pool.map(pixel_stats, [i.path for i in readable]),
                                              strict=True)):
                stats[img.path] = st
                if progress is not None:
                    progress(k + 1, len(readable), img.path)
    elif pixels:
        stats = {}
    groups = [(i.file, *i.related) for i in report.issues_with("near-duplicate") if i.file]
    entries = [(i.path, i.caption if i.caption_status == "ok" else None) for i in readable]
    return build_coverage(report.folder, entries, stats, [tuple(g) for g in groups])


def coverage_html(cov: CoverageReport, esc: Callable[[str], str]) -> str:
    """A compact HTML block (the Train tab's "Check dataset" result); ``esc`` escapes text."""
    rows = [f"<h4>Coverage — {cov.distinct_count} distinct images</h4><ul class='lora-studio-coverage'>"]
    for f in cov.count_findings:
        rows.append(f"<li class='{f.level}'>{esc(f.message)}</li>")
    for dim in cov.dimensions:
        rows.append(f"<li><b>{esc(dim.label)}</b>: {esc(dim.summary())}<ul>")
        for f in dim.findings:
            ev = "; ".join(f"{os.path.basename(e.file)}: {e.detail}" for e in f.evidence[:3])
            title = f" title='{esc(ev)}'" if ev else ""
            rows.append(f"<li class='{f.level}'{title}>{esc(f.message)}</li>")
        rows.append("</ul></li>")
    rows.append("</ul>")
    return "".join(rows)


__all__ = [
    "ADVICE",
    "NOTE",
    "OK",
    "CategoryCoverage",
    "CoverageReport",
    "DimensionCoverage",
    "Evidence",
    "Finding",
    "ImageCoverage",
    "PixelStats",
    "add_range",
    "build_coverage",
    "check_coverage",
    "classify_caption",
    "classify_image",
    "coverage_html",
    "normalise_caption",
    "outfit_of",
    "pixel_stats",
    "stats_of_array",
]
