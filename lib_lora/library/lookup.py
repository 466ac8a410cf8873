"""Finding a file by name: the in-memory name and hash tables built once per scan, and resolving a
``<lora:NAME>`` the way A1111 means it, with "ambiguous" candidates and "did you mean" suggestions."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Sequence

from lib_lora.library.index import _Row
from lib_lora.library.info import MODEL_SUFFIXES, Lookup, LoraInfo

_HEX_RE = re.compile(r"[0-9a-fA-F]+")




class _State:
    def __init__(self, rows: dict[str, _Row], roots: Sequence[str]) -> None:
        self.rows = rows
        rank = {r: i for i, r in enumerate(roots)}
        self.order: list[_Row] = sorted(rows.values(), key=lambda r: (rank.get(r.root, len(rank)), r.relpath.casefold(), r.relpath))
        self.by_stem: dict[str, list[_Row]] = {}
        self.by_rel: dict[str, list[_Row]] = {}
        self.by_alias: dict[str, list[_Row]] = {}
        self.by_fold: dict[str, list[_Row]] = {}
        self.by_real: dict[str, _Row] = {}
        self.by_autov2: dict[str, list[_Row]] = {}
        self.by_addnet: dict[str, list[_Row]] = {}
        self._suggest: tuple[list[str], list[str]] | None = None
        self._hash_marks: set[tuple[str, str, int]] = set()
        for row in self.order:
            self.by_stem.setdefault(row.name, []).append(row)
            self.by_rel.setdefault(row.relpath, []).append(row)
            self.by_real.setdefault(row.realpath, row)
            keys = {row.name.casefold(), row.relpath.casefold()}
            if row.alias:
                self.by_alias.setdefault(row.alias, []).append(row)
                keys.add(row.alias.casefold())
            for k in keys:
                self.by_fold.setdefault(k, []).append(row)
            self.add_hashes(row)

    def add_hashes(self, row: _Row) -> None:
        """Index ``row`` by the hashes known for it (again when more arrive; never twice per key)."""
        if row.sha256:
            self._add(self.by_autov2, "a", row.sha256[:10], row)
            if row.legacy or not row.addnet:
                self._add(self.by_addnet, "n", row.sha256[:12], row)
        addnet = row.addnet or row.addnet_hint
        if addnet:
            self._add(self.by_addnet, "n", addnet[:12], row)

    def _add(self, table: dict[str, list[_Row]], tag: str, key: str, row: _Row) -> None:
        mark = (tag, key, id(row))
        if mark in self._hash_marks:
            return
        self._hash_marks.add(mark)
        table.setdefault(key, []).append(row)

    def suggestion_names(self) -> tuple[list[str], list[str]]:
        if self._suggest is None:
            names: dict[str, str] = {}
            for row in self.order:
                for n in (row.name, row.relpath, row.alias):
                    if n:
                        names.setdefault(n.casefold(), n)
            self._suggest = (list(names), list(names.values()))
        return self._suggest


def resolve(state: _State, name: str, info_of: Callable[[_Row], LoraInfo],
            infos_of: Callable[[Sequence[_Row]], tuple[LoraInfo, ...]]) -> Lookup:
    """Resolve ``name`` as a ``<lora:NAME>`` tag means it (order in the :mod:`lib_lora.library` docstring);
    ``info_of``/``infos_of`` turn rows into entries (the library loads their JSON columns on demand)."""
    query = name
    q = name.strip()
    if not q:
        return Lookup(query, "missing", message="empty LoRA name")
    posix = q.replace("\\", "/")
    if (posix.startswith("/") or re.match(r"^[A-Za-z]:", posix) or ".." in posix.split("/")
            or os.path.isabs(q)):
        return Lookup(query, "refused", message=f"refused LoRA name {q!r}: absolute paths and '..' are not "
                                                "allowed; use a file name or a path inside a LoRA folder")
    while posix.startswith("./"):
        posix = posix[2:]
    bare = posix
    low = posix.lower()
    for suffix in MODEL_SUFFIXES:
        if low.endswith(suffix) and len(low) > len(suffix):
            bare = posix[: -len(suffix)]
            break

    def result(rows: list[_Row], how: str) -> Lookup:
        if len(rows) == 1:
            info = info_of(rows[0])
            return Lookup(query, "found", info, how, (info,),
                          message=f"{q} → {info.relpath}{info.suffix}")
        cands = infos_of(rows)
        listing = ", ".join(f"{c.relpath}{c.suffix}" for c in cands)
        return Lookup(query, "ambiguous", None, how, cands, tuple(c.relpath for c in cands[:3]),
                      message=f"{q!r} matches {len(cands)} LoRAs ({how}): {listing} — "
                              f"name one by its folder, e.g. <lora:{cands[0].relpath}:1>")

    if "/" not in bare:
        hit = state.by_stem.get(q) or state.by_stem.get(bare)
        if hit:
            return result(hit, "stem")
    hit = state.by_rel.get(bare)
    if hit:
        return result(hit, "relpath")
    hit = state.by_alias.get(q)
    if hit:
        return result(hit, "alias")
    is_hex = _HEX_RE.fullmatch(q) is not None
    if is_hex:
        h = q.lower()
        if len(h) == 10 and h in state.by_autov2:
            return result(state.by_autov2[h], "autov2")
        if len(h) == 12 and h in state.by_addnet:
            return result(state.by_addnet[h], "addnet")
        if len(h) == 64:
            rows = [r for r in state.by_autov2.get(h[:10], []) if r.sha256 == h]
            if rows:
                return result(rows, "autov2")
            rows = [r for r in state.by_addnet.get(h[:12], []) if (r.addnet or r.addnet_hint) == h]
            if rows:
                return result(rows, "addnet")
    hit = state.by_fold.get(q.casefold()) or state.by_fold.get(bare.casefold())
    if hit:
        return result(hit, "casefold")
    keys, shown = state.suggestion_names()
    close = difflib.get_close_matches(bare.casefold(), keys, n=3, cutoff=0.6)
    by_key = dict(zip(keys, shown, strict=True))
    suggestions = tuple(by_key[k] for k in close)
    msg = f"no LoRA named {q!r}"
    if suggestions:
        msg += " — did you mean " + ", ".join(suggestions) + "?"
    if is_hex and len(q) in (10, 12, 64):
        pending = sum(1 for r in state.order if not r.sha256)
        if pending:
            msg += f" (hashes of {pending} files are not computed yet)"
    return Lookup(query, "missing", suggestions=suggestions, message=msg)
