"""Hugging Face downloads through ``huggingface_hub`` (it honours ``HF_TOKEN``; ``HF_ENDPOINT`` is passed
as ``endpoint=`` on every call because the library reads the variable only once, at import).

The file is fetched into a staging cache in LoRA Studio's data folder — never with the LoRA folder as
``local_dir``, which would leave a ``.cache/huggingface/`` there — with byte progress and a cancel that
ends the transfer mid-stream (:mod:`lib_lora.remote.hf_progress`), then copied (or moved) to a hidden
``.part`` in the target folder, checked against the LFS SHA-256 the server lists (``X-Linked-Etag``)
and linked into place under its own name without overwriting anything. The model card's YAML gives
the base model (``base_model``) and the trigger words (``instance_prompt``) for the A1111 sidecar.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from lib_lora.remote import sidecar_out as out
from lib_lora.remote.common import Cancelled, RemoteError, hf_endpoint
from lib_lora.remote.download import (
    PART_PREFIX,
    PART_SUFFIX,
    SUBFOLDER_NONE,
    DownloadResult,
    HFRef,
    _sha_file,
    _unlink,
    check_safetensors,
    place,
    safetensors_name,
    target_folder,
)
from lib_lora.remote.hf_progress import ByteSink, download_with_progress

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise RemoteError("the 'huggingface_hub' package is missing: install lora-studio[app] "
                          "(the WebUIs ship it)", kind="refused") from None
    return huggingface_hub


def _hub_error(exc: Exception, what: str) -> RemoteError:
    name = type(exc).__name__
    if name in ("RepositoryNotFoundError", "GatedRepoError"):
        return RemoteError(f"{what}: repository not found, private or gated (set HF_TOKEN for private repos)",
                           kind="http", status=404)
    if name in ("EntryNotFoundError", "RemoteEntryNotFoundError", "RevisionNotFoundError"):
        return RemoteError(f"{what}: file or revision not found", kind="http", status=404)
    if name in ("LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectError", "ConnectionError"):
        return RemoteError(f"cannot reach {hf_endpoint()}: offline, or blocked by a proxy/firewall?", kind="offline")
    return RemoteError(f"{what}: {name}", kind="http")


def card_metadata(path: str) -> dict[str, Any]:
    """The YAML front matter of a model card (``{}`` when there is none or it does not parse)."""
    try:
        from huggingface_hub.repocard import metadata_load

        meta = metadata_load(path)
    except Exception:
        return {}
    return meta if isinstance(meta, dict) else {}


def card_values(meta: dict[str, Any]) -> tuple[str | None, str]:
    """(base model, trigger words) from model-card metadata."""
    base = meta.get("base_model")
    if isinstance(base, list):
        base = next((b for b in base if isinstance(b, str)), None)
    words = meta.get("instance_prompt")
    if isinstance(words, list):
        words = ", ".join(w for w in words if isinstance(w, str))
    return (base if isinstance(base, str) else None), (words.strip() if isinstance(words, str) else "")


def download_hf(ref: HFRef, lora_dir: str, *, subfolder: str | None = None, subfolder_mode: str = SUBFOLDER_NONE,
                progress: Callable[[int, int, str], None] | None = None,
                should_stop: Callable[[], bool] | None = None, staging_dir: str | None = None) -> DownloadResult:
    hub = _hub()
    stop = should_stop or (lambda: False)
    what = f"{ref.repo_id}/{ref.filename}"
    name = safetensors_name(os.path.basename(ref.filename), fallback="download.safetensors")
    if not ref.filename.lower().endswith(".safetensors"):
        raise RemoteError(f"{what}: only .safetensors files are downloaded", kind="refused")
    endpoint = hf_endpoint()
    if progress is not None:
        progress(0, 0, "asking Hugging Face")
    try:
        meta = hub.get_hf_file_metadata(hub.hf_hub_url(ref.repo_id, ref.filename, revision=ref.revision,
                                                       endpoint=endpoint))
    except Exception as exc:
        raise _hub_error(exc, what) from None
    etag = (getattr(meta, "etag", None) or "").strip('"').lower()
    expected = etag if _SHA_RE.match(etag) else None
    base_root = staging_dir or tempfile.gettempdir()
    os.makedirs(base_root, exist_ok=True)
    # One staging cache per file and revision, kept after a failure: huggingface_hub resumes its
    # ``.incomplete`` blob there on the next try. Removed once the file is in place or found wrong.
    key = hashlib.sha1(f"{endpoint}|{ref.repo_id}|{ref.revision}|{ref.filename}".encode()).hexdigest()[:16]
    staging = os.path.join(base_root, f"lora-studio-hf-{key}")
    os.makedirs(staging, exist_ok=True)
    keep = True
    try:
        card: dict[str, Any] = {}
        try:
            card_path = hub.hf_hub_download(ref.repo_id, "README.md", revision=ref.revision, cache_dir=staging,
                                            endpoint=endpoint)
            card = card_metadata(card_path)
        except Exception:
            card = {}  # no model card: fine
        base_model, words = card_values(card)
        sd_version, family = out.base_model_vocab(base_model)
        folder = target_folder(lora_dir, subfolder, subfolder_mode, base_model=base_model)
        if stop():
            raise Cancelled()
        sink = ByteSink(progress, stop, total=int(getattr(meta, "size", 0) or 0))
        sink.report(0, force=True)
        try:
            got = download_with_progress(hub, staging, sink, repo_id=ref.repo_id, filename=ref.filename,
                                         revision=ref.revision, cache_dir=staging, endpoint=endpoint)
        except RemoteError:
            raise
        except Exception as exc:
            raise _hub_error(exc, what) from None
        if stop():
            raise Cancelled()
        blob = os.path.realpath(got)
        part = os.path.join(folder, f"{PART_PREFIX}hf-{re.sub(r'[^A-Za-z0-9]+', '-', what)[:80]}{PART_SUFFIX}")
        try:
            try:
                os.replace(blob, part)
            except OSError:
                shutil.copyfile(blob, part)
        except OSError as exc:
            _unlink(part)
            raise RemoteError(f"{folder}: cannot write: {exc.strerror or exc}", kind="disk") from None
        digest = _sha_file(part)
        if expected and digest != expected:
            _unlink(part)
            raise RemoteError(f"{what}: SHA-256 mismatch (the server lists {expected[:12]}…, got {digest[:12]}…); "
                              "the file was deleted", kind="verify")
        size = int(getattr(meta, "size", 0) or 0)
        if size and os.path.getsize(part) != size:
            _unlink(part)
            raise RemoteError(f"{what}: size mismatch ({os.path.getsize(part)} bytes, {size} announced); deleted",
                              kind="verify")
        check_safetensors(part)
        path, present = place(part, folder, name, digest)
        problems: list[str] = []
        filled: tuple[str, ...] = ()
        try:
            filled = out.fill_user_metadata(path, activation=words, sd_version=sd_version, family=family)
        except Exception as exc:
            problems.append(str(exc))
        if progress is not None:
            progress(1, 1, "done")
        keep = False
        return DownloadResult(path, digest, "huggingface", present, filled=filled, problems=tuple(problems),
                              extra={"repo_id": ref.repo_id, "filename": ref.filename, "revision": ref.revision,
                                     "base_model": base_model, "commit": getattr(meta, "commit_hash", None)})
    except RemoteError as exc:
        keep = exc.kind in ("offline", "timeout", "cancelled") or (exc.kind == "http" and exc.status != 404)
        raise
    finally:
        if not keep:
            shutil.rmtree(staging, ignore_errors=True)
