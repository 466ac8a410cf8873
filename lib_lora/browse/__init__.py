"""The LoRA browser's logic without any UI toolkit: entries, filters, categories, badges, sorting, pages.

Everything here is a pure function over the library's :class:`~lib_lora.library.LoraInfo` records (or
the flattened :class:`Entry` made from one), so the Gradio panel, the HTTP API and the benchmarks share
one implementation and the rules are unit-tested without a browser.

Rules a user can rely on:

- an incompatible LoRA is **marked**, never hidden — unless "compatible only" is ticked, and then the
  page says how many were hidden;
- "compatible only" hides only LoRAs known to be for another architecture: "unknown" ones stay (a
  detection that failed must not make a LoRA disappear);
- the compatibility badge is computed against the checkpoint passed in (the one the user selected), so it
  changes whenever the selection changes;
- user values (sidecar base override, category, activation text, preferred weight) win over detected ones;
- free text matches name, alias, relative path, trigger words (every source), Civitai tags and training
  tags, case-insensitively; several words must all match.

The package, one job per module: ``vocab`` (categories, sorts, levels, labels), ``entries`` (one
:class:`Entry` per LoRA), ``query`` (compatibility view, filters, sorting), ``cards`` (badges, cards,
detail), ``catalog`` (pages, the per-host cache, the resolve preview).
"""

from lib_lora.architecture import UNKNOWN
from lib_lora.browse.cards import (
    Badge,
    Card,
    base_badge,
    card_for,
    checkpoint_badge_text,
    compat_badge,
    detail_for,
    rank_alpha_text,
)
from lib_lora.browse.catalog import (
    Catalog,
    CatalogCache,
    Facet,
    Page,
    _insert_names,
    catalog_cache_for,
    resolve_preview,
)
from lib_lora.browse.entries import (
    Entry,
    TrainingFacts,
    TriggerGroup,
    apply_base_override,
    category_for,
    entry_from_info,
    format_lora_tag,
    format_weight,
    guess_category,
    split_base_key,
    training_facts,
)
from lib_lora.browse.query import (
    CheckFn,
    CompatView,
    Query,
    QueryError,
    compat_of,
    matches_base,
    matches_category,
    matches_text,
    sort_entries,
)
from lib_lora.browse.vocab import (
    _FAMILY_LABELS,
    CATEGORIES,
    DEFAULT_PAGE_SIZE,
    EXTRA_CATEGORIES,
    LEVEL_CROSS,
    LEVEL_EXACT,
    LEVEL_INCOMPATIBLE,
    LEVEL_UNKNOWN,
    LEVELS,
    MAX_PAGE_SIZE,
    MAX_QUERY_CHARS,
    SORT_BASE,
    SORT_DATE,
    SORT_NAME,
    SORTS,
    adapter_label,
    architecture_label,
    family_label,
    known_architectures,
)

__all__ = [
    "Badge",
    "CATEGORIES",
    "Card",
    "Catalog",
    "CatalogCache",
    "CheckFn",
    "CompatView",
    "DEFAULT_PAGE_SIZE",
    "EXTRA_CATEGORIES",
    "Entry",
    "Facet",
    "LEVELS",
    "LEVEL_CROSS",
    "LEVEL_EXACT",
    "LEVEL_INCOMPATIBLE",
    "LEVEL_UNKNOWN",
    "MAX_PAGE_SIZE",
    "MAX_QUERY_CHARS",
    "Page",
    "Query",
    "QueryError",
    "SORTS",
    "SORT_BASE",
    "SORT_DATE",
    "SORT_NAME",
    "TrainingFacts",
    "TriggerGroup",
    "UNKNOWN",
    "_FAMILY_LABELS",
    "_insert_names",
    "adapter_label",
    "apply_base_override",
    "architecture_label",
    "base_badge",
    "card_for",
    "catalog_cache_for",
    "category_for",
    "checkpoint_badge_text",
    "compat_badge",
    "compat_of",
    "detail_for",
    "entry_from_info",
    "family_label",
    "format_lora_tag",
    "format_weight",
    "guess_category",
    "known_architectures",
    "matches_base",
    "matches_category",
    "matches_text",
    "rank_alpha_text",
    "resolve_preview",
    "sort_entries",
    "split_base_key",
    "training_facts",
]
