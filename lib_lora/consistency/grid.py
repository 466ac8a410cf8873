"""The sheet image: a grid of renders with a label column (scenes) and a header row (version and
weight), the best column framed; assembled with pillow, with its layout returned for tests and the UI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
EMPTY = (215, 215, 215)
BEST = (20, 150, 60)
LABEL_WIDTH = 170
HEADER_HEIGHT = 44
GAP = 4
LINE = 13  # px per text line of the default bitmap font


@dataclass(frozen=True)
class GridLayout:
    width: int
    height: int
    cell_width: int
    cell_height: int
    row_labels: tuple[str, ...]
    column_labels: tuple[str, ...]  # "version\nw 0.8"
    boxes: tuple[tuple[int, int, int, int], ...]  # (x0, y0, x1, y1) per cell, row by row
    best_column: int | None = None

    def box(self, row: int, column: int) -> tuple[int, int, int, int]:
        return self.boxes[row * len(self.column_labels) + column]


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's default font: the scalable one where Pillow has it (10.1+ with FreeType), else the
    bitmap one (latin-1 only: see :func:`_printable`)."""
    try:
        return ImageFont.load_default(size=12)  # type: ignore[call-arg,unused-ignore]
    except (TypeError, OSError, AttributeError):
        return ImageFont.load_default()


def _printable(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> str:
    if isinstance(font, ImageFont.FreeTypeFont):
        return text
    return text.replace("…", "...").encode("latin-1", "replace").decode("latin-1")


def _cell_size(images: Sequence[Sequence[Image.Image | None]], max_cell: int) -> tuple[int, int]:
    for row in images:
        for im in row:
            if im is not None:
                w, h = im.size
                scale = min(1.0, max_cell / max(w, h))
                return max(1, round(w * scale)), max(1, round(h * scale))
    return max_cell, max_cell


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
          width: int, max_lines: int) -> list[str]:
    lines: list[str] = []
    text = _printable(text, font)
    for para in text.split("\n"):
        current = ""
        for word in para.split(" "):
            trial = f"{current} {word}".strip()
            if draw.textlength(trial, font=font) <= width or not current:
                current = trial
            else:
                lines.append(current)
                current = word
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(1, len(lines[-1]) - 1)] + _printable("…", font)
    return lines


def assemble_grid(images: Sequence[Sequence[Image.Image | None]], row_labels: Sequence[str],
                  column_labels: Sequence[str], *, best_column: int | None = None,
                  max_cell: int = 256) -> tuple[Image.Image, GridLayout]:
    """One image of ``images[row][column]`` (None: not rendered, drawn grey) with labels."""
    rows, cols = len(row_labels), len(column_labels)
    if len(images) != rows or any(len(r) != cols for r in images):
        raise ValueError(f"the grid needs {rows} rows of {cols} images")
    cw, ch = _cell_size(images, max_cell)
    width = LABEL_WIDTH + cols * (cw + GAP) + GAP
    height = HEADER_HEIGHT + rows * (ch + GAP) + GAP
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font()
    boxes: list[tuple[int, int, int, int]] = []
    for c, label in enumerate(column_labels):
        x = LABEL_WIDTH + GAP + c * (cw + GAP)
        text = label + ("\nBEST" if c == best_column else "")
        for k, line in enumerate(_wrap(draw, text, font, cw, HEADER_HEIGHT // LINE)):
            draw.text((x + 2, 2 + k * LINE), line, fill=BEST if c == best_column else TEXT, font=font)
    for r, label in enumerate(row_labels):
        y = HEADER_HEIGHT + GAP + r * (ch + GAP)
        for k, line in enumerate(_wrap(draw, label, font, LABEL_WIDTH - 8, max(1, ch // LINE))):
            draw.text((4, y + 2 + k * LINE), line, fill=TEXT, font=font)
        for c in range(cols):
            x = LABEL_WIDTH + GAP + c * (cw + GAP)
            box = (x, y, x + cw, y + ch)
            boxes.append(box)
            im = images[r][c]
            if im is None:
                draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=EMPTY)
                continue
            tile = im.convert("RGB")
            if tile.size != (cw, ch):
                tile = tile.resize((cw, ch), Image.Resampling.LANCZOS)
            sheet.paste(tile, (x, y))
    if best_column is not None and 0 <= best_column < cols:
        x = LABEL_WIDTH + GAP + best_column * (cw + GAP)
        draw.rectangle((x - GAP // 2 - 1, HEADER_HEIGHT, x + cw + GAP // 2, height - 1), outline=BEST, width=2)
    layout = GridLayout(width, height, cw, ch, tuple(row_labels), tuple(column_labels), tuple(boxes),
                        best_column if best_column is not None and 0 <= best_column < cols else None)
    return sheet, layout


__all__ = ["GridLayout", "assemble_grid"]
