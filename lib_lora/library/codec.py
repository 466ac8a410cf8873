"""JSON forms of what the index stores for a file: the detection result (decoded fast on every warm
listing), the header metadata (kept as text until used) and the trigger-word sources."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import fields
from typing import Any

from lib_lora.architecture import Detection, Evidence


def detection_to_dict(det: Detection) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(det):
        v = getattr(det, f.name)
        if f.name == "evidence":
            v = [{g.name: getattr(e, g.name) for g in fields(e)} for e in v]
        elif isinstance(v, tuple):
            v = list(v)
        elif isinstance(v, dict):
            v = dict(v)
        out[f.name] = v
    return out


def _plain_dataclass(cls: type) -> bool:
    """True when instances can be filled through ``__dict__`` (no slots, no ``__post_init__``)."""
    return "__slots__" not in cls.__dict__ and not hasattr(cls, "__post_init__")


_DET_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Detection))
_DET_REQUIRED = frozenset(
    f.name for f in fields(Detection)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
)
_DET_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Detection) if f.default is not dataclasses.MISSING}
_DET_FACTORIES = {f.name: f.default_factory for f in fields(Detection) if f.default_factory is not dataclasses.MISSING}
_EV_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Evidence))
_EV_KEYS = frozenset(_EV_FIELDS)
_FAST_DET = _plain_dataclass(Detection) and _plain_dataclass(Evidence)
_new = object.__new__
_set = object.__setattr__


def detection_from_dict(data: Mapping[str, Any]) -> Detection | None:
    """Inverse of :func:`detection_to_dict`; ``None`` when the stored form no longer fits the class.

    Decoding thousands of stored detections is on the path of every warm listing, so plain frozen
    dataclasses are filled through ``__dict__`` (what their ``__init__`` would store) instead of
    calling ``__init__``."""
    try:
        if not _DET_REQUIRED <= data.keys():
            return None
        values: dict[str, Any] = {}
        for name in _DET_FIELDS:
            if name in data:
                v = data[name]
                if name == "evidence":
                    # rows are rewritten whenever lib_lora/architecture/ changes (the code fingerprint), so
                    # stored evidence always has the current fields: checking the first one suffices
                    if _FAST_DET and (not v or v[0].keys() == _EV_KEYS):
                        v = tuple(_fast_evidence(e) for e in v)
                    else:
                        v = tuple(_evidence(e) for e in v)
                elif type(v) is list:
                    v = tuple(tuple(x) if type(x) is list else x for x in v)
                values[name] = v
            elif name in _DET_DEFAULTS:
                values[name] = _DET_DEFAULTS[name]
            else:
                values[name] = _DET_FACTORIES[name]()
        if _FAST_DET:
            det = _new(Detection)
            _set(det, "__dict__", values)
            return det
        return Detection(**values)
    except (TypeError, ValueError, AttributeError, KeyError):
        return None


def _fast_evidence(e: dict[str, Any]) -> Evidence:
    ev = _new(Evidence)
    _set(ev, "__dict__", e)  # e is a fresh dict from json.loads: it becomes the instance's
    return ev


def _evidence(e: dict[str, Any]) -> Evidence:
    if _FAST_DET and e.keys() == _EV_KEYS:
        ev = _new(Evidence)
        _set(ev, "__dict__", e)  # e is a fresh dict from json.loads: it becomes the instance's
        return ev
    return Evidence(**{k: x for k, x in e.items() if k in _EV_FIELDS})


class LazyJSONMapping(Mapping[str, str]):
    """A read-only mapping kept as JSON text until first used (the header metadata of an entry)."""

    __slots__ = ("_data", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._data: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        data = self._data
        if data is None:
            try:
                loaded = json.loads(self._text) if self._text else {}
            except ValueError:
                loaded = {}
            data = loaded if isinstance(loaded, dict) else {}
            self._data = data
        return data

    def __getitem__(self, key: str) -> str:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, key: object) -> bool:
        return key in self._load()

    def get(self, key: str, default: Any = None) -> Any:
        return self._load().get(key, default)

    def __repr__(self) -> str:
        return f"LazyJSONMapping({self._load()!r})"



def _encode_triggers(sources: Iterable[Any]) -> str:
    return json.dumps([[s.source, list(s.words), bool(s.guessed)] for s in sources], ensure_ascii=False,
                      separators=(",", ":"))


def _decode_triggers(text: str | None) -> tuple[Any, ...] | None:
    if text is None:
        return None
    try:
        from lib_lora.triggers import TriggerSource

        return tuple(TriggerSource(src, tuple(words), bool(guessed)) for src, words, guessed in json.loads(text))
    except (ImportError, ValueError, TypeError):
        return None

