"""File hashes as the WebUIs and Civitai name them, computed in one pass over the file.

- ``sha256``: SHA-256 of the whole file (lower-case hex, as A1111's ``modules.hashes.calculate_sha256``).
- ``autov2``: its first 10 hex digits — A1111's checkpoint "shorthash" (lower case there) and Civitai's
  ``AutoV2`` (upper case there). Compare case-insensitively.
- ``addnet``: SHA-256 of every byte after the safetensors header, i.e. from offset ``8 + N`` where ``N`` is
  the little-endian u64 at the start of the file (A1111's ``addnet_hash_safetensors``, itself kohya's
  ``sshs_model_hash``). Its first 12 hex digits are what A1111 writes as "Lora hashes" in the infotext.
  Only defined for ``.safetensors`` files; A1111 uses the full-file sha256 for ``.pt``/``.ckpt`` LoRAs.

Both digests come from a single sequential read; the file is never parsed beyond its first 8 bytes,
so this is safe on pickle files (``.pt``/``.ckpt``) too.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from lib_lora.errors import HashError

CHUNK_SIZE = 1 << 20  # 1 MiB, as A1111

__all__ = ["CHUNK_SIZE", "FileHashes", "HashError", "autov2", "hash_file"]


@dataclass(frozen=True)
class FileHashes:
    """Hashes of one file. ``addnet`` is ``None`` for files that are not safetensors."""

    sha256: str
    addnet: str | None = None

    @property
    def autov2(self) -> str:
        """First 10 hex of the file sha256 (lower case; Civitai shows it upper case)."""
        return self.sha256[:10]

    @property
    def addnet_short(self) -> str | None:
        """First 12 hex of the addnet hash (what A1111 writes as "Lora hashes")."""
        return self.addnet[:12] if self.addnet else None

    @property
    def lora_short(self) -> str:
        """The 12-hex "Lora hashes" value A1111 would compute: addnet for safetensors, else full sha256."""
        return (self.addnet or self.sha256)[:12]


def autov2(sha256_hex: str) -> str:
    return sha256_hex[:10].lower()


def hash_file(
    path: str | os.PathLike[str],
    *,
    addnet: bool | None = None,
    chunk_size: int = CHUNK_SIZE,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FileHashes:
    """Hash ``path`` in one pass: full-file sha256 and (for safetensors) the addnet hash.

    ``addnet`` defaults to "the name ends with .safetensors". ``progress(done_bytes, total_bytes)`` is
    called after every chunk; ``should_stop()`` returning true aborts with :class:`HashError`.
    """
    if addnet is None:
        addnet = os.fspath(path).lower().endswith(".safetensors")
    full = hashlib.sha256()
    tail = hashlib.sha256() if addnet else None
    buf = bytearray(max(chunk_size, 8))
    view = memoryview(buf)
    try:
        with open(path, "rb", buffering=0) as fh:
            total = os.fstat(fh.fileno()).st_size
            # The first 8 bytes give the header length; A1111 hashes from 8 + N on (N read
            # little-endian even from a short file, which then leaves nothing to hash).
            head = b""
            while len(head) < 8:
                more = fh.read(8 - len(head))
                if not more:
                    break
                head += more
            full.update(head)
            pos = len(head)
            start = 8 + int.from_bytes(head, "little")
            while True:
                n = fh.readinto(buf)
                if not n:
                    break
                chunk = view[:n]
                full.update(chunk)
                if tail is not None and pos + n > start:
                    tail.update(chunk[max(start - pos, 0) :])
                pos += n
                if progress is not None:
                    progress(pos, total)
                if should_stop is not None and should_stop():
                    raise HashError(f"{os.fspath(path)}: hashing cancelled")
    except HashError:
        raise
    except IsADirectoryError:
        raise HashError(f"{os.fspath(path)}: is a folder, not a file") from None
    except OSError as exc:
        raise HashError(f"{os.fspath(path)}: cannot read for hashing: {exc.strerror or exc}") from None
    return FileHashes(sha256=full.hexdigest(), addnet=tail.hexdigest() if tail is not None else None)
