from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_lora.errors import HashError, LoraStudioError
from lib_lora.hashing import FileHashes, autov2, hash_file
from lib_lora.safetensors_header import read_header, write_file


def a1111_addnet(path: Path) -> str:
    """A1111's definition, written independently: hash everything from 8 + N on."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[n + 8 :]).hexdigest()


@pytest.mark.parametrize("name", ["sd15-kohya-dim4-mychar", "sdxl-kohya-unetonly"])
def test_real_kohya_files_match_hashlib_and_sshs_model_hash(fixtures_dir: Path, name: str) -> None:
    path = fixtures_dir / "kohya-outputs" / f"{name}.safetensors"
    h = hash_file(path)
    data = path.read_bytes()
    assert h.sha256 == hashlib.sha256(data).hexdigest()
    assert h.addnet == a1111_addnet(path)
    header = read_header(path)
    assert h.addnet == hashlib.sha256(data[header.data_offset :]).hexdigest()
    # kohya writes the same addnet hash into the metadata as sshs_model_hash
    assert h.addnet == header.metadata["sshs_model_hash"]
    assert h.autov2 == h.sha256[:10] and h.autov2.islower()
    assert h.addnet_short == h.addnet[:12]
    assert h.lora_short == h.addnet[:12]


def test_known_values(fixtures_dir: Path) -> None:
    h = hash_file(fixtures_dir / "kohya-outputs" / "sd15-kohya-dim4-mychar.safetensors")
    assert h.autov2 == "336be815cb"
    assert h.addnet_short == "9c4a1e666816"


@pytest.mark.parametrize("chunk", [1, 7, 8, 9, 64, 1 << 20])
def test_chunk_boundaries_do_not_change_the_result(tmp_path: Path, chunk: int) -> None:
    path = tmp_path / "x.safetensors"
    write_file(path, {"a.lora_down.weight": ("F32", (3, 5)), "b": ("F16", (7,))}, {"k": "v"})
    with open(path, "r+b") as fh:  # non-zero data so the tail hash is meaningful
        fh.seek(read_header(path).data_offset)
        fh.write(bytes(range(74)))
    h = hash_file(path, chunk_size=chunk)
    assert h.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert h.addnet == a1111_addnet(path)


def test_legacy_files_get_no_addnet_hash_and_are_only_read_as_bytes(tmp_path: Path) -> None:
    # A pickle that would run code if unpickled: hashing must only read bytes.
    evil = b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR."
    path = tmp_path / "old.pt"
    path.write_bytes(evil)
    h = hash_file(path)
    assert h.addnet is None and h.addnet_short is None
    assert h.sha256 == hashlib.sha256(evil).hexdigest()
    assert h.lora_short == h.sha256[:12]  # A1111 uses the full-file hash for non-safetensors LoRAs
    assert not (tmp_path / "pwned").exists()


def test_tiny_and_bogus_files_follow_a1111(tmp_path: Path) -> None:
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x01\x02\x03")
    h = hash_file(short)
    assert h.addnet == hashlib.sha256(b"").hexdigest() == a1111_addnet(short)
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(struct.pack("<Q", 10**12) + b"x" * 100)
    assert hash_file(bogus).addnet == a1111_addnet(bogus)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    assert hash_file(empty) == FileHashes(hashlib.sha256(b"").hexdigest(), hashlib.sha256(b"").hexdigest())


@settings(max_examples=60, deadline=None)
@given(header_len=st.integers(0, 40), body=st.binary(max_size=300), chunk=st.integers(1, 64))
def test_property_any_layout(tmp_path_factory: pytest.TempPathFactory, header_len: int, body: bytes, chunk: int) -> None:
    path = tmp_path_factory.mktemp("h") / "f.safetensors"
    path.write_bytes(struct.pack("<Q", header_len) + body)
    h = hash_file(path, chunk_size=chunk)
    assert h.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert h.addnet == a1111_addnet(path)


def test_errors_are_typed(tmp_path: Path) -> None:
    with pytest.raises(HashError) as info:
        hash_file(tmp_path / "missing.safetensors")
    assert isinstance(info.value, LoraStudioError) and "missing.safetensors" in str(info.value)
    with pytest.raises(HashError):
        hash_file(tmp_path)
    if os.name == "posix" and os.geteuid() != 0:
        locked = tmp_path / "locked.safetensors"
        locked.write_bytes(b"12345678")
        locked.chmod(0)
        with pytest.raises(HashError):
            hash_file(locked)


def test_progress_and_cancel(tmp_path: Path) -> None:
    path = tmp_path / "big.safetensors"
    path.write_bytes(struct.pack("<Q", 8) + b"{}      " + os.urandom(5000))
    seen: list[tuple[int, int]] = []
    hash_file(path, chunk_size=1000, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (path.stat().st_size, path.stat().st_size)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    with pytest.raises(HashError, match="cancelled"):
        hash_file(path, chunk_size=1000, should_stop=lambda: True)


def test_autov2_helper() -> None:
    assert autov2("9C4A1E66681674A38E") == "9c4a1e6668"
