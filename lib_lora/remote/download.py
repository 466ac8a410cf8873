"""Download a LoRA by URL into the LoRA folder: Civitai page/API URLs and Hugging Face files.

Accepted: ``<civitai>/models/ID[/slug][?modelVersionId=V]`` (no version = the newest,
``modelVersions[0]``), ``<civitai>/api/download/models/V``, ``<hf>/owner/repo/blob|resolve/REV/PATH`` and
``hf://owner/repo/PATH`` (``hf://owner/repo@REV/PATH``). ``<civitai>`` is the configured Civitai site
root, ``<hf>`` is ``HF_ENDPOINT`` (default ``https://huggingface.co``).

Civitai: the version is resolved through the API; its file with ``type == "Model"`` and
``metadata.format == "SafeTensor"`` (``primary`` first) is streamed from its ``downloadUrl`` to a
hidden ``.lora-studio-<version>-<file>.part`` in the target folder. An interrupted download resumes:
the API URL is asked again (a fresh signed URL) and the request carries ``Range: bytes=<size>-``.
The SHA-256 the API lists is checked, then the file is linked into place under its sanitised name
(``Content-Disposition`` or the API's name; never ``..``, never absolute, never over an existing file).
A hash or size mismatch, a full disk or a refused pickle leaves no file a WebUI could load: only the
hidden ``.part`` (kept for a resume after a broken connection or a cancel, deleted after a mismatch).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from lib_lora.remote import sidecar_out as out
from lib_lora.remote.civitai import CivitaiClient
from lib_lora.remote.common import Cancelled, RemoteError, hf_endpoint, safe_url, same_origin, send

PART_PREFIX = ".lora-studio-"
PART_SUFFIX = ".part"
CHUNK = 1 << 20  # hashing reads
NET_CHUNK = 1 << 16  # network reads: a broken connection loses at most one of these
AUTO_RESUMES = 2
PICKLE_SUFFIXES = (".pt", ".ckpt", ".pth", ".bin", ".pkl")

SUBFOLDER_NONE = "none"
SUBFOLDER_BASE = "base-model"
SUBFOLDER_CATEGORY = "category"
SUBFOLDER_MODES = (SUBFOLDER_NONE, SUBFOLDER_BASE, SUBFOLDER_CATEGORY)

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class CivitaiRef:
    model_id: int | None = None
    version_id: int | None = None


@dataclass(frozen=True)
class HFRef:
    repo_id: str
    filename: str
    revision: str | None = None


@dataclass(frozen=True)
class DownloadResult:
    path: str  # the verified file in the LoRA folder
    sha256: str
    source: str  # "civitai" | "huggingface"
    already_present: bool = False
    version_id: int | None = None
    model_id: int | None = None
    filled: tuple[str, ...] = ()
    preview: str | None = None
    problems: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from lib_lora.sidecars import to_jsonable

        return to_jsonable(self)


def parse_source(url: str, civitai_base: str) -> CivitaiRef | HFRef:
    """What a download URL points to; :class:`RemoteError` (``refused``) for anything else."""
    text = url.strip()
    if text.startswith("hf://"):
        rest = text[len("hf://"):].strip("/")
        parts = rest.split("/")
        if len(parts) < 3:
            raise RemoteError(f"{text!r}: an hf:// URL needs owner/repo/file", kind="refused")
        repo, revision = "/".join(parts[:2]), None
        if "@" in repo:
            repo, revision = repo.split("@", 1)
        return HFRef(repo, "/".join(parts[2:]), revision)
    p = urlsplit(text)
    if p.scheme not in ("http", "https"):
        raise RemoteError(f"{safe_url(text) or text[:80]!r}: not an http(s) URL", kind="refused")
    segs = [unquote(s) for s in p.path.split("/") if s]
    if same_origin(text, civitai_base):
        base_path = [s for s in urlsplit(civitai_base).path.split("/") if s]
        segs = segs[len(base_path):] if segs[:len(base_path)] == base_path else segs
        query = parse_qs(p.query)
        if len(segs) >= 4 and segs[:3] == ["api", "download", "models"] and segs[3].isdigit():
            return CivitaiRef(version_id=int(segs[3]))
        if len(segs) >= 4 and segs[:3] == ["api", "v1", "model-versions"] and segs[3].isdigit():
            return CivitaiRef(version_id=int(segs[3]))
        if len(segs) >= 2 and segs[0] == "models" and segs[1].isdigit():
            v = query.get("modelVersionId", [""])[0]
            return CivitaiRef(model_id=int(segs[1]), version_id=int(v) if v.isdigit() else None)
        raise RemoteError(f"{safe_url(text)}: not a Civitai model or download URL "
                          "(expected /models/ID or /api/download/models/VERSION)", kind="refused")
    if same_origin(text, hf_endpoint()):
        if len(segs) >= 5 and segs[2] in ("blob", "resolve"):
            return HFRef(f"{segs[0]}/{segs[1]}", "/".join(segs[4:]), segs[3])
        raise RemoteError(f"{safe_url(text)}: not a Hugging Face file URL (expected owner/repo/blob/REV/FILE)",
                          kind="refused")
    raise RemoteError(f"{safe_url(text)}: neither Civitai ({civitai_base}) nor Hugging Face ({hf_endpoint()})",
                      kind="refused")


# --- names ---------------------------------------------------------------------------------------

_BAD_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$", re.I)


def sanitize_filename(name: str, *, fallback: str = "download.safetensors") -> str:
    """A safe single file name: last path component only, no control or reserved characters, not hidden,
    at most 200 characters, keeping the extension."""
    name = unicodedata.normalize("NFC", unquote(name or ""))
    name = name.replace("\\", "/").split("/")[-1]
    name = _BAD_CHARS.sub("_", name).strip().strip(".").strip()
    if not name or name in (".", "..") or _RESERVED.match(name):
        name = fallback
    stem, ext = os.path.splitext(name)
    if len(name) > 200:
        name = stem[: 200 - len(ext)] + ext
    return name


def sanitize_subfolder(sub: str) -> str:
    """A relative folder below the LoRA folder; ``..``, absolute paths and drive letters refused."""
    raw = (sub or "").replace("\\", "/").strip()
    if not raw:
        return ""
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise RemoteError(f"subfolder {sub!r}: must be relative to the LoRA folder", kind="refused")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise RemoteError(f"subfolder {sub!r}: '..' is not allowed", kind="refused")
    clean = [sanitize_filename(p, fallback="_") for p in parts]
    return "/".join(clean)


def content_disposition_name(value: str | None) -> str | None:
    """The file name from a ``Content-Disposition`` header (``filename*=UTF-8''…`` preferred)."""
    if not value:
        return None
    m = re.search(r"filename\*\s*=\s*([^']*)'[^']*'([^;]+)", value, re.I)
    if m:
        try:
            return unquote(m.group(2).strip().strip('"'), encoding=m.group(1) or "utf-8", errors="replace")
        except LookupError:
            return unquote(m.group(2).strip().strip('"'))
    m = re.search(r'filename\s*=\s*"((?:[^"\\]|\\.)*)"', value, re.I) or re.search(r"filename\s*=\s*([^;]+)", value, re.I)
    return m.group(1).strip() if m else None


def safetensors_name(name: str, fallback: str) -> str:
    clean = sanitize_filename(name, fallback=fallback)
    stem, ext = os.path.splitext(clean)
    if ext.lower() in PICKLE_SUFFIXES:
        raise RemoteError(f"{clean}: a pickle file ({ext}); LoRA Studio only downloads .safetensors", kind="refused")
    if ext.lower() != ".safetensors":
        clean = (clean if not ext else stem) + ".safetensors"
    return clean


def check_safetensors(part: str) -> None:
    """Refuse (and delete) a verified download that is not a readable ``.safetensors`` file."""
    from lib_lora.errors import HeaderError
    from lib_lora.safetensors_header import read_header

    try:
        read_header(part)
    except HeaderError as exc:
        _unlink(part)
        reason = exc.message.split(": ", 1)[-1] if exc.message.startswith(part) else exc.message
        raise RemoteError(f"the downloaded file is not a readable safetensors file ({reason}); it was deleted",
                          kind="verify") from None


def place(part: str, folder: str, name: str, sha256: str) -> tuple[str, bool]:
    """Move the verified ``part`` to ``folder/name`` without overwriting: an identical file already there
    is kept (``already_present``), a different one makes the new file ``name_2`` (``_3``…)."""
    stem, ext = os.path.splitext(name)
    for n in range(1, 1000):
        target = os.path.join(folder, name if n == 1 else f"{stem}_{n}{ext}")
        if os.path.lexists(target):
            if os.path.isfile(target) and os.path.getsize(target) == os.path.getsize(part) and _sha_file(target) == sha256:
                os.unlink(part)
                return target, True
            continue
        try:
            os.link(part, target)  # fails if the name appeared meanwhile: never overwrites
        except FileExistsError:
            continue
        except OSError:  # no hard links here (FAT, some network shares)
            if os.path.lexists(target):
                continue
            os.rename(part, target)
            return target, False
        os.unlink(part)
        return target, False
    raise RemoteError(f"{folder}: no free name for {name}", kind="disk")


def _sha_file(path: str, h: Any = None) -> str:
    h = h or hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(CHUNK)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# --- streaming -----------------------------------------------------------------------------------


@dataclass
class _Stream:
    name: str | None = None  # from Content-Disposition
    total: int | None = None


def stream_to_part(url: str, client: CivitaiClient, part: str, *, expected_sha: str | None,
                   progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
                   resumes: int = AUTO_RESUMES) -> tuple[str, _Stream]:
    """Download ``url`` into ``part`` (resuming what is there) and check its SHA-256; (sha256, info).

    Each attempt starts at ``url`` again (for Civitai the API URL: a fresh signed URL) and asks for the
    bytes after those already in ``part``.
    """
    import requests
    import urllib3

    stop = should_stop or (lambda: False)
    info = _Stream()
    attempt = 0
    while True:
        have = os.path.getsize(part) if os.path.isfile(part) else 0
        h = hashlib.sha256()
        if have:
            _sha_file(part, h)
        late = {"Range": f"bytes={have}-"} if have else {}
        resp = send("GET", url, client.auth, late_headers=late, stream=True, should_stop=stop, what="download")
        try:
            info.name = content_disposition_name(resp.headers.get("Content-Disposition")) or info.name
            if resp.status_code == 416 and have:
                resp.close()
                if expected_sha and h.hexdigest() == expected_sha:
                    return h.hexdigest(), info
                _unlink(part)  # the server has fewer bytes than we kept: start over
                attempt += 1
                if attempt > resumes:
                    raise RemoteError("download: the server refused every range; try again", kind="http")
                continue
            if resp.status_code in (401, 403):
                raise RemoteError(
                    f"download: Civitai refused it (HTTP {resp.status_code}) — this file needs a Civitai API key "
                    "(LoRA Studio setting or CIVITAI_API_KEY) or is in early access",
                    kind="http", status=resp.status_code)
            if resp.status_code == 404:
                raise RemoteError("download: the file is not there (HTTP 404)", kind="http", status=404)
            if resp.status_code == 206:
                m = re.match(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", resp.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != have:
                    resp.close()
                    _unlink(part)
                    attempt += 1
                    if attempt > resumes:
                        raise RemoteError("download: the server answered a different range than asked", kind="http")
                    continue
                info.total = int(m.group(3)) if m.group(3) != "*" else None
                mode = "ab"
            elif resp.status_code == 200:
                have = 0
                h = hashlib.sha256()
                cl = resp.headers.get("Content-Length")
                info.total = int(cl) if cl and cl.isdigit() else None
                mode = "wb"
            else:
                raise RemoteError(f"download: HTTP {resp.status_code}", kind="http", status=resp.status_code)
            done = have
            try:
                with open(part, mode) as fh:
                    for chunk in resp.iter_content(NET_CHUNK):
                        if stop():
                            raise Cancelled("download cancelled (the partial file is kept for a resume)")
                        fh.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, info.total or 0, "downloading")
                    fh.flush()
                    os.fsync(fh.fileno())
            except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError):
                raise  # a broken connection (requests' errors are OSErrors too): keep the part, resume
            except OSError as exc:
                _unlink(part)
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise RemoteError(f"download: the disk is full ({os.path.dirname(part)}); nothing was kept",
                                      kind="disk") from None
                raise RemoteError(f"download: cannot write {os.path.dirname(part)}: {exc.strerror or exc}",
                                  kind="disk") from None
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
            resp.close()
            attempt += 1
            if attempt > resumes:
                size = os.path.getsize(part) if os.path.isfile(part) else 0
                raise RemoteError(f"download broke off at byte {size} ({type(exc).__name__}); "
                                  "run it again to resume", kind="http") from None
            continue
        finally:
            resp.close()
        size = os.path.getsize(part)
        if info.total is not None and size < info.total:
            attempt += 1
            if attempt > resumes:
                raise RemoteError(f"download broke off at byte {size} of {info.total}; run it again to resume",
                                  kind="http")
            continue
        if info.total is not None and size > info.total:
            _unlink(part)
            raise RemoteError(f"download: {size} bytes arrived, {info.total} announced; the file was deleted",
                              kind="verify")
        digest = h.hexdigest()
        if expected_sha and digest != expected_sha.lower():
            _unlink(part)
            raise RemoteError(f"download: SHA-256 mismatch (Civitai lists {expected_sha.lower()[:12]}…, got "
                              f"{digest[:12]}…); the file was deleted", kind="verify")
        return digest, info


# --- Civitai ---------------------------------------------------------------------------------------


def pick_file(version: dict[str, Any]) -> dict[str, Any]:
    """The version's SafeTensor model file (``primary`` first); pickles are refused."""
    files = [f for f in version.get("files") or () if isinstance(f, dict)]
    models = [f for f in files if f.get("type") in ("Model", None)]
    safe = [f for f in models if (f.get("metadata") or {}).get("format") == "SafeTensor"
            or str(f.get("name", "")).lower().endswith(".safetensors")]
    safe.sort(key=lambda f: f.get("primary") is not True)
    if safe:
        return safe[0]
    if any((f.get("metadata") or {}).get("format") == "PickleTensor" or
           str(f.get("name", "")).lower().endswith(PICKLE_SUFFIXES) for f in models):
        raise RemoteError("this version is only available as a pickle (PickleTensor .pt/.ckpt); LoRA Studio never "
                          "downloads pickles — they can run code when loaded", kind="refused")
    raise RemoteError(f"version {version.get('id')}: no SafeTensor model file to download", kind="refused")


def resolve_version(ref: CivitaiRef, client: CivitaiClient) -> dict[str, Any]:
    vid = ref.version_id
    if vid is None and ref.model_id is not None:
        model = client.model(ref.model_id)
        if model is None:
            raise RemoteError(f"Civitai has no model {ref.model_id}", kind="http", status=404)
        versions = [v for v in model.get("modelVersions") or () if isinstance(v, dict)]
        if not versions or not isinstance(versions[0].get("id"), int):
            raise RemoteError(f"model {ref.model_id} has no versions", kind="http")
        vid = versions[0]["id"]
    assert vid is not None
    version = client.version(vid)
    if version is None:
        raise RemoteError(f"Civitai has no model version {vid}", kind="http", status=404)
    return version


def _safe_id(value: Any) -> str:
    """An id from the server as a safe piece of a file name."""
    return re.sub(r"[^0-9A-Za-z_-]", "_", str(value))[:40] or "_"


def target_folder(lora_dir: str, subfolder: str | None, mode: str, *, base_model: str | None = None,
                  category: str | None = None) -> str:
    if subfolder is None:  # by the setting: one folder level named after what the server says
        if mode == SUBFOLDER_BASE and base_model:
            subfolder = sanitize_filename(base_model.replace("/", " "), fallback="other")
        elif mode == SUBFOLDER_CATEGORY and category:
            subfolder = sanitize_filename(category.replace("/", " "), fallback="other")
    sub = sanitize_subfolder(subfolder or "")
    folder = os.path.join(lora_dir, *sub.split("/")) if sub else lora_dir
    real_root = os.path.realpath(lora_dir)
    if os.path.commonpath([real_root, os.path.realpath(folder)]) != real_root:
        raise RemoteError(f"subfolder {subfolder!r} leaves the LoRA folder", kind="refused")
    os.makedirs(folder, exist_ok=True)
    return folder


def download_civitai(ref: CivitaiRef, client: CivitaiClient, lora_dir: str, *, subfolder: str | None = None,
                     subfolder_mode: str = SUBFOLDER_NONE, options: Any = None, progress: Progress | None = None,
                     should_stop: Callable[[], bool] | None = None) -> DownloadResult:
    from lib_lora import sidecars as sc
    from lib_lora.remote.fetch_info import FetchOptions, apply_version

    if progress is not None:
        progress(0, 0, "asking Civitai")
    version = resolve_version(ref, client)
    f = pick_file(version)
    model = client.model(version["modelId"]) if isinstance(version.get("modelId"), int) else None
    category = sc.category_from_tags(sc.parse_civitai_model(model).tags) if model else None
    folder = target_folder(lora_dir, subfolder, subfolder_mode,
                           base_model=version.get("baseModel") if isinstance(version.get("baseModel"), str) else None,
                           category=category)
    expected = ((f.get("hashes") or {}).get("SHA256") or "").lower() or None
    url = f.get("downloadUrl") or version.get("downloadUrl") or client.url(f"/api/download/models/{version['id']}")
    if not client.is_civitai_url(url):  # the API's URLs name civitai.com; use the configured site
        p = urlsplit(url)
        url = client.url(p.path + (f"?{p.query}" if p.query else ""))
    part = os.path.join(folder, f"{PART_PREFIX}{_safe_id(version.get('id'))}-{_safe_id(f.get('id'))}{PART_SUFFIX}")
    digest, info = stream_to_part(url, client, part, expected_sha=expected, progress=progress, should_stop=should_stop)
    check_safetensors(part)
    name = safetensors_name(info.name or str(f.get("name") or ""), fallback=f"civitai-{version.get('id')}.safetensors")
    path, present = place(part, folder, name, digest)
    result = apply_version(path, version, model, client, options or FetchOptions())
    return DownloadResult(path, digest, "civitai", present, result.version_id, result.model_id, result.filled,
                          result.preview, result.problems)


def download(url: str, lora_dir: str, *, client: CivitaiClient, subfolder: str | None = None,
             subfolder_mode: str = SUBFOLDER_NONE, options: Any = None, progress: Progress | None = None,
             should_stop: Callable[[], bool] | None = None, staging_dir: str | None = None) -> DownloadResult:
    """Download ``url`` into ``lora_dir`` (see the module docstring); :class:`RemoteError` on failure."""
    if not os.path.isdir(lora_dir):
        raise RemoteError(f"LoRA folder not found: {lora_dir}", kind="refused")
    ref = parse_source(url, client.base_url)
    if isinstance(ref, HFRef):
        from lib_lora.remote.hf import download_hf

        return download_hf(ref, lora_dir, subfolder=subfolder, subfolder_mode=subfolder_mode, progress=progress,
                           should_stop=should_stop, staging_dir=staging_dir)
    return download_civitai(ref, client, lora_dir, subfolder=subfolder, subfolder_mode=subfolder_mode,
                            options=options, progress=progress, should_stop=should_stop)


__all__ = ["CivitaiRef", "DownloadResult", "HFRef", "download", "out", "parse_source", "sanitize_filename"]
