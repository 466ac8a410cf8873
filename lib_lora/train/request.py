"""What a user asks the training service for and what it shows back: :class:`TrainingRequest` (the
Train tab's fields, an API body), :class:`JobView` (one job as the tab, the API and scripts show it),
and the checks on the folder paths a request names."""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lib_lora.errors import TrainingError
from lib_lora.train.placement import DEFAULT_PREFERRED_WEIGHT, InstalledLora
from lib_lora.train.runner import SUCCEEDED, JobStatus

_FORBIDDEN_ROOTS = ("/dev", "/proc", "/sys")
_MAX_PATH = 4096


@dataclass(frozen=True)
class TrainingRequest:
    """What the user asks for (the Train tab's fields; ``None`` = the preset's value)."""

    folder: str
    trigger: str
    base: str  # a checkpoint title / name from the host's list (or a file path, locally)
    preset: str = "default"
    kind: str = "character"
    steps: int | None = None  # None: auto (each image seen ~90 times)
    batch_size: int | None = None
    learning_rate: float | None = None
    network_dim: int | None = None
    network_alpha: float | None = None
    resolution: int | None = None
    gpu_ids: tuple[int, ...] | None = None  # None: GPU 0 / all; several: one process each
    output_name: str | None = None  # default: from the trigger
    caption_extension: str = ".txt"
    arch: str | None = None  # "sd1" | "sdxl" | "flux1" when the header cannot tell
    family: str | None = None  # "pony", "illustrious" …
    free_vram: bool = True  # move the WebUI's checkpoint out of GPU memory while training
    hold_queue: bool | None = None  # hold the generation queue (None: in a WebUI, unless on other GPUs only)
    preferred_weight: float = DEFAULT_PREFERRED_WEIGHT
    free_vram_bytes: int | None = None  # for the fast preset's batch (None: ask nvidia-smi)
    tokenizer_cache_dir: str | None = None  # None: <data_dir>/tokenizers when it exists (offline runs)
    offline: bool | None = None  # no Hugging Face hub access (None: $HF_HUB_OFFLINE)
    overrides: Mapping[str, Any] = field(default_factory=dict)  # further make_plan overrides
    extra_args: tuple[str, ...] = ()  # further sd-scripts options (checked against the option table)
    source: str = "tab"  # who asked: "tab" | "api" | …
    #: train a version of this character (lib_lora.characters): saved as characters/<name>/lora/<name>_v<N>;
    #: ``trigger`` may then be empty for an existing character (its prompts.txt gives it)
    character: str | None = None
    #: dataset images copied into the character's reference/ (None: a few front-facing ones)
    references: tuple[str, ...] | None = None

    def plan_overrides(self) -> dict[str, Any]:
        ov: dict[str, Any] = dict(self.overrides)
        for key, value in (
            ("steps", self.steps),
            ("batch_size", self.batch_size),
            ("learning_rate", self.learning_rate),
            ("network_dim", self.network_dim),
            ("network_alpha", self.network_alpha),
            ("resolution", self.resolution),
        ):
            if value is not None:
                ov[key] = value
        return ov


def request_from_mapping(data: Mapping[str, Any]) -> TrainingRequest:
    """A :class:`TrainingRequest` from plain data (API bodies, saved forms); unknown keys are refused."""
    names = {f.name for f in dataclasses.fields(TrainingRequest)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise TrainingError(f"unknown training field(s): {', '.join(unknown)}")
    kw = dict(data)
    if kw.get("gpu_ids") is not None:
        kw["gpu_ids"] = tuple(int(g) for g in kw["gpu_ids"])
    if kw.get("extra_args") is not None:
        kw["extra_args"] = tuple(str(a) for a in kw["extra_args"])
    if kw.get("references") is not None:
        kw["references"] = tuple(str(r) for r in kw["references"])
    return TrainingRequest(**kw)


@dataclass(frozen=True)
class JobView:
    """One job as the tab, the API and scripts show it."""

    id: str
    status: JobStatus
    created_at: float
    source: str  # "tab" | "api" | "cli" | …
    trigger: str
    output_name: str
    base: str  # checkpoint file name
    preset: str  # "default/sd15/character"
    total_steps: int
    job_dir: str
    resumed_from: str | None = None
    installs: bool = False  # the result goes into the LoRA folder when it succeeds
    installed: InstalledLora | None = None
    install_error: str | None = None

    @property
    def state(self) -> str:
        return self.status.state

    @property
    def done(self) -> bool:
        return self.status.done

    @property
    def installing(self) -> bool:
        """Succeeded, but not yet copied into the LoRA folder."""
        return self.state == SUCCEEDED and self.installs and self.installed is None and self.install_error is None

    @property
    def finished(self) -> bool:
        """Nothing more will happen to this job (ended, and installed when it installs)."""
        return self.done and not self.installing

    @property
    def resumable(self) -> bool:
        return self.status.resumable

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "status": self.status.to_dict(),
            "created_at": self.created_at,
            "source": self.source,
            "trigger": self.trigger,
            "output_name": self.output_name,
            "base": self.base,
            "preset": self.preset,
            "total_steps": self.total_steps,
            "job_dir": self.job_dir,
            "resumed_from": self.resumed_from,
            "installs": self.installs,
            "installing": self.installing,
            "installed": self.installed.to_dict() if self.installed else None,
            "install_error": self.install_error,
            "resumable": self.resumable,
        }


# ------------------------------------------------------------------------------------ validation


def validate_folder(path: str | os.PathLike[str], what: str = "dataset folder") -> str:
    """The real path of an existing directory named by the user; refuses devices, files, ``/proc``…

    Symlinks are resolved, so the check applies to what will actually be read."""
    if not isinstance(path, (str, os.PathLike)):
        raise TrainingError(f"the {what} must be a path")
    text = os.fspath(path).strip()
    if not text:
        raise TrainingError(f"the {what} is empty")
    if "\0" in text or len(text) > _MAX_PATH or any(ord(c) < 32 for c in text):
        raise TrainingError(f"the {what} contains characters no folder name has")
    expanded = os.path.expanduser(text)
    if not os.path.isabs(expanded):
        raise TrainingError(f"the {what} must be a full path (like /home/me/pictures/alice), not {text!r}")
    real = os.path.realpath(expanded)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise TrainingError(f"{what} not found: {text}") from None
    except OSError as exc:
        raise TrainingError(f"cannot open the {what} {text}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        kind = "a file" if stat.S_ISREG(st.st_mode) else "not a folder (a device, socket or pipe)"
        raise TrainingError(f"the {what} {text} is {kind}: choose the folder that holds the images")
    if any(real == root or real.startswith(root + os.sep) for root in _FORBIDDEN_ROOTS):
        raise TrainingError(f"the {what} {text} is a system folder ({real})")
    if not os.access(real, os.R_OK | os.X_OK):
        raise TrainingError(f"the {what} {text} cannot be read (permission denied)")
    return real


__all__ = ["JobView", "TrainingRequest", "request_from_mapping", "validate_folder"]
