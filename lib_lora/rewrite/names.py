"""Names: resolving a tag name to one library file, and the name the built-in loader will load it by."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lib_lora.prompt import (
    is_rooted_or_parent,
    name_problem,
)
from lib_lora.rewrite.model import (
    _ALIAS_RE,
    LibraryLike,
)

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
