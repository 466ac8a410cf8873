"""Base-model detection: every rule on real files (synth presets written to disk, the real kohya outputs)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from factory import make_checkpoint, make_file, make_lora
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lib_lora import architecture as A
from lib_lora import synth
from lib_lora.architecture import Hints, describe, detect, detect_checkpoint, detect_lora
from lib_lora.safetensors_header import Header, read_header

F16 = "F16"


def _on_disk(tmp_path: Path, preset: str, *, rank: int = 4, metadata: dict[str, str | None] | None = None,
             hints: Hints | None = None) -> A.Detection:
    return detect(read_header(make_lora(tmp_path, preset.replace(".", "_"), preset, rank=rank, metadata=metadata)), hints)


def _hdr(tensors: synth.Tensors, metadata: dict[str, str] | None = None) -> Header:
    return Header(tensors=dict(tensors), metadata=dict(metadata or {}))


def _lora(module: str, inp: int, out: int = 320, r: int = 4, *, kernel: tuple[int, ...] = ()) -> synth.Tensors:
    return synth.lora_kohya(module, synth.Mod("x", inp, out, kernel), r)


def _peft(module: str, inp: int, out: int = 320, r: int = 4) -> synth.Tensors:
    return synth.lora_peft(module, synth.Mod("x", inp, out), r)


# --------------------------------------------------------------------------------------------------
# The real kohya outputs


def test_real_sd15_kohya_output(fixtures_dir: Path) -> None:
    det = detect(read_header(fixtures_dir / "kohya-outputs/sd15-kohya-dim4-mychar.safetensors"))
    assert det.kind == "lora"
    assert det.architecture == "sd1" and det.architecture_source == "structure" and not det.candidates
    assert det.family == "sd15"  # ss_sd_model_name sd15_random.safetensors
    assert det.adapter == "lora"
    assert det.rank == 4 and det.alpha == 2.0
    assert det.targets == ("unet", "te")
    assert det.trigger_words == ("mychar",)
    assert det.guessed_tags == ("red hat",)
    assert det.conflicts == ()
    assert describe(det) == "SD 1.5 · LoRA r4/α2 · U-Net+TE"
    assert any(e.claim == "architecture=sd1" and "768" in e.detail for e in det.evidence)


def test_real_sdxl_kohya_unet_only_output(fixtures_dir: Path) -> None:
    det = detect(read_header(fixtures_dir / "kohya-outputs/sdxl-kohya-unetonly.safetensors"))
    # sdxl_train_network.py --network_train_unet_only --network_dim 1 --network_alpha 0.5 (tests/fixtures/README.md)
    assert (det.kind, det.architecture, det.adapter, det.rank, det.alpha) == ("lora", "sdxl", "lora", 1, 0.5)
    assert det.targets == ("unet",)
    assert det.trigger_words == ("mychar",)
    assert any("2048" in e.detail and "input_blocks_4_1" in e.detail for e in det.evidence)
    assert det.family is None  # sdxl_random.safetensors names no family
    assert describe(det) == "SDXL · LoRA r1/α0.5 · U-Net"


def test_real_fixture_without_metadata_is_still_detected(fixtures_dir: Path, tmp_path: Path) -> None:
    """A1111 calls LoRAs it cannot place "SD1"; structure alone must say SDXL."""
    real = read_header(fixtures_dir / "kohya-outputs/sdxl-kohya-unetonly.safetensors")
    path = make_file(tmp_path, "stripped", real.tensors, {})
    det = detect(read_header(path))
    assert det.architecture == "sdxl" and det.architecture_source == "structure"
    assert det.alpha is None and det.extra["alpha"] == "unknown"
    assert det.rank == 1  # from the tensors, not ss_network_dim


# --------------------------------------------------------------------------------------------------
# Every synth preset, written to disk: (architecture, candidates, adapter, targets)

EXPECTED: dict[str, tuple[str, tuple[str, ...], str | None, tuple[str, ...]]] = {
    "kohya-sd1": ("sd1", (), "lora", ("unet", "te")),
    "kohya-sd1-unet": ("sd1", (), "lora", ("unet",)),
    "kohya-sd1-te": ("sd1", (), "lora", ("te",)),
    "kohya-sd2": ("sd2", (), "lora", ("unet", "te")),
    "kohya-sd2-768v": ("sd2", (), "lora", ("unet",)),
    "kohya-sdxl": ("sdxl", (), "lora", ("unet", "te1", "te2")),
    "kohya-sdxl-unet": ("sdxl", (), "lora", ("unet",)),
    "kohya-sdxl-te": ("sdxl", ("sdxl", "sd3", "sd3.5-medium", "sd3.5-large"), "lora", ("te1", "te2")),
    "kohya-sd3": ("sd3", (), "lora", ("transformer",)),
    "kohya-sd3.5-large": ("sd3.5-large", (), "lora", ("transformer",)),
    "kohya-sd3.5-medium": ("sd3.5-medium", (), "lora", ("transformer",)),
    "kohya-flux": ("flux1", (), "lora", ("transformer",)),
    "kohya-flux-te": ("flux1", (), "lora", ("transformer", "te1")),
    "kohya-chroma": ("chroma", ("flux1", "chroma"), "lora", ("transformer",)),
    "kohya-lumina2": ("lumina2", (), "lora", ("transformer",)),
    "dylora-sd1": ("sd1", (), "dylora", ("unet", "te")),
    "locon-sd1": ("sd1", (), "locon", ("unet", "te")),
    "loha-sd1": ("sd1", (), "loha", ("unet", "te")),
    "loha-sdxl": ("sdxl", (), "loha", ("unet", "te1", "te2")),
    "lokr-sd1": ("sd1", (), "lokr", ("unet", "te")),
    "lokr-sdxl": ("sdxl", (), "lokr", ("unet", "te1", "te2")),
    "dora-sd1": ("sd1", (), "dora", ("unet", "te")),
    "dora-sdxl": ("sdxl", (), "dora", ("unet", "te1", "te2")),
    "ia3-sd1": ("sd1", ("sd1", "sd2"), "ia3", ("unet", "te")),
    "oft-sd1": ("sd1", ("sd1", "sd2"), "oft", ("unet",)),
    "boft-sd1": ("sd1", ("sd1", "sd2"), "boft", ("unet",)),
    "glora-sd1": ("sd1", (), "glora", ("unet", "te")),
    "full-sd1": ("sd1", (), "full", ("unet", "te")),
    "norm-sd1": ("sd1", ("sd1", "sd2"), "norm", ("unet",)),
    "peft-sd1": ("sd1", (), "lora", ("unet", "te")),
    "peft-sdxl": ("sdxl", (), "lora", ("unet", "te1", "te2")),
    "peft-sdxl-unet-raw": ("sdxl", (), "lora", ("unet",)),
    "peft-flux": ("flux1", ("flux1", "chroma"), "lora", ("transformer",)),
    "peft-flux-norms": ("flux1", (), "lora", ("transformer",)),
    "peft-flux-bfl": ("flux1", (), "lora", ("transformer",)),
    "peft-sd3": ("sd3", (), "lora", ("transformer",)),
    "peft-sd3.5-large": ("sd3.5-large", (), "lora", ("transformer",)),
    "peft-sd3.5-medium": ("sd3.5-medium", (), "lora", ("transformer",)),
    "peft-flux2-klein": ("flux2", (), "lora", ("transformer",)),
    "peft-flux2-dev": ("flux2", (), "lora", ("transformer",)),
    "peft-auraflow": ("auraflow", (), "lora", ("transformer",)),
    "peft-pixart": ("pixart", (), "lora", ("transformer",)),
    "peft-ltx-video": ("ltx-video", (), "lora", ("transformer",)),
    "peft-hunyuan-dit": ("hunyuan-dit", (), "lora", ("transformer",)),
    "peft-wan": ("wan", (), "lora", ("transformer",)),
    "peft-hidream": ("hidream", (), "lora", ("transformer",)),
    "peft-qwen-image": ("qwen-image", (), "lora", ("transformer",)),
    "musubi-wan": ("wan", (), "lora", ("transformer",)),
    "musubi-hunyuan-video": ("hunyuan-video", (), "lora", ("transformer",)),
    "onetrainer-stable-cascade": ("stable-cascade", (), "lora", ("unet",)),
    "nometa-sd1": ("sd1", (), "lora", ("unet", "te")),
    "nometa-sdxl": ("sdxl", (), "lora", ("unet", "te1", "te2")),
    "nometa-sdxl-unet": ("sdxl", (), "lora", ("unet",)),
    "nometa-flux": ("flux1", (), "lora", ("transformer",)),
    "nometa-chroma": ("flux1", ("flux1", "chroma"), "lora", ("transformer",)),
    "wrongmeta-sdxl-as-sd1": ("sdxl", (), "lora", ("unet", "te1", "te2")),
    "wrongmeta-sd1-as-sdxl": ("sd1", (), "lora", ("unet", "te")),
    "pony-sdxl": ("sdxl", (), "lora", ("unet", "te1", "te2")),
    "illustrious-sdxl": ("sdxl", (), "lora", ("unet", "te1", "te2")),
    "noobai-sdxl": ("sdxl", (), "lora", ("unet", "te1", "te2")),
    "sdxl-base-hash": ("sdxl", (), "lora", ("unet", "te1", "te2")),
}

CHECKPOINTS: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    "ckpt-sd1": ("sd1", None, ("unet", "te")),
    "ckpt-sd2": ("sd2", None, ("unet", "te")),
    "ckpt-sdxl": ("sdxl", None, ("unet", "te1", "te2")),
    "ckpt-sdxl-refiner": ("sdxl-refiner", None, ("unet", "te")),
    "ckpt-sdxl-diffusers-unet": ("sdxl", None, ("unet",)),
    "ckpt-flux1": ("flux1", "flux1-dev", ("transformer",)),
    "ckpt-flux1-schnell": ("flux1", "flux1-schnell", ("transformer",)),
    "ckpt-flux1-comfy": ("flux1", "flux1-dev", ("transformer",)),
    "ckpt-chroma": ("chroma", None, ("transformer",)),
    "ckpt-sd3": ("sd3", None, ("transformer",)),
    "ckpt-sd3.5-large": ("sd3.5-large", None, ("transformer",)),
    "ckpt-sd3.5-medium": ("sd3.5-medium", None, ("transformer",)),
}


def test_every_preset_has_an_expectation() -> None:
    assert set(EXPECTED) | set(CHECKPOINTS) == set(synth.PRESETS)


@pytest.mark.parametrize("preset", sorted(EXPECTED))
def test_preset_detection_on_disk(preset: str, tmp_path: Path) -> None:
    arch, cands, adapter, targets = EXPECTED[preset]
    det = _on_disk(tmp_path, preset, rank=8)
    assert det.kind == "lora"
    assert det.architecture == arch
    assert det.candidates == cands
    assert det.adapter == adapter
    assert det.targets == targets
    if adapter not in ("oft", "boft", "ia3", "norm", "full"):
        assert det.rank == 8


@pytest.mark.parametrize("preset", sorted(CHECKPOINTS))
def test_checkpoint_detection_on_disk(preset: str, tmp_path: Path) -> None:
    arch, family, targets = CHECKPOINTS[preset]
    path = make_checkpoint(tmp_path, preset.replace(".", "_"), preset)
    for det in (detect(read_header(path)), detect_checkpoint(read_header(path))):
        assert (det.kind, det.architecture, det.family, det.targets) == ("checkpoint", arch, family, targets)
        assert det.adapter is None and det.rank is None


def test_key_order_does_not_matter() -> None:
    tensors, md = synth.build("kohya-sdxl", 16)
    items = list(tensors.items())
    random.Random(7).shuffle(items)
    det = detect(_hdr(dict(items), md))
    assert (det.architecture, det.targets, det.rank, det.adapter) == ("sdxl", ("unet", "te1", "te2"), 16, "lora")


# --------------------------------------------------------------------------------------------------
# U-Net rules


@pytest.mark.parametrize(("width", "arch"), [(768, "sd1"), (1024, "sd2"), (2048, "sdxl"), (1280, "sdxl-refiner")])
def test_unet_cross_attention_width_decides(width: int, arch: str) -> None:
    for module in ("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k",
                   "lora_unet_output_blocks_3_1_transformer_blocks_0_attn2_to_v"):
        assert detect(_hdr(_lora(module, width))).architecture == arch
    peft = _peft("unet.up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_k", width)
    assert detect(_hdr(peft)).architecture == arch


def test_unet_unknown_cross_attention_width_is_unknown() -> None:
    det = detect(_hdr(_lora("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k", 4096)))
    assert det.architecture == "unknown" and "4096" in det.evidence[0].detail


def test_loha_and_lokr_widths() -> None:
    m = synth.Mod("x", 2048, 640)
    for fn in (synth.loha, synth.lokr):
        t = fn("lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k", m, 4)
        assert detect(_hdr(t)).architecture == "sdxl", fn.__name__


def test_label_emb_means_sdxl_and_its_width_the_refiner() -> None:
    assert detect(_hdr(_lora("lora_unet_label_emb_0_0", 2816, 1280))).architecture == "sdxl"
    assert detect(_hdr(_lora("lora_unet_label_emb_0_0", 2560, 1536))).architecture == "sdxl-refiner"


def test_transformer_depth_two_or_more_means_sdxl() -> None:
    t = synth.oft("lora_unet_down_blocks_2_attentions_0_transformer_blocks_2_attn1_to_q", synth.Mod("x", 1280, 1280), 4)
    assert detect(_hdr(t)).architecture == "sdxl"


def test_sgm_attention_at_4_1_without_1_1_means_sdxl() -> None:
    t = synth.oft("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q", synth.Mod("x", 640, 640), 4)
    assert detect(_hdr(t)).architecture == "sdxl"
    t.update(synth.oft("lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q", synth.Mod("x", 320, 320), 4))
    assert detect(_hdr(t)).candidates == ("sd1", "sd2")


def test_diffusers_attention_in_block_1_but_not_0_means_sdxl() -> None:
    t = synth.oft("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q", synth.Mod("x", 640, 640), 4)
    assert detect(_hdr(t)).architecture == "sdxl"


def test_proj_in_convolution_means_sd1_and_linear_sd2() -> None:
    conv = _lora("lora_unet_down_blocks_0_attentions_0_proj_in", 320, kernel=(1, 1))
    assert detect(_hdr(conv)).architecture == "sd1"
    linear = _lora("lora_unet_down_blocks_0_attentions_0_proj_in", 320)
    assert detect(_hdr(linear)).architecture == "sd2"


def test_resnet_only_lora_gives_candidates_and_metadata_chooses() -> None:
    t = _lora("lora_unet_mid_block_resnets_0_conv1", 1280, 1280, kernel=(3, 3))
    det = detect(_hdr(t))
    assert det.architecture == "unknown" and det.candidates == ("sd1", "sd2", "sdxl")
    assert det.possible_architectures == ("sd1", "sd2", "sdxl")
    det = detect(_hdr(t, {"ss_base_model_version": "sdxl_base_v1-0"}))
    assert det.architecture == "sdxl" and det.architecture_source == "metadata"


# --------------------------------------------------------------------------------------------------
# Text-encoder-only rules


def test_text_encoder_only_widths() -> None:
    sd1 = synth.assemble([(synth.kohya_name("lora_te"), synth.clip_mods(1, 768))], "lora", 4)
    sd2 = synth.assemble([(synth.kohya_name("lora_te"), synth.clip_mods(1, 1024))], "lora", 4)
    xl = synth.assemble([(synth.kohya_name("lora_te1"), synth.clip_mods(1, 768)),
                         (synth.kohya_name("lora_te2"), synth.clip_mods(1, 1280))], "lora", 4)
    flux = synth.assemble([(synth.kohya_name("lora_te1"), synth.clip_mods(1, 768)),
                           (synth.kohya_name("lora_te3"), synth.t5_mods(1))], "lora", 4)
    assert detect(_hdr(sd1)).architecture == "sd1"
    assert detect(_hdr(sd2)).architecture == "sd2"
    det = detect(_hdr(xl))
    assert det.architecture == "sdxl" and "sd3" in det.candidates and det.targets == ("te1", "te2")
    det = detect(_hdr(flux))
    assert det.architecture == "flux1" and det.targets == ("te1", "te3")


def test_a_rare_component_missed_by_sampling_is_still_found() -> None:
    tensors, md = synth.build("kohya-sdxl-unet")
    tensors.update(_lora("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", 768, 768))
    det = detect(_hdr(tensors, md))
    assert det.targets == ("unet", "te1")
    tensors, md = synth.build("kohya-sd1-te")
    tensors.update(_lora("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", 768))
    det = detect(_hdr(tensors, md))
    assert det.targets == ("unet", "te") and det.architecture == "sd1"


# --------------------------------------------------------------------------------------------------
# Flux / Chroma / Flux.2 / HunyuanVideo


def _bfl(**kw: object) -> synth.Tensors:
    return synth.assemble([(synth.kohya_name("lora_unet"), synth.bfl_mods(**kw))], "lora", 4)  # type: ignore[arg-type]


def test_flux_modulation_layers_rule_out_chroma() -> None:
    det = detect(_hdr(_bfl()))
    assert (det.architecture, det.candidates, det.architecture_source) == ("flux1", (), "structure")
    det = detect(_hdr(_bfl(modulation=False)))
    assert det.candidates == ("flux1", "chroma") and det.architecture_source == "default"
    assert det.possible_architectures == ("flux1", "chroma")
    assert describe(det).startswith("Flux.1 or Chroma · ")


@pytest.mark.parametrize("md", [{"ss_base_model_version": "chroma"}, {"modelspec.architecture": "chroma/lora"},
                                {"ss_base_model_version": "flux1", "modelspec.architecture": "chroma"}])
def test_metadata_chooses_chroma_among_candidates(md: dict[str, str]) -> None:
    det = detect(_hdr(_bfl(modulation=False), md))
    if md.get("ss_base_model_version") == "flux1":
        assert det.architecture == "flux1"  # the first claim that fits wins
    else:
        assert det.architecture == "chroma" and det.architecture_source == "metadata"
        assert det.possible_architectures == ("chroma",)


def test_civitai_and_sidecar_choose_among_candidates() -> None:
    det = detect(_hdr(_bfl(modulation=False)), Hints(civitai_base_model="Chroma"))
    assert det.architecture == "chroma" and det.architecture_source == "civitai"
    det = detect(_hdr(_bfl(modulation=False)), Hints(sidecar_base="chroma", civitai_base_model="Flux.1 D"))
    assert det.architecture == "chroma" and det.architecture_source == "sidecar"


def test_metadata_claiming_chroma_on_modulated_flux_is_a_conflict() -> None:
    det = detect(_hdr(_bfl(), {"ss_base_model_version": "chroma"}))
    assert det.architecture == "flux1"
    assert len(det.conflicts) == 1 and "structure wins" in det.conflicts[0] and "Chroma" in det.conflicts[0]


def test_flux2_by_width_and_by_swiglu_mlp() -> None:
    assert detect(_hdr(_bfl(hidden=6144, double=2, single=2, mlp_ratio=3.0, modulation=False, swiglu=True))
                  ).architecture == "flux2"
    assert detect(_hdr(_bfl(hidden=3072, double=2, single=2, mlp_ratio=3.0, modulation=False, swiglu=True))
                  ).architecture == "flux2"


def test_hunyuan_video_by_names_and_by_block_count() -> None:
    assert detect(_hdr(_bfl(double=1, single=1, hunyuan_names=True))).architecture == "hunyuan-video"
    assert detect(_hdr(_bfl(double=20, single=40, modulation=False))).architecture == "hunyuan-video"
    peft = synth.assemble([(synth.dotted_name("transformer"), synth.flux_diffusers_mods(double=20, single=40))],
                          "peft", 4)
    assert detect(_hdr(peft)).architecture == "hunyuan-video"


def test_hunyuan_image_width() -> None:
    assert detect(_hdr(_bfl(hidden=3584, double=1, single=1))).architecture == "hunyuan-image"


def test_diffusers_flux_norm_layers_rule_out_chroma() -> None:
    t = synth.assemble([(synth.dotted_name("transformer"), synth.flux_diffusers_mods(double=2, single=2, norms=True))],
                       "peft", 4)
    det = detect(_hdr(t))
    assert det.architecture == "flux1" and det.candidates == ()


def test_flux_checkpoint_variants() -> None:
    t, _ = synth.build("ckpt-flux1")
    assert detect_checkpoint(_hdr(t)).family == "flux1-dev"
    t, _ = synth.build("ckpt-chroma")
    assert detect_checkpoint(_hdr(t)).architecture == "chroma"


# --------------------------------------------------------------------------------------------------
# SD3 / other DiTs


@pytest.mark.parametrize(("depth", "attn2", "arch"), [(24, (), "sd3"), (38, (), "sd3.5-large"),
                                                       (24, tuple(range(13)), "sd3.5-medium")])
def test_mmdit_width_and_attn2(depth: int, attn2: tuple[int, ...], arch: str) -> None:
    kohya = synth.assemble([(synth.kohya_name("lora_unet"), synth.mmdit_mods(depth, attn2))], "lora", 4)
    peft = synth.assemble([(synth.dotted_name("transformer"), synth.sd3_diffusers_mods(depth, attn2))], "peft", 4)
    assert detect(_hdr(kohya)).architecture == arch
    assert detect(_hdr(peft)).architecture == arch


def test_sd3_medium_without_block_zero_is_ambiguous() -> None:
    mods = [m for m in synth.mmdit_mods(24) if m.name.startswith("joint_blocks.20.")]
    det = detect(_hdr(synth.assemble([(synth.kohya_name("lora_unet"), mods)], "lora", 4)))
    assert det.candidates == ("sd3", "sd3.5-medium")
    det = detect(_hdr(synth.assemble([(synth.kohya_name("lora_unet"), mods)], "lora", 4),
                      {"ss_base_model_version": "5-medium"}))
    assert det.architecture == "sd3.5-medium"


def test_dit_attn1_width_separates_pixart_and_ltx() -> None:
    for width, arch in ((1152, "pixart"), (2048, "ltx-video")):
        t = synth.assemble([(synth.dotted_name("transformer"), synth.dit_attn12_mods(1, width, width))], "peft", 4)
        assert detect(_hdr(t)).architecture == arch
    t = synth.assemble([(synth.dotted_name("transformer"), synth.dit_attn12_mods(1, 999, 999))], "peft", 4)
    assert detect(_hdr(t)).candidates == ("pixart", "ltx-video")


def test_stable_cascade_prefix() -> None:
    t = _lora("lora_prior_unet_down_blocks_0_2_attention_attn_to_q", 2048, 2048)
    assert detect(_hdr(t)).architecture == "stable-cascade"


# --------------------------------------------------------------------------------------------------
# Adapters, rank, alpha


def test_locon_is_detected_from_conv_layers_without_metadata() -> None:
    tensors, _ = synth.build("locon-sd1")
    assert detect(_hdr(tensors)).adapter == "locon"
    # conv layers absent from the sample windows: a scan still finds them
    base, _ = synth.build("kohya-sd1")
    base.update(_lora("lora_unet_down_blocks_0_resnets_0_conv1", 320, 320, kernel=(3, 3)))
    assert detect(_hdr(base)).adapter == "locon"
    # metadata says conv_dim
    base, md = synth.build("kohya-sd1")
    md["ss_network_args"] = json.dumps({"conv_dim": "8", "conv_alpha": "1"})
    assert detect(_hdr(base, md)).adapter == "locon"
    assert detect(_hdr(*synth.build("kohya-sd1"))).adapter == "lora"


def test_locon_conv_rank_is_reported_separately() -> None:
    tensors, md = synth.build("locon-sd1", rank=16)
    det = detect(_hdr(tensors, md))
    assert det.rank == 16 and det.extra["conv_rank"] == "4"


def test_dora_and_its_base() -> None:
    det = detect(_hdr(*synth.build("dora-sdxl")))
    assert det.adapter == "dora" and det.extra["dora_base"] == "lora"
    t = synth.loha("lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k", synth.Mod("x", 2048, 640), 4)
    t["lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.dora_scale"] = (F16, (1, 2048))
    det = detect(_hdr(t))
    assert det.adapter == "dora" and det.extra["dora_base"] == "loha"


def test_dylora_from_network_module() -> None:
    det = detect(_hdr(*synth.build("dylora-sd1")))
    assert det.adapter == "dylora"
    assert any(e.claim == "adapter=dylora" and e.source == "metadata" for e in det.evidence)


def test_boft_is_4d_oft() -> None:
    assert detect(_hdr(*synth.build("boft-sd1"))).adapter == "boft"
    assert detect(_hdr(*synth.build("oft-sd1"))).adapter == "oft"
    t = {"lora_unet_down_blocks_0_attentions_0_proj_in.oft_diag": (F16, (4, 80, 80))}
    assert detect(_hdr(t)).adapter == "oft"


def test_mixed_adapters_are_listed() -> None:
    t, md = synth.build("kohya-sd1-te")
    t.update(synth.assemble([(synth.kohya_name("lora_unet"), synth.unet_attention_mods("sd-diffusers", 768,
                                                                                      conv_proj=True))], "full", 4))
    det = detect(_hdr(t, md))
    assert det.adapter in ("lora", "full")
    assert det.extra["adapters"] == "full+lora"
    assert det.architecture == "sd1"


def test_rank_is_the_most_common_inner_dimension() -> None:
    t, md = synth.build("kohya-sdxl-unet", rank=32)
    t.update(_lora("lora_unet_input_blocks_4_1_proj_in", 640, 640, r=8))
    det = detect(_hdr(t, md))
    assert det.rank == 32
    assert "rank_metadata" not in det.extra


def test_rank_from_metadata_only_when_tensors_cannot_tell_and_resized_files_flagged() -> None:
    t, md = synth.build("oft-sd1")
    assert detect(_hdr(t, md)).rank == 4  # ss_network_dim
    assert detect(_hdr(t, {})).rank is None
    t, md = synth.build("kohya-sd1", rank=8)
    md["ss_network_dim"] = "64"  # resize_lora.py keeps the old metadata
    det = detect(_hdr(t, md))
    assert det.rank == 8 and det.extra["rank_metadata"] == "64"


def test_alpha_only_from_metadata() -> None:
    t, md = synth.build("kohya-sd1", rank=16)
    assert detect(_hdr(t, md)).alpha == 8.0
    md["ss_network_alpha"] = "None"
    det = detect(_hdr(t, md))
    assert det.alpha is None and det.extra["alpha"] == "unknown"


# --------------------------------------------------------------------------------------------------
# Trigger words


def test_trigger_phrase_is_split_and_output_name_is_not_a_trigger() -> None:
    t, md = synth.build("kohya-sd1", metadata_overrides={"modelspec.trigger_phrase": "alice, blue dress ,",
                                                         "ss_output_name": "alice_v3"})
    det = detect(_hdr(t, md))
    assert det.trigger_words[:2] == ("alice", "blue dress")
    assert "alice_v3" not in det.trigger_words


def test_class_tokens_from_kohya_dataset_folders() -> None:
    t, _ = synth.build("kohya-sd1")
    md = {"ss_dataset_dirs": json.dumps({"10_mychar woman": {"n_repeats": 10, "img_count": 3},
                                          "5_style": {"n_repeats": 5, "img_count": 2}, "raw": {"n_repeats": 1}})}
    assert detect(_hdr(t, md)).trigger_words == ("mychar woman", "style")


def test_class_tokens_from_ss_datasets_when_dirs_are_missing() -> None:
    t, md = synth.build("kohya-sd1", metadata_overrides={"ss_dataset_dirs": None, "modelspec.trigger_phrase": None})
    assert detect(_hdr(t, md)).trigger_words == ("mychar",)


def test_guessed_tags_are_separate_and_ordered_by_frequency() -> None:
    t, _ = synth.build("kohya-sd1")
    md = {"ss_tag_frequency": json.dumps({"10_a": {"1girl": 30, "solo": 20, "mychar": 40}, "5_b": {"solo": 15}})}
    det = detect(_hdr(t, md))
    assert det.trigger_words == ("a", "b")
    assert det.guessed_tags == ("mychar", "solo", "1girl")


def test_broken_metadata_json_is_ignored() -> None:
    t, _ = synth.build("kohya-sd1")
    md = {"ss_tag_frequency": "{not json", "ss_dataset_dirs": "[1, 2]", "ss_network_alpha": "abc"}
    det = detect(_hdr(t, md))
    assert det.trigger_words == () and det.guessed_tags == () and det.alpha is None


# --------------------------------------------------------------------------------------------------
# Families, in order of precedence


def _sdxl(**md: str | None) -> tuple[synth.Tensors, dict[str, str]]:
    return synth.build("kohya-sdxl", metadata_overrides={"ss_sd_model_name": "merge_v3.safetensors",
                                                         "ss_new_sd_model_hash": None, **md})


def test_family_order_sidecar_civitai_hash_name_tags_filename() -> None:
    t, md = _sdxl(ss_sd_model_name="ponyDiffusionV6XL.safetensors")
    hints = Hints(sidecar_base="illustrious", civitai_base_model="NoobAI")
    assert detect(_hdr(t, md), hints).family == "illustrious"
    assert detect(_hdr(t, md), Hints(civitai_base_model="NoobAI")).family == "noobai"
    t2, md2 = _sdxl(ss_sd_model_name="ponyDiffusionV6XL.safetensors",
                    ss_new_sd_model_hash="31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b")
    assert detect(_hdr(t2, md2)).family == "sdxl-base"  # hash before name
    assert detect(_hdr(t, md)).family == "pony"  # name
    t3, md3 = _sdxl(ss_tag_frequency=json.dumps({"1_x": {"score_9": 3, "1girl": 3}}))
    assert detect(_hdr(t3, md3)).family == "pony"  # score tags
    t4, md4 = _sdxl()
    assert detect(_hdr(t4, md4)).family is None
    assert detect(_hdr(t4, md4), Hints(filename="char_IllustriousXL.safetensors")).family == "illustrious"
    assert detect(_hdr(t4, md4), Hints(folders=("sdxl", "Pony"))).family == "pony"


@pytest.mark.parametrize(("name", "family"), [
    ("ponyDiffusionV6XL_v6StartWithThisOne.safetensors", "pony"), ("prefectPonyXL_v50.safetensors", "pony"),
    ("autismmixSDXL_autismmixPony.safetensors", "pony"), ("illustriousXL_v01.safetensors", "illustrious"),
    ("waiNSFWIllustrious_v140.safetensors", "illustrious"), ("noobaiXLNAIXL_vPred10Version.safetensors", "noobai"),
    ("sd_xl_base_1.0.safetensors", "sdxl-base"), ("playground-v2.5-1024px-aesthetic.safetensors", "playground"),
    ("sdxl_lightning_4step.safetensors", "sdxl-fast"), ("juggernautXL_v9.safetensors", None),
])
def test_training_checkpoint_name_patterns(name: str, family: str | None) -> None:
    t, md = _sdxl(ss_sd_model_name=name)
    assert detect(_hdr(t, md)).family == family


@pytest.mark.parametrize(("name", "family"), [
    ("ponytail_v1.safetensors", None), ("charPDXL.safetensors", "pony"), ("style_ilxl_v2.safetensors", "illustrious"),
    ("My Pony Char.safetensors", "pony"), ("hyperrealistic.safetensors", None),
])
def test_file_name_patterns_need_word_boundaries(name: str, family: str | None) -> None:
    t, md = _sdxl()
    assert detect(_hdr(t, md), Hints(filename=name)).family == family


def test_sd1_families() -> None:
    t, md = synth.build("kohya-sd1", metadata_overrides={"ss_sd_model_name": "x.safetensors", "ss_new_sd_model_hash": None})
    assert detect(_hdr(t, md), Hints(civitai_base_model="SD 1.5 LCM")).family == "sd15-lcm"
    assert detect(_hdr(t, md), Hints(filename="Hyper-SD15-8steps-lora.safetensors")).family == "sd15-hyper"
    assert detect(_hdr(t, md)).family is None
    t, md = synth.build("kohya-sd1", metadata_overrides={
        "ss_new_sd_model_hash": "1a189f0be69d6106a48548e7626207dddd7042a418dbf372cefd05e0cdba61b6",
        "ss_sd_model_name": "x.safetensors"})
    det = detect(_hdr(t, md))
    assert det.family == "sd15" and any(e.source == "hash" for e in det.evidence)


def test_sd2_768v_family_from_kohya_version() -> None:
    det = detect(_hdr(*synth.build("kohya-sd2-768v")))
    assert det.family == "sd2-768v"


def test_family_of_another_architecture_is_ignored_with_a_conflict() -> None:
    t, md = synth.build("kohya-sd1")
    det = detect(_hdr(t, md), Hints(civitai_base_model="Pony"))
    assert det.architecture == "sd1" and det.family == "sd15"
    assert any("Civitai" in c and "SDXL" in c for c in det.conflicts)


def test_known_hash_table_for_checkpoints() -> None:
    t, _ = synth.build("ckpt-sdxl")
    sha = next(h for h, v in A.KNOWN_BASE_HASHES.items() if v[1] == "sdxl-base")
    assert detect_checkpoint(_hdr(t), Hints(sha256=sha)).family == "sdxl-base"
    assert detect_checkpoint(_hdr(t), Hints(sha256="0" * 64)).family is None
    # a known hash of another architecture says nothing
    sd1 = next(h for h, v in A.KNOWN_BASE_HASHES.items() if v[0] == "sd1")
    assert detect_checkpoint(_hdr(t), Hints(sha256=sd1)).family is None


def test_civitai_base_model_mapping() -> None:
    assert A.civitai_base("Flux.1 D") == (("flux1",), "flux1-dev")
    assert A.civitai_base("SDXL Lightning") == (("sdxl",), "sdxl-fast")
    assert A.civitai_base("Wan Video 14B t2v") == (("wan",), None)
    assert A.civitai_base("SD 3.5") == (("sd3.5-large", "sd3.5-medium"), None)
    assert A.civitai_base("Illustrious") == (("sdxl",), "illustrious")
    assert A.civitai_base("Something New") == ((), None)


# --------------------------------------------------------------------------------------------------
# Conflicts: structure wins


def test_wrong_metadata_is_reported_not_believed() -> None:
    det = detect(_hdr(*synth.build("wrongmeta-sdxl-as-sd1")))
    assert det.architecture == "sdxl" and det.architecture_source == "structure"
    assert len(det.conflicts) == 2
    assert all("the structure wins" in c and "SD 1.5" in c and "SDXL" in c for c in det.conflicts)
    det = detect(_hdr(*synth.build("wrongmeta-sd1-as-sdxl")))
    assert det.architecture == "sd1" and len(det.conflicts) == 2


def test_ss_v2_and_sidecar_sd_version_conflicts() -> None:
    t, md = synth.build("kohya-sdxl", metadata_overrides={"ss_v2": "True"})
    assert any("ss_v2" in c for c in detect(_hdr(t, md)).conflicts)
    t, md = synth.build("kohya-sdxl")
    det = detect(_hdr(t, md), Hints(sidecar_sd_version="SD1"))
    assert any('"sd version"' in c for c in det.conflicts)
    assert detect(_hdr(t, md), Hints(sidecar_sd_version="SDXL")).conflicts == ()


def test_agreeing_metadata_is_evidence_not_conflict() -> None:
    det = detect(_hdr(*synth.build("kohya-sdxl")))
    assert det.conflicts == ()
    assert any(e.source == "metadata" and e.claim == "architecture=sdxl" for e in det.evidence)


def test_unrecognised_layout_falls_back_to_metadata() -> None:
    t = _lora("lora_unet_some_new_block_0_proj", 1000, 1000)
    det = detect(_hdr(t, {"modelspec.architecture": "flux-1-dev/lora"}))
    assert det.architecture == "flux1" and det.architecture_source == "metadata"
    det = detect(_hdr(t), Hints(civitai_base_model="Flux.1 D"))
    assert det.architecture == "unknown"  # Civitai alone never decides an architecture


# --------------------------------------------------------------------------------------------------
# kind dispatch, entry points, labels


def test_kind_dispatch() -> None:
    assert detect(_hdr({})).kind == "unknown"
    emb = detect(_hdr({"emb_params": ("F32", (4, 768))}))
    assert emb.kind == "unknown" and emb.extra["content"] == "textual inversion embedding"
    vae = detect(_hdr({"encoder.conv_in.weight": (F16, (128, 3, 3, 3)), "decoder.conv_in.weight": (F16, (512, 4, 3, 3))}))
    assert vae.kind == "unknown" and vae.extra["content"] == "VAE"
    ckpt, _ = synth.build("ckpt-sd1")
    assert detect(_hdr(ckpt)).kind == "checkpoint"
    assert detect_lora(_hdr(ckpt)).kind == "unknown"
    assert detect_checkpoint(_hdr({"foo.weight": (F16, (3, 3))})).kind == "unknown"
    assert detect_lora(_hdr(*synth.build("kohya-sd1"))).kind == "lora"


def test_describe_lines() -> None:
    t, md = synth.build("pony-sdxl", rank=32)
    assert describe(detect(_hdr(t, md))) == "SDXL · Pony · LoRA r32/α16 · U-Net+TE"
    t, md = synth.build("kohya-sdxl-te", rank=8)
    assert describe(detect(_hdr(t, md))) == "SDXL · SDXL 1.0 · LoRA r8/α4 · TE"
    t, _ = synth.build("kohya-flux-te")
    assert describe(detect(_hdr(t))) == "Flux.1 · LoRA r4 · Transformer+TE1"
    assert describe(detect(_hdr(synth.build("ckpt-sdxl")[0]))) == "SDXL · checkpoint"
    assert describe(detect(_hdr({}))).startswith("Unknown · ")


def test_architecture_table_and_webuis() -> None:
    a1111 = {a for a in A.ARCHITECTURES if A.runs_in(a, A.A1111)}
    forge = {a for a in A.ARCHITECTURES if A.runs_in(a, A.FORGE)}
    assert a1111 == {"sd1", "sd2", "sdxl", "sdxl-refiner", "sd3"}
    assert forge == a1111 | {"flux1", "chroma"}
    assert A.ARCHITECTURES["flux1"].group == A.ARCHITECTURES["chroma"].group
    assert A.ARCHITECTURES["sdxl"].group != A.ARCHITECTURES["sdxl-refiner"].group
    assert A.ARCHITECTURES["wan"].media == "video"
    for fam in A.FAMILIES.values():
        assert fam.architecture in A.ARCHITECTURES
    assert A.architecture_label("sd1") == "SD 1.5" and A.architecture_label("flux1") == "Flux.1"


# --------------------------------------------------------------------------------------------------
# Robustness

_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.0123456789", min_size=0, max_size=60)
_suffixes = st.sampled_from(["", ".lora_down.weight", ".lora_up.weight", ".alpha", ".lora_A.weight", ".hada_w1_a",
                             ".hada_w1_b", ".lokr_w1", ".lokr_w2_b", ".oft_blocks", ".weight", ".diff", ".on_input",
                             ".dora_scale", ".a1.weight", ".w_norm", ".lora.down.weight"])
_prefixes = st.sampled_from(["", "lora_unet_", "lora_te_", "lora_te1_", "lora_te2_", "unet.", "transformer.",
                             "text_encoder.", "model.diffusion_model.", "lora_prior_unet_", "diffusion_model.",
                             "lora_unet_double_blocks_", "lora_unet_input_blocks_4_1_transformer_blocks_",
                             "transformer.transformer_blocks.", "lora_unet_joint_blocks_0_x_block_"])
_shapes = st.lists(st.integers(min_value=0, max_value=5000), min_size=0, max_size=4).map(tuple)
_keys = st.builds(lambda p, n, s: p + n + s, _prefixes, _names, _suffixes)
_metadata = st.dictionaries(st.sampled_from(["ss_base_model_version", "modelspec.architecture", "ss_v2",
                                             "ss_tag_frequency", "ss_dataset_dirs", "ss_network_alpha",
                                             "ss_network_dim", "ss_sd_model_name", "modelspec.trigger_phrase",
                                             "ss_network_args", "ss_datasets", "ss_new_sd_model_hash"]),
                            st.text(max_size=40), max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_keys, st.tuples(st.sampled_from(["F16", "F32", "I64"]), _shapes), max_size=60), _metadata,
       st.builds(Hints, sidecar_sd_version=st.none() | st.text(max_size=8), sidecar_base=st.none() | st.text(max_size=12),
                 civitai_base_model=st.none() | st.text(max_size=12), filename=st.none() | st.text(max_size=20)))
def test_detect_never_raises(tensors: synth.Tensors, md: dict[str, str], hints: Hints) -> None:
    header = _hdr(tensors, md)
    for fn in (detect, detect_lora, detect_checkpoint):
        det = fn(header, hints)
        assert det.kind in ("lora", "checkpoint", "unknown")
        assert det.architecture in A.ARCHITECTURES
        assert all(c in A.ARCHITECTURES for c in det.candidates)
        assert det.family is None or det.family in A.FAMILIES
        assert isinstance(describe(det), str)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(EXPECTED)), st.integers(min_value=1, max_value=128))
def test_presets_at_any_rank(preset: str, rank: int) -> None:
    det = detect(_hdr(*synth.build(preset, rank)))
    assert det.architecture == EXPECTED[preset][0]


# --------------------------------------------------------------------------------------------------
# More naming conventions and rarer rules


def test_sdxl_refiner_without_cross_attention_by_width_and_depth() -> None:
    t = _lora("lora_unet_input_blocks_4_1_transformer_blocks_3_attn1_to_q", 768, 768)
    assert detect(_hdr(t)).architecture == "sdxl-refiner"


def test_diffusers_attention_processor_names() -> None:
    base = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora"
    t = {f"{base}.down.weight": (F16, (4, 2048)), f"{base}.up.weight": (F16, (640, 4))}
    det = detect(_hdr(t))
    assert (det.kind, det.architecture, det.adapter, det.rank) == ("lora", "sdxl", "lora", 4)


def test_lycoris_prefix_with_diffusers_underscore_names() -> None:
    mods = synth.flux_diffusers_mods(double=2, single=2, norms=True)
    t = synth.assemble([(synth.kohya_name("lycoris"), mods)], "lokr", 4)
    det = detect(_hdr(t))
    assert (det.architecture, det.adapter, det.targets) == ("flux1", "lokr", ("transformer",))
    t = synth.assemble([(synth.kohya_name("lora_transformer"), synth.flux_diffusers_mods(double=2, single=2))],
                       "lora", 4)
    assert detect(_hdr(t)).candidates == ("flux1", "chroma")


def test_flux2_diffusers_names() -> None:
    t = _peft("transformer.single_transformer_blocks.0.attn.to_qkv_mlp_proj", 3072, 27648)
    t.update(_peft("transformer.transformer_blocks.0.attn.to_q", 3072, 3072))
    assert detect(_hdr(t)).architecture == "flux2"


def test_flux2_checkpoint_shared_modulation() -> None:
    t = synth.assemble([(synth.dotted_name(""), synth.bfl_mods(3072, 2, 2, 3.0, modulation=False, swiglu=True))],
                       "plain", 4)
    t["double_stream_modulation_img.lin.weight"] = (F16, (18432, 3072))
    assert detect_checkpoint(_hdr(t)).architecture == "flux2"


@pytest.mark.parametrize(("prefixes", "arch", "cands"), [
    (("lora_te2",), "sdxl", ("sdxl", "sd3")),
    (("lora_te1",), "sdxl", ("sdxl", "flux1", "sd3")),
    (("lora_te1", "lora_te2", "lora_te3"), "sd3", ("sd3", "sd3.5-medium", "sd3.5-large")),
])
def test_text_encoder_combinations(prefixes: tuple[str, ...], arch: str, cands: tuple[str, ...]) -> None:
    groups: list[synth.Group] = []
    for p in prefixes:
        mods = synth.t5_mods(1) if p == "lora_te3" else synth.clip_mods(1, 1280 if p == "lora_te2" else 768)
        groups.append((synth.kohya_name(p), mods))
    det = detect(_hdr(synth.assemble(groups, "lora", 4)))
    assert (det.architecture, det.candidates) == (arch, cands)


def test_sidecar_base_accepts_civitai_style_names() -> None:
    t, md = _sdxl()
    det = detect(_hdr(t, md), Hints(sidecar_base="Pony"))
    assert det.family == "pony" and any(e.source == "sidecar" for e in det.evidence)
