"""The :class:`Library` façade: one set of LoRA folders kept in step with its index — loading, scanning,
refreshing, listing, name lookups, user metadata and the background hashing thread."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from lib_lora import paths
from lib_lora import sidecars as sc
from lib_lora.errors import HashError, LibraryError, SidecarError
from lib_lora.hashing import FileHashes, hash_file
from lib_lora.library import index
from lib_lora.library.index import _FILE_INSERT, _JSON_COLUMNS, _KEY_COLUMNS, _Index, _Row
from lib_lora.library.info import SAFETENSORS, HashStatus, Lookup, LoraInfo, ScanProgress, ScanResult
from lib_lora.library.lookup import _State, resolve
from lib_lora.library.scan import (
    _default_workers,
    _dir_listing,
    _Found,
    _read_file,
    _read_many,
    _side_signature,
    _sidecar_index,
    _walk,
    link_outside,
)


def _norm_root(root: str | os.PathLike[str]) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(root)))


class Library:
    """LoRA files under ``roots``, indexed in ``index_path`` (default: the user-data folder's index)."""

    def __init__(self, roots: Sequence[str | os.PathLike[str]], index_path: str | os.PathLike[str] | None = None,
                 *, data_dir: str | os.PathLike[str] | None = None, workers: int | None = None) -> None:
        """``workers``: reader processes for big (cold) scans; default from ``LORA_STUDIO_SCAN_WORKERS``,
        else ``min(CPU count, 4)``; 0 or 1 reads everything in this process."""
        self._workers = _default_workers() if workers is None else max(int(workers), 0)
        seen: dict[str, None] = {}
        for r in roots:
            seen.setdefault(_norm_root(r), None)
        self.roots: tuple[str, ...] = tuple(seen)
        self.index_path = Path(index_path) if index_path is not None else paths.default_index_path(data_dir)
        self._index = _Index(self.index_path)
        self._state: _State | None = None
        self._generation = 0
        self._hash_cache: dict[str, tuple[int, int, str, str | None]] | None = None
        self._scan_lock = threading.RLock()
        self._state_lock = threading.Lock()
        self._fingerprint = index._code_fingerprint()
        # hashing worker
        self._hash_thread: threading.Thread | None = None
        self._hash_stop = threading.Event()
        self._hash_current: str | None = None
        self._hash_failed: dict[str, str] = {}
        self._hash_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Library(roots={list(self.roots)!r}, index_path={str(self.index_path)!r})"

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.stop_hashing(wait=True)
        self._index.close_thread_connection()

    # -- loading and scanning ------------------------------------------------------------------

    def _load_rows(self) -> dict[str, _Row]:
        conn = self._index.conn()
        rows: dict[str, _Row] = {}
        if not self.roots:
            return rows
        marks = ",".join("?" * len(self.roots))
        for t in conn.execute(f"SELECT {_KEY_COLUMNS} FROM files WHERE root IN ({marks})", self.roots):
            row = _Row(*t, loaded=False)
            rows[row.path] = row
        self._load_rows_hashes()
        for row in rows.values():
            self._attach_hashes(row)
        return rows

    def _attach_hashes(self, row: _Row) -> None:
        cached = self._hash_cache.get(row.realpath) if self._hash_cache is not None else None
        if cached is not None and cached[0] == row.size and cached[1] == row.mtime_ns:
            row.sha256, row.addnet = cached[2], cached[3]

    def _fill(self, rows: Sequence[_Row]) -> None:
        """Load the JSON columns of ``rows`` from the index (one query for many). A row the index no longer
        holds in the same version (another process rescanned meanwhile) is read from its file again."""
        todo = [r for r in rows if not r.loaded]
        if not todo:
            return
        by_path = {r.path: r for r in todo}
        try:
            conn = self._index.conn()
            if len(todo) > 64:
                marks = ",".join("?" * len(self.roots))
                cursor = conn.execute(f"SELECT {_JSON_COLUMNS} FROM files WHERE root IN ({marks})", self.roots)
                results: Iterable[tuple[Any, ...]] = cursor
            else:
                results = [t for r in todo for t in conn.execute(f"SELECT {_JSON_COLUMNS} FROM files WHERE path = ?", (r.path,))]
            for path, size, mtime_ns, side_sig, fingerprint, det, side, meta, trig in results:
                row = by_path.get(path)
                if row is not None and row.key() == (size, mtime_ns, side_sig, fingerprint):
                    row.detection, row.sidecars, row.metadata, row.triggers = det, side, meta, trig
                    row.loaded = True
        except sqlite3.DatabaseError:
            pass
        for row in todo:
            if not row.loaded:
                fresh = self._reread(row)
                row.detection, row.sidecars, row.metadata, row.triggers = (
                    fresh.detection, fresh.sidecars, fresh.metadata, fresh.triggers)
                row.error, row.alias, row.addnet_hint = fresh.error, fresh.alias, fresh.addnet_hint
                row.loaded = True

    def _reread(self, row: _Row) -> _Row:
        folder = os.path.dirname(row.path)
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            entries = []
        sidecars = _sidecar_index(entries)
        f = _Found(row.path, row.root, row.relpath, row.name, row.suffix, row.realpath, row.size, row.mtime_ns,
                   _side_signature(sidecars.get(row.name.casefold())), _dir_listing(entries), False,
                   row.link_outside)
        return _read_file(f, self._fingerprint)

    def _info(self, row: _Row) -> LoraInfo:
        if row.info is not None:
            return row.info
        if not row.loaded:
            self._fill([row])
        return row.to_info()

    def _infos(self, rows: Sequence[_Row]) -> tuple[LoraInfo, ...]:
        self._fill(rows)
        return tuple(r.to_info() for r in rows)

    def load(self) -> int:
        """Fill the library from the index alone (no file-system walk): an instant, possibly stale
        listing to show while :meth:`scan` runs. Does not wait for a running scan. Returns the number
        of entries."""
        try:
            rows = self._load_rows()
        except sqlite3.DatabaseError as exc:
            with self._scan_lock:
                self._index.recover(f"read failed: {exc}")
            rows = {}
        state = _State(rows, self.roots)
        with self._state_lock:
            if self._state is None:  # a scan that finished meanwhile knows better
                self._state = state
                self._generation += 1
        return len(self._state.rows) if self._state is not None else 0

    def scan(self, progress: ScanProgress | None = None) -> ScanResult:
        """Walk the roots; read new and changed files; forget removed ones. Thread-safe (one at a time)."""
        with self._scan_lock:
            try:
                return self._scan(progress)
            except sqlite3.DatabaseError as exc:
                self._index.recover(f"{type(exc).__name__}: {exc}")
                self._state = None
                self._hash_cache = None
                return self._scan(progress)

    def _scan(self, progress: ScanProgress | None) -> ScanResult:
        t0 = time.perf_counter()
        state = self._state
        old_rows = dict(state.rows) if state is not None else self._load_rows()
        if self._hash_cache is None:
            self._load_rows_hashes()
        found, errors, links = _walk(self.roots)
        fingerprint = self._fingerprint
        to_read: list[_Found] = []
        rows: dict[str, _Row] = {}
        unchanged = 0
        for f in found:
            old = old_rows.pop(f.path, None)
            if (
                old is not None
                and old.error is None
                and old.size == f.size
                and old.mtime_ns == f.mtime_ns
                and old.realpath == f.realpath
                and old.side_sig == f.side_sig
                and old.fingerprint == fingerprint
                and old.root == f.root
                and old.link_outside == f.link_outside
            ):
                rows[f.path] = old
                unchanged += 1
            else:
                if old is not None:
                    rows[f.path] = old  # placeholder, replaced below; marks "changed"
                to_read.append(f)
        removed = tuple(sorted(old_rows))
        added: list[str] = []
        changed: list[str] = []
        new_rows: list[_Row] = []
        total = len(to_read)
        for i, row in enumerate(_read_many(to_read, fingerprint, self._workers)):
            self._attach_hashes(row)
            (changed if row.path in rows else added).append(row.path)
            rows[row.path] = row
            new_rows.append(row)
            if progress is not None:
                progress(i + 1, total, row.path)
        if new_rows or removed:
            conn = self._index.conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_FILE_INSERT, [r.db_tuple() for r in new_rows])
                conn.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in removed])
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        if state is None or new_rows or removed:
            self._set_state(_State(rows, self.roots))
        for r in new_rows:
            if r.error:
                errors.append((r.path, r.error))
        return ScanResult(
            added=tuple(sorted(added)),
            changed=tuple(sorted(changed)),
            removed=removed,
            unchanged=unchanged,
            errors=tuple(errors),
            seconds=time.perf_counter() - t0,
            total=len(rows),
            reads=sum(1 for f in to_read if not f.legacy),
            notes=self._index.take_notes(),
            links=tuple(links),
        )

    def _load_rows_hashes(self) -> None:
        conn = self._index.conn()
        self._hash_cache = {
            real: (size, mtime, sha, addnet)
            for real, size, mtime, sha, addnet in conn.execute("SELECT realpath, size, mtime_ns, sha256, addnet FROM hashes")
        }

    def _set_state(self, state: _State) -> None:
        with self._state_lock:
            self._state = state
            self._generation += 1

    @property
    def generation(self) -> int:
        """Changes whenever the set of entries or any entry's content changes (not when a hash arrives)."""
        return self._generation

    def _current(self) -> _State:
        state = self._state
        if state is None:
            self.load()
            state = self._state
            assert state is not None
        return state

    def refresh(self, path: str | os.PathLike[str]) -> LoraInfo | None:
        """Re-read one file (after its sidecar changed, say). ``None`` if it is gone or outside the roots."""
        with self._scan_lock:
            state = self._current()
            key = os.path.abspath(os.fspath(path))
            old = state.rows.get(key)
            if old is None:
                return None
            folder = os.path.dirname(key)
            try:
                with os.scandir(folder) as it:
                    entries = list(it)
                st = os.stat(key)
            except OSError:
                return None
            sidecars = _sidecar_index(entries)
            real = os.path.realpath(key)
            f = _Found(key, old.root, old.relpath, old.name, old.suffix, real, st.st_size,
                       st.st_mtime_ns, _side_signature(sidecars.get(old.name.casefold())), _dir_listing(entries),
                       old.realpath != os.path.join(os.path.realpath(folder), os.path.basename(key)),
                       link_outside(key, real, self.roots))
            row = _read_file(f, self._fingerprint)
            self._attach_hashes(row)
            conn = self._index.conn()
            conn.execute(_FILE_INSERT, row.db_tuple())
            rows = dict(state.rows)
            rows[key] = row
            self._set_state(_State(rows, self.roots))
            return row.to_info()

    # -- reading ---------------------------------------------------------------------------------

    def entries(self) -> tuple[LoraInfo, ...]:
        """Every file, ordered by root then relative path (case-insensitive)."""
        return self._infos(self._current().order)

    def __len__(self) -> int:
        return len(self._current().rows)

    def get(self, path: str | os.PathLike[str]) -> LoraInfo | None:
        """The entry for ``path`` (as listed, or its real path)."""
        state = self._current()
        p = os.path.abspath(os.fspath(path))
        row = state.rows.get(p) or state.by_real.get(p) or state.by_real.get(os.path.realpath(p))
        return self._info(row) if row is not None else None

    def duplicates(self) -> dict[str, tuple[LoraInfo, ...]]:
        """File stems shared by several files: A1111 loads only one of them for ``<lora:stem>``."""
        return {
            stem: self._infos(rows)
            for stem, rows in self._current().by_stem.items()
            if len(rows) > 1
        }

    # -- names -------------------------------------------------------------------------------------

    def lookup(self, name: str) -> Lookup:
        """Resolve ``name`` as a ``<lora:NAME>`` tag means it (order in the package docstring)."""
        return resolve(self._current(), name, self._info, self._infos)

    # -- user metadata -----------------------------------------------------------------------------

    def set_user_metadata(self, entry: LoraInfo | str | os.PathLike[str], **changes: Any) -> LoraInfo:
        """Write the user's values to the A1111 sidecar (fields of :class:`~lib_lora.sidecars.UserMetadata`;
        ``None`` removes one) and return the refreshed entry. When the sidecar is new, ``sd version`` is
        filled from the detected architecture, as A1111's editor would."""
        info = entry if isinstance(entry, LoraInfo) else self.get(entry)
        if info is None:
            raise LibraryError(f"not a LoRA in this library: {entry}")
        if (
            "sd_version" not in changes
            and info.sidecars.user is None
            and info.detection is not None
            and sc.sd_version_for(info.detection.architecture) != "Unknown"
        ):
            changes["sd_version"] = sc.sd_version_for(info.detection.architecture)
        try:
            sc.update_user_metadata(info.path, **changes)
        except SidecarError:
            raise
        fresh = self.refresh(info.path)
        if fresh is None:
            raise LibraryError(f"{info.path} disappeared while its metadata was saved")
        return fresh

    # -- hashes ------------------------------------------------------------------------------------

    def _store_hashes(self, row: _Row, hashes: FileHashes) -> None:
        conn = self._index.conn()
        conn.execute("INSERT OR REPLACE INTO hashes (realpath, size, mtime_ns, sha256, addnet) VALUES (?,?,?,?,?)",
                     (row.realpath, row.size, row.mtime_ns, hashes.sha256, hashes.addnet))
        if self._hash_cache is not None:
            self._hash_cache[row.realpath] = (row.size, row.mtime_ns, hashes.sha256, hashes.addnet)
        with self._state_lock:
            row.sha256, row.addnet = hashes.sha256, hashes.addnet
            row.info = None
            state = self._state
            if state is not None and state.rows.get(row.path) is row:
                state.add_hashes(row)

    def _hash_row(self, row: _Row, should_stop: Callable[[], bool] | None = None) -> FileHashes:
        try:
            st = os.stat(row.path)
        except OSError as exc:
            raise HashError(f"{row.path}: cannot read for hashing: {exc.strerror or exc}") from None
        if (st.st_size, st.st_mtime_ns) != (row.size, row.mtime_ns):
            raise HashError(f"{row.path}: changed since the last scan; rescan first")
        hashes = hash_file(row.path, addnet=row.suffix.lower() == SAFETENSORS, should_stop=should_stop)
        st = os.stat(row.path)
        if (st.st_size, st.st_mtime_ns) != (row.size, row.mtime_ns):
            raise HashError(f"{row.path}: changed while it was hashed")
        self._store_hashes(row, hashes)
        return hashes

    def ensure_hashes(self, entry: LoraInfo | str | os.PathLike[str]) -> LoraInfo:
        """The entry with its hashes, computing them now if needed (reads the whole file)."""
        info = entry if isinstance(entry, LoraInfo) else self.get(entry)
        if info is None:
            raise LibraryError(f"not a LoRA in this library: {entry}")
        row = self._current().rows.get(info.path)
        if row is None:
            raise LibraryError(f"not a LoRA in this library: {info.path}")
        if not row.sha256:
            self._hash_row(row)
        return self._info(row)

    def start_hashing(self, progress: Callable[[HashStatus], None] | None = None) -> bool:
        """Hash every entry without known hashes in a background thread. False if one is running."""
        with self._hash_lock:
            if self._hash_thread is not None and self._hash_thread.is_alive():
                return False
            self._current()
            self._hash_stop.clear()
            self._hash_thread = threading.Thread(target=self._hash_loop, args=(progress,), daemon=True,
                                                 name="lora-studio-hashing")
            self._hash_thread.start()
            return True

    def stop_hashing(self, wait: bool = True) -> None:
        self._hash_stop.set()
        thread = self._hash_thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    def wait_for_hashes(self, timeout: float | None = None) -> bool:
        """Block until the worker is done (tests, CLI). True when it finished."""
        thread = self._hash_thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _hash_loop(self, progress: Callable[[HashStatus], None] | None) -> None:
        try:
            while not self._hash_stop.is_set():
                state = self._state
                if state is None:
                    return
                todo = [r for r in state.order if not r.sha256 and r.path not in self._hash_failed]
                if not todo:
                    return
                for row in todo:
                    if self._hash_stop.is_set() or self._state is not state:
                        break
                    if row.sha256:
                        continue
                    self._hash_current = row.path
                    try:
                        self._hash_row(row, should_stop=self._hash_stop.is_set)
                    except HashError as exc:
                        if self._hash_stop.is_set():
                            return
                        self._hash_failed[row.path] = exc.message
                    except sqlite3.DatabaseError as exc:
                        self._hash_failed[row.path] = f"{row.path}: index error: {exc}"
                    finally:
                        self._hash_current = None
                    if progress is not None:
                        try:
                            progress(self.hash_status())
                        except Exception:
                            pass
        finally:
            self._index.close_thread_connection()

    def hash_status(self) -> HashStatus:
        state = self._state
        rows = state.order if state is not None else []
        thread = self._hash_thread
        return HashStatus(
            total=len(rows),
            done=sum(1 for r in rows if r.sha256),
            running=thread is not None and thread.is_alive(),
            current=self._hash_current,
            failed=tuple(sorted(self._hash_failed.items())),
        )
