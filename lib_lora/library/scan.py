"""Finding and reading files: the walk over the roots (links, loops, sidecar signatures), reading one
file (header, sidecars, detection) into an index row, and spreading a big batch over reader processes."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from lib_lora import architecture
from lib_lora import sidecars as sc
from lib_lora.architecture import Detection, Hints
from lib_lora.errors import HeaderError, LibraryError
from lib_lora.library.codec import _encode_triggers, detection_to_dict
from lib_lora.library.index import _ROW_LENGTH, _Row
from lib_lora.library.info import MODEL_SUFFIXES, SAFETENSORS, LoraInfo, _addnet_hint, bounded_metadata
from lib_lora.safetensors_header import Header, read_header

# --------------------------------------------------------------------------------------------------
# Walking the roots
# --------------------------------------------------------------------------------------------------

# Sidecar suffixes, longest first, lower case; ".json" etc. are stat'ed, previews only named.
_SIDECAR_MATCH = tuple(sorted({s.lower() for s in sc.SIDECAR_SUFFIXES}, key=len, reverse=True))
_STAT_SIDECARS = frozenset(s.lower() for s in (sc.USER_METADATA_SUFFIX, sc.CIVITAI_INFO_SUFFIX, *sc.CIVITAI_MODEL_SUFFIXES))


class _Found:
    """A model file seen by the walk."""

    __slots__ = ("legacy", "link_outside", "listing", "mtime_ns", "name", "path", "realpath", "relpath", "root",
                 "side_sig", "size", "suffix", "via_link")

    def __init__(self, path: str, root: str, relpath: str, name: str, suffix: str, realpath: str, size: int,
                 mtime_ns: int, side_sig: str, listing: dict[str, str], via_link: bool,
                 link_outside: str | None = None) -> None:
        self.path = path
        self.root = root
        self.relpath = relpath
        self.name = name
        self.suffix = suffix
        self.realpath = realpath
        self.size = size
        self.mtime_ns = mtime_ns
        self.side_sig = side_sig
        self.listing = listing
        self.via_link = via_link
        self.link_outside = link_outside  # a linked file's real target when it lies outside every root
        self.legacy = suffix.lower() != SAFETENSORS


def _entry_name(e: os.DirEntry[str]) -> str:
    return e.name


def _dir_listing(entries: list[os.DirEntry[str]]) -> dict[str, str]:
    return {e.name.casefold(): e.name for e in entries}


def _sidecar_index(entries: Iterable[os.DirEntry[str]]) -> dict[str, list[tuple[str, os.DirEntry[str]]]]:
    """casefolded stem -> [(sidecar suffix, entry)] for the sidecar-looking files of one folder."""
    out: dict[str, list[tuple[str, os.DirEntry[str]]]] = {}
    for e in entries:
        low = e.name.lower()
        if not low.endswith(_SIDECAR_MATCH):
            continue
        for suffix in _SIDECAR_MATCH:
            if low.endswith(suffix) and len(low) > len(suffix):
                out.setdefault(e.name[: -len(suffix)].casefold(), []).append((suffix, e))
    return out


def _side_signature(items: list[tuple[str, os.DirEntry[str]]] | None) -> str:
    if not items:
        return ""
    parts = []
    for suffix, e in items:
        if suffix in _STAT_SIDECARS:
            try:
                st = e.stat()
                parts.append(f"{e.name}:{st.st_size}:{st.st_mtime_ns}")
            except OSError:
                parts.append(f"{e.name}:?")
        else:
            parts.append(e.name)
    parts.sort()
    return "|".join(parts)


def _outside(realpath: str, real_roots: Sequence[str]) -> bool:
    """Whether ``realpath`` lies outside every one of ``real_roots`` (real paths)."""
    return not any(realpath == r or realpath.startswith(r.rstrip(os.sep) + os.sep) for r in real_roots)


def link_outside(path: str, realpath: str, roots: Sequence[str]) -> str | None:
    """``realpath`` when the file at ``path`` is itself a symbolic link whose target lies outside every
    LoRA root (a folder link is not: users link drives into their LoRA folder)."""
    if not os.path.islink(path):
        return None
    return realpath if _outside(realpath, [os.path.realpath(r) for r in roots]) else None


def _walk(roots: Sequence[str]) -> tuple[list[_Found], list[tuple[str, str]], list[tuple[str, str]]]:
    """Every model file under ``roots``, the errors met, and ``(link, real folder)`` of every linked folder
    walked (links and loops: see the package docstring)."""
    found: list[_Found] = []
    errors: list[tuple[str, str]] = []
    links: list[tuple[str, str]] = []
    real_roots = [os.path.realpath(r) for r in roots]
    visited: set[tuple[int, int]] = set()
    model_suffixes = MODEL_SUFFIXES
    for root in roots:
        try:
            os.stat(root)
        except OSError as exc:
            errors.append((root, f"LoRA folder not found: {root} ({exc.strerror or exc})"))
            continue
        if not os.path.isdir(root):
            errors.append((root, f"not a folder: {root}"))
            continue
        # (path, posix dir relative to root, real path of the dir, reached through a link, is a link)
        queue: deque[tuple[str, str, str, bool, bool]] = deque([(root, "", os.path.realpath(root), False, False)])
        linked: deque[tuple[str, str, str, bool, bool]] = deque()
        while queue or linked:
            dirpath, reldir, realdir, via_link, is_link = queue.popleft() if queue else linked.popleft()
            try:
                dst = os.stat(dirpath)
            except OSError as exc:
                errors.append((dirpath, f"cannot open folder {dirpath}: {exc.strerror or exc}"))
                continue
            key = (dst.st_dev, dst.st_ino)
            if key in visited:
                continue  # a loop, or a second link to a folder already walked
            visited.add(key)
            if is_link:
                links.append((dirpath, realdir))
            try:
                with os.scandir(dirpath) as it:
                    entries = sorted(it, key=_entry_name)  # deterministic: which of two links wins
            except OSError as exc:
                errors.append((dirpath, f"cannot list folder {dirpath}: {exc.strerror or exc}"))
                continue
            models: list[tuple[os.DirEntry[str], str]] = []
            for e in entries:
                low = e.name.lower()
                if low.endswith(model_suffixes):
                    suffix = next(s for s in model_suffixes if low.endswith(s))
                    if len(low) > len(suffix) and not e.name.startswith("._"):
                        models.append((e, e.name[-len(suffix):]))
                        continue
                try:
                    is_dir = e.is_dir()
                except OSError:
                    is_dir = False
                if is_dir:
                    link = e.is_symlink()
                    sub = (e.path, f"{reldir}{e.name}/", os.path.realpath(e.path) if link else
                           os.path.join(realdir, e.name), via_link or link, link)
                    (linked if link or via_link else queue).append(sub)
            if not models:
                continue
            sidecars = _sidecar_index(entries)
            listing = _dir_listing(entries)
            for e, suffix in models:
                try:
                    if not e.is_file():
                        if e.is_symlink() and not os.path.exists(e.path):
                            errors.append((e.path, f"{e.path}: broken symbolic link"))
                        continue
                    fst = e.stat()
                except OSError as exc:
                    errors.append((e.path, f"{e.path}: cannot read: {exc.strerror or exc}"))
                    continue
                name = e.name[: -len(suffix)]
                link = e.is_symlink()
                realpath = os.path.realpath(e.path) if link else os.path.join(realdir, e.name)
                found.append(_Found(
                    e.path, root, reldir + name, name, suffix, realpath, fst.st_size, fst.st_mtime_ns,
                    _side_signature(sidecars.get(name.casefold())), listing, via_link or link,
                    realpath if link and _outside(realpath, real_roots) else None,
                ))
    # one entry per real file, preferring a path without links
    best: dict[str, _Found] = {}
    for f in found:
        old = best.get(f.realpath)
        if old is None or (old.via_link and not f.via_link):
            best[f.realpath] = f
    if len(best) != len(found):
        keep = {id(f) for f in best.values()}
        found = [f for f in found if id(f) in keep]
    return found, errors, links



def _read_file(f: _Found, fingerprint: str, header: Header | None = None) -> _Row:
    """Read one file's header and sidecars and detect its base model."""
    side = sc.find_sidecars(f.path, f.listing)
    det: Detection | None = None
    metadata: dict[str, str] = {}
    error: str | None = None
    if not f.legacy:
        try:
            if header is None:
                header = read_header(f.path)
        except HeaderError as exc:
            error = exc.message
        else:
            metadata = bounded_metadata(header.metadata)
            user = side.user
            hints = Hints(
                sidecar_sd_version=user.sd_version if user is not None else None,
                sidecar_base=user.base if user is not None else None,
                civitai_base_model=side.civitai.base_model if side.civitai is not None else None,
                card_family=user.family if user is not None else None,
                filename=f.name + f.suffix,
                folders=tuple(p for p in f.relpath.split("/")[:-1] if p),
            )
            try:
                det = architecture.detect(header, hints)
            except NotImplementedError:
                det = None
            except Exception as exc:  # a detector bug must not lose the file
                error = f"{f.path}: base-model detection failed: {type(exc).__name__}: {exc}"
    alias = metadata.get("ss_output_name", "").strip() or None
    if alias == "None":
        alias = None
    row = _Row(
        f.path, f.root, f.realpath, f.relpath, f.size, f.mtime_ns, f.side_sig, fingerprint, alias, f.legacy, error,
        _addnet_hint(metadata), f.link_outside,
        json.dumps(detection_to_dict(det), ensure_ascii=False, separators=(",", ":")) if det is not None else None,
        json.dumps(side.to_dict(), ensure_ascii=False, separators=(",", ":")),
        json.dumps(metadata, ensure_ascii=False, separators=(",", ":")),
        None,
    )
    # The trigger-word sources depend only on what was just read: compute them once, here.
    info = row.to_info()
    try:
        row.triggers = _encode_triggers(info.trigger_words)
    except Exception:  # a bug in the trigger module must not lose the file; computed on demand instead
        row.triggers = None
    row.info = None
    return row


def describe_file(path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None,
                  header: Header | None = None) -> LoraInfo:
    """One file as the library would list it, without an index (``inspect``, checkpoints). Errors end
    up in ``error``; ``.pt``/``.ckpt`` files are not opened. ``header``: one already read."""
    p = os.path.abspath(os.fspath(path))
    folder, base = os.path.split(p)
    root_dir = os.path.abspath(os.fspath(root)) if root is not None else folder
    stem, suffix = os.path.splitext(base)
    rel = os.path.relpath(os.path.join(folder, stem), root_dir).replace(os.sep, "/")
    try:
        st = os.stat(p)
        with os.scandir(folder) as it:
            entries = list(it)
    except OSError as exc:
        raise LibraryError(f"{p}: cannot read: {exc.strerror or exc}") from None
    sidecars = _sidecar_index(entries)
    real = os.path.realpath(p)
    f = _Found(p, root_dir, rel, stem, suffix, real, st.st_size, st.st_mtime_ns,
               _side_signature(sidecars.get(stem.casefold())), _dir_listing(entries), real != p)
    if suffix.lower() not in MODEL_SUFFIXES:
        f.legacy = suffix.lower() in (".pth", ".bin", ".pkl", ".pickle")
    return _read_file(f, "", header).to_info()



# --------------------------------------------------------------------------------------------------
# Reading many files: worker processes
# --------------------------------------------------------------------------------------------------

#: Below this many files to read, worker processes cost more than they save.
PARALLEL_MIN_FILES = 48
_WORKER_ENV = "LORA_STUDIO_SCAN_WORKERS"


def _default_workers() -> int:
    env = os.environ.get(_WORKER_ENV, "").strip()
    if env.isdigit():
        return int(env)
    return min(os.cpu_count() or 1, 4)


def _found_to_json(f: _Found) -> list[Any]:
    return [f.path, f.root, f.relpath, f.name, f.suffix, f.realpath, f.size, f.mtime_ns, f.side_sig, f.via_link,
            f.link_outside]


def _worker_command() -> list[str]:
    return [sys.executable, "-c", "from lib_lora.library.scan import _read_worker; _read_worker()"]


def _read_many(found: Sequence[_Found], fingerprint: str, workers: int) -> Iterator[_Row]:
    """Read ``found`` (headers, sidecars, detection). Header parsing and detection are CPU-bound pure
    Python, so a big batch is split over ``workers`` processes (plain ``python -c`` subprocesses: safe
    inside a WebUI, no fork of a threaded process, no re-import of its ``__main__``). Anything a worker
    did not deliver is read here; rows come back in no particular order."""
    n = len(found)
    workers = min(workers, n // (PARALLEL_MIN_FILES // 2) if n >= PARALLEL_MIN_FILES else 0)
    if workers < 2:
        for f in found:
            yield _read_file(f, fingerprint)
        return
    import queue
    import subprocess

    by_path = {f.path: f for f in found}
    done: set[str] = set()
    results: queue.Queue[tuple[int, Any]] = queue.Queue()
    env = dict(os.environ)
    pkg_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env[_WORKER_ENV] = "0"
    procs: list[subprocess.Popen[bytes]] = []
    threads: list[threading.Thread] = []

    def pump(k: int, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                try:
                    results.put((k, json.loads(line)))
                except ValueError:
                    break
        finally:
            proc.wait()
            results.put((k, None))

    try:
        for k in range(workers):
            chunk = found[k::workers]  # interleaved: folders of big and small files spread evenly
            job = json.dumps({"fingerprint": fingerprint, "files": [_found_to_json(f) for f in chunk]}).encode()
            try:
                proc = subprocess.Popen(_worker_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, env=env)
            except OSError:
                break
            procs.append(proc)
            t = threading.Thread(target=pump, args=(k, proc), daemon=True, name="lora-studio-scan-reader")
            t.start()
            threads.append(t)
            assert proc.stdin is not None
            try:
                proc.stdin.write(job)
                proc.stdin.close()
            except OSError:
                pass
        running = len(procs)
        while running:
            _k, item = results.get()
            if item is None:
                running -= 1
                continue
            if isinstance(item, list) and len(item) == _ROW_LENGTH and item[0] in by_path and item[0] not in done:
                done.add(item[0])
                yield _Row(*item)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for t in threads:
            t.join(timeout=5)
    for f in found:  # whatever the workers did not deliver (a crash, a kill): read it here
        if f.path not in done:
            yield _read_file(f, fingerprint)


def _read_worker() -> None:
    """Entry point of a reader process: a JSON job on stdin, one JSON row per line on stdout."""
    import gc

    # Parsed headers are acyclic trees freed by reference counting; the cycle collector would only
    # re-walk thousands of live tensor entries per file. This process lives for one job.
    gc.disable()
    job = json.loads(sys.stdin.buffer.read())
    fingerprint = job["fingerprint"]
    listings: dict[str, dict[str, str]] = {}
    out = sys.stdout.buffer  # ASCII-only JSON lines: no console encoding can break them
    for path, root, relpath, name, suffix, realpath, size, mtime_ns, side_sig, via_link, outside in job["files"]:
        folder = os.path.dirname(path)
        listing = listings.get(folder)
        if listing is None:
            try:
                with os.scandir(folder) as it:
                    listing = _dir_listing(list(it))
            except OSError:
                listing = {}
            listings[folder] = listing
        f = _Found(path, root, relpath, name, suffix, realpath, size, mtime_ns, side_sig, listing, via_link, outside)
        row = _read_file(f, fingerprint)
        out.write(json.dumps(row.db_tuple()).encode("ascii") + b"\n")
    out.flush()

