"""Version reservations: a training of a character holds its ``<name>_v<N>`` from the moment it is
started until its LoRA is placed, across threads, processes (the WebUI and ``python -m lib_lora train``
at once) and restarts, so two trainings never pick one number and a resumed job keeps its own.

A reservation is a small JSON file ``lora/.<name>_v<N>.reserved`` beside the versions (a dot file with a
suffix no LoRA scanner lists: the WebUI's Lora page takes ``.safetensors``/``.pt``/``.ckpt`` only, and
LoRA Studio's scanner and the character layout skip dot files). It says who holds the number: the job id
and its job store (``<data dir>/jobs``), or — between the start and the job's submission — the process
(pid and host name). :func:`lib_lora.characters.create.next_version` counts reserved numbers as taken.

Every change happens under one lock per characters root (``<root>/.lora-studio-reservations.lock``: an
OS file lock, let go when its process ends), so a check and the change it decides are one step. A
reservation is *stale* when its process is gone (same host, no job yet) or its job can no longer place
a LoRA: the job store does not know it, it ended without a way to resume, or its result was already
placed. A stale reservation is reclaimed by the next reservation in that folder, with an info message
(logged and returned for the caller to show). A reservation made on another host is never reclaimed
here (its process cannot be seen): it only costs a number.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib_lora.characters.create import CharacterError, next_version, version_stem
from lib_lora.characters.layout import LORA_DIR, RESERVED_SUFFIX, SUBDIRS, reserved_number
from lib_lora.characters.promptsfile import PROMPTS_FILENAME
from lib_lora.errors import SidecarError
from lib_lora.sidecars.jsonfile import atomic_write_text

log = logging.getLogger(__name__)

LOCK_NAME = ".lora-studio-reservations.lock"
_THREAD_LOCK = threading.Lock()  # the file lock excludes processes; this one the threads of this one
_MAX_TRIES = 10_000


def this_host() -> str:
    return socket.gethostname()


@dataclass(frozen=True)
class Reservation:
    """One reserved ``<name>_v<N>`` (the content of its marker file)."""

    lora_folder: str
    name: str
    version: int
    job: str | None = None  # None: reserved by ``pid`` while its job is being submitted
    jobs_dir: str | None = None  # the job store that knows ``job``
    pid: int = 0
    host: str = ""
    created: float = 0.0
    made_folder: bool = False  # the character folder was created for it (removed again when left empty)
    notes: tuple[str, ...] = ()  # stale reservations reclaimed on the way (not stored)

    @property
    def stem(self) -> str:
        return version_stem(self.name, self.version)

    @property
    def path(self) -> str:
        return os.path.join(self.lora_folder, marker_name(self.name, self.version))

    @property
    def character_folder(self) -> str:
        return os.path.dirname(self.lora_folder)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "job": self.job, "jobs_dir": self.jobs_dir,
                "pid": self.pid, "host": self.host, "created": self.created, "made_folder": self.made_folder}

    def describe(self) -> str:
        who = f"job {self.job}" if self.job else f"process {self.pid}"
        return f"{who} on {self.host or 'an unknown host'}"


def marker_name(name: str, version: int) -> str:
    return f".{version_stem(name, version)}{RESERVED_SUFFIX}"


def read_reservation(path: str | os.PathLike[str]) -> Reservation | None:
    """The reservation in a marker file; ``None`` when it is missing or unreadable."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        return Reservation(
            lora_folder=str(p.parent), name=str(data["name"]), version=int(data["version"]),
            job=str(data["job"]) if data.get("job") else None,
            jobs_dir=str(data["jobs_dir"]) if data.get("jobs_dir") else None,
            pid=int(data.get("pid") or 0), host=str(data.get("host") or ""),
            created=float(data.get("created") or 0.0), made_folder=bool(data.get("made_folder")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def reserved_versions(lora_folder: str | os.PathLike[str], name: str) -> list[int]:
    """The reserved version numbers of ``name`` in a ``lora/`` folder, lowest first (read only, no lock)."""
    try:
        entries = os.listdir(lora_folder)
    except OSError:
        return []
    found = (reserved_number(entry, name) for entry in entries)
    return sorted(n for n in found if n is not None)


# ------------------------------------------------------------------------------------------ locking


@contextlib.contextmanager
def _locked(characters_root: Path) -> Iterator[None]:
    """Hold the reservation lock of a characters root (threads and processes)."""
    with _THREAD_LOCK:
        try:
            characters_root.mkdir(parents=True, exist_ok=True)
            fd = os.open(characters_root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CharacterError(f"cannot reserve a version in {characters_root}: {exc.strerror or exc}") from None
        try:
            locked = True
            try:
                _lock_fd(fd)
            except OSError as exc:  # a file system without locks (some network shares): O_EXCL alone
                locked = False
                log.warning("LoRA Studio: cannot lock %s (%s): reserving without the lock",
                            characters_root / LOCK_NAME, exc.strerror or exc)
            try:
                yield
            finally:
                if locked:
                    _unlock_fd(fd)
        finally:
            os.close(fd)


if sys.platform == "win32":  # pragma: no cover - untested code path
    import msvcrt

    def _lock_fd(fd: int) -> None:
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # tries for about 10 s, then raises
                return
            except OSError as exc:
                if exc.errno not in (errno.EDEADLOCK, errno.EACCES):
                    raise

    def _unlock_fd(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------ staleness


def _read_job(jobs_dir: str, job_id: str) -> Any:
    """The :class:`~lib_lora.train.jobs.JobRecord` of ``job_id`` in a job store; ``None``: not there."""
    from lib_lora.train.jobs import JOB_FILE, JobRecord

    if not job_id or os.sep in job_id or "/" in job_id or job_id.startswith("."):
        return None
    try:
        data = json.loads((Path(jobs_dir) / job_id / JOB_FILE).read_text(encoding="utf-8"))
        return JobRecord.from_dict(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return False  # there but unreadable (being replaced): not known to be gone


def stale_reason(res: Reservation) -> str | None:
    """Why ``res`` no longer holds its number (``None``: it still does)."""
    from lib_lora.train.placement import read_result
    from lib_lora.train.runner import SUCCEEDED, pid_alive

    if res.host and res.host != this_host():
        return None  # its process and job store cannot be seen from here
    if not res.job or not res.jobs_dir:
        if res.pid and pid_alive(res.pid):
            return None
        return f"process {res.pid} that reserved it has ended without starting its job"
    record = _read_job(res.jobs_dir, res.job)
    if record is False:
        return None
    if record is None:
        return f"its job {res.job} is no longer in {res.jobs_dir}"
    status = record.status
    if not status.done:
        return None
    if status.state == SUCCEEDED:
        if read_result(record.job_dir) is None:
            return None  # its LoRA is about to be placed
        return f"its job {res.job} has finished and its result was handled"
    if status.resumable:
        return None
    return f"its job {res.job} {status.state} and cannot be resumed"


def _reclaim(res: Reservation, reason: str, path: Path | None = None) -> str:
    return _reclaim_file(path or Path(res.path), f"reclaimed the reservation of {res.stem} in {res.lora_folder} "
                                                 f"({res.describe()}): {reason}")


def _reclaim_file(path: Path, note: str) -> str:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise CharacterError(f"cannot remove the stale reservation {path}: {exc.strerror or exc}") from None
    log.info("LoRA Studio: %s", note)
    return note


def _reclaim_stale(lora: Path) -> list[str]:
    """Remove every stale reservation in a ``lora/`` folder (under the lock); the info messages."""
    notes: list[str] = []
    try:
        entries = sorted(os.listdir(lora))
    except OSError:
        return notes
    for entry in entries:
        if not (entry.startswith(".") and entry.endswith(RESERVED_SUFFIX)):
            continue
        res = read_reservation(lora / entry)
        if res is None:
            notes.append(_reclaim_file(lora / entry, f"reclaimed {entry} in {lora}: it cannot be read"))
            continue
        reason = stale_reason(res)
        if reason is not None:
            notes.append(_reclaim(res, reason, lora / entry))
    return notes


# ------------------------------------------------------------------------------------------ changes


def _write_new(res: Reservation) -> None:
    """Create the marker (fails with ``FileExistsError`` when the name is taken)."""
    fd = os.open(res.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(res.to_json(), fh)


def _version_files(lora: Path, name: str, version: int) -> list[str]:
    """Files of ``<name>_v<N>`` in ``lora/`` (the LoRA or any sidecar: such a name is not free)."""
    stem = version_stem(name, version).casefold()
    try:
        entries = os.listdir(lora)
    except OSError:
        return []
    return sorted(e for e in entries if e.casefold() == stem or e.casefold().startswith(stem + "."))


def reserve(character_folder: str | os.PathLike[str], name: str, *, at_least: int = 1,
            job: str | None = None, jobs_dir: str | None = None) -> Reservation:
    """Reserve the next free ``<name>_v<N>`` (``N >= at_least``) of the character in ``character_folder``
    for this process (or ``job``), creating its ``lora/`` folder when needed. Stale reservations there
    are reclaimed first (see :attr:`Reservation.notes`)."""
    folder = Path(character_folder)
    lora = folder / LORA_DIR
    with _locked(folder.parent):
        made = not folder.exists()
        try:
            lora.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CharacterError(f"cannot create {lora}: {exc.strerror or exc}") from None
        notes = tuple(_reclaim_stale(lora))
        number = max(at_least, next_version(folder, name))
        for _ in range(_MAX_TRIES):
            res = Reservation(str(lora), name, number, job=job, jobs_dir=jobs_dir, pid=os.getpid(),
                              host=this_host(), created=time.time(), made_folder=made, notes=notes)
            try:
                _write_new(res)
                return res
            except FileExistsError:
                number += 1
            except OSError as exc:
                raise CharacterError(f"cannot reserve {res.stem} in {lora}: {exc.strerror or exc}") from None
    raise CharacterError(f"no free version of {name} in {lora}")


def _owned(res: Reservation, owners: Collection[str | None]) -> bool:
    """Whether ``res`` belongs to one of ``owners`` (job ids; ``None``: this process, before its job)."""
    if res.job is not None:
        return res.job in owners
    return None in owners and res.pid == os.getpid() and res.host in ("", this_host())


def hold(character_folder: str | os.PathLike[str], name: str, version: int, *, job: str, jobs_dir: str,
         owners: Collection[str | None] = (), create: bool = False) -> Reservation | None:
    """Make ``<name>_v<version>`` reserved for ``job``: taken over from ``owners`` (the jobs it continues;
    ``None``: this process's reservation before the job existed), or — with ``create``, when nobody holds
    it and no file has that name — reserved anew. Raises :class:`CharacterError` when the version is
    taken (a file, or another live reservation); ``None`` when there is nothing to take over and not
    ``create``."""
    folder = Path(character_folder)
    lora = folder / LORA_DIR
    with _locked(folder.parent):
        path = lora / marker_name(name, version)
        current = read_reservation(path)
        notes: tuple[str, ...] = ()
        if current is not None and current.job != job and not _owned(current, owners):
            reason = stale_reason(current)
            if reason is None:
                raise CharacterError(f"{version_stem(name, version)} is reserved by {current.describe()}")
            notes = (_reclaim(current, reason),)
            current = None
        if current is None:
            if not create:
                return None
            taken = _version_files(lora, name, version)
            if taken:
                raise CharacterError(f"{version_stem(name, version)} is taken: {lora} holds {', '.join(taken)}")
        res = Reservation(str(lora), name, version, job=job, jobs_dir=jobs_dir, pid=os.getpid(), host=this_host(),
                          created=current.created if current else time.time(),
                          made_folder=bool(current and current.made_folder), notes=notes)
        try:
            lora.mkdir(parents=True, exist_ok=True)
            if current is None:
                _write_new(res)
            else:
                atomic_write_text(res.path, json.dumps(res.to_json()))
        except FileExistsError:
            raise CharacterError(f"{res.stem} was reserved meanwhile") from None
        except OSError as exc:
            raise CharacterError(f"cannot reserve {res.stem} in {lora}: {exc.strerror or exc}") from None
        except SidecarError as exc:
            raise CharacterError(f"cannot reserve {res.stem}: {exc}") from None
        return res


def release(character_folder: str | os.PathLike[str], name: str, version: int,
            owners: Collection[str | None]) -> bool:
    """Give ``<name>_v<version>`` back when one of ``owners`` holds it (see :func:`hold`); a character
    folder made only for the reservation is removed again while it is empty. True: released."""
    folder = Path(character_folder)
    with _locked(folder.parent):
        path = folder / LORA_DIR / marker_name(name, version)
        current = read_reservation(path)
        if current is None or not _owned(current, owners):
            return False
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("LoRA Studio: cannot remove the reservation %s: %s", path, exc)
            return False
        if current.made_folder:
            _remove_if_empty(folder)
        return True


def _remove_if_empty(folder: Path) -> None:
    """Remove a character folder that holds nothing but empty ``lora/``, ``reference/``, ``expressions/``."""
    if (folder / PROMPTS_FILENAME).exists():
        return
    for sub in SUBDIRS:
        with contextlib.suppress(OSError):
            (folder / sub).rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()


def job_chain(record: Any, limit: int = 100) -> list[str]:
    """The id of a job and of every job it continues (``resumed_from``, read from its job store)."""
    chain = [str(record.id)]
    jobs_dir = os.path.dirname(str(record.job_dir))
    previous = record.resumed_from
    while previous and previous not in chain and len(chain) < limit:
        chain.append(str(previous))
        found = _read_job(jobs_dir, str(previous))
        previous = found.resumed_from if found else None
    return chain


__all__ = [
    "LOCK_NAME",
    "Reservation",
    "hold",
    "job_chain",
    "marker_name",
    "read_reservation",
    "release",
    "reserve",
    "reserved_versions",
    "stale_reason",
    "this_host",
]
