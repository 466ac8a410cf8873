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
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol

from lib_lora import compat
from lib_lora import settings as settings_mod
from lib_lora.prompt import (
    Tag,
    format_tag,
    is_rooted_or_parent,
    name_problem,
    parse_prompt,
    strip_comments,
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

# Statuses of a tag.
RESOLVED = "resolved"
AMBIGUOUS = "ambiguous"
MISSING = "missing"
REFUSED = "refused"
SKIPPED = "skipped"
STATUSES = (RESOLVED, AMBIGUOUS, MISSING, REFUSED, SKIPPED)

#: Key of LoRA Studio's entry in the WebUI's infotext (generation parameters).
INFOTEXT_KEY = "LoRA Studio"

#: ``<base>~<8 hex>``: the alias form LoRA Studio registers for a shadowed file.
_ALIAS_RE = re.compile(r"^(?P<base>.+)~(?P<h>[0-9a-f]{8})$")


class LibraryLike(Protocol):
    """What the rewrite needs of :class:`lib_lora.library.Library`."""

    def lookup(self, name: str) -> Any: ...

    def entries(self) -> Sequence[Any]: ...


@dataclass(frozen=True)
class RewriteSettings:
    """The settings the rewrite obeys (a subset of :class:`lib_lora.settings.Settings`)."""

    enabled: bool = True
    trigger_policy: str = settings_mod.TRIGGER_INSERT
    trigger_position: str = settings_mod.POSITION_BESIDE_TAG
    emphasis_weight: float = 1.2
    incompatible: str = settings_mod.INCOMPATIBLE_WARN
    #: add the sidecar's "negative text" to the negative prompt (with trigger words on)
    insert_negative: bool = True
    #: the WebUI's "Enable comments" (on by default): a tag after ``#`` on its line is never loaded
    prompt_comments: bool = True
    #: write ``<lyco:...>`` as ``<lora:...>``: Forge registers no ``lyco`` network and drops such tags
    #: silently (A1111 registers ``lyco`` as an alias of ``lora``, so both work there)
    lyco_as_lora: bool = False

    @classmethod
    def from_settings(cls, value: Any) -> RewriteSettings:
        """From :class:`lib_lora.settings.Settings` (or anything with the same attribute names)."""
        if isinstance(value, RewriteSettings):
            return value
        kwargs = {f.name: getattr(value, f.name) for f in fields(cls) if hasattr(value, f.name)}
        return cls(**kwargs)


DEFAULT_SETTINGS = RewriteSettings()


@dataclass(frozen=True)
class TagResolution:
    """What happened to one tag."""

    original: str  # the tag as typed
    network: str  # "lora" | "lyco"
    name: str | None  # the name as typed
    status: str  # one of STATUSES
    output: str  # the tag in the rewritten prompt ("" when removed)
    path: str | None = None  # the chosen file
    relpath: str | None = None  # its path below its library root, without suffix
    matched_by: str | None = None  # "stem" | "relpath" | "alias" | "autov2" | "addnet" | "casefold" | "loader-alias"
    loader_name: str | None = None  # the name the built-in loader will look up
    compat_level: str | None = None  # "exact" | "cross-family" | "incompatible" | "unknown"; None: not checked
    compat_message: str = ""
    words_inserted: tuple[str, ...] = ()
    negative_inserted: tuple[str, ...] = ()
    suggestions: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()  # relpaths of the files an ambiguous name matches
    reason: str = ""  # why it was refused or skipped (short)
    message: str = ""  # user-facing line ("" when nothing to say)

    @property
    def kept(self) -> bool:
        return self.status == RESOLVED

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out


@dataclass(frozen=True)
class RewriteResult:
    """The rewritten prompt pair and everything the user should know about it."""

    prompt: str
    negative: str
    original_prompt: str
    original_negative: str
    tags: tuple[TagResolution, ...] = ()
    warnings: tuple[str, ...] = ()
    infotext: str = ""  # value of the "LoRA Studio" infotext entry ("" when there is nothing to record)
    inserted_words: tuple[str, ...] = ()
    negative_words: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # names of the tags removed from the prompt, whatever the reason
    #: names the WebUI glue must register in the built-in network table -> file to load
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.prompt != self.original_prompt or self.negative != self.original_negative

    @property
    def loras(self) -> tuple[tuple[str, str], ...]:
        """``(loader name, path)`` of every LoRA left in the prompt, in order."""
        return tuple((t.loader_name or "", t.path or "") for t in self.tags if t.kept)

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "negative": self.negative,
            "original_prompt": self.original_prompt,
            "original_negative": self.original_negative,
            "changed": self.changed,
            "tags": [t.to_dict() for t in self.tags],
            "warnings": list(self.warnings),
            "infotext": self.infotext,
            "inserted_words": list(self.inserted_words),
            "negative_words": list(self.negative_words),
            "skipped": list(self.skipped),
            "aliases": dict(self.aliases),
        }


# --------------------------------------------------------------------------------------------------
# Names the built-in loader sees
# --------------------------------------------------------------------------------------------------


def alias_hash(entry: Any) -> str:
    """8 hex digits that tell one file from another of the same name (from its real path)."""
    path = str(getattr(entry, "realpath", None) or getattr(entry, "path", ""))
    return hashlib.sha1(os.path.normcase(path).encode("utf-8", "surrogatepass")).hexdigest()[:8]


class _HashIndex:
    """Library files by :func:`alias_hash` (built only when a ``<relpath>~<hash>`` name is met)."""

    def __init__(self, entries: Sequence[Any]) -> None:
        self.table: dict[str, list[Any]] = {}
        for e in entries:
            self.table.setdefault(alias_hash(e), []).append(e)

    def get(self, h: str) -> list[Any]:
        return self.table.get(h, [])


_HASH_INDEX: dict[int, tuple[Any, Any, _HashIndex]] = {}


def _hash_index(library: LibraryLike) -> _HashIndex:
    token = _library_token(library)
    hit = _HASH_INDEX.get(id(library))
    if hit is not None and hit[0] is library and token is not None and hit[1] == token:
        return hit[2]
    index = _HashIndex(list(library.entries()))
    if len(_HASH_INDEX) > 16:
        _HASH_INDEX.clear()
    _HASH_INDEX[id(library)] = (library, token, index)
    return index


def _library_token(library: Any) -> Any:
    """Something that changes whenever the library's entries change, or ``None`` when unknown."""
    for attr in ("generation", "version", "revision"):
        value = getattr(library, attr, None)
        if callable(value):
            value = value()
        if value is not None:
            return (attr, value)
    return None


def _is_builtin_name_for(name: str, entry: Any, builtin: Mapping[str, str] | Iterable[str] | None) -> bool:
    if builtin is None:
        return True
    if isinstance(builtin, Mapping):
        target = builtin.get(name)
        if target is None:
            return False
        return _same_file(target, entry)
    return name in builtin


def _same_file(path: str, entry: Any) -> bool:
    mine = {os.path.normcase(str(p)) for p in (getattr(entry, "path", None), getattr(entry, "realpath", None)) if p}
    if os.path.normcase(str(path)) in mine:
        return True
    try:
        return os.path.normcase(os.path.realpath(path)) in mine
    except OSError:
        return False


def loader_name_for(
    entry: Any,
    library: LibraryLike,
    builtin_names: Mapping[str, str] | Iterable[str] | None = None,
) -> tuple[str, bool]:
    """The tag name that makes the built-in loader load exactly ``entry``, and whether the glue must
    register it (``True``: put it in the built-in table, mapped to ``entry.path``).

    The built-in table maps every file's stem and ``ss_output_name`` to a file. When two files share a
    stem the one scanned last wins; a stem shared only with another file's ``ss_output_name`` still
    finds its own file (the built-in then marks that alias "forbidden" and looks names up by stem). So
    the stem is used when no other file in the library has it (and, when the glue passes
    ``builtin_names``, the built-in table maps it to this file, or lacks it — then it is registered).
    Otherwise: the file's relative path (``chars/alice``) when no other file has it, else
    ``<relpath>~<8 hex>`` — registered under that name.
    """
    path = str(getattr(entry, "path", "") or "")
    stem = str(getattr(entry, "name", "") or "")
    if name_problem(stem) is None and _unique(library, stem, path, "stem"):
        if builtin_names is None or _is_builtin_name_for(stem, entry, builtin_names):
            return stem, False
        if stem not in builtin_names:
            # Not in the built-in table at all (a folder only LoRA Studio scans): register the stem.
            return stem, True
    rel = _writable(str(getattr(entry, "relpath", "") or stem))
    if (
        rel != stem
        and name_problem(rel) is None
        and _unique(library, rel, path, "relpath")
        and (builtin_names is None or rel not in builtin_names)
    ):
        return rel, True
    return f"{rel}~{alias_hash(entry)}", True


def _unique(library: LibraryLike, name: str, path: str, how: str) -> bool:
    """True when ``name`` looked up exactly (by ``how``) gives this one file and no other."""
    found = _cached_lookup(library, name)
    return (
        found.status == "found"
        and found.matched_by == how
        and found.entry is not None
        and str(getattr(found.entry, "path", "")) == path
        and found.query.strip() == name
    )


def _writable(name: str) -> str:
    name = name.replace("\\", "/").replace(":", "_").replace(">", "_")
    if name.count("=") == 1:
        name = name.replace("=", "_")
    return name or "lora"


# --------------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolution:
    status: str  # found | ambiguous | missing | refused
    entry: Any = None
    matched_by: str | None = None
    candidates: tuple[Any, ...] = ()
    suggestions: tuple[str, ...] = ()
    message: str = ""
    query: str = ""


def resolve_name(library: LibraryLike, name: str) -> Resolution:
    """Resolve one tag name to one library file (see the module docstring for the order)."""
    if is_rooted_or_parent(name):
        return Resolution("refused", message="names must stay inside the LoRA folders (no '..', no absolute paths)")
    result = _cached_lookup(library, name)
    if result.status in ("found", "refused", "ambiguous"):
        return result
    stripped = name.strip()
    if stripped and stripped != name:
        again = _cached_lookup(library, stripped)
        if again.status != "missing":
            return again
    m = _ALIAS_RE.match(stripped)
    if m:
        own = _resolve_alias(library, m.group("base"), m.group("h"))
        if own is not None:
            return own
    return result


_HEX_NAME_RE = re.compile(r"^\s*[0-9a-fA-F]{10,64}\s*$")
_RESOLVE_CACHE: dict[int, tuple[Any, Any, dict[tuple[str, str], Resolution]]] = {}
_RESOLVE_CACHE_SIZE = 4096


def _cached_lookup(library: LibraryLike, name: str) -> Resolution:
    """``library.lookup(name)``, remembered until the library's entries change (``library.generation``).

    The WebUI rewrites the same prompt for every image and every generation; a name that is not found
    costs a did-you-mean search over every name in the library, which is worth doing once. Hash-like
    names are never remembered: hashes are computed in the background without a new generation.
    """
    return _remember(library, ("lookup", name), name, lambda: _lookup(library, name))


def _remember(library: LibraryLike, key: tuple[str, str], name: str, compute: Any) -> Resolution:
    token = _library_token(library)
    if token is None or _HEX_NAME_RE.match(name):
        result: Resolution = compute()
        return result
    slot = _RESOLVE_CACHE.get(id(library))
    if slot is None or slot[0] is not library or slot[1] != token:
        if len(_RESOLVE_CACHE) > 16:
            _RESOLVE_CACHE.clear()
        slot = (library, token, {})
        _RESOLVE_CACHE[id(library)] = slot
    table = slot[2]
    hit = table.get(key)
    if hit is None:
        hit = compute()
        if len(table) >= _RESOLVE_CACHE_SIZE:
            table.clear()
        table[key] = hit
    return hit


def _lookup(library: LibraryLike, name: str) -> Resolution:
    look = library.lookup(name)
    status = getattr(look, "status", "missing")
    return Resolution(
        query=name,
        status=status,
        entry=getattr(look, "entry", None),
        matched_by=getattr(look, "matched_by", None),
        candidates=tuple(getattr(look, "candidates", ()) or ()),
        suggestions=tuple(getattr(look, "suggestions", ()) or ()),
        message=str(getattr(look, "message", "") or ""),
    )


def _resolve_alias(library: LibraryLike, base: str, h: str) -> Resolution | None:
    """A name LoRA Studio wrote earlier (``<relpath>~<hash>``): the file with that hash, else the base."""
    hits = _hash_index(library).get(h)
    if len(hits) == 1:
        return Resolution("found", entry=hits[0], matched_by="loader-alias")
    base_result = _cached_lookup(library, base)
    if base_result.status in ("found", "ambiguous"):
        return base_result
    return None


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


# --------------------------------------------------------------------------------------------------
# Infotext: one line, "; "-separated entries
# --------------------------------------------------------------------------------------------------
#
#   lora NAME @ RELPATH                 resolved, the loader reads NAME
#   lora NAME = LOADER @ RELPATH        resolved, written as LOADER
#   words: W, W                         trigger words inserted in the prompt
#   negative: W, W                      negative text added to the negative prompt
#   skipped NAME: REASON                removed (incompatible with the checkpoint)
#   missing NAME[: S, S, S]             removed (not found), did-you-mean suggestions
#   ambiguous NAME: C, C                removed (several files)
#   refused NAME: REASON                removed (bad name or arguments)
#   warning: TEXT
#
# Backslash escapes: names escape \ ; , : = @ ; list items \ ; , ; free text \ ; ; newlines as \n.
# The WebUI quotes the value (JSON) because it holds ':' and ','; parse_infotext accepts both forms.

_NAME_SPECIAL = "\\;,:=@"
_LIST_SPECIAL = "\\;,"
_TEXT_SPECIAL = "\\;"
_FIXED_KINDS = ("words", "negative", "skipped", "missing", "ambiguous", "refused", "warning")


@dataclass(frozen=True)
class LoraRecord:
    network: str
    name: str
    loader_name: str
    relpath: str


@dataclass(frozen=True)
class InfotextRecord:
    """What :func:`parse_infotext` reads back from a "LoRA Studio" infotext value."""

    loras: tuple[LoraRecord, ...] = ()
    words: tuple[str, ...] = ()
    negative_words: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    missing: tuple[tuple[str, tuple[str, ...]], ...] = ()
    ambiguous: tuple[tuple[str, tuple[str, ...]], ...] = ()
    refused: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()

    def loader_paths(self) -> dict[str, str]:
        """loader name -> relative path of every LoRA recorded (to re-register aliases after a paste)."""
        return {r.loader_name: r.relpath for r in self.loras}

    def removed(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.skipped + self.refused) + tuple(n for n, _ in self.missing + self.ambiguous)


def _esc(text: str, special: str) -> str:
    out = []
    for ch in text:
        if ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch in special:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _unesc(text: str) -> str:
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append({"n": "\n", "r": "\r"}.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _split(text: str, sep: str, maxsplit: int = -1) -> list[str]:
    """Split on unescaped ``sep`` (one character); pieces keep their escapes."""
    out: list[str] = []
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == sep and (maxsplit < 0 or len(out) < maxsplit):
            out.append(text[start:i])
            start = i + 1
        i += 1
    out.append(text[start:])
    return out


def _tokens(text: str) -> list[str]:
    """``text`` as escape pairs (``\\x``) and single characters."""
    out = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i : i + 2])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return out


def _strip(text: str) -> str:
    """Remove unescaped spaces at both ends (an escaped ``\\ `` stays)."""
    toks = _tokens(text)
    while toks and toks[0] == " ":
        toks.pop(0)
    while toks and toks[-1] == " ":
        toks.pop()
    return "".join(toks)


def _field(text: str, special: str) -> str:
    """Escape ``text`` for one field; a space at either end is escaped so that it survives."""
    if not text:
        return ""
    head = "\\ " if text[0] == " " else _esc(text[0], special)
    if len(text) == 1:
        return head
    tail = "\\ " if text[-1] == " " else _esc(text[-1], special)
    return head + _esc(text[1:-1], special) + tail


def format_infotext(
    tags: Iterable[TagResolution],
    words: Iterable[str] = (),
    negative_words: Iterable[str] = (),
    warnings: Iterable[str] = (),
) -> str:
    """The one-line "LoRA Studio" infotext value ("" when there is nothing to record)."""
    entries: list[str] = []
    for t in tags:
        name = _field(t.name if t.name is not None else t.original, _NAME_SPECIAL)
        if t.status == RESOLVED:
            loader = "" if t.loader_name == t.name else f" = {_field(t.loader_name or '', _NAME_SPECIAL)}"
            entries.append(f"{t.network} {name}{loader} @ {_field(t.relpath or '', _NAME_SPECIAL)}")
        elif t.status == SKIPPED:
            entries.append(f"skipped {name}: {_field(t.reason, _TEXT_SPECIAL)}")
        elif t.status == REFUSED:
            entries.append(f"refused {name}: {_field(t.reason, _TEXT_SPECIAL)}")
        elif t.status == AMBIGUOUS:
            entries.append(f"ambiguous {name}: {', '.join(_field(c, _LIST_SPECIAL) for c in t.candidates)}")
        else:
            sugg = ", ".join(_field(s, _LIST_SPECIAL) for s in t.suggestions)
            entries.append(f"missing {name}" + (f": {sugg}" if sugg else ""))
    words = list(words)
    if words:
        entries.append("words: " + ", ".join(_field(w, _LIST_SPECIAL) for w in words))
    negative_words = list(negative_words)
    if negative_words:
        entries.append("negative: " + ", ".join(_field(w, _LIST_SPECIAL) for w in negative_words))
    for w in warnings:
        entries.append("warning: " + _field(w, _TEXT_SPECIAL))
    return "; ".join(entries)


def _append_warning(infotext: str, warning: str) -> str:
    entry = "warning: " + _field(warning, _TEXT_SPECIAL)
    return f"{infotext}; {entry}" if infotext else entry


def _list(text: str) -> tuple[str, ...]:
    return tuple(_unesc(_strip(p)) for p in _split(text, ",") if _strip(p))


def parse_infotext(value: str) -> InfotextRecord:
    """Read a "LoRA Studio" infotext value back (the raw value or the WebUI's JSON-quoted form).

    Unknown entries are ignored, so a newer writer never breaks an older reader.
    """
    text = value or ""
    quoted = text.strip()
    if len(quoted) >= 2 and quoted[0] == '"' and quoted[-1] == '"':
        import json

        try:
            text = json.loads(quoted)
        except ValueError:
            text = quoted[1:-1]
    loras: list[LoraRecord] = []
    words: list[str] = []
    negs: list[str] = []
    skipped: list[tuple[str, str]] = []
    missing: list[tuple[str, tuple[str, ...]]] = []
    ambiguous: list[tuple[str, tuple[str, ...]]] = []
    refused: list[tuple[str, str]] = []
    warns: list[str] = []
    for raw in _split(text, ";"):
        entry = raw.lstrip(" ")
        m = re.match(r"(\w+)([: ])", entry)
        if not m:
            continue
        kind, rest = m.group(1), entry[m.end() :]
        if m.group(2) == ":":
            body = _strip(rest)
            if kind == "words":
                words.extend(_list(body))
            elif kind == "negative":
                negs.extend(_list(body))
            elif kind == "warning":
                warns.append(_unesc(body))
            continue
        if kind in _FIXED_KINDS:
            name_part, *detail = _split(rest, ":", 1)
            name = _unesc(_strip(name_part))
            tail = _strip(detail[0]) if detail else ""
            if kind == "skipped":
                skipped.append((name, _unesc(tail)))
            elif kind == "refused":
                refused.append((name, _unesc(tail)))
            elif kind == "missing":
                missing.append((name, _list(tail)))
            elif kind == "ambiguous":
                ambiguous.append((name, _list(tail)))
            continue
        left, *at = _split(rest, "@", 1)
        if not at:
            continue
        rel = _unesc(_strip(at[0]))
        name_part, *loader_part = _split(left, "=", 1)
        name = _unesc(_strip(name_part))
        loader = _unesc(_strip(loader_part[0])) if loader_part else name
        loras.append(LoraRecord(kind, name, loader, rel))
    return InfotextRecord(
        loras=tuple(loras),
        words=tuple(words),
        negative_words=tuple(negs),
        skipped=tuple(skipped),
        missing=tuple(missing),
        ambiguous=tuple(ambiguous),
        refused=tuple(refused),
        warnings=tuple(warns),
    )
