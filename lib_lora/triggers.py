"""Trigger words: where a LoRA's come from, which are inserted, and when a word is already present.

Sources, in order of trust (the first non-empty one is inserted, the browser offers the others):

1. ``activation-text`` — the user's own A1111 sidecar ``<stem>.json`` "activation text";
2. ``civitai`` — Civitai ``trainedWords`` (``<stem>.civitai.info``), each entry may hold several phrases;
3. ``modelspec`` — ``modelspec.trigger_phrase`` in the header (sd-scripts ``--metadata_trigger_phrase``);
4. ``class-tokens`` — kohya DreamBooth-style class tokens (``ss_datasets[].subsets[].class_tokens``, or
   the ``<repeats>_<tokens>`` folder names of ``ss_dataset_dirs``);
5. ``tag-frequency`` — the most frequent caption tags of ``ss_tag_frequency``: a guess, offered but never
   inserted by default.

A phrase counts as present in a prompt whatever its case, spacing, brackets or weight: ``mychar`` is
found in ``(MyChar:1.1)``, ``[mychar]``, ``((  mychar ))`` and ``\\(mychar\\)``.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lib_lora.prompt import TAG_RE

SOURCE_ACTIVATION = "activation-text"
SOURCE_CIVITAI = "civitai"
SOURCE_MODELSPEC = "modelspec"
SOURCE_CLASS_TOKENS = "class-tokens"
SOURCE_TAG_FREQUENCY = "tag-frequency"
SOURCE_ORDER = (SOURCE_ACTIVATION, SOURCE_CIVITAI, SOURCE_MODELSPEC, SOURCE_CLASS_TOKENS, SOURCE_TAG_FREQUENCY)

SOURCE_LABELS = {
    SOURCE_ACTIVATION: "activation text (your sidecar)",
    SOURCE_CIVITAI: "Civitai trained words",
    SOURCE_MODELSPEC: "modelspec.trigger_phrase",
    SOURCE_CLASS_TOKENS: "kohya class tokens",
    SOURCE_TAG_FREQUENCY: "most frequent training tags (guess)",
}

#: How many ss_tag_frequency tags are offered.
TAG_FREQUENCY_TOP = 5


@dataclass(frozen=True)
class TriggerSource:
    """The phrases one source gives for a LoRA; ``guessed`` ones are never inserted automatically."""

    source: str
    words: tuple[str, ...]
    guessed: bool = False

    @property
    def label(self) -> str:
        return SOURCE_LABELS.get(self.source, self.source)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "label": self.label, "words": list(self.words), "guessed": self.guessed}


# --------------------------------------------------------------------------------------------------
# Phrases and presence
# --------------------------------------------------------------------------------------------------


def split_phrases(text: str) -> tuple[str, ...]:
    """Split ``text`` on commas outside brackets; strip; drop empties and repeats (compared normalised)."""
    out: list[str] = []
    seen: set[str] = set()
    depth = 0
    start = 0
    pieces: list[str] = []
    escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
            continue
        if ch == "\\":
            escaped = True
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    pieces.append(text[start:])
    for piece in pieces:
        if TAG_RE.search(piece):
            continue  # a <lora:...> among the words would be loaded unresolved
        phrase = " ".join(piece.split())
        key = phrase_key(phrase)
        if phrase and key and key not in seen:
            seen.add(key)
            out.append(phrase)
    return tuple(out)


_WEIGHT_RE = re.compile(r":\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*(?=[)\]}:,|]|$)")
_SEP_RE = re.compile(r"[()\[\]{}\\|:]+")
_TOKEN_RE = re.compile(r",|[^\s,]+")


def _tokens(text: str) -> list[str]:
    text = text.casefold()
    text = _WEIGHT_RE.sub(" ", text)
    text = _SEP_RE.sub(" ", text)
    return _TOKEN_RE.findall(text)


def phrase_key(phrase: str) -> str:
    """The normalised form of a phrase used to compare it with a prompt ("" for nothing)."""
    tokens = _tokens(phrase)
    while tokens and tokens[0] == ",":
        tokens.pop(0)
    while tokens and tokens[-1] == ",":
        tokens.pop()
    return " ".join(tokens)


class PresenceIndex:
    """Which phrases a text already holds; phrases added with :meth:`add` count as present afterwards."""

    def __init__(self, text: str = "") -> None:
        self._text = " " + " ".join(_tokens(text)) + " "
        self._added: set[str] = set()

    def __contains__(self, phrase: object) -> bool:
        if not isinstance(phrase, str):
            return False
        key = phrase_key(phrase)
        if not key:
            return True
        return key in self._added or f" {key} " in self._text

    def add(self, phrase: str) -> None:
        key = phrase_key(phrase)
        if key:
            self._added.add(key)


def is_present(phrase: str, text: str) -> bool:
    return phrase in PresenceIndex(text)


def missing_phrases(phrases: Iterable[str], index: PresenceIndex) -> list[str]:
    """The phrases not yet in ``index`` (each added to it, so a repeat is never returned twice)."""
    out = []
    for phrase in phrases:
        if phrase not in index:
            out.append(phrase)
            index.add(phrase)
    return out


def emphasize(phrase: str, weight: float) -> str:
    """``(phrase:1.2)``; a phrase that already carries brackets or a weight is left as written."""
    stripped = phrase.strip()
    if stripped[:1] in "([{" or _WEIGHT_RE.search(stripped):
        return stripped
    text = f"{weight:.2f}".rstrip("0").rstrip(".")
    return f"({stripped}:{text})"


# --------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------


def class_tokens(metadata: Mapping[str, str]) -> tuple[str, ...]:
    """kohya class tokens of the training subsets (not regularisation ones), in order, without repeats."""
    tokens: list[str] = []
    datasets = _json(metadata.get("ss_datasets"))
    if isinstance(datasets, list):
        for dataset in datasets:
            if not isinstance(dataset, dict):
                continue
            for subset in dataset.get("subsets") or ():
                if isinstance(subset, dict) and not subset.get("is_reg"):
                    tok = subset.get("class_tokens")
                    if isinstance(tok, str) and tok.strip():
                        tokens.append(tok)
    if not tokens:
        dirs = _json(metadata.get("ss_dataset_dirs"))
        if isinstance(dirs, dict):
            for folder in dirs:
                m = re.match(r"^\s*\d+_(.+)$", str(folder))
                if m and m.group(1).strip():
                    tokens.append(m.group(1))
    return split_phrases(", ".join(tokens)) if tokens else ()


def frequent_tags(metadata: Mapping[str, str], top: int = TAG_FREQUENCY_TOP) -> tuple[str, ...]:
    """The ``top`` most frequent caption tags of ``ss_tag_frequency`` (counts summed over folders)."""
    freq = _json(metadata.get("ss_tag_frequency"))
    if not isinstance(freq, dict):
        return ()
    counts: dict[str, float] = {}
    shown: dict[str, str] = {}
    for tags in freq.values():
        if not isinstance(tags, dict):
            continue
        for tag, count in tags.items():
            phrase = " ".join(str(tag).split())
            key = phrase_key(phrase)
            if not key or not isinstance(count, (int, float)):
                continue
            counts[key] = counts.get(key, 0) + count
            shown.setdefault(key, phrase)
    ranked = sorted(counts, key=lambda k: (-counts[k], k))
    return tuple(shown[k] for k in ranked[:top])


def sources_from(
    *,
    activation_text: str | None = None,
    civitai_words: Sequence[str] = (),
    metadata: Mapping[str, str] | None = None,
    modelspec_words: Sequence[str] = (),
    stop_at_first: bool = False,
) -> list[TriggerSource]:
    """Every non-empty source, in :data:`SOURCE_ORDER`.

    With ``stop_at_first`` only the sources up to the first insertable one are computed (the header's
    JSON fields, which can be large, are then parsed only when nothing better exists).
    """
    metadata = metadata or {}
    out: list[TriggerSource] = []

    def add(source: str, words: Iterable[str], guessed: bool = False) -> bool:
        phrases = split_phrases(", ".join(w for w in words if isinstance(w, str)))
        if phrases:
            out.append(TriggerSource(source, phrases, guessed))
        return bool(phrases) and stop_at_first and not guessed

    if add(SOURCE_ACTIVATION, [activation_text or ""]):
        return out
    if add(SOURCE_CIVITAI, civitai_words):
        return out
    spec = [metadata["modelspec.trigger_phrase"]] if metadata.get("modelspec.trigger_phrase") else list(modelspec_words)
    if add(SOURCE_MODELSPEC, spec):
        return out
    if add(SOURCE_CLASS_TOKENS, class_tokens(metadata)):
        return out
    add(SOURCE_TAG_FREQUENCY, frequent_tags(metadata), guessed=True)
    return out


def chosen(sources: Sequence[TriggerSource]) -> TriggerSource | None:
    """The source whose words are inserted: the first one that is not a guess."""
    return next((s for s in sources if not s.guessed and s.words), None)


def trigger_sources(entry: Any) -> list[TriggerSource]:
    """Every trigger-word source of a library entry (``LoraInfo``), best first (for the browser)."""
    return list(_sources(entry, stop_at_first=False))


def inserted_source(entry: Any) -> TriggerSource | None:
    """The source whose words the prompt rewrite inserts for ``entry`` (``None``: nothing to insert)."""
    return chosen(_sources(entry, stop_at_first=True))


def negative_text(entry: Any) -> str:
    """The user's sidecar "negative text" for a LoRA ("" when none)."""
    sidecars = getattr(entry, "sidecars", None)
    value = _first_attr(getattr(sidecars, "user", None), "negative_text", "negative text")
    return value if isinstance(value, str) else ""


#: Recently computed sources, keyed by ``(id(entry), stop_at_first)``; the entry itself is kept to
#: check identity (an id can be reused once an entry is gone). Entries are immutable.
_CACHE: OrderedDict[tuple[int, bool], tuple[Any, tuple[TriggerSource, ...]]] = OrderedDict()
_CACHE_SIZE = 4096


def _sources(entry: Any, *, stop_at_first: bool) -> tuple[TriggerSource, ...]:
    key = (id(entry), stop_at_first)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is entry:
        _CACHE.move_to_end(key)
        return hit[1]
    sidecars = getattr(entry, "sidecars", None)
    detection = getattr(entry, "detection", None)
    result = tuple(
        sources_from(
            activation_text=_activation_text(sidecars),
            civitai_words=_civitai_words(sidecars),
            metadata=_metadata_of(entry),
            modelspec_words=tuple(getattr(detection, "trigger_words", ()) or ()),
            stop_at_first=stop_at_first,
        )
    )
    _CACHE[key] = (entry, result)
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return result


def _activation_text(sidecars: Any) -> str | None:
    """``Sidecars.user.activation_text`` (lib_lora.sidecars)."""
    value = _first_attr(getattr(sidecars, "user", None), "activation_text", "activation text")
    return value if isinstance(value, str) else None


def _civitai_words(sidecars: Any) -> tuple[str, ...]:
    """``Sidecars.civitai.trained_words`` (lib_lora.sidecars)."""
    return _words(_first_attr(getattr(sidecars, "civitai", None), "trained_words", "trainedWords"))


def _metadata_of(entry: Any) -> Mapping[str, str]:
    for name in ("metadata", "header_metadata"):
        value = getattr(entry, name, None)
        if isinstance(value, Mapping):
            return value
    header = getattr(entry, "header", None)
    value = getattr(header, "metadata", None)
    return value if isinstance(value, Mapping) else {}


def _first_attr(obj: Any, *names: str) -> Any:
    if obj is None:
        return None
    for name in names:
        if isinstance(obj, Mapping):
            if obj.get(name) is not None:
                return obj[name]
        else:
            value = getattr(obj, name, None)
            if value is not None:
                return value
    return None


def _words(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def _json(raw: str | None) -> Any:
    if not raw or not isinstance(raw, str):
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None
