"""Resolve and rewrite a prompt's ``<lora:...>`` tags before the WebUI's own Lora loader reads them.

:func:`rewrite_prompt` is the one engine behind the WebUI hook, the API, the CLI ``resolve`` command
and the browser's preview. For every ``<lora:...>`` / ``<lyco:...>`` tag the WebUI will parse:

1. the name is resolved against the library index (:meth:`Library.lookup`: exact stem, relative path,
   ``ss_output_name`` alias, AutoV2/addnet short hash, then a unique case-insensitive match); a name
   that leaves the LoRA folders (``../``, absolute) is refused, a tag the built-in Lora would crash on
   (``<lora:x:heavy>``) too;
2. the resolved file is checked against the checkpoint (:func:`lib_lora.compat.check`);
3. the tag is rewritten to the name the built-in loader will find — the stem when that is unambiguous
   in the built-in's table, otherwise an alias (``RewriteResult.aliases``) that the WebUI glue
   registers in the built-in network table so that exactly the chosen file loads;
4. trigger words and the sidecar's negative text are inserted when missing;
5. a tag that stays unresolved, is refused or is skipped is **removed** (Forge drops every LoRA of a
   batch on one miss) and named in the warnings and in the infotext entry.

Tags of other networks (``<hypernet:...>``) and text are never touched. Negative prompts are not parsed
for tags (the WebUI does not either). Everything here is pure apart from ``library.lookup``.

The package, one job per module: ``model`` (statuses, settings, results), ``names`` (name -> file, and
the name the built-in loader needs), ``engine`` (the rewrite of a prompt and of a batch, the preview),
``infotext`` (the "LoRA Studio" infotext line, written and read back).
"""

from lib_lora.rewrite.engine import (
    BatchResult,
    preview,
    rewrite_batch,
    rewrite_prompt,
)
from lib_lora.rewrite.infotext import (
    InfotextRecord,
    LoraRecord,
    format_infotext,
    parse_infotext,
)
from lib_lora.rewrite.model import (
    AMBIGUOUS,
    DEFAULT_SETTINGS,
    INFOTEXT_KEY,
    MISSING,
    REFUSED,
    RESOLVED,
    SKIPPED,
    STATUSES,
    LibraryLike,
    RewriteResult,
    RewriteSettings,
    TagResolution,
)
from lib_lora.rewrite.names import (
    Resolution,
    alias_hash,
    loader_name_for,
    resolve_name,
)

__all__ = [
    "AMBIGUOUS",
    "BatchResult",
    "DEFAULT_SETTINGS",
    "INFOTEXT_KEY",
    "InfotextRecord",
    "LibraryLike",
    "LoraRecord",
    "MISSING",
    "REFUSED",
    "RESOLVED",
    "Resolution",
    "RewriteResult",
    "RewriteSettings",
    "SKIPPED",
    "STATUSES",
    "TagResolution",
    "alias_hash",
    "format_infotext",
    "loader_name_for",
    "parse_infotext",
    "preview",
    "resolve_name",
    "rewrite_batch",
    "rewrite_prompt",
]
