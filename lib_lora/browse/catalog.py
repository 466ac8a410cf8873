"""Pages: the :class:`Catalog` that filters, counts and pages entries, its per-host cache, and the resolve preview."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lib_lora.architecture import UNKNOWN, Detection
from lib_lora.browse.cards import (
    Card,
    card_for,
    checkpoint_badge_text,
)
from lib_lora.browse.entries import (
    Entry,
    entry_from_info,
    split_base_key,
)
from lib_lora.browse.query import (
    CheckFn,
    CompatView,
    Query,
    compat_of,
    matches_category,
    sort_entries,
)
from lib_lora.browse.vocab import (
    CATEGORIES,
    EXTRA_CATEGORIES,
    LEVEL_INCOMPATIBLE,
    LEVELS,
    architecture_label,
    family_label,
)

# --------------------------------------------------------------------------------------------------
# facets and pages


@dataclass(frozen=True)
class Facet:
    value: str
    label: str
    count: int


@dataclass(frozen=True)
class Page:
    cards: tuple[Card, ...]
    query: Query
    total: int  # LoRAs in the library
    matched: int  # after every filter
    hidden_incompatible: int  # hidden by "compatible only" (0 when the box is not ticked)
    page: int
    pages: int
    checkpoint: str | None  # label of the checkpoint the badges refer to
    checkpoint_base: str | None  # its base as a badge text
    counts: dict[str, int] = field(default_factory=dict)  # compat level -> count among matched
    elapsed_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "matched": self.matched,
            "hidden_incompatible": self.hidden_incompatible,
            "page": self.page,
            "pages": self.pages,
            "page_size": self.query.page_size,
            "checkpoint": self.checkpoint,
            "checkpoint_base": self.checkpoint_base,
            "compatibility_counts": dict(self.counts),
            "items": [c.to_dict() for c in self.cards],
        }


class Catalog:
    """The entries of one library generation plus per-checkpoint compatibility, cached.

    ``check`` is :func:`lib_lora.compat.check` unless given. Compatibility depends only on the
    (architecture, family, candidates, adapter) of a LoRA, so it is computed once per distinct group and
    checkpoint, not once per LoRA.
    """

    def __init__(self, entries: Iterable[Entry], *, check: CheckFn | None = None, generation: Any = None) -> None:
        self.entries: tuple[Entry, ...] = tuple(entries)
        self.generation = generation
        self._check = check
        self._by_name: dict[str, Entry] = {}
        for e in self.entries:
            self._by_name.setdefault(e.name, e)
        self._compat_cache: dict[Any, dict[tuple[Any, ...], CompatView]] = {}
        self._gkeys: dict[int, tuple[Any, ...]] = {id(e): self._group_key(e) for e in self.entries}
        self._orders: dict[str, tuple[Entry, ...]] = {}

    def ordered(self, sort: str) -> tuple[Entry, ...]:
        """Every entry in ``sort`` order (computed once per catalog and sort key)."""
        hit = self._orders.get(sort)
        if hit is None:
            hit = self._orders[sort] = tuple(sort_entries(list(self.entries), sort))
        return hit

    @classmethod
    def from_infos(cls, infos: Iterable[Any], *, check: CheckFn | None = None, generation: Any = None) -> Catalog:
        return cls((entry_from_info(i) for i in infos), check=check, generation=generation)

    def get(self, name: str) -> Entry | None:
        return self._by_name.get(name)

    @staticmethod
    def _group_key(e: Entry) -> tuple[Any, ...]:
        d = e.detection
        return (d.architecture, d.family, d.candidates, d.adapter, d.targets)

    @staticmethod
    def _ckpt_key(det: Detection | None) -> Any:
        if det is None:
            return None
        return (det.architecture, det.family, det.candidates, det.kind)

    def compat(self, entry: Entry, checkpoint: Detection | None) -> CompatView:
        key = self._ckpt_key(checkpoint)
        table = self._compat_cache.get(key)
        if table is None:
            if len(self._compat_cache) > 32:
                self._compat_cache.clear()
            table = self._compat_cache[key] = {}
        gk = self._gkeys.get(id(entry)) or self._group_key(entry)
        view = table.get(gk)
        if view is None:
            view = table[gk] = compat_of(entry.detection, checkpoint, self._check)
        return view

    def facets(self) -> dict[str, list[Facet]]:
        """Values the filters can take, with counts over the whole library."""
        bases: dict[str, int] = {}
        archs: dict[str, int] = {}
        cats: dict[str, int] = {}
        for e in self.entries:
            archs[e.architecture] = archs.get(e.architecture, 0) + 1
            if e.family:
                bases[e.base_key] = bases.get(e.base_key, 0) + 1
            cats[e.category or "none"] = cats.get(e.category or "none", 0) + 1
        base_facets: list[Facet] = []
        for arch in sorted(archs, key=lambda a: (a == UNKNOWN, architecture_label(a))):
            base_facets.append(Facet(arch, architecture_label(arch), archs[arch]))
            for key in sorted(k for k in bases if k.startswith(arch + "/")):
                fam = split_base_key(key)[1]
                base_facets.append(Facet(key, f"{architecture_label(arch)} · {family_label(fam)}", bases[key]))
        cat_facets = [Facet(c, c, cats.get(c, 0)) for c in CATEGORIES]
        cat_facets += [Facet(c, c, cats[c]) for c in EXTRA_CATEGORIES if c in cats]
        cat_facets.append(Facet("none", "no category", cats.get("none", 0)))
        return {"base": base_facets, "category": cat_facets}

    def search(self, query: Query, checkpoint: Detection | None = None, checkpoint_label: str | None = None) -> Page:
        """Filter, sort and cut one page. Raises :class:`QueryError` for unusable filter values."""
        started = time.perf_counter()
        q = query.validated()
        words = [w for w in q.text.casefold().split() if w]
        selected: list[Entry] = []
        hidden = 0
        counts = dict.fromkeys(LEVELS, 0)
        arch, fam = split_base_key(q.base) if q.base else ("", None)
        hide = q.compatible_only and checkpoint is not None
        for e in self.ordered(q.sort):
            if arch and (e.architecture != arch or (fam is not None and e.family != fam)):
                continue
            if q.category and not matches_category(e, q.category):
                continue
            if words and not all(w in e.search_text for w in words):
                continue
            level = self.compat(e, checkpoint).level
            if hide and level == LEVEL_INCOMPATIBLE:
                hidden += 1
                continue
            counts[level] += 1
            selected.append(e)
        ordered = selected[::-1] if q.descending else selected
        pages = max(1, math.ceil(len(ordered) / q.page_size))
        page = min(q.page, pages)
        chunk = ordered[(page - 1) * q.page_size : page * q.page_size]
        cards = tuple(card_for(e, self.compat(e, checkpoint)) for e in chunk)
        return Page(
            cards=cards,
            query=q,
            total=len(self.entries),
            matched=len(ordered),
            hidden_incompatible=hidden,
            page=page,
            pages=pages,
            checkpoint=checkpoint_label,
            checkpoint_base=checkpoint_badge_text(checkpoint),
            counts=counts,
            elapsed_ms=(time.perf_counter() - started) * 1000.0,
        )


# --------------------------------------------------------------------------------------------------
# one catalog per host, rebuilt when the library changes


def _insert_names(entries: Sequence[Entry]) -> list[Entry]:
    """Give every entry the name a tag should use: the stem when unique, else its relative path."""
    from dataclasses import replace

    counts: dict[str, int] = {}
    for e in entries:
        counts[e.name] = counts.get(e.name, 0) + 1
    return [replace(e, name=e.relpath) if counts[e.name] > 1 else e for e in entries]


class CatalogCache:
    """The :class:`Catalog` of a host's library, rebuilt only when the library's contents change
    (a finished scan, a sidecar edit) — a page render on a warm index touches no file."""

    def __init__(self, host: Any, *, check: CheckFn | None = None) -> None:
        import threading

        self._host = host
        self._check = check
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._catalog: Catalog | None = None
        self._key: Any = None
        self._edits = 0

    def invalidate(self) -> None:
        with self._lock:
            self._edits += 1

    def _library_key(self) -> Any:
        library = self._host.library()
        status = self._host.scan_status()
        return (id(library), getattr(status, "generation", None), getattr(status, "state", None),
                getattr(library, "generation", None), self._edits)

    def get(self) -> Catalog:
        key = self._library_key()
        with self._lock:
            if self._catalog is not None and key == self._key:
                return self._catalog
        with self._build_lock:  # one build at a time; a second caller gets the first one's result
            with self._lock:
                if self._catalog is not None and key == self._key:
                    return self._catalog
            return self._build(key)

    def _build(self, key: Any) -> Catalog:
        library = self._host.library()
        infos = list(library.entries())
        entries = _insert_names([entry_from_info(i) for i in infos])
        catalog = Catalog(entries, check=self._check, generation=key)
        with self._lock:
            self._catalog, self._key = catalog, key
        return catalog


_CACHES: dict[int, tuple[Any, CatalogCache]] = {}


def catalog_cache_for(host: Any) -> CatalogCache:
    """The one :class:`CatalogCache` of ``host`` (shared by the panel and the API)."""
    hit = _CACHES.get(id(host))
    if hit is None or hit[0] is not host:
        hit = (host, CatalogCache(host))
        _CACHES[id(host)] = hit
    return hit[1]


# --------------------------------------------------------------------------------------------------
# resolve preview (panel and API share it)


def resolve_preview(host: Any, prompt: str, negative: str, checkpoint: Detection | None) -> dict[str, Any]:
    """Rewrite ``prompt`` as the WebUI hook would (nothing is changed anywhere) and return the result."""
    from lib_lora import rewrite

    library = host.library()
    settings = host.settings()
    fn = getattr(rewrite, "preview", None)
    if callable(fn):
        result = fn(prompt, negative, library, checkpoint, settings)
        return dict(result) if isinstance(result, Mapping) else result.to_dict()
    return rewrite.rewrite_prompt(prompt, negative, library, checkpoint=checkpoint, settings=settings).to_dict()
