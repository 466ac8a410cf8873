"""The synthetic header factory reproduces real trainer outputs and writes valid files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factory import make_checkpoint, make_lora

from lib_lora import synth
from lib_lora.safetensors_header import header_json, read_header

#: preset -> (real kohya output in the fixtures, its network dim)
REAL = {
    "kohya-sd1": ("kohya-outputs/sd15-kohya-dim4-mychar.safetensors", 4),
    "kohya-sdxl-unet": ("kohya-outputs/sdxl-kohya-unetonly.safetensors", 1),
}


@pytest.mark.parametrize("preset", sorted(REAL))
def test_kohya_presets_match_real_outputs_key_for_key(preset: str, fixtures_dir: Path) -> None:
    name, rank = REAL[preset]
    real = read_header(fixtures_dir / name)
    tensors, metadata = synth.build(preset, rank=rank)
    assert tensors == real.tensors
    # every metadata key the real trainer wrote is there too
    assert set(real.metadata) <= set(metadata)
    for key in ("ss_network_dim", "ss_network_alpha", "ss_base_model_version", "modelspec.architecture",
                "modelspec.trigger_phrase", "ss_dataset_dirs", "ss_tag_frequency", "ss_network_module"):
        assert metadata[key] == real.metadata[key], key


@pytest.mark.parametrize("preset", sorted(synth.PRESETS))
def test_every_preset_round_trips_through_a_real_file(preset: str, tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    size = synth.write_lora(path, preset, rank=8)
    assert path.stat().st_size == size
    header = read_header(path)
    tensors, metadata = synth.build(preset, rank=8)
    assert header.tensors == tensors
    assert header.metadata == metadata
    assert tensors, preset


def test_sdxl_kohya_header_is_realistically_large() -> None:
    tensors, _ = synth.build("kohya-sdxl")
    raw, _ = header_json(tensors, {})
    assert 2_900 <= len(tensors) <= 3_000  # U-Net 2,166 + te1 216 + te2 576
    assert 300_000 < len(raw) < 500_000
    unet, _ = synth.build("kohya-sdxl-unet")
    assert len(unet) == 2_166


def test_rank_changes_lora_shapes_and_metadata() -> None:
    tensors, md = synth.build("kohya-sdxl", rank=32)
    down = tensors["lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight"]
    assert down == ("F16", (32, 2048))
    assert md["ss_network_dim"] == "32" and md["ss_network_alpha"] == "16.0"


def test_metadata_overrides_set_and_delete() -> None:
    _, md = synth.build("kohya-sd1", metadata_overrides={"ss_output_name": "other", "modelspec.trigger_phrase": None})
    assert md["ss_output_name"] == "other"
    assert "modelspec.trigger_phrase" not in md


def test_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="kohya-sd1"):
        synth.build("no-such-preset")


def test_lokr_factors_multiply_back_to_the_layer_width() -> None:
    tensors, _ = synth.build("lokr-sdxl", rank=4)
    base = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"
    w1 = tensors[f"{base}.lokr_w1"][1]
    w2b = tensors[f"{base}.lokr_w2_b"][1]
    assert w1[1] * w2b[1] == 2048
    assert w1[0] * tensors[f"{base}.lokr_w2_a"][1][0] == 640


def test_no_metadata_and_wrong_metadata_variants() -> None:
    assert synth.build("nometa-sdxl")[1] == {}
    _, md = synth.build("wrongmeta-sdxl-as-sd1")
    assert md["ss_base_model_version"] == "sd_v1"
    assert synth.build("wrongmeta-sdxl-as-sd1")[0] == synth.build("kohya-sdxl")[0]


def test_family_variants_carry_the_family_evidence() -> None:
    _, md = synth.build("pony-sdxl")
    assert "pony" in md["ss_sd_model_name"].lower()
    assert "score_9" in json.loads(md["ss_tag_frequency"])["10_mychar"]


def test_kohya_dataset_metadata_has_class_tokens() -> None:
    _, md = synth.build("kohya-sd1", metadata_overrides=None)
    datasets = json.loads(md["ss_datasets"])
    assert datasets[0]["subsets"][0]["class_tokens"] == "mychar"
    assert json.loads(md["ss_dataset_dirs"]) == {"10_mychar": {"n_repeats": 2, "img_count": 2}}


def test_factory_writes_into_subfolders(tmp_path: Path) -> None:
    p = make_lora(tmp_path, "alice", "kohya-sdxl", rank=8, subdir="chars", metadata={"ss_output_name": "alice_v2"})
    assert p == tmp_path / "chars" / "alice.safetensors"
    h = read_header(p)
    assert h.metadata["ss_output_name"] == "alice_v2"
    assert p.stat().st_blocks * 512 < p.stat().st_size  # sparse: the data is a hole
    c = make_checkpoint(tmp_path, "base", "ckpt-sdxl")
    assert "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight" in read_header(c).tensors
    with pytest.raises(ValueError):
        make_checkpoint(tmp_path, "x", "kohya-sd1")
