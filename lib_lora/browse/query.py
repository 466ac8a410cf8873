"""Filtering: the compatibility view of one LoRA, the :class:`Query` and its matching and sorting rules."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lib_lora.architecture import UNKNOWN, Detection
from lib_lora.browse.entries import (
    Entry,
    split_base_key,
)
from lib_lora.browse.vocab import (
    CATEGORIES,
    DEFAULT_PAGE_SIZE,
    EXTRA_CATEGORIES,
    LEVEL_CROSS,
    LEVEL_UNKNOWN,
    LEVELS,
    MAX_PAGE_SIZE,
    MAX_QUERY_CHARS,
    SORT_BASE,
    SORT_DATE,
    SORT_NAME,
    SORTS,
    architecture_label,
    family_label,
)

# --------------------------------------------------------------------------------------------------
# compatibility


@dataclass(frozen=True)
class CompatView:
    level: str  # one of LEVELS
    message: str


CheckFn = Callable[[Detection, Detection], Any]


def _default_check() -> CheckFn:
    try:
        from lib_lora.compat import check  # type: ignore[import-not-found, unused-ignore]
    except ImportError:  # an older core without the compatibility module: say so, hide nothing
        return _no_check
    return check  # type: ignore[no-any-return, unused-ignore]


def _no_check(lora: Detection, checkpoint: Detection) -> CompatView:
    return CompatView(LEVEL_UNKNOWN, "compatibility check not available")


def compat_of(entry_det: Detection, checkpoint: Detection | None, check: CheckFn | None = None) -> CompatView:
    if checkpoint is None:
        return CompatView(LEVEL_UNKNOWN, "no checkpoint selected")
    fn = check or _default_check()
    result = fn(entry_det, checkpoint)
    level = str(getattr(result, "level", LEVEL_UNKNOWN))
    level = {"cross_family": LEVEL_CROSS, "cross": LEVEL_CROSS}.get(level, level)
    if level not in LEVELS:
        level = LEVEL_UNKNOWN
    return CompatView(level, str(getattr(result, "message", "") or ""))


# --------------------------------------------------------------------------------------------------
# query


class QueryError(ValueError):
    """A filter value that cannot be used (the API turns it into a 422 with this message)."""


@dataclass(frozen=True)
class Query:
    text: str = ""
    base: str = ""  # "" | "sdxl" | "sdxl/pony" | "unknown"
    category: str = ""  # "" | a category | "none" (no category)
    compatible_only: bool = False
    sort: str = SORT_NAME
    descending: bool = False
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE

    def validated(self) -> Query:
        if len(self.text) > MAX_QUERY_CHARS:
            raise QueryError(f"search text is longer than {MAX_QUERY_CHARS} characters")
        if self.sort not in SORTS:
            raise QueryError(f"sort must be one of {', '.join(SORTS)}, not {self.sort!r}")
        if not isinstance(self.page, int) or self.page < 1:
            raise QueryError("page must be 1 or more")
        if not isinstance(self.page_size, int) or not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise QueryError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        cat = self.category.strip().lower()
        if cat and cat != "none" and cat not in CATEGORIES + EXTRA_CATEGORIES:
            raise QueryError(f"unknown category {self.category!r} (one of: {', '.join(CATEGORIES + EXTRA_CATEGORIES)}, none)")
        if any(ch in self.base for ch in "\\<>\"'") or len(self.base) > 100:
            raise QueryError(f"not a base-model id: {self.base!r}")
        return Query(self.text.strip(), self.base.strip(), cat, bool(self.compatible_only), self.sort,
                     bool(self.descending), self.page, self.page_size)


def matches_text(entry: Entry, words: Sequence[str]) -> bool:
    return all(w in entry.search_text for w in words)


def matches_base(entry: Entry, base: str) -> bool:
    if not base:
        return True
    arch, fam = split_base_key(base)
    if arch != entry.architecture:
        return False
    return fam is None or fam == entry.family


def matches_category(entry: Entry, category: str) -> bool:
    if not category:
        return True
    if category == "none":
        return entry.category is None
    return entry.category == category


def sort_entries(entries: list[Entry], sort: str, descending: bool = False) -> list[Entry]:
    """Sort in place-free fashion. Date sorts newest first unless ``descending`` flips it."""
    if sort == SORT_DATE:
        out = sorted(entries, key=lambda e: (-e.mtime, e.name.casefold()))
    elif sort == SORT_BASE:
        out = sorted(
            entries,
            key=lambda e: (e.architecture == UNKNOWN, architecture_label(e.architecture), family_label(e.family) or "",
                           e.name.casefold()),
        )
    else:
        out = sorted(entries, key=lambda e: (e.name.casefold(), e.relpath))
    if descending:
        out.reverse()
    return out
