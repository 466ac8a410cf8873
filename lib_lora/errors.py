"""Typed errors that carry a one-line message meant for the user."""

from __future__ import annotations


class LoraStudioError(Exception):
    """Base of every error LoRA Studio raises on purpose; ``str(err)`` is the user-facing message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class HeaderError(LoraStudioError):
    """A file is not a readable safetensors file (truncated, oversized header, bad JSON, bad tensor entry)."""


class SidecarError(LoraStudioError):
    """A sidecar file (``<stem>.json``, ``.civitai.info``) cannot be read or written."""


class LibraryError(LoraStudioError):
    """The LoRA library (roots, index) cannot be used as asked."""


class ResolveError(LoraStudioError):
    """A LoRA name cannot be resolved to exactly one file."""


class TrainingError(LoraStudioError):
    """A training job cannot be planned, started or continued."""


class HashError(LoraStudioError):
    """A file could not be read to the end for hashing (or hashing was cancelled)."""


class TrainerEnvironmentError(TrainingError):
    """The trainer's own environment (venv, sd-scripts checkout) is missing or cannot be installed."""


class AccessDeniedError(LoraStudioError):
    """A request is refused because LoRA Studio is reachable by others and extension access is not
    allowed (no filesystem paths or subprocesses chosen by a remote user)."""


class ConsistencyError(LoraStudioError):
    """A consistency sheet cannot be made as asked (unknown LoRA or version, bad weights, a path given)."""


class NeedsWebUIError(LoraStudioError):
    """The action renders images with the WebUI's own generation, which the standalone app does not have."""
