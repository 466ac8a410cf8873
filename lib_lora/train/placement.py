"""Putting a finished LoRA where the WebUI finds it: the file (never replacing one: ``-2``, ``-3`` …), an
A1111 user-metadata sidecar (activation text = trigger word, sd version, preferred weight, description),
``<stem>.preview.png`` from the last sample step, a library rescan so ``<lora:name>`` resolves at once,
and ``result.json`` in the job folder (with a claim file while it is written), so a restart neither
installs twice nor forgets.

Placing is a function of two values: :class:`TrainedLora` (what the training produced and what the user
said about it) and :class:`Destination` (the folder, the file stem and how a taken name is numbered).
:func:`lora_folder_destination` is today's policy, ``<lora root>/<trigger>/<name>.safetensors``; another
policy (say, a character's own folder with ``_v<N>`` versions) is another :class:`Destination`.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib_lora.errors import LoraStudioError, TrainingError
from lib_lora.train.jobs import JobRecord
from lib_lora.train.plan import TrainingPlan, default_output_name
from lib_lora.train.runner import SUCCEEDED, claim_file

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
RESULT_CLAIM = "result.claim"
DEFAULT_PREFERRED_WEIGHT = 0.8
_SAMPLE_NAME = re.compile(r"_(\d{6})_(\d{2})_[^/\\]*\.(?:png|jpe?g|webp)$", re.IGNORECASE)
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
_MAX_COPIES = 1000
#: one install at a time in this process: no two pick the same name
_INSTALL_LOCK = threading.RLock()


@dataclass(frozen=True)
class InstalledLora:
    """Where a finished LoRA was put, and whether the library resolves it."""

    path: str
    name: str  # what goes into <lora:NAME:weight>
    sidecar: str | None = None
    preview: str | None = None
    found: bool = False  # library.lookup(name) gives this file
    message: str = ""
    trigger: str = ""
    weight: float = DEFAULT_PREFERRED_WEIGHT

    @property
    def tag(self) -> str:
        """The prompt tag that uses it."""
        return f"<lora:{self.name}:{self.weight:g}>"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InstalledLora:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class TrainedLora:
    """What a training produced, and what goes into the sidecar (from the job's ``meta["install"]``)."""

    source: str  # the trained .safetensors in the training folder (kept there)
    name: str  # the wished file stem (the output name)
    trigger: str = ""
    arch: str = ""  # "sd1" | "sdxl" | "flux1"
    preferred_weight: float = DEFAULT_PREFERRED_WEIGHT
    description: str = ""
    category: str | None = None
    samples: tuple[str, ...] = ()  # sample images the trainer wrote (the preview comes from them)
    sample_dir: str | None = None  # where to look for samples when ``samples`` is empty

    @classmethod
    def from_job(cls, record: JobRecord, intent: Mapping[str, Any]) -> TrainedLora:
        """The result of a succeeded job; raises when the trained file is missing."""
        source = record.status.output_path or _expected_output(record)
        if not source or not os.path.isfile(source):
            raise TrainingError(f"the trained file is missing: {source or '(no output recorded)'}")
        sample_dir = record.spec.get("sample_dir")
        return cls(
            source=source,
            name=str(intent.get("name") or Path(source).stem),
            trigger=str(intent.get("trigger") or ""),
            arch=str(intent.get("arch") or ""),
            preferred_weight=float(intent.get("preferred_weight") or DEFAULT_PREFERRED_WEIGHT),
            description=str(intent.get("description") or ""),
            category=str(intent.get("category") or "") or None,
            samples=tuple(record.status.samples),
            sample_dir=str(sample_dir) if sample_dir else None,
        )


def numbered_copy(stem: str, n: int) -> str:
    """The ``n``-th name tried for ``stem``: ``stem``, ``stem-2``, ``stem-3`` …"""
    return stem if n == 1 else f"{stem}-{n}"


@dataclass(frozen=True)
class Destination:
    """Where a LoRA is placed: ``<folder>/<numbering(stem, n)><suffix>`` for the first ``n`` (from 1)
    whose file, sidecar and library name are all free (``exact``: ``n`` = 1 or an error). The folder is
    created when missing."""

    folder: str
    stem: str
    numbering: Callable[[str, int], str] = numbered_copy
    exact: bool = False  # only the first name: when it is taken, fail (a character's trained version)


def lora_folder_destination(intent: Mapping[str, Any], lora_roots: Sequence[str], result: TrainedLora
                            ) -> Destination:
    """Today's policy: ``<lora root>/<subfolder>/<name>`` — the root the job was started with while it
    exists, else the host's first LoRA folder; one subfolder per trigger word."""
    root = intent.get("lora_root")
    if not root or not os.path.isdir(root):
        root = lora_roots[0] if lora_roots else None
    if not root:
        raise TrainingError("there is no LoRA folder to put the LoRA into")
    folder = os.path.join(root, safe_component(str(intent.get("subfolder") or intent.get("name") or "")))
    return Destination(folder=folder, stem=safe_component(result.name))


def place_lora(result: TrainedLora, dest: Destination, host: Any) -> InstalledLora:
    """Put ``result`` at ``dest`` with its sidecar and preview, rescan ``host``'s library and say whether
    ``<lora:name>`` resolves to the new file. Only the model file is required: a missing sidecar,
    preview or rescan is reported in the message."""
    from lib_lora import sidecars

    os.makedirs(dest.folder, exist_ok=True)
    suffix = Path(result.source).suffix or ".safetensors"
    try:
        target = place_file(result.source, dest.folder, dest.stem, suffix,
                            taken=lambda stem: _taken_name(host, stem), numbering=dest.numbering, exact=dest.exact)
    except TrainingError as exc:
        if not dest.exact:
            raise
        raise TrainingError(f"{exc}; nothing was overwritten or renamed: the trained file stays at "
                            f"{result.source}") from None
    new_stem = Path(target).stem
    notes: list[str] = []
    sidecar_path: str | None = None
    try:
        sidecars.update_user_metadata(
            target,
            description=result.description,
            sd_version=sidecars.sd_version_for(result.arch),
            activation_text=result.trigger,
            preferred_weight=result.preferred_weight,
            category=result.category,
        )
        sidecar_path = os.fspath(sidecars.user_metadata_path(target))
    except LoraStudioError as exc:
        notes.append(f"no sidecar: {exc}")
    preview: str | None = None
    sample = pick_preview_sample(result.samples, result.sample_dir)
    if sample:
        try:
            preview = write_preview(sample, os.path.join(dest.folder, new_stem + ".preview.png"))
        except (OSError, ValueError) as exc:
            notes.append(f"no preview: {exc}")
    found = False
    try:
        host.rescan(wait=True)
        lookup = host.library().lookup(new_stem)
        found = bool(lookup.found and lookup.entry is not None
                     and os.path.realpath(lookup.entry.path) == os.path.realpath(target))
        if not found:
            notes.append(f"<lora:{new_stem}> does not resolve to the new file yet: {lookup.message}")
    except Exception as exc:
        notes.append(f"the library could not be rescanned: {exc}")
    weight = result.preferred_weight
    message = f"Saved as {target} — use <lora:{new_stem}:{weight:g}> with {result.trigger}"
    if notes:
        message += " (" + "; ".join(notes) + ")"
    return InstalledLora(path=target, name=new_stem, sidecar=sidecar_path, preview=preview, found=found,
                         message=message, trigger=result.trigger, weight=weight)


def install_job(record: JobRecord, host: Any) -> InstalledLora:
    """Install a succeeded job's LoRA into ``host``'s LoRA folder, once: the outcome is kept in the job
    folder's ``result.json`` and later calls return it (or raise its error again). A claim file keeps a
    second process from installing the same job at the same time."""
    if record.state != SUCCEEDED:
        raise TrainingError(f"job {record.id} is {record.state}: only a finished training can be installed")
    intent = record.meta.get("install")
    if not isinstance(intent, dict):
        raise TrainingError(f"job {record.id} was not started to be installed into the LoRA folder")
    with _INSTALL_LOCK:
        existing = read_result(record.job_dir)
        if existing is not None:
            if existing.get("installed"):
                return InstalledLora.from_dict(existing["installed"])
            raise TrainingError(str(existing.get("error") or "the earlier install failed"))
        claim = Path(record.job_dir) / RESULT_CLAIM
        if not claim_file(claim, reclaim_own=True):
            raise TrainingError(f"job {record.id} is being installed by another LoRA Studio process")
        character = intent.get("character")
        if isinstance(character, dict):
            from lib_lora.characters import training as char_training
        try:
            result = TrainedLora.from_job(record, intent)
            roots = [os.fspath(r) for r in host.lora_roots()]
            if isinstance(character, dict):  # a character's version (lib_lora.characters.training)
                installed = place_lora(result, Destination(*char_training.destination_args(character)), host)
                notes = char_training.finish_install(character)
                if notes:
                    installed = dataclasses.replace(installed, message=f"{installed.message} ({'; '.join(notes)})")
            else:
                installed = place_lora(result, lora_folder_destination(intent, roots, result), host)
        except Exception as exc:
            message = str(exc) if isinstance(exc, LoraStudioError) else f"{type(exc).__name__}: {exc}"
            write_result(record.job_dir, {"error": message, "at": time.time()})
            raise TrainingError(f"the LoRA was trained but could not be put into the LoRA folder: {message}") from exc
        finally:
            try:
                claim.unlink()
            except OSError:
                pass
            if isinstance(character, dict):  # placed, or it never will be: the version is given back
                _release_version(char_training, character, record)
        write_result(record.job_dir, {"installed": installed.to_dict(), "at": time.time()})
    return installed


def _release_version(char_training: Any, character: dict[str, Any], record: JobRecord) -> None:
    from lib_lora.characters.reservation import job_chain

    try:  # this job's, one it continues, or this process's not yet given to the job
        char_training.release_version(character, [*job_chain(record), None])
    except LoraStudioError as exc:
        log.warning("LoRA Studio: %s", exc)


def install_intent(plan: TrainingPlan, lora_root: str | None, ckpt_name: str,
                   preferred_weight: float = DEFAULT_PREFERRED_WEIGHT) -> dict[str, Any]:
    """What a job's record says about putting its LoRA into the LoRA folder when it succeeds
    (``meta["install"]``: :func:`install_job` reads it)."""
    description = (
        f"Trained with LoRA Studio on {ckpt_name}: preset {plan.preset.id}, {plan.max_train_steps} steps × batch "
        f"{plan.batch_size}, {plan.image_count} images at {plan.resolution} px, dim {plan.network_dim} / alpha "
        f"{plan.network_alpha:g}, lr {plan.learning_rate:g}. Trigger word: {plan.trigger}."
    )
    return {
        "lora_root": lora_root,
        "subfolder": safe_component(plan.trigger),
        "name": plan.output_name,
        "trigger": plan.trigger,
        "arch": plan.base_arch,
        "preferred_weight": float(preferred_weight),
        "description": description,
        "category": plan.preset.kind,
    }


def safe_component(text: str) -> str:
    """A file or folder name made from user text (no separators, no dots at the ends, not empty)."""
    name = default_output_name(text) if text else ""
    return name or "lora"


def _taken_name(host: Any, stem: str) -> bool:
    """Whether another LoRA in the library already answers to ``stem`` (a new one would shadow it)."""
    try:
        return host.library().lookup(stem).status in ("found", "ambiguous")
    except Exception:
        return False


def _expected_output(record: JobRecord) -> str | None:
    out, name = record.spec.get("output_dir"), record.spec.get("output_name")
    if not out or not name:
        return None
    return os.path.join(str(out), f"{name}.safetensors")


def place_file(source: str, folder: str, stem: str, suffix: str,
               taken: Callable[[str], bool] = lambda s: False,
               numbering: Callable[[str, int], str] = numbered_copy, exact: bool = False) -> str:
    """Put ``source`` into ``folder`` as ``<stem><suffix>`` or ``<stem>-2<suffix>`` … (``numbering``)
    without ever replacing a file: a hard link when possible (instant, no extra space), else a copy made
    under a temporary name and linked into place (``link`` fails when the name exists, so two writers can
    never overwrite each other). The training folder keeps its own file. ``exact``: only the first name,
    and a :class:`TrainingError` saying why when it is taken."""
    for n in range(1, 2 if exact else _MAX_COPIES):
        name = numbering(stem, n)
        target = os.path.join(folder, name + suffix)
        why = _why_taken(folder, name, target, taken)
        if not why:
            if _put(source, folder, target):
                return target
            why = "it was created meanwhile"
        if exact:
            raise TrainingError(f"{target} cannot be written: {why}")
    raise TrainingError(f"{folder} already holds {stem}{suffix} and {_MAX_COPIES - 2} numbered copies")


def _put(source: str, folder: str, target: str) -> bool:
    """Link (else copy) ``source`` to the free name ``target`` without ever replacing a file; False when
    another writer created ``target`` meanwhile."""
    try:
        os.link(source, target)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES,
                             getattr(errno, "EOPNOTSUPP", errno.ENOTSUP)):
            raise TrainingError(f"cannot write into {folder}: {exc.strerror or exc}") from None
    tmp = os.path.join(folder, f".{os.path.basename(target)}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(source, tmp)
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive create, then copy into it
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            os.close(fd)
            os.replace(tmp, target)
        return True
    except OSError as exc:
        raise TrainingError(f"cannot copy the LoRA into {folder}: {exc.strerror or exc}") from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _why_taken(folder: str, stem: str, target: str, taken: Callable[[str], bool]) -> str:
    """Why ``<folder>/<stem>`` cannot be written ('' when it can): the file exists, a sidecar of that
    name without its model (left from a deleted LoRA) would be adopted, or another LoRA in the library
    answers to the name."""
    if os.path.lexists(target):
        return "the file exists"
    side = next((stem + s for s in (".json", ".preview.png") if os.path.lexists(os.path.join(folder, stem + s))), None)
    if side:
        return f"{side} exists there"
    if taken(stem):
        return f"another LoRA in the library is named {stem}"
    return ""


def pick_preview_sample(samples: Iterable[str], sample_dir: str | None = None) -> str | None:
    """The sample image for a preview: the first prompt (a portrait) of the last sample step; with no
    step in the names, the newest file. Looks into ``sample_dir`` when the status lists none."""
    files = [s for s in samples if os.path.isfile(s)]
    if not files and sample_dir and os.path.isdir(sample_dir):
        files = [os.path.join(sample_dir, n) for n in sorted(os.listdir(sample_dir))
                 if n.lower().endswith(_IMAGE_SUFFIXES) and not n.startswith(".")]
    if not files:
        return None
    keyed = []
    for path in files:
        m = _SAMPLE_NAME.search(os.path.basename(path))
        if m:
            keyed.append(((int(m.group(1)), -int(m.group(2))), path))
    if keyed:
        return max(keyed)[1]
    return max(files, key=lambda p: os.stat(p).st_mtime)


def write_preview(sample: str, target: str) -> str:
    """Write ``sample`` as a PNG preview at ``target`` (converted when it is another format)."""
    with open(sample, "rb") as fh:
        head = fh.read(8)
    tmp = f"{target}.{os.getpid()}.tmp"
    try:
        if head == b"\x89PNG\r\n\x1a\n":
            shutil.copyfile(sample, tmp)
        else:
            from PIL import Image

            with Image.open(sample) as img:
                img.convert("RGB").save(tmp, format="PNG")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def read_result(job_dir: str) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(job_dir) / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_result(job_dir: str, data: dict[str, Any]) -> None:
    path = Path(job_dir) / RESULT_FILE
    tmp = path.with_name(f".{RESULT_FILE}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("LoRA Studio: cannot write %s: %s", path, exc)


__all__ = [
    "DEFAULT_PREFERRED_WEIGHT",
    "RESULT_CLAIM",
    "RESULT_FILE",
    "Destination",
    "InstalledLora",
    "TrainedLora",
    "install_intent",
    "install_job",
    "lora_folder_destination",
    "numbered_copy",
    "pick_preview_sample",
    "place_file",
    "place_lora",
    "read_result",
    "safe_component",
    "write_preview",
    "write_result",
]
