"""LoRA vs checkpoint compatibility levels on detections of real (synth-written) files."""

from __future__ import annotations

from pathlib import Path

import pytest
from factory import make_checkpoint, make_lora

from lib_lora import compat
from lib_lora.architecture import Detection, Hints, detect
from lib_lora.safetensors_header import read_header


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compat")


def lora(files: Path, preset: str, **hints: str) -> Detection:
    return detect(read_header(make_lora(files, preset.replace(".", "_"), preset)), Hints(**hints) if hints else None)


def ckpt(files: Path, preset: str, **hints: str) -> Detection:
    return detect(read_header(make_checkpoint(files, preset.replace(".", "_"), preset)), Hints(**hints) if hints else None)


MATRIX = [
    # (LoRA preset, LoRA hints, checkpoint preset, checkpoint hints, level)
    ("kohya-sdxl", {}, "ckpt-sdxl", {}, "exact"),
    ("kohya-sd1", {}, "ckpt-sd1", {}, "exact"),
    ("kohya-sd2", {}, "ckpt-sd2", {}, "exact"),
    ("kohya-flux", {}, "ckpt-flux1", {}, "exact"),
    ("kohya-sd3", {}, "ckpt-sd3", {}, "exact"),
    ("pony-sdxl", {}, "ckpt-sdxl", {"civitai_base_model": "Pony"}, "exact"),  # same family
    ("pony-sdxl", {}, "ckpt-sdxl", {}, "exact"),  # checkpoint family unknown: no warning
    ("pony-sdxl", {}, "ckpt-sdxl", {"civitai_base_model": "SDXL 1.0"}, "exact"),  # generic base: no warning
    ("pony-sdxl", {}, "ckpt-sdxl", {"civitai_base_model": "Illustrious"}, "cross-family"),
    ("illustrious-sdxl", {}, "ckpt-sdxl", {"filename": "noobaiXL_v11.safetensors"}, "cross-family"),
    ("kohya-flux", {}, "ckpt-flux1-schnell", {}, "cross-family"),  # dev LoRA on schnell
    ("kohya-flux", {}, "ckpt-chroma", {}, "cross-family"),  # one group
    ("kohya-chroma", {}, "ckpt-flux1", {}, "cross-family"),
    ("nometa-chroma", {}, "ckpt-chroma", {}, "exact"),  # undecided Flux.1/Chroma LoRA fits either
    ("nometa-chroma", {}, "ckpt-flux1", {}, "exact"),
    ("kohya-sd3", {}, "ckpt-sd3.5-medium", {}, "cross-family"),
    ("kohya-sdxl", {}, "ckpt-sd1", {}, "incompatible"),
    ("kohya-sd1", {}, "ckpt-sdxl", {}, "incompatible"),
    ("kohya-sd1", {}, "ckpt-sd2", {}, "incompatible"),
    ("kohya-sdxl", {}, "ckpt-sdxl-refiner", {}, "incompatible"),
    ("kohya-flux", {}, "ckpt-sdxl", {}, "incompatible"),
    ("kohya-sd3.5-large", {}, "ckpt-sd3", {}, "incompatible"),
    ("wrongmeta-sdxl-as-sd1", {}, "ckpt-sd1", {}, "incompatible"),  # structure, not metadata
    ("wrongmeta-sdxl-as-sd1", {}, "ckpt-sdxl", {}, "exact"),
]


@pytest.mark.parametrize(("lp", "lh", "cp", "ch", "level"), MATRIX,
                         ids=[f"{m[0]}{'+' if m[1] else ''}-on-{m[2]}{'+' + next(iter(m[3].values())) if m[3] else ''}"
                              for m in MATRIX])
def test_matrix(files: Path, lp: str, lh: dict[str, str], cp: str, ch: dict[str, str], level: str) -> None:
    result = compat.check(lora(files, lp, **lh), ckpt(files, cp, **ch))
    assert result.level == level, result.message
    assert result.message.endswith(".")
    assert result.loads == (level in ("exact", "cross-family"))


def test_incompatible_message_names_both_sides(files: Path) -> None:
    result = compat.check(lora(files, "kohya-sdxl"), ckpt(files, "ckpt-sd1"))
    assert result.message.startswith("SDXL LoRA on an SD 1.5 checkpoint: the loader will ignore it")


def test_cross_family_message_names_both_families(files: Path) -> None:
    result = compat.check(lora(files, "pony-sdxl"), ckpt(files, "ckpt-sdxl", civitai_base_model="Illustrious"))
    assert result.message.startswith("Pony LoRA on an Illustrious checkpoint: same SDXL architecture")


def test_unknown_levels(files: Path) -> None:
    assert compat.check(lora(files, "kohya-sdxl"), None).level == "unknown"
    empty = Detection(kind="unknown", architecture="unknown", architecture_source="none")
    assert compat.check(empty, ckpt(files, "ckpt-sdxl")).level == "unknown"
    assert compat.check(lora(files, "kohya-sdxl"), empty).level == "unknown"


def test_candidates_across_groups_are_unknown(files: Path) -> None:
    oft = lora(files, "oft-sd1")  # metadata picks sd1 among sd1/sd2
    assert compat.check(oft, ckpt(files, "ckpt-sd1")).level == "exact"
    bare = detect(read_header(make_lora(files, "oft_bare", "oft-sd1", replace_metadata={})))
    assert bare.possible_architectures == ("sd1", "sd2")
    result = compat.check(bare, ckpt(files, "ckpt-sd1"))
    assert result.level == "unknown" and "SD 1.5 or SD 2.x" in result.message
    assert compat.check(bare, ckpt(files, "ckpt-sdxl")).level == "incompatible"


def test_labels() -> None:
    assert [compat.label(level) for level in compat.LEVELS] == ["Compatible", "Other finetune", "Incompatible", "Unknown"]
    assert compat.Compat("exact", "x").label == "Compatible"
