"""What LoRA Studio needs from whatever runs it — a WebUI or the standalone app — behind one protocol.

The browser panel, the Train tab and the HTTP API take a :class:`Host` and never import a WebUI module.
:mod:`lib_lora.webui` implements it over A1111 / Forge (``WebUIHost``); :class:`StandaloneHost` here
implements it without a WebUI (folders from the command line, a settings file in the data folder, no
model to free).

Also here, because both hosts need them:

- :class:`CheckpointDetector` — classify a checkpoint from its safetensors header (never the weights,
  never unpickling a ``.ckpt``), cached by path, size and mtime;
- :class:`LibraryKeeper` — one :class:`~lib_lora.library.Library` per process with a background scan,
  a rescan on demand, and a status the UI can poll.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from lib_lora import paths
from lib_lora.architecture import UNKNOWN, Detection, Evidence, Hints
from lib_lora.errors import LibraryError, LoraStudioError, NeedsWebUIError
from lib_lora.settings import Settings

if TYPE_CHECKING:  # the library lands separately; only its name is needed for typing
    from lib_lora.library import Library

log = logging.getLogger("lora_studio")

SETTINGS_FILENAME = "settings.json"
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf")


@dataclass(frozen=True)
class CheckpointRef:
    """A checkpoint as the host lists it. ``title`` is what the user picks (A1111: ``name [hash]``)."""

    title: str
    name: str  # relative name, e.g. "sdxl/juggernaut.safetensors"
    path: str  # absolute file path
    short_hash: str | None = None  # 10 hex of the file sha256 when the host already knows it


@dataclass(frozen=True)
class ScanStatus:
    """State of the library scan, for a progress bar."""

    state: str = "idle"  # "idle" | "scanning" | "done" | "failed"
    done: int = 0
    total: int = 0
    message: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    generation: int = 0  # increases with every finished scan

    @property
    def running(self) -> bool:
        return self.state == "scanning"


@dataclass(frozen=True)
class VramToken:
    """What :meth:`Host.free_vram` did, handed back to :meth:`Host.restore_vram`."""

    freed: bool
    detail: str = ""
    handle: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class GenerationRequest:
    """One txt2img render through the WebUI's own generation (the loaded checkpoint)."""

    prompt: str
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    steps: int = 20
    seed: int = 1000
    cfg_scale: float = 7.0
    sampler_name: str | None = None  # None: the WebUI's default


@runtime_checkable
class Host(Protocol):
    """Everything the UI, API and trainer ask of the program LoRA Studio runs inside."""

    #: "a1111", "forge" or "standalone".
    kind: str

    def data_dir(self) -> Path:
        """LoRA Studio's data folder (index, job records, trainer venv); created on demand."""
        ...

    def lora_roots(self) -> list[Path]:
        """Folders scanned for LoRAs, in priority order (WebUI ``--lora-dir`` first, then extra roots)."""
        ...

    def settings(self) -> Settings:
        """The current settings (read fresh each call: the user may change them at any time)."""
        ...

    def update_settings(self, **changes: Any) -> Settings:
        """Change and persist some settings; returns the new settings."""
        ...

    def library(self) -> Library:
        """The process's one library (scanned in the background; may still be scanning)."""
        ...

    def rescan(self, *, wait: bool = False) -> ScanStatus:
        """Start a rescan (unchanged files are not re-read); ``wait`` blocks until it ends."""
        ...

    def scan_status(self) -> ScanStatus: ...

    def list_checkpoints(self) -> list[CheckpointRef]:
        """The checkpoints the user can pick (the WebUI's list)."""
        ...

    def selected_checkpoint(self) -> CheckpointRef | None:
        """The checkpoint selected now — without loading it."""
        ...

    def checkpoint_detection(
        self, checkpoint: CheckpointRef | str | os.PathLike[str] | None
    ) -> Detection | None:
        """Base model of a checkpoint from its header (cached); ``None`` for no checkpoint."""
        ...

    def free_vram(self) -> VramToken:
        """Move the WebUI's model out of GPU memory (before training)."""
        ...

    def restore_vram(self, token: VramToken) -> None:
        """Undo :meth:`free_vram` (A1111 needs it; Forge reloads by itself)."""
        ...

    def queue_lock(self) -> contextlib.AbstractContextManager[Any]:
        """A context manager holding the WebUI's generation queue (nobody generates while held)."""
        ...

    def generate(self, request: GenerationRequest) -> Any:
        """Render one image (a PIL image) with the loaded checkpoint through the WebUI's own generation,
        holding the generation queue; raises :class:`~lib_lora.errors.NeedsWebUIError` where there is
        no WebUI (the standalone app)."""
        ...

    def is_remote(self) -> bool:
        """True when others can reach this UI and extension access is not explicitly allowed:
        then no filesystem paths or subprocesses chosen by a remote user."""
        ...

    def api_auth_required(self) -> bool:
        """True when ``--api-auth`` (or the standalone equivalent) is set."""
        ...

    def check_api_credentials(self, username: str | None, password: str | None) -> bool:
        """Whether HTTP Basic credentials are accepted (always True when no auth is configured)."""
        ...


# ----------------------------------------------------------------------------------------------
# credentials


def parse_credentials(spec: str | None) -> dict[str, str]:
    """Parse the WebUI's ``--api-auth`` value ``user:pass[,user2:pass2]`` (a password may contain ``:``)."""
    creds: dict[str, str] = {}
    if not spec:
        return creds
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        user, sep, password = item.partition(":")
        if not sep:
            raise LoraStudioError("the API credentials must look like user:password[,user2:password2]")
        creds[user.strip()] = password
    return creds


def reachable_by_others(host: Any) -> bool:
    """``host.is_remote()``, failing closed: a host that cannot tell counts as reachable by others."""
    try:
        return bool(host.is_remote())
    except Exception:
        return True


def remote_refusal(host: Any, what: str) -> str | None:
    """Why ``what`` is refused when others can reach ``host`` (no paths or writes chosen by them), else None."""
    if reachable_by_others(host):
        return f"{what} is refused: this server is reachable by others and extension access is not allowed"
    return None


def credentials_match(creds: dict[str, str], username: str | None, password: str | None) -> bool:
    """Constant-time check of one username/password pair against ``creds`` (empty ``creds``: open)."""
    if not creds:
        return True
    if username is None or password is None:
        return False
    expected = creds.get(username)
    # Compare against something even for an unknown user so the timing does not reveal user names.
    ok = hmac.compare_digest(password.encode("utf-8"), (expected or "\0" * 16).encode("utf-8"))
    return ok and expected is not None


# ----------------------------------------------------------------------------------------------
# checkpoint detection


def unknown_detection(reason: str, *, kind: str = "checkpoint") -> Detection:
    """A :class:`Detection` that says "unknown" and why."""
    return Detection(
        kind=kind,
        architecture=UNKNOWN,
        evidence=(Evidence("structure", f"architecture={UNKNOWN}", reason),),
    )


class CheckpointDetector:
    """Classify checkpoints from their headers, cached by (real path, size, mtime_ns). Thread-safe."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[int, int], Detection]] = {}
        self._lock = threading.Lock()

    def detect(self, path: str | os.PathLike[str]) -> Detection:
        real = os.path.realpath(os.fspath(path))
        try:
            st = os.stat(real)
        except OSError as exc:
            return unknown_detection(f"cannot read {os.fspath(path)}: {exc.strerror or exc}")
        stamp = (st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._cache.get(real)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        detection = self._detect_uncached(real)
        with self._lock:
            self._cache[real] = (stamp, detection)
        return detection

    def detect_ref(self, checkpoint: CheckpointRef | str | os.PathLike[str] | None) -> Detection | None:
        """:meth:`Host.checkpoint_detection` for both hosts: ``None`` when there is no checkpoint (or no path)."""
        if checkpoint is None:
            return None
        path = checkpoint.path if isinstance(checkpoint, CheckpointRef) else os.fspath(checkpoint)
        return self.detect(path) if path else None

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    @staticmethod
    def _detect_uncached(path: str) -> Detection:
        name = os.path.basename(path)
        if not name.lower().endswith(".safetensors"):
            # .ckpt/.pt are pickles: never opened. gguf and others: no header reader here.
            return unknown_detection(f"{name}: not a safetensors file, its base model cannot be read safely")
        from lib_lora.architecture import detect_checkpoint
        from lib_lora.safetensors_header import read_header

        try:
            header = read_header(path)
            parent = os.path.basename(os.path.dirname(path))
            return detect_checkpoint(header, Hints(filename=name, folders=(parent,) if parent else ()))
        except LoraStudioError as exc:
            return unknown_detection(str(exc))
        except NotImplementedError:
            return unknown_detection("base-model detection is not available in this version")
        except Exception as exc:  # a detection bug must never break generation or the UI
            log.warning("LoRA Studio: cannot classify checkpoint %s: %s", name, exc)
            return unknown_detection(f"{name}: {exc}")


# ----------------------------------------------------------------------------------------------
# library lifecycle


class LibraryKeeper:
    """Holds the process's one library: created lazily, rebuilt when the roots change, scanned in a
    background thread; the status can be polled from any thread."""

    def __init__(self, roots: Callable[[], Sequence[Path]], index_path: Callable[[], Path]) -> None:
        self._roots = roots
        self._index_path = index_path
        self._library: Library | None = None
        self._library_key: tuple[tuple[str, ...], str] | None = None
        self._lock = threading.RLock()
        self._status = ScanStatus()
        self._thread: threading.Thread | None = None
        self._rescan_requested = False

    def _key(self) -> tuple[tuple[str, ...], str]:
        return tuple(os.fspath(r) for r in self._roots()), os.fspath(self._index_path())

    def library(self) -> Library:
        key = self._key()
        with self._lock:
            if self._library is None or key != self._library_key:
                from lib_lora.library import Library

                roots, index = key
                Path(index).parent.mkdir(parents=True, exist_ok=True)
                self._library = Library([Path(r) for r in roots], Path(index))
                self._library_key = key
            return self._library

    def status(self) -> ScanStatus:
        with self._lock:
            return self._status

    def scan(self, *, wait: bool = False) -> ScanStatus:
        """Start a scan in the background (or note that one more is wanted if one is running)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._rescan_requested = True
                thread = self._thread
            else:
                self._rescan_requested = False
                thread = threading.Thread(target=self._run, name="lora-studio-scan", daemon=True)
                self._thread = thread
                self._status = ScanStatus(
                    state="scanning", started_at=time.time(), generation=self._status.generation
                )
                thread.start()
        if wait:
            while True:
                thread.join()
                with self._lock:
                    if self._thread is None or not self._thread.is_alive():
                        break
                    thread = self._thread
        return self.status()

    def _progress(self, done: int, total: int, message: str = "") -> None:
        with self._lock:
            s = self._status
            self._status = ScanStatus(
                state="scanning",
                done=done,
                total=total,
                message=message,
                started_at=s.started_at,
                generation=s.generation,
            )

    def _run(self) -> None:
        while True:
            started = time.time()
            try:
                library = self.library()
                result = _call_scan(library, self._progress)
                count = _count(result, library)
                with self._lock:
                    self._status = ScanStatus(
                        state="done",
                        done=count,
                        total=count,
                        message=f"{count} LoRAs indexed",
                        started_at=started,
                        finished_at=time.time(),
                        generation=self._status.generation + 1,
                    )
            except Exception as exc:  # reported in the status; the UI shows it
                message = str(exc) if isinstance(exc, LoraStudioError) else f"scan failed: {exc!r}"
                log.warning("LoRA Studio: %s", message)
                with self._lock:
                    self._status = ScanStatus(
                        state="failed",
                        message=message,
                        started_at=started,
                        finished_at=time.time(),
                        generation=self._status.generation + 1,
                    )
            with self._lock:
                if not self._rescan_requested:
                    return
                self._rescan_requested = False
                self._status = ScanStatus(
                    state="scanning", started_at=time.time(), generation=self._status.generation
                )


def _call_scan(library: Any, progress: Callable[[int, int, str], None]) -> Any:
    """Call ``library.scan`` with a progress callback when it takes one."""
    import inspect

    try:
        params = inspect.signature(library.scan).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    if "progress" in params:
        return library.scan(progress=lambda *a, **k: _forward_progress(progress, a, k))
    return library.scan()


def _forward_progress(
    progress: Callable[[int, int, str], None], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    try:
        if len(args) == 1 and not isinstance(args[0], int):  # a progress object
            obj = args[0]
            progress(
                int(getattr(obj, "done", 0)),
                int(getattr(obj, "total", 0)),
                str(getattr(obj, "message", "") or ""),
            )
        else:
            done = int(args[0]) if args else int(kwargs.get("done", 0))
            total = int(args[1]) if len(args) > 1 else int(kwargs.get("total", 0))
            message = str(args[2]) if len(args) > 2 else str(kwargs.get("message", ""))
            progress(done, total, message)
    except Exception:  # progress is cosmetic
        pass


def _count(result: Any, library: Any) -> int:
    for attr in ("total", "count", "indexed"):
        value = getattr(result, attr, None)
        if isinstance(value, int):
            return value
    if isinstance(result, int):
        return result
    try:
        return len(library.entries())
    except Exception:
        return 0


# ----------------------------------------------------------------------------------------------
# standalone


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class KeptLibrary:
    """The library part of a Host, over a :class:`LibraryKeeper` in ``self._keeper``."""

    _keeper: LibraryKeeper

    def library(self) -> Library:
        return self._keeper.library()

    def rescan(self, *, wait: bool = False) -> ScanStatus:
        return self._keeper.scan(wait=wait)

    def scan_status(self) -> ScanStatus:
        return self._keeper.status()


class StandaloneHost(KeptLibrary):
    """The host without a WebUI: LoRA folders and checkpoint folders given by the caller, settings in
    ``<data_dir>/settings.json``, the checkpoint "selected" by :meth:`select_checkpoint`."""

    kind = "standalone"

    def __init__(
        self,
        lora_roots: Sequence[str | os.PathLike[str]],
        *,
        data_dir: str | os.PathLike[str] | None = None,
        checkpoint_dirs: Sequence[str | os.PathLike[str]] = (),
        bind_host: str = "127.0.0.1",
        allow_remote_access: bool = False,
        api_auth: str | None = None,
    ) -> None:
        self._roots = [Path(r).expanduser() for r in lora_roots]
        self._data_dir = paths.user_data_dir(data_dir)
        self._checkpoint_dirs = [Path(d).expanduser() for d in checkpoint_dirs]
        self._bind_host = bind_host
        self._allow_remote = allow_remote_access
        self._credentials = parse_credentials(api_auth)
        self._selected: CheckpointRef | None = None
        self._settings_lock = threading.Lock()
        self._queue_lock = threading.RLock()
        self._detector = CheckpointDetector()
        self._keeper = LibraryKeeper(self.lora_roots, lambda: paths.default_index_path(self._data_dir))

    # -- folders and settings
    def data_dir(self) -> Path:
        return paths.user_data_dir(self._data_dir, ensure=True)

    def lora_roots(self) -> list[Path]:
        out: list[Path] = []
        for root in [*self._roots, *(Path(r) for r in self.settings().extra_roots)]:
            if root not in out:
                out.append(root)
        return out

    def _settings_path(self) -> Path:
        return self._data_dir / SETTINGS_FILENAME

    def settings(self) -> Settings:
        path = self._settings_path()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return Settings()
        except (OSError, ValueError) as exc:
            return Settings(problems=(f"cannot read {path}: {exc}; using the defaults",))
        if not isinstance(raw, dict):
            return Settings(problems=(f"{path} does not hold an object; using the defaults",))
        return Settings.from_mapping(raw)

    def update_settings(self, **changes: Any) -> Settings:
        with self._settings_lock:
            current = self.settings().to_mapping()
            current.update(changes)
            new = Settings.from_mapping(current)
            if new.problems:
                raise LoraStudioError("; ".join(new.problems))
            path = self._settings_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(new.to_mapping(), indent=2, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, path)
            return new

    # -- checkpoints
    def list_checkpoints(self) -> list[CheckpointRef]:
        refs: list[CheckpointRef] = []
        for base in self._checkpoint_dirs:
            if not base.is_dir():
                continue
            for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
                dirnames.sort()
                for fn in sorted(filenames):
                    if fn.lower().endswith(CHECKPOINT_SUFFIXES):
                        full = Path(dirpath) / fn
                        rel = full.relative_to(base).as_posix()
                        refs.append(CheckpointRef(title=rel, name=rel, path=str(full)))
        if self._selected is not None and all(r.path != self._selected.path for r in refs):
            refs.insert(0, self._selected)
        return refs

    def select_checkpoint(
        self, checkpoint: CheckpointRef | str | os.PathLike[str] | None
    ) -> CheckpointRef | None:
        """Choose the checkpoint compatibility is judged against (a listed title/name, or a file path)."""
        if checkpoint is None:
            self._selected = None
            return None
        if isinstance(checkpoint, CheckpointRef):
            self._selected = checkpoint
            return checkpoint
        text = os.fspath(checkpoint)
        for ref in self.list_checkpoints():
            if text in (ref.title, ref.name, ref.path):
                self._selected = ref
                return ref
        path = Path(text).expanduser()
        if not path.is_file():
            raise LibraryError(f"checkpoint not found: {text}")
        self._selected = CheckpointRef(title=path.name, name=path.name, path=str(path.resolve()))
        return self._selected

    def selected_checkpoint(self) -> CheckpointRef | None:
        return self._selected

    def checkpoint_detection(
        self, checkpoint: CheckpointRef | str | os.PathLike[str] | None
    ) -> Detection | None:
        return self._detector.detect_ref(checkpoint)

    # -- GPU and queue
    def free_vram(self) -> VramToken:
        return VramToken(freed=False, detail="no WebUI model is loaded in the standalone app")

    def restore_vram(self, token: VramToken) -> None:
        return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._queue_lock:
            yield

    def queue_lock(self) -> contextlib.AbstractContextManager[Any]:
        return self._locked()

    def generate(self, request: GenerationRequest) -> Any:
        raise NeedsWebUIError("rendering needs the WebUI: the standalone app has no image generation")

    # -- access
    def is_remote(self) -> bool:
        return not _is_loopback(self._bind_host) and not self._allow_remote

    def api_auth_required(self) -> bool:
        return bool(self._credentials)

    def check_api_credentials(self, username: str | None, password: str | None) -> bool:
        return credentials_match(self._credentials, username, password)
