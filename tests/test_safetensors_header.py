from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lib_lora.errors import HeaderError, LoraStudioError
from lib_lora.safetensors_header import (
    MAX_HEADER_BYTES,
    Header,
    build_file_bytes,
    parse_file_bytes,
    parse_header_bytes,
    read_header,
    write_file,
)

SD15 = "kohya-outputs/sd15-kohya-dim4-mychar.safetensors"
SDXL = "kohya-outputs/sdxl-kohya-unetonly.safetensors"


def _file(tmp_path: Path, header: bytes | dict, data: bytes = b"", *, length: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    p = tmp_path / "x.safetensors"
    p.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return p


def test_reads_real_kohya_sd15_output(fixtures_dir: Path) -> None:
    h = read_header(fixtures_dir / SD15)
    assert len(h.tensors) == 792
    assert h.tensors["lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"] == ("F16", (4, 768))
    assert h.tensors["lora_te_text_model_encoder_layers_0_mlp_fc1.alpha"] == ("F16", ())
    assert h.metadata["ss_base_model_version"] == "sd_v1"
    assert h.metadata["modelspec.trigger_phrase"] == "mychar"
    assert h.data_offset == 8 + h.header_size
    assert h.file_size == (fixtures_dir / SD15).stat().st_size


def test_reads_real_kohya_sdxl_output(fixtures_dir: Path) -> None:
    h = read_header(fixtures_dir / SDXL)
    assert len(h.tensors) == 2166
    assert h.shape("lora_unet_input_blocks_4_1_proj_in.lora_down.weight") == (1, 640)  # --network_dim 1
    assert h.tensors["lora_unet_input_blocks_4_1_proj_in.lora_up.weight"] == ("F16", (640, 1))  # --save_precision fp16
    assert h.shape("missing") is None
    assert h.metadata["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert h.metadata["ss_base_model_version"] == "sdxl_base_v1-0" and h.metadata["ss_network_dim"] == "1"


def test_agrees_with_reference_safetensors_library(fixtures_dir: Path) -> None:
    safetensors = pytest.importorskip("safetensors")
    for rel in (SD15, SDXL):
        ours = read_header(fixtures_dir / rel)
        with safetensors.safe_open(str(fixtures_dir / rel), framework="numpy") as f:
            assert f.metadata() == ours.metadata
            assert set(f.keys()) == set(ours.tensors)
            for key in list(f.keys())[:50]:
                sl = f.get_slice(key)
                assert tuple(sl.get_shape()) == ours.tensors[key][1]


def test_written_files_load_in_reference_library(tmp_path: Path) -> None:
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    tensors = {"a.weight": ("F16", (4, 8)), "b.alpha": ("F32", ()), "c": ("I8", (3, 2, 1))}
    p = tmp_path / "w.safetensors"
    size = write_file(p, tensors, {"k": "v"})
    assert p.stat().st_size == size
    loaded = safetensors_numpy.load_file(str(p))
    assert loaded["a.weight"].shape == (4, 8) and loaded["a.weight"].dtype == np.float16
    assert read_header(p).tensors == {k: (d, s) for k, (d, s) in tensors.items()}
    sparse = tmp_path / "s.safetensors"
    assert write_file(sparse, tensors, sparse=True) == sparse.stat().st_size
    assert read_header(sparse).tensors == read_header(p).tensors


def test_reads_only_the_header_of_a_large_sparse_file(tmp_path: Path) -> None:
    # A 3 GB file (sparse: costs no disk) is read in one small read.
    p = tmp_path / "big.safetensors"
    write_file(p, {"w": ("F32", (750_000_000,))}, {"note": "big"}, sparse=True)
    assert p.stat().st_size > 3_000_000_000
    assert read_header(p).metadata == {"note": "big"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "only 0 bytes"),
        (b"\x05\x00\x00", "only 3 bytes"),
        (struct.pack("<Q", 50) + b"{}", "truncated: header says 50 bytes"),
        (struct.pack("<Q", MAX_HEADER_BYTES + 1) + b"{}", "exceeds the 100000000-byte limit"),
        (struct.pack("<Q", 2**63) + b"{}", "exceeds"),
        (struct.pack("<Q", 1) + b"{", "too small"),
        (struct.pack("<Q", 4) + b"\xff\xfe{}", "not valid UTF-8"),
        (struct.pack("<Q", 4) + b"[1] ", "not a JSON object"),
        (struct.pack("<Q", 4) + b"{x} ", "not valid JSON"),
        (struct.pack("<Q", 6) + b"{}{}  ", "not valid JSON"),
    ],
)
def test_rejects_malformed_files(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "bad.safetensors"
    p.write_bytes(content)
    with pytest.raises(HeaderError, match=message) as info:
        read_header(p)
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(p))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("nope", "entry is not an object"),
        ({"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}, "unknown dtype 'F99'"),
        ({"dtype": 5, "shape": [1], "data_offsets": [0, 4]}, "unknown dtype"),
        ({"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}, "shape is not a list"),
        ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}, "bad shape"),
        ({"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}, "bad shape"),
        ({"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}, "bad shape"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [0]}, "must be \\[begin, end\\]"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}, "bad data_offsets"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}, "span 8 bytes but F32 \\[1\\] needs 4"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}, "past the end of the file"),
        ({"dtype": "F4", "shape": [3], "data_offsets": [0, 1]}, "needs 1.5"),
    ],
)
def test_rejects_bad_tensor_entries(tmp_path: Path, entry: object, message: str) -> None:
    p = _file(tmp_path, {"t": entry}, b"\0" * 8)
    with pytest.raises(HeaderError, match=message):
        read_header(p)


@pytest.mark.parametrize(("value", "kind"), [({"a": 1}, "an object"), (3, "a number"), ([1], "a list"),
                                             (None, "null"), (True, "a boolean")])
def test_metadata_must_be_an_object_of_strings(tmp_path: Path, value: object, kind: str) -> None:
    """The reference loader refuses a non-string metadata value, so the WebUI cannot load such a file."""
    with pytest.raises(HeaderError, match="__metadata__ is not an object"):
        read_header(_file(tmp_path, {"__metadata__": [1]}))
    bad = _file(tmp_path, {"__metadata__": {"a": "x", "modelspec.trigger_phrase": value}})
    with pytest.raises(HeaderError) as info:
        read_header(bad)
    message = str(info.value)
    assert "metadata value is not a string" in message and "'modelspec.trigger_phrase'" in message
    assert kind in message and "WebUI cannot load" in message and "\n" not in message
    h = read_header(_file(tmp_path, {"__metadata__": {"a": "x", "b": "3"}}))
    assert h.metadata == {"a": "x", "b": "3"} and h.tensors == {}


def test_unreadable_paths_give_header_errors(tmp_path: Path) -> None:
    with pytest.raises(HeaderError, match="cannot read"):
        read_header(tmp_path / "missing.safetensors")
    with pytest.raises(HeaderError, match="is a folder"):
        read_header(tmp_path)


def test_header_error_is_a_lora_studio_error() -> None:
    assert issubclass(HeaderError, LoraStudioError)


# --- fuzzing -------------------------------------------------------------------------------------

_valid = build_file_bytes(
    {"lora_unet_x.lora_down.weight": ("F16", (4, 320)), "lora_unet_x.alpha": ("F16", ())},
    {"ss_network_dim": "4"},
)

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)
_entries = st.fixed_dictionaries(
    {},
    optional={
        "dtype": st.sampled_from(["F16", "F32", "BF16", "I8", "F4", "BOOL", "X"]) | _json_values,
        "shape": st.lists(st.integers(-2, 2**40), max_size=4) | _json_values,
        "data_offsets": st.lists(st.integers(-2, 2**40), max_size=3) | _json_values,
    },
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_only_raise_header_error(data: bytes) -> None:
    try:
        h = parse_file_bytes(data)
    except HeaderError:
        return
    assert isinstance(h, Header)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_valid) - 1), st.integers(0, 255)), min_size=1, max_size=6))
def test_fuzz_mutated_valid_file_only_raises_header_error(mutations: list[tuple[int, int]]) -> None:
    data = bytearray(_valid)
    for pos, byte in mutations:
        data[pos] = byte
    try:
        parse_file_bytes(bytes(data))
    except HeaderError:
        pass


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=10), _entries | _json_values, max_size=5), st.integers(0, 64))
def test_fuzz_structured_headers_only_raise_header_error(obj: dict, data_len: int) -> None:
    raw = json.dumps(obj).encode()
    try:
        h = parse_header_bytes(raw, file_size=8 + len(raw) + data_len)
    except HeaderError:
        return
    # Whatever is accepted is internally consistent.
    for dtype, shape in h.tensors.values():
        assert isinstance(dtype, str) and all(isinstance(d, int) and d >= 0 for d in shape)


def test_never_allocates_beyond_the_cap(tmp_path: Path) -> None:
    # The length prefix claims a huge header: refused before reading it, whatever the cap.
    p = _file(tmp_path, b"{}", length=1 << 40)
    with pytest.raises(HeaderError, match="exceeds"):
        read_header(p)
    small = _file(tmp_path, {"__metadata__": {"a": "b" * 100}})
    with pytest.raises(HeaderError, match="exceeds the 64-byte limit"):
        read_header(small, max_header_bytes=64)


def test_shapes_are_canonical_int_tuples_shared_between_tensors(tmp_path: Path) -> None:
    header = {
        "a": {"dtype": "F16", "shape": [2, 1], "data_offsets": [0, 4]},
        "b": {"dtype": "F16", "shape": [2, 1.0], "data_offsets": [4, 8]},
        "c": {"dtype": "F16", "shape": [2, 1], "data_offsets": [8, 12]},
    }
    h = read_header(_file(tmp_path, header, b"\0" * 12))
    assert {k: v for k, v in h.tensors.items()} == {k: ("F16", (2, 1)) for k in "abc"}
    assert all(type(d) is int for _, shape in h.tensors.values() for d in shape)
    assert h.tensors["a"] is h.tensors["c"]
    # The same pair with wrong offsets still gets the specific message.
    header["c"]["data_offsets"] = [8, 14]
    with pytest.raises(HeaderError, match="tensor 'c': data_offsets span 6 bytes but F16 \\[2, 1\\] needs 4"):
        read_header(_file(tmp_path, header, b"\0" * 14))


# --- hostile files ---------------------------------------------------------------------------------


def _tensor(begin: int, end: int) -> dict:
    return {"dtype": "U8", "shape": [end - begin], "data_offsets": [begin, end]}


@pytest.mark.parametrize(
    ("tensors", "data_len", "word"),
    [
        ({"a": _tensor(0, 4), "b": _tensor(2, 6)}, 6, "overlap"),
        ({"a": _tensor(0, 4), "b": _tensor(0, 4)}, 4, "overlap"),
        ({"a": _tensor(0, 4), "b": _tensor(8, 12)}, 12, "gap"),
        ({"a": _tensor(4, 8)}, 8, "gap"),
        ({"a": _tensor(0, 4)}, 8, "gap"),
        ({}, 5, "gap"),
    ],
)
def test_tensors_must_tile_the_data_section(tmp_path: Path, tensors: dict, data_len: int, word: str) -> None:
    p = _file(tmp_path, tensors, b"\0" * data_len)
    with pytest.raises(HeaderError) as info:
        read_header(p)
    text = str(info.value)
    assert word in text and "\n" not in text and text.startswith(str(p))
    with pytest.raises(HeaderError, match=word):
        parse_file_bytes(p.read_bytes())


def test_tiling_accepts_any_order_and_empty_tensors(tmp_path: Path) -> None:
    header = {"z": _tensor(4, 10), "e": _tensor(4, 4), "a": _tensor(0, 4), "f": {"dtype": "F32", "shape": [0], "data_offsets": [10, 10]}}
    h = read_header(_file(tmp_path, header, b"\0" * 10))
    assert set(h.tensors) == {"z", "e", "a", "f"}
    raw = json.dumps({"a": _tensor(0, 4)}).encode()
    assert parse_header_bytes(raw).tensors == {"a": ("U8", (4,))}  # no file size: the end is not checked
    with pytest.raises(HeaderError, match="gap"):
        parse_header_bytes(json.dumps({"a": _tensor(2, 6)}).encode())


def _torch_zip(path: Path) -> Path:
    """What ``torch.save`` writes today: a zip archive holding a pickle (built here without torch)."""
    import pickle
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"state_dict": {}}, protocol=2))
        z.writestr("archive/version", "3\n")
    return path


@pytest.mark.parametrize("kind", ["zip", 2, 3, 4, 5])
def test_torch_checkpoints_renamed_to_safetensors_are_named_and_never_opened(
        tmp_path: Path, kind: object, monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    p = tmp_path / "renamed.safetensors"
    if kind == "zip":
        _torch_zip(p)
    else:
        p.write_bytes(pickle.dumps({"lora_down.weight": list(range(100))}, protocol=int(str(kind))))

    def no_unpickle(*a: object, **k: object) -> None:
        raise AssertionError("unpickled")

    monkeypatch.setattr(pickle, "load", no_unpickle)
    monkeypatch.setattr(pickle, "loads", no_unpickle)
    with pytest.raises(HeaderError) as info:
        read_header(p)
    assert str(info.value) == f"{p}: this is a PyTorch pickle/zip checkpoint, not safetensors — never opened"
    with pytest.raises(HeaderError, match="PyTorch pickle/zip checkpoint"):
        parse_file_bytes(p.read_bytes())


def test_a_header_length_that_starts_like_pk_is_still_safetensors(tmp_path: Path) -> None:
    """0x4B50 bytes of header: the length prefix reads "PK" but the file is a valid safetensors file."""
    n = 0x4B50
    base = {"__metadata__": {"pad": ""}, "a": _tensor(0, 4)}
    pad = n - len(json.dumps(base).encode())
    base["__metadata__"]["pad"] = "x" * pad
    p = _file(tmp_path, base, b"\0" * 4)
    assert p.read_bytes()[:2] == b"PK"
    assert read_header(p).tensors == {"a": ("U8", (4,))}
