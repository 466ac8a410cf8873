"""The rewrite itself: one prompt (:func:`rewrite_prompt`), a batch (:func:`rewrite_batch`) and the preview.

The steps are listed in the package docstring (:mod:`lib_lora.rewrite`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from lib_lora import compat
from lib_lora import settings as settings_mod
from lib_lora.prompt import (
    Tag,
    format_tag,
    parse_prompt,
    strip_comments,
)
from lib_lora.rewrite.infotext import (
    _append_warning,
    format_infotext,
)
from lib_lora.rewrite.model import (
    AMBIGUOUS,
    DEFAULT_SETTINGS,
    MISSING,
    REFUSED,
    RESOLVED,
    SKIPPED,
    LibraryLike,
    RewriteResult,
    RewriteSettings,
    TagResolution,
)
from lib_lora.rewrite.names import (
    loader_name_for,
    resolve_name,
)
from lib_lora.triggers import (
    PresenceIndex,
    emphasize,
    inserted_source,
    missing_phrases,
    negative_text,
    split_phrases,
    trigger_sources,
)

# --------------------------------------------------------------------------------------------------
# The rewrite
# --------------------------------------------------------------------------------------------------


def rewrite_prompt(
    prompt: str,
    negative: str,
    library: LibraryLike,
    *,
    checkpoint: Any = None,
    settings: RewriteSettings | Any = DEFAULT_SETTINGS,
    builtin_names: Mapping[str, str] | Iterable[str] | None = None,
) -> RewriteResult:
    return _rewrite(prompt, negative, library, checkpoint, settings, builtin_names)[0]


def _rewrite(
    prompt: str,
    negative: str,
    library: LibraryLike,
    checkpoint: Any = None,
    settings: RewriteSettings | Any = DEFAULT_SETTINGS,
    builtin_names: Mapping[str, str] | Iterable[str] | None = None,
) -> tuple[RewriteResult, list[Any]]:
    """Resolve and rewrite ``prompt`` (and add negative text to ``negative``); see the module docstring.

    ``checkpoint`` is the selected checkpoint's :class:`~lib_lora.architecture.Detection` (``None``:
    compatibility is not checked). ``builtin_names`` are the names the WebUI's built-in table holds
    (a set, or a mapping name -> file); ``None`` assumes it holds every library file by stem.
    """
    cfg = RewriteSettings.from_settings(settings)
    prompt = prompt or ""
    negative = negative or ""
    if not cfg.enabled:
        return RewriteResult(prompt=prompt, negative=negative, original_prompt=prompt, original_negative=negative), []

    parsed = parse_prompt(prompt, comments=cfg.prompt_comments)
    visible = parsed.text()
    if cfg.prompt_comments:
        visible = strip_comments(visible)
    present = PresenceIndex(visible)
    neg_present = PresenceIndex(strip_comments(negative) if cfg.prompt_comments else negative)
    inserting = cfg.trigger_policy in (settings_mod.TRIGGER_INSERT, settings_mod.TRIGGER_EMPHASIS)
    beside = cfg.trigger_position == settings_mod.POSITION_BESIDE_TAG

    out_parts: list[str] = []
    entries: list[Any] = []
    resolutions: list[TagResolution] = []
    warnings: list[str] = []
    start_words: list[str] = []
    all_words: list[str] = []
    neg_words: list[str] = []
    aliases: dict[str, str] = {}
    skipped: list[str] = []
    emphasis = cfg.trigger_policy == settings_mod.TRIGGER_EMPHASIS

    for part in parsed.parts:
        if isinstance(part, str):
            out_parts.append(part)
            continue
        if not part.is_lora:
            out_parts.append(format_tag(part))
            continue
        res, entry, register = _resolve_tag(part, library, checkpoint, cfg, builtin_names)
        entries.append(entry)
        if res.message:
            warnings.append(res.message)
        if not res.kept:
            skipped.append(res.name if res.name is not None else res.original)
            resolutions.append(res)
            continue
        words: list[str] = []
        negs: list[str] = []
        if inserting:
            source = inserted_source(entry)
            if source is not None:
                words = missing_phrases(source.words, present)
            if cfg.insert_negative:
                negs = missing_phrases(split_phrases(negative_text(entry)), neg_present)
        shown = [emphasize(w, cfg.emphasis_weight) for w in words] if emphasis else words
        if shown:
            if beside:
                before = out_parts[-1] if out_parts else ""
                sep = "" if not before or before[-1].isspace() or before[-1] in ",(" else ", "
                out_parts.append(sep + ", ".join(shown) + ", ")
            else:
                start_words.extend(shown)
        all_words.extend(words)
        neg_words.extend(negs)
        if register and res.loader_name and res.path:
            aliases[res.loader_name] = res.path
        out_parts.append(res.output)
        resolutions.append(_with(res, words_inserted=tuple(words), negative_inserted=tuple(negs)))

    new_prompt = "".join(out_parts)
    if start_words:
        head = ", ".join(start_words)
        new_prompt = f"{head}, {new_prompt}" if new_prompt.strip() else head
    new_negative = negative
    if neg_words:
        tail = ", ".join(neg_words)
        body = negative.rstrip()
        new_negative = f"{body.rstrip(',')}, {tail}" if body.strip(", ") else tail

    kept_warnings = [r.message for r in resolutions if r.kept and r.message]
    result = RewriteResult(
        prompt=new_prompt,
        negative=new_negative,
        original_prompt=prompt,
        original_negative=negative,
        tags=tuple(resolutions),
        warnings=tuple(warnings),
        infotext=format_infotext(resolutions, all_words, neg_words, kept_warnings),
        inserted_words=tuple(all_words),
        negative_words=tuple(neg_words),
        skipped=tuple(skipped),
        aliases=aliases,
    )
    return result, entries


def _with(res: TagResolution, **changes: Any) -> TagResolution:
    return replace(res, **changes)


def _relpath(entry: Any) -> str:
    return str(getattr(entry, "relpath", None) or getattr(entry, "name", None) or "")


def _resolve_tag(
    tag: Tag,
    library: LibraryLike,
    checkpoint: Any,
    cfg: RewriteSettings,
    builtin_names: Mapping[str, str] | Iterable[str] | None,
) -> tuple[TagResolution, Any, bool]:
    """One tag -> its resolution, the library entry (``None`` unless resolved) and whether to register its name."""
    original = format_tag(tag)
    name = tag.name
    base = TagResolution(original=original, network=tag.network, name=name, status=MISSING, output="")
    problem = tag.problem()
    if problem is not None or name is None:
        msg = f"removed {original}: {problem} (the WebUI would drop every LoRA of the image)"
        return replace(base, status=REFUSED, reason=str(problem or "no name"), message=msg), None, False
    shown = name.strip() or name
    found = resolve_name(library, name)
    if found.status == "refused":
        reason = found.message or "not a name inside the LoRA folders"
        msg = f"refused LoRA '{shown}': {reason}; removed from the prompt"
        return replace(base, status=REFUSED, reason=reason, message=msg), None, False
    if found.status == "ambiguous":
        cands = tuple(sorted({_relpath(c) for c in found.candidates}))
        listed = ", ".join(cands[:5]) + (f" and {len(cands) - 5} more" if len(cands) > 5 else "")
        hint = f"; name one by its folder, e.g. <{tag.network}:{cands[0]}>" if cands else ""
        msg = f"LoRA '{shown}' is ambiguous: it matches {listed}{hint}; removed from the prompt"
        return replace(base, status=AMBIGUOUS, candidates=cands, message=msg), None, False
    if found.status != "found" or found.entry is None:
        sugg = tuple(found.suggestions[:3])
        did = f" (did you mean {', '.join(sugg)}?)" if sugg else ""
        msg = f"LoRA '{shown}' not found{did}; removed from the prompt"
        return replace(base, status=MISSING, suggestions=sugg, message=msg), None, False

    entry = found.entry
    res = replace(
        base,
        status=RESOLVED,
        path=str(getattr(entry, "path", "") or ""),
        relpath=_relpath(entry),
        matched_by=found.matched_by,
    )
    level, cmsg = _compat(entry, checkpoint)
    res = replace(res, compat_level=level, compat_message=cmsg)
    if level == compat.INCOMPATIBLE:
        if cfg.incompatible == settings_mod.INCOMPATIBLE_SKIP:
            reason = _short(cmsg)
            return replace(res, status=SKIPPED, reason=reason, message=f"skipped {shown}: {reason}"), entry, False
        if cfg.incompatible == settings_mod.INCOMPATIBLE_WARN:
            res = replace(res, message=f"{shown} will not work with this checkpoint: {cmsg}")
    elif level == compat.CROSS_FAMILY:
        res = replace(res, message=f"{shown}: {cmsg}")

    loader, register = loader_name_for(entry, library, builtin_names)
    new_tag = tag.with_name(loader)
    if cfg.lyco_as_lora and new_tag.network == "lyco":
        new_tag = replace(new_tag, network="lora", text=None)
    return replace(res, loader_name=loader, output=format_tag(new_tag)), entry, register


def _short(message: str) -> str:
    """``SDXL LoRA on an SD 1.5 checkpoint`` of ``SDXL LoRA on an SD 1.5 checkpoint: the loader ...``."""
    return message.split(": ", 1)[0].rstrip(".")


def _compat(entry: Any, checkpoint: Any) -> tuple[str | None, str]:
    """The compatibility level and sentence; ``None`` when no checkpoint is known (nothing checked)."""
    if checkpoint is None:
        return None, ""
    detection = getattr(entry, "detection", None)
    if detection is None:
        return compat.UNKNOWN_LEVEL, "The LoRA's base model is not known."
    result = compat.check(detection, checkpoint)
    return result.level, result.message


# --------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchResult:
    """One :class:`RewriteResult` per prompt of a batch, and the warnings about the batch as a whole."""

    results: tuple[RewriteResult, ...]
    warnings: tuple[str, ...] = ()  # batch-level warnings (also added to each result)

    @property
    def prompts(self) -> list[str]:
        return [r.prompt for r in self.results]

    @property
    def negatives(self) -> list[str]:
        return [r.negative for r in self.results]

    @property
    def aliases(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for r in self.results:
            out.update(r.aliases)
        return out

    @property
    def all_warnings(self) -> tuple[str, ...]:
        """Every warning once, in order (for a toast or the console)."""
        seen: dict[str, None] = {}
        for r in self.results:
            for w in r.warnings:
                seen.setdefault(w, None)
        return tuple(seen)


def _lora_signature(result: RewriteResult) -> tuple[str, ...]:
    return tuple(t.output for t in result.tags if t.kept)


def rewrite_batch(
    prompts: Sequence[str],
    negatives: Sequence[str] | None,
    library: LibraryLike,
    *,
    checkpoint: Any = None,
    settings: RewriteSettings | Any = DEFAULT_SETTINGS,
    builtin_names: Mapping[str, str] | Iterable[str] | None = None,
) -> BatchResult:
    """Rewrite every prompt of one batch (identical prompt pairs are rewritten once).

    The WebUI loads only the first prompt's LoRAs for the whole batch, so when the prompts name
    different LoRAs (after rewriting) a warning says which are not applied; it is added to every result.
    """
    cfg = RewriteSettings.from_settings(settings)
    negs = list(negatives) if negatives is not None else [""] * len(prompts)
    if len(negs) < len(prompts):
        negs += [negs[-1] if negs else ""] * (len(prompts) - len(negs))
    cache: dict[tuple[str, str], RewriteResult] = {}
    results: list[RewriteResult] = []
    for prompt, negative in zip(prompts, negs, strict=False):
        key = (prompt, negative)
        hit = cache.get(key)
        if hit is None:
            hit = rewrite_prompt(prompt, negative, library, checkpoint=checkpoint, settings=cfg, builtin_names=builtin_names)
            cache[key] = hit
        results.append(hit)
    if not results or not cfg.enabled:
        return BatchResult(tuple(results))

    first = _lora_signature(results[0])
    differing = [i for i, r in enumerate(results) if _lora_signature(r) != first]
    if not differing:
        return BatchResult(tuple(results))
    i = differing[0]
    theirs = " ".join(_lora_signature(results[i])) or "no LoRA"
    mine = " ".join(first) or "no LoRA"
    more = f" (and {len(differing) - 1} other prompts)" if len(differing) > 1 else ""
    warning = (
        f"prompts of this batch name different LoRAs: the WebUI applies the first prompt's ({mine}) to every "
        f"image of the batch, so prompt {i + 1}'s {theirs}{more} is not applied as written; use batch size 1 "
        "to vary LoRAs per image"
    )
    changed: dict[int, RewriteResult] = {}
    out = []
    for r in results:
        new = changed.get(id(r))
        if new is None:
            new = replace(r, warnings=(*r.warnings, warning), infotext=_append_warning(r.infotext, warning))
            changed[id(r)] = new
        out.append(new)
    return BatchResult(tuple(out), (warning,))


# --------------------------------------------------------------------------------------------------
# Preview (API, browser, CLI)
# --------------------------------------------------------------------------------------------------


def preview(
    prompt: str,
    negative: str,
    library: LibraryLike,
    checkpoint: Any = None,
    settings: RewriteSettings | Any = DEFAULT_SETTINGS,
    builtin_names: Mapping[str, str] | Iterable[str] | None = None,
) -> dict[str, Any]:
    """A JSON-able account of the rewrite: :meth:`RewriteResult.to_dict` plus, per kept tag, every
    trigger-word source (the browser offers the ones not inserted), and the checkpoint judged against."""
    result, entries = _rewrite(prompt, negative, library, checkpoint, settings, builtin_names)
    data = result.to_dict()
    for tag_dict, entry in zip(data["tags"], entries, strict=True):
        tag_dict["trigger_sources"] = [s.to_dict() for s in trigger_sources(entry)] if entry is not None else []
        detection = getattr(entry, "detection", None) if entry is not None else None
        tag_dict["architecture"] = getattr(detection, "architecture", None)
        tag_dict["family"] = getattr(detection, "family", None)
    data["checkpoint"] = (
        None
        if checkpoint is None
        else {"architecture": getattr(checkpoint, "architecture", None), "family": getattr(checkpoint, "family", None)}
    )
    data["settings"] = {f.name: getattr(RewriteSettings.from_settings(settings), f.name) for f in fields(RewriteSettings)}
    return data
