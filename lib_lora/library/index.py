"""The SQLite index: its schema, one file's row, the code fingerprint that invalidates rows, and
checking, upgrading and recovering the database file (moved aside and rebuilt when unusable)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from lib_lora import sidecars as sc
from lib_lora.hashing import FileHashes
from lib_lora.library.codec import LazyJSONMapping, _decode_triggers, detection_from_dict
from lib_lora.library.info import LoraInfo

SCHEMA_VERSION = 3  # 3: files.link_outside
APPLICATION_ID = 0x4C537464  # "LStd"



_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    root TEXT NOT NULL,
    realpath TEXT NOT NULL,
    relpath TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    side_sig TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    alias TEXT,
    legacy INTEGER NOT NULL,
    error TEXT,
    addnet_hint TEXT,
    link_outside TEXT,
    detection TEXT,
    sidecars TEXT NOT NULL,
    metadata TEXT NOT NULL,
    triggers TEXT
);
CREATE INDEX IF NOT EXISTS files_root ON files(root);
CREATE TABLE IF NOT EXISTS hashes (
    realpath TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    addnet TEXT
);
"""

_FILE_COLUMNS = ("path, root, realpath, relpath, size, mtime_ns, side_sig, fingerprint, alias, legacy, error, "
                 "addnet_hint, link_outside, detection, sidecars, metadata, triggers")
_ROW_LENGTH = len(_FILE_COLUMNS.split(","))
_FILE_INSERT = f"INSERT OR REPLACE INTO files ({_FILE_COLUMNS}) VALUES ({','.join('?' * _ROW_LENGTH)})"
#: what a warm start loads for every row; the JSON columns follow when an entry is asked for
_KEY_COLUMNS = ("path, root, realpath, relpath, size, mtime_ns, side_sig, fingerprint, alias, legacy, error, "
                "addnet_hint, link_outside")
_JSON_COLUMNS = "path, size, mtime_ns, side_sig, fingerprint, detection, sidecars, metadata, triggers"


class _Index:
    """The SQLite file: checked on first use, moved aside and rebuilt when unusable; one connection
    per thread."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._generation = 0
        self._ready = False
        self._memory_uri: str | None = None
        self._memory_keeper: sqlite3.Connection | None = None
        self.notes: list[str] = []

    # -- connections
    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is not None and getattr(self._local, "generation", -1) == self._generation:
            return c
        if c is not None:
            try:
                c.close()
            except sqlite3.Error:
                pass
        with self._lock:
            if not self._ready:
                self._prepare()
            c = self._connect()
        self._local.conn = c
        self._local.generation = self._generation
        return c

    def close_thread_connection(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            try:
                c.close()
            except sqlite3.Error:
                pass
            self._local.conn = None

    def _connect(self) -> sqlite3.Connection:
        if self._memory_uri is not None:
            c = sqlite3.connect(self._memory_uri, uri=True, isolation_level=None, check_same_thread=True)
        else:
            assert self.path is not None
            c = sqlite3.connect(str(self.path), timeout=15, isolation_level=None)
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute("PRAGMA busy_timeout=15000")
        return c

    # -- checking and recovery
    def _prepare(self) -> None:
        if self.path is None:
            self._use_memory(None)
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._use_memory(f"cannot create the index folder {self.path.parent}: {exc.strerror or exc}")
            return
        for _attempt in range(3):
            try:
                state = self._inspect()
            except sqlite3.DatabaseError as exc:
                state = f"not an SQLite database ({exc})"
            if state == "ok":
                self._ready = True
                return
            if state == "new":
                try:
                    self._create(self.path)
                except sqlite3.DatabaseError as exc:
                    if "readonly" in str(exc) or "unable to open" in str(exc):
                        self._use_memory(f"cannot write the index {self.path}: {exc}")
                        return
                    continue
                self._ready = True
                return
            if state.startswith("upgrade:") and self._upgrade(int(state.split(":", 1)[1])):
                self._ready = True
                return
            if not self._move_aside(state):
                return
        self._use_memory(f"the index {self.path} could not be rebuilt")

    def _upgrade(self, old_version: int) -> bool:
        """Our own index from another version: rebuild it, keeping the cached hashes (costly to redo)."""
        assert self.path is not None
        hashes: list[tuple[Any, ...]] = []
        try:
            c = sqlite3.connect(str(self.path), timeout=15, isolation_level=None)
            try:
                hashes = c.execute("SELECT realpath, size, mtime_ns, sha256, addnet FROM hashes").fetchall()
            finally:
                c.close()
        except sqlite3.DatabaseError:
            hashes = []
        try:
            for extra in ("", "-wal", "-shm", "-journal"):
                Path(str(self.path) + extra).unlink(missing_ok=True)
            self._create(self.path)
            if hashes:
                c = sqlite3.connect(str(self.path), timeout=15, isolation_level=None)
                try:
                    c.execute("BEGIN IMMEDIATE")
                    c.executemany("INSERT OR REPLACE INTO hashes (realpath, size, mtime_ns, sha256, addnet) VALUES (?,?,?,?,?)",
                                  hashes)
                    c.execute("COMMIT")
                finally:
                    c.close()
        except (OSError, sqlite3.DatabaseError):
            return False
        self.notes.append(f"the library index {self.path} was upgraded from format {old_version} to "
                          f"{SCHEMA_VERSION} ({len(hashes)} cached hashes kept); every file is read once")
        return True

    def _inspect(self) -> str:
        assert self.path is not None
        if not self.path.exists():
            return "new"
        c = sqlite3.connect(str(self.path), timeout=15, isolation_level=None)
        try:
            app = c.execute("PRAGMA application_id").fetchone()[0]
            version = c.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            c.close()
        if not tables and app == 0:
            return "new"
        if app != APPLICATION_ID:
            return "a database of another application"
        if version != SCHEMA_VERSION:
            return f"upgrade:{version}"
        if not {"files", "hashes"} <= tables:
            return "index tables missing"
        return "ok"

    @staticmethod
    def _create_schema(c: sqlite3.Connection) -> None:
        c.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                c.execute(statement)
        c.execute(f"PRAGMA application_id={APPLICATION_ID}")
        c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        c.execute("COMMIT")

    def _create(self, path: Path) -> None:
        c = sqlite3.connect(str(path), timeout=15, isolation_level=None)
        try:
            c.execute("PRAGMA journal_mode=WAL")
            self._create_schema(c)
        finally:
            c.close()

    def _move_aside(self, reason: str) -> bool:
        assert self.path is not None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.bad-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.bad-{stamp}-{n}")
        try:
            os.replace(self.path, target)
            for extra in ("-wal", "-shm", "-journal"):
                side = Path(str(self.path) + extra)
                if side.exists():
                    os.replace(side, Path(str(target) + extra))
        except OSError as exc:
            self._use_memory(f"the index {self.path} is unusable ({reason}) and cannot be moved aside: "
                             f"{exc.strerror or exc}")
            return False
        self.notes.append(f"the library index {self.path} was unusable ({reason}); "
                          f"moved it to {target.name} and rebuilt it")
        return True

    def _use_memory(self, reason: str | None) -> None:
        self._memory_uri = f"file:lora-studio-index-{id(self)}?mode=memory&cache=shared"
        # keep one connection open for the life of the index, or the shared memory database vanishes
        self._memory_keeper = sqlite3.connect(self._memory_uri, uri=True, isolation_level=None, check_same_thread=False)
        self._create_schema(self._memory_keeper)
        if reason:
            self.notes.append(f"{reason}; using an in-memory index (nothing is cached between runs)")
        self._ready = True

    def recover(self, reason: str) -> None:
        """The database failed while in use: move it aside and start afresh (all threads reconnect)."""
        with self._lock:
            self._generation += 1
            self.close_thread_connection()
            self._ready = False
            if self._memory_uri is None and self.path is not None and self.path.exists():
                self._move_aside(reason)

    def take_notes(self) -> tuple[str, ...]:
        notes, self.notes = tuple(self.notes), []
        return notes



# --------------------------------------------------------------------------------------------------
# Rows: what the index stores, what the library holds in memory
# --------------------------------------------------------------------------------------------------


class _Row:
    """One file as the index stores it; JSON columns are decoded only when the entry is asked for."""

    __slots__ = ("addnet", "addnet_hint", "alias", "detection", "error", "fingerprint", "info", "legacy",
                 "link_outside", "loaded", "metadata", "mtime_ns", "name", "path", "realpath", "relpath", "root", "sha256",
                 "side_sig", "sidecars", "size", "suffix", "triggers")

    def __init__(self, path: str, root: str, realpath: str, relpath: str, size: int, mtime_ns: int,
                 side_sig: str, fingerprint: str, alias: str | None, legacy: bool, error: str | None,
                 addnet_hint: str | None, link_outside: str | None = None, detection: str | None = None, sidecars: str = "{}", metadata: str = "{}",
                 triggers: str | None = None, *, loaded: bool = True) -> None:
        self.path = path
        self.root = root
        self.realpath = realpath
        self.relpath = relpath
        self.size = size
        self.mtime_ns = mtime_ns
        self.side_sig = side_sig
        self.fingerprint = fingerprint
        self.alias = alias
        self.legacy = bool(legacy)
        self.error = error
        self.addnet_hint = addnet_hint
        self.link_outside = link_outside
        self.detection = detection
        self.sidecars = sidecars
        self.metadata = metadata
        self.triggers = triggers
        self.loaded = loaded  # False: the JSON columns are still in the index (see Library._fill)
        stem, suffix = os.path.splitext(os.path.basename(path))
        self.name = stem
        self.suffix = suffix
        self.sha256: str | None = None
        self.addnet: str | None = None
        self.info: LoraInfo | None = None

    def db_tuple(self) -> tuple[Any, ...]:
        return (self.path, self.root, self.realpath, self.relpath, self.size, self.mtime_ns, self.side_sig,
                self.fingerprint, self.alias, int(self.legacy), self.error, self.addnet_hint, self.link_outside, self.detection,
                self.sidecars, self.metadata, self.triggers)

    def key(self) -> tuple[Any, ...]:
        return (self.size, self.mtime_ns, self.side_sig, self.fingerprint)

    def to_info(self) -> LoraInfo:
        info = self.info
        if info is not None:
            return info
        assert self.loaded, "row JSON not loaded (use Library._info)"
        det = None
        if self.detection:
            try:
                det = detection_from_dict(json.loads(self.detection))
            except ValueError:
                det = None
        try:
            sidecars = sc.sidecars_from_dict(json.loads(self.sidecars))
        except (TypeError, ValueError, AttributeError):
            sidecars = sc.Sidecars()
        info = LoraInfo(
            path=self.path,
            realpath=self.realpath,
            root=self.root,
            relpath=self.relpath,
            name=self.name,
            suffix=self.suffix,
            size=self.size,
            mtime_ns=self.mtime_ns,
            alias=self.alias,
            legacy=self.legacy,
            error=self.error,
            link_outside=self.link_outside,
            detection=det,
            metadata=LazyJSONMapping(self.metadata),
            sidecars=sidecars,
            hashes=FileHashes(self.sha256, self.addnet) if self.sha256 else None,
            trigger_cache=_decode_triggers(self.triggers),
        )
        self.info = info
        return info



#: The code whose output a row stores: the header reader, the detector, the sidecar and trigger readers and
#: this package. A package counts with every module found in it on disk, so a split never drops a file.
_ROW_CODE = ("safetensors_header", "architecture", "sidecars", "triggers", "library")


def _fingerprint_files(base: Path) -> list[Path]:
    """Every source file under ``base`` (the ``lib_lora`` folder) that :func:`_code_fingerprint` covers."""
    files: list[Path] = []
    for stem in _ROW_CODE:
        package = base / stem
        files.extend(sorted(package.rglob("*.py")) if package.is_dir() else [base / f"{stem}.py"])
    return files


def _code_fingerprint() -> str:
    """Changes when the code that produced a row changes (a module edited, added or removed)."""
    base = Path(__file__).resolve().parents[1]
    parts = [str(SCHEMA_VERSION)]
    for path in _fingerprint_files(base):
        name = path.relative_to(base).as_posix()
        try:
            st = os.stat(path)
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{name}:-")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]
