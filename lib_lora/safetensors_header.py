"""Bounded reader for the header of a ``.safetensors`` file.

A safetensors file is an 8-byte little-endian length ``N``, then ``N`` bytes of UTF-8 JSON (an object
mapping tensor names to ``{"dtype", "shape", "data_offsets"}`` plus an optional ``"__metadata__"``
object of strings), then the tensor data. This module reads the length and the JSON only — never the
tensor data — so a multi-GB LoRA or checkpoint costs one small read.

Limits: a header larger than :data:`MAX_HEADER_BYTES` (100 MB, the same cap the reference
``safetensors`` library applies) or larger than the file is refused before anything is allocated.
Every failure raises :class:`~lib_lora.errors.HeaderError` with a one-line message.

Refused like the reference loader refuses them: tensors whose ``data_offsets`` overlap or leave a gap (the
tensors must tile the data section exactly), and metadata values that are not strings. A ``torch.save``
file (zip or pickle) renamed to ``.safetensors`` is named for what it is, and never unpickled.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

from lib_lora.errors import HeaderError

#: Largest JSON header accepted, in bytes (100 MB). Real SDXL LoRAs have ~300 kB headers,
#: full SDXL checkpoints ~200 kB; anything near the cap is not a model file.
MAX_HEADER_BYTES = 100_000_000

#: Bits per element of every dtype the safetensors format defines.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}

#: ``(dtype, shape)`` of one tensor.
TensorInfo = tuple[str, tuple[int, ...]]


@dataclass(frozen=True)
class Header:
    """What a safetensors header says: every tensor's dtype and shape, and the string metadata."""

    tensors: dict[str, TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)
    header_size: int = 0
    file_size: int = 0

    @property
    def data_offset(self) -> int:
        """Byte offset where tensor data starts (what A1111's addnet hash reads from)."""
        return 8 + self.header_size

    def shape(self, name: str) -> tuple[int, ...] | None:
        info = self.tensors.get(name)
        return info[1] if info is not None else None


def _err(path: str | os.PathLike[str] | None, message: str) -> HeaderError:
    where = f"{os.fspath(path)}: " if path is not None else ""
    return HeaderError(f"{where}{message}")


def read_header(path: str | os.PathLike[str], *, max_header_bytes: int = MAX_HEADER_BYTES) -> Header:
    """Read and validate the header of the safetensors file at ``path``.

    Reads at most ``8 + min(N, max_header_bytes)`` bytes. Raises :class:`HeaderError` for a missing or
    unreadable file, a truncated file, an oversized header and every malformed entry.
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            prefix = fh.read(8)
            if len(prefix) < 8:
                raise _err(path, f"not a safetensors file: only {len(prefix)} bytes long (truncated?)")
            (n,) = struct.unpack("<Q", prefix)
            if _torch_magic(prefix) and not _plausible(n, size, max_header_bytes, fh.read(1)):
                raise _err(path, TORCH_MESSAGE)
            _check_length(path, n, size, max_header_bytes)
            fh.seek(8)
            raw = fh.read(n)
    except HeaderError:
        raise
    except IsADirectoryError:
        raise _err(path, "is a folder, not a safetensors file") from None
    except OSError as exc:
        raise _err(path, f"cannot read: {exc.strerror or exc}") from None
    if len(raw) < n:
        raise _err(path, f"truncated: header says {n} bytes, file has {len(raw)} after the length prefix")
    return parse_header_bytes(raw, file_size=size, path=path)


TORCH_MESSAGE = "this is a PyTorch pickle/zip checkpoint, not safetensors — never opened"


def _torch_magic(prefix: bytes) -> bool:
    """The first bytes of a ``torch.save`` file: a zip archive (``PK``) or a pickle (protocol 2 to 5)."""
    return prefix[:2] == b"PK" or (prefix[:1] == b"\x80" and prefix[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))


def _plausible(n: int, size: int, cap: int, first: bytes) -> bool:
    """Whether a length prefix that happens to start like :func:`_torch_magic` is a real safetensors one."""
    return 2 <= n <= min(cap, size - 8) and first == b"{"


def _check_length(path: str | os.PathLike[str] | None, n: int, size: int | None, cap: int) -> None:
    if n > cap:
        raise _err(path, f"header length {n} bytes exceeds the {cap}-byte limit (not a safetensors file?)")
    if size is not None and n > size - 8:
        raise _err(path, f"truncated: header says {n} bytes but the file has only {max(size - 8, 0)} after the length prefix")
    if n < 2:
        raise _err(path, f"header length {n} is too small to hold a JSON object")


def parse_file_bytes(data: bytes, *, max_header_bytes: int = MAX_HEADER_BYTES) -> Header:
    """Parse a whole safetensors file already in memory (length prefix, header and data)."""
    if len(data) < 8:
        raise _err(None, f"not a safetensors file: only {len(data)} bytes long (truncated?)")
    (n,) = struct.unpack("<Q", data[:8])
    if _torch_magic(data) and not _plausible(n, len(data), max_header_bytes, data[8:9]):
        raise _err(None, TORCH_MESSAGE)
    _check_length(None, n, len(data), max_header_bytes)
    return parse_header_bytes(data[8 : 8 + n], file_size=len(data))


def parse_header_bytes(
    raw: bytes, *, file_size: int | None = None, path: str | os.PathLike[str] | None = None
) -> Header:
    """Validate the JSON header ``raw`` (the ``N`` bytes after the length prefix).

    ``file_size`` (the whole file's size) bounds the data offsets; without it only their internal
    consistency is checked.
    """
    n = len(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _err(path, f"header is not valid UTF-8 (byte {exc.start})") from None
    if not text.lstrip().startswith("{"):
        raise _err(path, "header is not a JSON object")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _err(path, f"header is not valid JSON: {str(exc).splitlines()[0][:120]}") from None
    if not isinstance(obj, dict):
        raise _err(path, "header is not a JSON object")

    metadata = _metadata(obj.pop("__metadata__", None), path)
    data_len = None if file_size is None else file_size - 8 - n
    limit = data_len if data_len is not None else float("inf")
    tensors: dict[str, TensorInfo] = {}
    # Fast path: a LoRA has thousands of tensors but only a few distinct (dtype, shape) pairs, so each
    # pair is validated once and cached with its byte size and a canonical (dtype, shape) tuple that all
    # its tensors share. (A later [1.0] or [true] dimension compares equal to a validated [1] and is
    # stored as that canonical int shape.) Anything unusual goes to _entry(), which re-checks the entry
    # field by field and raises the specific error.
    seen: dict[tuple[Any, tuple[Any, ...]], tuple[int, TensorInfo]] = {}
    spans: list[tuple[int, int, str]] = []
    for name, entry in obj.items():
        try:
            if type(entry) is not dict or type(entry["shape"]) is not list:
                raise TypeError
            key = (entry["dtype"], tuple(entry["shape"]))
            known = seen.get(key)
            if known is None:
                known = seen[key] = (_nbytes(name, entry, path), (key[0], key[1]))
            nbytes, info = known
            begin, end = entry["data_offsets"]
            ok = type(begin) is int and type(end) is int and 0 <= begin and end - begin == nbytes and end <= limit
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            info = _entry(name, entry, data_len, path)
            begin, end = entry["data_offsets"]
        spans.append((begin, end, name))
        tensors[name] = info
    _check_tiling(spans, data_len, path)
    return Header(tensors=tensors, metadata=metadata, header_size=n, file_size=file_size or 8 + n)


def _check_tiling(spans: list[tuple[int, int, str]], data_len: int | None,
                  path: str | os.PathLike[str] | None) -> None:
    """The tensors must cover the data section exactly, as the format requires: sorted by offset they start
    at 0, each begins where the previous ends, and the last ends where the file does."""
    spans.sort()
    end, prev = 0, None
    for begin, stop, name in spans:
        if begin > end:
            where = f"after tensor {prev!r}" if prev is not None else "at the start of the data"
            raise _err(path, f"tensor data offsets leave a gap of {begin - end} bytes {where} "
                             f"(tensor {name!r} starts at byte {begin}); not a valid safetensors file")
        if begin < end:
            raise _err(path, f"tensors {prev!r} and {name!r} overlap (bytes {begin}..{end} are claimed twice); "
                             "not a valid safetensors file")
        end, prev = stop, name
    if data_len is not None and end != data_len:
        raise _err(path, f"tensor data offsets leave a gap of {data_len - end} bytes at the end of the file "
                         f"(tensors end at byte {end} of {data_len}); not a valid safetensors file")


def _nbytes(name: str, entry: dict[str, Any], path: str | os.PathLike[str] | None) -> int:
    """Byte size of a (dtype, shape) pair; raises HeaderError for a bad dtype or shape."""
    dtype, shape = entry.get("dtype"), entry.get("shape")
    bits = DTYPE_BITS.get(dtype) if type(dtype) is str else None
    if bits is None:
        raise _err(path, f"tensor {name!r}: unknown dtype {dtype!r}")
    if type(shape) is not list:
        raise _err(path, f"tensor {name!r}: shape is not a list")
    numel = 1
    for dim in shape:
        if type(dim) is not int or dim < 0:
            raise _err(path, f"tensor {name!r}: bad shape {shape!r}")
        numel *= dim
    nbits = numel * bits
    if nbits % 8:
        raise _err(path, f"tensor {name!r}: {dtype} {shape} needs {nbits / 8:g} bytes, not a whole number")
    return nbits // 8


def _entry(name: str, entry: Any, data_len: int | None, path: str | os.PathLike[str] | None) -> TensorInfo:
    """Validate one tensor entry field by field, raising the specific HeaderError."""
    if type(entry) is not dict:
        raise _err(path, f"tensor {name!r}: entry is not an object")
    nbytes = _nbytes(name, entry, path)
    offsets = entry.get("data_offsets")
    if type(offsets) is not list or len(offsets) != 2:
        raise _err(path, f"tensor {name!r}: data_offsets must be [begin, end]")
    begin, end = offsets
    if type(begin) is not int or type(end) is not int or not 0 <= begin <= end:
        raise _err(path, f"tensor {name!r}: bad data_offsets {offsets!r}")
    if end - begin != nbytes:
        raise _err(path, f"tensor {name!r}: data_offsets span {end - begin} bytes but "
                         f"{entry['dtype']} {entry['shape']} needs {nbytes}")
    if data_len is not None and end > data_len:
        raise _err(path, f"tensor {name!r}: data ends at byte {end}, past the end of the file (truncated?)")
    return (entry["dtype"], tuple(entry["shape"]))


def _metadata(raw: Any, path: str | os.PathLike[str] | None) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _err(path, "__metadata__ is not an object")
    # The format says values are strings, and the safetensors loader the WebUIs use refuses a file whose
    # metadata holds anything else: such a file is unusable there, and none of its values is trusted.
    for key, value in raw.items():
        if not isinstance(value, str):
            kind = {dict: "an object", list: "a list", bool: "a boolean", type(None): "null"}.get(type(value), "a number")
            raise _err(path, f"metadata value is not a string ({key!r} holds {kind}): the WebUI cannot load this "
                             "file (its safetensors loader refuses it)")
    return dict(raw)


def build_file_bytes(tensors: dict[str, tuple[str, tuple[int, ...]]], metadata: dict[str, str] | None = None,
                     *, fill: bytes = b"\0") -> bytes:
    """Serialise a valid safetensors file whose tensor data is ``fill`` repeated (tests, demo libraries).

    Tensors are laid out in sorted name order, as the reference writer does.
    """
    header, data_len = header_json(tensors, metadata)
    return struct.pack("<Q", len(header)) + header + (fill * data_len)[:data_len]


def header_json(tensors: dict[str, tuple[str, tuple[int, ...]]], metadata: dict[str, str] | None = None
                ) -> tuple[bytes, int]:
    """The padded JSON header for ``tensors`` and the number of data bytes that must follow it."""
    obj: dict[str, Any] = {}
    if metadata:
        obj["__metadata__"] = dict(metadata)
    offset = 0
    for name in sorted(tensors):
        dtype, shape = tensors[name]
        numel = 1
        for d in shape:
            numel *= d
        nbytes = numel * DTYPE_BITS[dtype] // 8
        obj[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return raw, offset


def write_file(path: str | os.PathLike[str], tensors: dict[str, tuple[str, tuple[int, ...]]],
               metadata: dict[str, str] | None = None, *, sparse: bool = False) -> int:
    """Write a valid safetensors file with zeroed data; ``sparse`` leaves the data as a hole. Returns its size."""
    header, data_len = header_json(tensors, metadata)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)))
        fh.write(header)
        if sparse:
            fh.truncate(8 + len(header) + data_len)
        else:
            remaining = data_len
            chunk = b"\0" * min(remaining, 1 << 20)
            while remaining:
                part = chunk[: min(remaining, len(chunk))]
                fh.write(part)
                remaining -= len(part)
    return 8 + len(header) + data_len
