"""Presets and training plans: every planned sd-scripts option exists in the real --help fixtures, every
value is explicit, the dataset TOML parses back with sd-scripts' keys, accelerate's own launcher parser
accepts the launcher options, and absurd values are refused with specific messages."""

from __future__ import annotations

import json
import math
import os
import shlex
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from lib_lora.errors import TrainingError
from lib_lora.train import _gen_options, sdscripts_options
from lib_lora.train.dataset import check_dataset
from lib_lora.train.plan import (
    ACCELERATE_CONFIG,
    DATASET_TOML,
    SAMPLE_PROMPTS,
    JobSpec,
    TrainingPlan,
    default_output_name,
    display_command,
    make_plan,
    toml_string,
    validate_output_name,
    validate_trigger,
)
from lib_lora.train.presets import (
    BASES,
    KINDS,
    PRESET_NAMES,
    all_presets,
    auto_steps,
    base_for,
    fast_batch_size,
    query_free_vram_bytes,
    resolve_preset,
    scaled_learning_rate,
    validate_hyperparameters,
)

try:  # the standard library's reader from 3.11, its backport "tomli" on 3.10
    import tomllib as _toml_reader
except ImportError:  # pragma: no cover - 3.10
    try:
        import tomli as _toml_reader  # type: ignore[no-redef]
    except ImportError:
        _toml_reader = None  # type: ignore[assignment]


class tomllib:
    @staticmethod
    def loads(text: str) -> dict:
        if _toml_reader is None:
            pytest.skip("no TOML reader: Python 3.11's tomllib or the tomli package is needed")
        return _toml_reader.loads(text)

GiB = 1024**3
HELP_FILES = {
    "train_network.py": "train_network.txt",
    "sdxl_train_network.py": "sdxl_train_network.txt",
    "flux_train_network.py": "flux_train_network.txt",
    "sd3_train_network.py": "sd3_train_network.txt",
}

# Keys sd-scripts' library/config_util.py (ConfigSanitizer, pinned commit) accepts in a DreamBooth-style
# dataset config with caption dropout support (train_network.py builds it with support_dropout=True).
SUBSET_ASCENDABLE = {
    "color_aug", "face_crop_aug_range", "flip_aug", "num_repeats", "random_crop", "shuffle_caption", "keep_tokens",
    "keep_tokens_separator", "secondary_separator", "caption_separator", "enable_wildcard", "token_warmup_min",
    "token_warmup_step", "caption_prefix", "caption_suffix", "custom_attributes", "resize_interpolation",
}  # fmt: skip
DROPOUT = {"caption_dropout_every_n_epochs", "caption_dropout_rate", "caption_tag_dropout_rate"}
DB_SUBSET_ASCENDABLE = {"caption_extension", "class_tokens", "cache_info"}
DB_SUBSET_DISTINCT = {"image_dir", "is_reg", "alpha_mask"}
DATASET_ASCENDABLE = {
    "batch_size", "bucket_no_upscale", "bucket_reso_steps", "enable_bucket", "max_bucket_reso", "min_bucket_reso",
    "validation_seed", "validation_split", "resolution", "network_multiplier", "resize_interpolation",
}  # fmt: skip
GENERAL_KEYS = DATASET_ASCENDABLE | SUBSET_ASCENDABLE | DB_SUBSET_ASCENDABLE | DROPOUT
DATASET_KEYS = GENERAL_KEYS | {"subsets"}
SUBSET_KEYS = SUBSET_ASCENDABLE | DB_SUBSET_DISTINCT | DB_SUBSET_ASCENDABLE | DROPOUT

#: the sd-scripts defaults that bite (caption extension, learning rate, alpha, steps, workers) and the rest of what every plan must state explicitly
ALWAYS_EXPLICIT = (
    "--pretrained_model_name_or_path", "--dataset_config", "--resolution", "--caption_extension",
    "--train_batch_size", "--output_dir", "--output_name", "--save_model_as", "--save_precision",
    "--network_module", "--network_dim", "--network_alpha", "--learning_rate", "--unet_lr", "--optimizer_type",
    "--max_grad_norm", "--lr_scheduler", "--lr_warmup_steps", "--max_train_steps", "--mixed_precision", "--seed",
    "--max_data_loader_n_workers", "--cache_latents", "--vae_batch_size", "--sdpa", "--sample_prompts",
    "--sample_every_n_steps", "--sample_sampler", "--metadata_title", "--metadata_trigger_phrase",
    "--training_comment", "--console_log_simple",
)  # fmt: skip


# -- fixtures ---------------------------------------------------------------------------------------------------


def _images(folder: Path, n: int, size=(512, 512), caption="mychar, photo") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rng = np.random.default_rng(i)
        Image.fromarray((rng.random((4, 4, 3)) * 255).astype(np.uint8)).resize(size).save(
            folder / f"{i:03d}.png", compress_level=1
        )
        (folder / f"{i:03d}.txt").write_text(caption, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def flat_dir(tmp_path_factory) -> Path:
    return _images(tmp_path_factory.mktemp("ds") / "my data \"quoted\" ü", 20)


@pytest.fixture(scope="module")
def reports(flat_dir):
    return {arch: check_dataset(flat_dir, "mychar", arch) for arch in ("sd1", "sdxl", "flux1")}


@pytest.fixture
def ckpt(tmp_path) -> Path:
    p = tmp_path / "models dir" / "base model.safetensors"
    p.parent.mkdir()
    p.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    return p


@pytest.fixture
def flux_models(tmp_path) -> dict[str, str]:
    out = {}
    for k in ("clip_l", "t5xxl", "ae"):
        p = tmp_path / f"{k}.safetensors"
        p.write_bytes(b"x")
        out[k] = str(p)
    return out


def plan_for(reports, ckpt, tmp_path, preset="default", base="sd15", kind="character", **kw) -> TrainingPlan:
    profile = BASES[base]
    kw.setdefault("sd_scripts_dir", str(tmp_path / "sd scripts"))
    kw.setdefault("trainer_python", str(tmp_path / "venv" / "bin" / "python"))
    return make_plan(
        reports[profile.arch],
        ckpt,
        profile.arch,
        "mychar",
        preset,
        tmp_path / "out dir",
        kind=kind,
        family=base,
        **kw,
    )


def opt(args, name):
    """The value after ``name`` in an argv."""
    args = list(args)
    assert name in args, f"{name} missing from {args}"
    return args[args.index(name) + 1]


# -- the option table --------------------------------------------------------------------------------------------


def test_committed_option_table_equals_generator_output(fixtures_dir):
    committed = Path(sdscripts_options.OPTIONS_FILE).read_text(encoding="utf-8")
    assert committed == _gen_options.render(fixtures_dir / "sd-scripts-help"), (
        "lib_lora/train/sdscripts_options.json is stale: regenerate it with "
        "python -m lib_lora.train._gen_options tests/fixtures/sd-scripts-help"
    )


@pytest.mark.parametrize("script, help_file", sorted(HELP_FILES.items()))
def test_option_section_and_usage_agree(fixtures_dir, script, help_file):
    text = (fixtures_dir / "sd-scripts-help" / help_file).read_text(encoding="utf-8")
    parsed = _gen_options.parse_help(text)
    assert set(parsed) == _gen_options.usage_option_names(text)
    assert len(parsed) > 150
    table = sdscripts_options.for_script(script)
    assert set(table.options) == set(parsed)


def test_option_specs_are_read_correctly():
    t = sdscripts_options.for_script("train_network.py").options
    assert t["--cache_latents"].takes_value is False
    assert t["--seed"].takes_value is True and t["--seed"].choices is None
    assert t["--mixed_precision"].choices == ("no", "fp16", "bf16")
    assert t["--optimizer_args"].multiple is True
    assert "cudagraphs" in (t["--dynamo_backend"].choices or ())
    assert "--cache_text_encoder_outputs" not in t  # SD1.x cannot cache text-encoder outputs
    assert "--cache_text_encoder_outputs" in sdscripts_options.for_script("sdxl_train_network.py").options
    assert "--t5xxl" in sdscripts_options.for_script("flux_train_network.py").options
    with pytest.raises(TrainingError, match="unknown sd-scripts"):
        sdscripts_options.for_script("train_everything.py")


def test_check_args_finds_each_kind_of_mistake():
    check = sdscripts_options.check_args
    assert check("train_network.py", ["--seed", "1", "--cache_latents", "--optimizer_args", "a=1", "b=2"]) == []
    assert check("train_network.py", ["--seed=1"]) == []
    assert "unknown option --sed" in check("train_network.py", ["--sed", "1"])[0]
    assert "is a flag" in check("train_network.py", ["--cache_latents", "yes"])[0]
    assert "takes exactly one value" in check("train_network.py", ["--seed"])[0]
    assert "not one of" in check("train_network.py", ["--mixed_precision", "fp32"])[0]
    assert "needs at least one value" in check("train_network.py", ["--optimizer_args"])[0]
    assert "without an option" in check("train_network.py", ["stray"])[0]
    assert check("train_network.py", ["--cache_text_encoder_outputs"])  # SDXL-only option


# -- presets ------------------------------------------------------------------------------------------------------


def test_every_preset_resolves_with_sane_values():
    presets = all_presets()
    assert len(presets) == len(PRESET_NAMES) * len(BASES) * len(KINDS)
    for p in presets:
        validate_hyperparameters(
            learning_rate=p.learning_rate,
            text_encoder_lr=p.text_encoder_lr,
            steps=1000,
            batch_size=p.batch_size,
            network_dim=p.network_dim,
            network_alpha=p.network_alpha,
            resolution=p.resolution,
            lr_scheduler=p.lr_scheduler,
            mixed_precision=p.mixed_precision,
        )
        if p.cache_text_encoder_outputs:
            assert p.train_unet_only and not p.shuffle_caption, p.id
            assert p.base.supports_te_cache, p.id


def test_recipe_values():
    p = resolve_preset("default", "sd15", "character")
    assert (p.batch_size, p.learning_rate, p.network_dim, p.network_alpha) == (2, 1e-4, 32, 16)
    assert (p.resolution, p.optimizer_type, p.mixed_precision, p.cache_latents, p.sdpa) == (512, "AdamW", "bf16", True, True)
    s = resolve_preset("default", "sdxl", "style")
    assert (s.network_dim, s.network_alpha, s.resolution, s.gradient_checkpointing, s.flip_aug) == (64, 32, 1024, True, True)
    assert resolve_preset("default", "sdxl", "concept").lr_scheduler == "constant"
    assert resolve_preset("default", "sdxl", "concept").lr_warmup_ratio == 0
    gui = resolve_preset("gui-defaults", "sd15", "character")
    assert (gui.batch_size, gui.network_dim, gui.network_alpha, gui.mixed_precision) == (1, 8, 1, "fp16")
    assert (gui.optimizer_type, gui.cache_latents, gui.sdpa) == ("AdamW", True, True)
    assert resolve_preset("gui-defaults", "sdxl", "character").no_half_vae


def test_fast_preset():
    sd = resolve_preset("fast", "sd15", "character", free_vram_bytes=80 * GiB)
    assert sd.torch_compile and sd.dynamo_backend == "cudagraphs"
    assert sd.train_unet_only and sd.optimizer_args == ("fused=True",) and sd.mixed_precision == "bf16"
    assert not sd.cache_text_encoder_outputs  # not possible for SD1.x
    xl = resolve_preset("fast", "sdxl", "character", free_vram_bytes=80 * GiB)
    assert xl.cache_text_encoder_outputs and not xl.shuffle_caption and not xl.gradient_checkpointing
    assert xl.learning_rate == pytest.approx(1e-4 * math.sqrt(xl.batch_size / 2))
    flux = resolve_preset("fast", "flux1", "character", free_vram_bytes=80 * GiB)
    assert not flux.torch_compile and flux.gradient_checkpointing and flux.cache_text_encoder_outputs
    assert any("batch" in n for n in sd.notes) and any("sqrt" in n for n in sd.notes)


def test_fast_batch_size_follows_free_vram():
    assert fast_batch_size(None, "sd15") == 2
    sizes = [fast_batch_size(g * GiB, "sd15") for g in (6, 8, 12, 24, 48, 80)]
    assert sizes == sorted(sizes) and sizes[0] == 1 and sizes[-1] == 16
    assert fast_batch_size(80 * GiB, "sdxl") == 8
    assert fast_batch_size(24 * GiB, "sdxl") == 1
    assert fast_batch_size(80 * GiB, "flux1") <= 4
    assert fast_batch_size(80 * GiB, "sd15", resolution=1024) < fast_batch_size(80 * GiB, "sd15")
    assert fast_batch_size(80 * GiB, "sd15", image_count=10) == 4  # two full batches per pass
    assert fast_batch_size(80 * GiB, "pony") == fast_batch_size(80 * GiB, "sdxl")
    with pytest.raises(TrainingError):
        fast_batch_size(-1, "sd15")


def test_lr_scaling_and_auto_steps():
    assert scaled_learning_rate(1e-4, 2) == pytest.approx(1e-4)
    assert scaled_learning_rate(1e-4, 8) == pytest.approx(2e-4)
    assert auto_steps(30, 2) == 1350  # images × 45 at batch 2 (images seen = images × 90)
    assert auto_steps(30, 8) == math.ceil(30 * 90 / 8)
    assert auto_steps(1, 256) == 1
    with pytest.raises(TrainingError):
        auto_steps(0, 2)


def test_base_aliases():
    assert base_for("sd1").id == "sd15"
    assert base_for("sdxl", "pony").id == "pony"
    assert base_for("sdxl", "NoobAI").id == "illustrious"
    assert base_for("sdxl", "sd15").id == "sdxl"  # a family of another architecture is ignored
    assert base_for("flux1").script == "flux_train_network.py"
    with pytest.raises(TrainingError, match="SD2"):
        base_for("sd2")
    with pytest.raises(TrainingError, match="unknown preset"):
        resolve_preset("turbo", "sd15")
    with pytest.raises(TrainingError, match="kind"):
        resolve_preset("default", "sd15", "landscape")


VALID = dict(learning_rate=1e-4, steps=1000, batch_size=2, network_dim=32, network_alpha=16, resolution=512)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"learning_rate": 0}, "learning rate 0 is outside"),
        ({"learning_rate": -1e-4}, "learning rate"),
        ({"learning_rate": 0.5}, "learning rate 0.5 is outside"),
        ({"learning_rate": float("nan")}, "finite"),
        ({"learning_rate": "1e-4"}, "must be a number"),
        ({"text_encoder_lr": 1.0}, "text encoder learning rate"),
        ({"steps": 0}, "steps 0 is outside"),
        ({"steps": 200_001}, "steps 200001 is outside"),
        ({"steps": 10.5}, "whole number"),
        ({"steps": True}, "whole number"),
        ({"batch_size": 0}, "batch size 0"),
        ({"batch_size": 257}, "batch size 257"),
        ({"network_dim": 0}, "network dim 0"),
        ({"network_dim": 2048}, "network dim 2048"),
        ({"network_alpha": 0}, "network alpha"),
        ({"resolution": 500}, "not a multiple of 64"),
        ({"resolution": 8192}, "outside"),
        ({"repeats": 0}, "repeats 0"),
        ({"seed": -1}, "seed -1"),
        ({"lr_scheduler": "warp"}, "unknown learning-rate scheduler"),
        ({"lr_scheduler": "constant", "lr_warmup_steps": 10}, "takes no warm-up"),
        ({"lr_warmup_steps": 1000}, "warm-up steps 1000"),
        ({"mixed_precision": "fp8"}, "mixed precision"),
        ({"save_every_n_steps": 0}, "save every N steps"),
    ],
)
def test_absurd_values_are_refused(change, message):
    with pytest.raises(TrainingError, match=message.replace("(", r"\(")):
        validate_hyperparameters(**{**VALID, **change})


def _fake_nvidia_smi(tmp_path, body: str) -> str:
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    exe = d / "nvidia-smi"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(d)


@pytest.mark.skipif(os.name == "nt", reason="uses a shell script as a stand-in nvidia-smi")
def test_query_free_vram_with_a_stand_in_nvidia_smi(tmp_path, monkeypatch):
    bin_dir = _fake_nvidia_smi(tmp_path, 'echo "$@" > "${0%/*}/args"; echo 81000')
    monkeypatch.setenv("PATH", bin_dir)
    assert query_free_vram_bytes(1) == 81000 * 1024 * 1024
    assert "--id=1" in (Path(bin_dir) / "args").read_text()
    (Path(bin_dir) / "nvidia-smi").write_text("#!/bin/sh\necho 'No devices were found'\nexit 6\n")
    assert query_free_vram_bytes(0) is None
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert query_free_vram_bytes(0) is None


# -- plans: every option real, every value explicit ----------------------------------------------------------------


ALL_COMBOS = [(n, b, k) for n in PRESET_NAMES for b in BASES for k in KINDS]


@pytest.mark.parametrize("preset, base, kind", ALL_COMBOS)
def test_every_plan_uses_only_real_options_with_explicit_values(
    fixtures_dir, reports, ckpt, tmp_path, flux_models, preset, base, kind
):
    plan = plan_for(
        reports, ckpt, tmp_path, preset, base, kind, free_vram_bytes=80 * GiB,
        flux_models=flux_models if BASES[base].arch == "flux1" else None,
    )  # fmt: skip
    args = plan.script_args()
    help_text = (fixtures_dir / "sd-scripts-help" / HELP_FILES[plan.script]).read_text(encoding="utf-8")
    real = _gen_options.parse_help(help_text)
    used = [a for a in args if a.startswith("--")]
    assert set(used) <= set(real), set(used) - set(real)
    assert sdscripts_options.check_args(plan.script, args) == []
    for name in ALWAYS_EXPLICIT:
        assert name in used, f"{name} not explicit in {plan.preset.id}"
    assert "--train_data_dir" not in used  # the exit-0 trap
    assert len(used) == len(set(used)), "an option is given twice"
    # mixed precision goes to the script and to accelerate, the same value
    assert opt(args, "--mixed_precision") == opt(plan.accelerate_args(), "--mixed_precision") == plan.mixed_precision
    # values as sd-scripts parses them
    assert float(opt(args, "--learning_rate")) == pytest.approx(plan.learning_rate)
    assert int(opt(args, "--max_train_steps")) == plan.max_train_steps
    assert opt(args, "--caption_extension") == ".txt"
    assert float(opt(args, "--network_alpha")) == plan.network_alpha
    assert opt(args, "--metadata_trigger_phrase") == "mychar"
    if plan.preset.base.arch == "flux1":
        assert opt(args, "--network_module") == "networks.lora_flux"
        assert opt(args, "--t5xxl") == flux_models["t5xxl"]
    if plan.preset.cache_text_encoder_outputs:
        assert "--network_train_unet_only" in used and "--text_encoder_lr" not in used
    if plan.preset.name == "fast" and plan.preset.base.arch != "flux1":
        assert opt(args, "--dynamo_backend") == "cudagraphs" and "--torch_compile" in used
        assert opt(args, "--optimizer_args") == "fused=True"


def test_images_seen_is_the_same_across_presets(reports, ckpt, tmp_path):
    seen = {}
    for preset in PRESET_NAMES:
        plan = plan_for(reports, ckpt, tmp_path, preset, free_vram_bytes=80 * GiB)
        seen[preset] = plan.images_seen
        assert plan.steps_auto
    target = 20 * 90
    for preset, n in seen.items():
        batch = plan_for(reports, ckpt, tmp_path, preset, free_vram_bytes=80 * GiB).batch_size
        assert target <= n < target + batch, (preset, n)


def test_plan_paths_are_absolute_and_command_is_an_argv(reports, ckpt, tmp_path, flat_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = make_plan(
        reports["sd1"], os.path.relpath(ckpt), "sd1", "mychar", output_dir="rel out", sd_scripts_dir="sd", trainer_python="venv/bin/python"
    )  # fmt: skip
    spec = plan.job_spec()
    assert isinstance(spec.command, tuple) and all(isinstance(a, str) for a in spec.command)
    assert spec.command[:3] == (str(tmp_path / "venv" / "bin" / "python"), "-m", "accelerate.commands.launch")
    assert opt(spec.command, "--pretrained_model_name_or_path") == str(ckpt)  # the space stays inside one argument
    assert opt(spec.command, "--output_dir") == str(tmp_path / "rel out")
    assert spec.cwd == str(tmp_path / "sd")
    assert str(tmp_path / "sd" / "train_network.py") in spec.command
    assert shlex.split(display_command(spec)) == list(spec.command)
    assert spec.sample_dir == str(tmp_path / "rel out" / "sample")
    assert spec.total_steps == plan.max_train_steps == 900
    assert spec.save_every_n_steps == 100
    assert spec.env["PYTHONUNBUFFERED"] == "1" and spec.env["COLUMNS"] == "200"
    assert spec.env["CUDA_VISIBLE_DEVICES"] == "0"
    assert "HF_HUB_OFFLINE" not in spec.env
    assert any("sd-scripts not found" in w for w in plan.warnings)


def test_write_files_and_resume(reports, ckpt, tmp_path):
    plan = plan_for(reports, ckpt, tmp_path)
    job = tmp_path / "job dir ✓"
    spec = plan.write_files(job)
    assert isinstance(spec, JobSpec) and spec.job_dir == str(job)
    for name in (DATASET_TOML, SAMPLE_PROMPTS, ACCELERATE_CONFIG, "plan.json"):
        assert (job / name).is_file()
    assert opt(spec.command, "--dataset_config") == str(job / DATASET_TOML)
    assert opt(spec.command, "--sample_prompts") == str(job / SAMPLE_PROMPTS)
    assert opt(spec.command, "--config_file") == str(job / ACCELERATE_CONFIG)
    record = json.loads((job / "plan.json").read_text(encoding="utf-8"))
    assert record["trigger"] == "mychar" and record["preset"]["id"] == "default/sd15/character"
    assert (job / DATASET_TOML).read_bytes().isascii()
    state = tmp_path / "out dir" / "mychar-step00000100-state"
    with pytest.raises(TrainingError, match="not found"):
        plan.with_resume(state)
    state.mkdir(parents=True)
    resumed = plan.with_resume(state).job_spec(str(job))
    assert opt(resumed.command, "--resume") == str(state)
    assert resumed.resume_state_dir == str(state)
    assert "--skip_until_initial_step" not in resumed.command  # the state does not say its step
    # sd-scripts' own train_state.json: the step is skipped instead of counted from 0 again
    (state / "train_state.json").write_text(json.dumps({"current_epoch": 1, "current_step": 100}))
    resumed = plan.with_resume(state)
    assert resumed.resume_from_step == 100 and "--skip_until_initial_step" in resumed.script_args()
    assert sdscripts_options.check_args("train_network.py", resumed.script_args()) == []
    (state / "train_state.json").write_text(json.dumps({"current_epoch": 9, "current_step": plan.max_train_steps}))
    with pytest.raises(TrainingError, match="nothing left"):
        plan.with_resume(state)


def test_offline_and_tokenizer_cache(reports, ckpt, tmp_path, fixtures_dir):
    cache = tmp_path / "tokenizers"
    (cache / "openai_clip-vit-large-patch14").mkdir(parents=True)
    plan = plan_for(reports, ckpt, tmp_path, offline=True, tokenizer_cache_dir=cache)
    assert plan.job_spec().env["HF_HUB_OFFLINE"] == "1"
    assert opt(plan.script_args(), "--tokenizer_cache_dir") == str(cache)
    assert not any("lacks" in w or "without a tokenizer cache" in w for w in plan.warnings)
    xl = plan_for(reports, ckpt, tmp_path, base="sdxl", offline=True, tokenizer_cache_dir=cache)
    assert any("laion_CLIP-ViT-bigG-14-laion2B-39B-b160k" in w for w in xl.warnings)
    bare = plan_for(reports, ckpt, tmp_path, offline=True)
    assert any("without a tokenizer cache" in w for w in bare.warnings)


# -- dataset TOML ----------------------------------------------------------------------------------------------------


def test_dataset_toml_parses_back_with_sd_scripts_keys(reports, ckpt, tmp_path, flat_dir):
    plan = plan_for(reports, ckpt, tmp_path)
    doc = tomllib.loads(plan.dataset_toml())
    assert set(doc) == {"general", "datasets"}
    assert set(doc["general"]) <= GENERAL_KEYS
    (ds,) = doc["datasets"]
    assert set(ds) <= DATASET_KEYS
    (sub,) = ds["subsets"]
    assert set(sub) <= SUBSET_KEYS
    # the flat folder itself is the image_dir: never its parent, so "No data found / exit 0" cannot happen
    assert sub["image_dir"] == str(flat_dir)
    assert sub["class_tokens"] == "mychar" and sub["num_repeats"] == 10
    assert doc["general"]["caption_extension"] == ".txt"
    assert ds["resolution"] == 512 and ds["batch_size"] == 2
    assert doc["general"]["enable_bucket"] is True and doc["general"]["bucket_reso_steps"] == 64
    assert doc["general"]["min_bucket_reso"] == 256 and doc["general"]["max_bucket_reso"] == 1024


def test_kohya_layout_gives_one_subset_per_repeat_folder(ckpt, tmp_path):
    parent = tmp_path / "train"
    _images(parent / "10_mychar", 12)
    _images(parent / "2_mychar night", 6)
    report = check_dataset(parent, "mychar", "sdxl")
    plan = make_plan(report, ckpt, "sdxl", "mychar", output_dir=tmp_path / "o")
    doc = tomllib.loads(plan.dataset_toml())
    subs = {(Path(s["image_dir"]).name, s["num_repeats"], s["class_tokens"]) for s in doc["datasets"][0]["subsets"]}
    assert subs == {("10_mychar", 10, "mychar"), ("2_mychar night", 2, "mychar night")}
    assert plan.image_count == 18 and plan.epoch_images == 132
    assert doc["general"]["max_bucket_reso"] == 2048
    with pytest.raises(TrainingError, match="folder names"):
        make_plan(report, ckpt, "sdxl", "mychar", overrides={"repeats": 3})


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_toml_string_round_trips(text):
    encoded = toml_string(text)
    assert encoded.isascii()
    assert tomllib.loads(f"k = {encoded}")["k"] == text


def test_toml_strings_read_by_the_toml_package_sd_scripts_uses():
    toml = pytest.importorskip("toml")  # sd-scripts reads its dataset config with toml 0.10.2
    for text in ['C:\\Users\\me\\My "LoRA" data', "ü é 🎨 日本語", "tab\there", "/plain/path", "back\\slash\\"]:
        assert toml.loads(f"k = {toml_string(text)}")["k"] == text


def test_undecodable_path_is_refused():
    with pytest.raises(TrainingError, match="not valid Unicode"):
        toml_string("bad\udcff name")


# -- sample prompts ---------------------------------------------------------------------------------------------------


def kohya_prompt(line: str) -> dict[str, str]:
    """How sd-scripts' line_to_prompt_dict splits a prompt line (`` --`` separates options)."""
    parts = line.split(" --")
    out = {"prompt": parts[0]}
    for p in parts[1:]:
        key, _, value = p.partition(" ")
        out[key] = value
    return out


@pytest.mark.parametrize("base", sorted(BASES))
def test_sample_prompts(reports, ckpt, tmp_path, flux_models, base):
    plan = plan_for(reports, ckpt, tmp_path, base=base, flux_models=flux_models if base == "flux1" else None)
    lines = [ln for ln in plan.sample_prompts().splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(lines) == 5
    prompts = [kohya_prompt(ln) for ln in lines]
    assert len({p["prompt"] for p in prompts}) == 5
    for p in prompts:
        assert "mychar" in p["prompt"]
        assert int(p["w"]) % 64 == 0 and int(p["h"]) % 64 == 0
        assert {"w", "h", "d", "l", "s"} <= set(p)
        if base == "pony":
            assert p["prompt"].startswith("score_9, score_8_up, score_7_up, ") and "score_4" in p["n"]
        if base == "flux1":
            assert "n" not in p and p["g"] == "3.5"
        else:
            assert p["n"]
    assert {(p["w"], p["h"]) for p in prompts} >= {(str(plan.resolution), str(plan.resolution))}
    assert len({(p["w"], p["h"]) for p in prompts}) == 3  # square, portrait, landscape


# -- accelerate --------------------------------------------------------------------------------------------------------


def _accelerate():
    pytest.importorskip("torch")
    return pytest.importorskip("accelerate.commands.launch")


def test_accelerate_parser_accepts_the_launch_options(reports, ckpt, tmp_path):
    launch = _accelerate()
    from accelerate.commands.config.config_args import load_config_from_file

    plan = plan_for(reports, ckpt, tmp_path)
    spec = plan.write_files(tmp_path / "job")
    launcher_args = list(spec.command[3:])
    args = launch.launch_command_parser().parse_args(launcher_args)
    assert args.training_script == plan.script_path
    assert args.training_script_args == list(plan.script_args(str(tmp_path / "job")))
    assert (args.num_processes, args.num_machines, args.mixed_precision, args.gpu_ids) == (1, 1, "bf16", "0")
    cfg = load_config_from_file(args.config_file)
    assert cfg.distributed_type.value == "NO" and cfg.mixed_precision == "bf16"
    if hasattr(launch, "_validate_launch_command"):
        checked, _defaults, _mp = launch._validate_launch_command(args)
        assert not checked.multi_gpu and not checked.use_deepspeed and not checked.use_fsdp


def test_multi_gpu_plan(reports, ckpt, tmp_path):
    plan = plan_for(reports, ckpt, tmp_path, gpu_ids=[2, 3], main_process_port=29611)
    single = plan_for(reports, ckpt, tmp_path)
    acc = plan.accelerate_args()
    assert "--multi_gpu" in acc and opt(acc, "--num_processes") == "2" and opt(acc, "--gpu_ids") == "2,3"
    assert opt(acc, "--main_process_port") == "29611"
    assert plan.job_spec().env["CUDA_VISIBLE_DEVICES"] == "2,3"
    assert plan.max_train_steps == math.ceil(single.max_train_steps / 2)  # the same images seen
    assert "--ddp_gradient_as_bucket_view" in plan.script_args()
    assert plan.accelerate_config()["distributed_type"] == "MULTI_GPU"
    with pytest.raises(TrainingError, match="one process per GPU"):
        plan_for(reports, ckpt, tmp_path, gpu_ids=[0, 1], num_processes=3)
    with pytest.raises(TrainingError, match="twice"):
        plan_for(reports, ckpt, tmp_path, gpu_ids=[0, 0])
    with pytest.raises(TrainingError, match="GPU id"):
        plan_for(reports, ckpt, tmp_path, gpu_ids=[-1])
    launch = pytest.importorskip("accelerate.commands.launch") if _has_torch() else None
    if launch is not None:
        spec = plan.write_files(tmp_path / "job2")
        args = launch.launch_command_parser().parse_args(list(spec.command[3:]))
        checked, _d, _m = launch._validate_launch_command(args)
        assert checked.multi_gpu and checked.num_processes == 2 and checked.gpu_ids == "2,3"


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# -- refusals ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "trigger, message",
    [
        ("", "empty"),
        ("a\nb", "line break"),
        ("my--char", "'--'"),
        ("#tag", "'#'"),
        ("a, b", "comma"),
        ("<lora>", "'<'"),
        ("x" * 101, "under 100"),
    ],
)
def test_bad_triggers(trigger, message):
    with pytest.raises(TrainingError, match=message):
        validate_trigger(trigger)


def test_output_names():
    assert default_output_name("ohwx man") == "ohwx_man"
    assert default_output_name("キャラ") == "キャラ"
    assert default_output_name("...") == "lora"
    for bad in ("a/b", "a\\b", "..", "con", "x:y", "-rf", "name."):
        with pytest.raises(TrainingError):
            validate_output_name(bad)
    assert validate_output_name("my lora v2") == "my lora v2"


def test_plan_refusals(reports, ckpt, tmp_path, flat_dir, flux_models):
    with pytest.raises(TrainingError, match="not found"):
        make_plan(reports["sd1"], tmp_path / "missing.safetensors", "sd1", "mychar")
    with pytest.raises(TrainingError, match="checked for sd1"):
        make_plan(reports["sd1"], ckpt, "sdxl", "mychar")
    with pytest.raises(TrainingError, match="unknown setting"):
        plan_for(reports, ckpt, tmp_path, overrides={"learnrate": 1})
    with pytest.raises(TrainingError, match="learning rate"):
        plan_for(reports, ckpt, tmp_path, overrides={"learning_rate": 1.0})
    with pytest.raises(TrainingError, match="steps 0"):
        plan_for(reports, ckpt, tmp_path, overrides={"steps": 0})
    with pytest.raises(TrainingError, match="'auto'"):
        plan_for(reports, ckpt, tmp_path, overrides={"steps": "lots"})
    with pytest.raises(TrainingError, match="CLIP-L"):
        plan_for(reports, ckpt, tmp_path, base="flux1")
    with pytest.raises(TrainingError, match="ae file not found"):
        plan_for(reports, ckpt, tmp_path, base="flux1", flux_models={**flux_models, "ae": str(tmp_path / "no.sft")})
    with pytest.raises(TrainingError, match="only used for Flux"):
        plan_for(reports, ckpt, tmp_path, flux_models=flux_models)
    with pytest.raises(TrainingError, match="clip skip does not apply"):
        plan_for(reports, ckpt, tmp_path, base="sdxl", overrides={"clip_skip": 2})
    with pytest.raises(TrainingError, match="cached text-encoder outputs"):
        plan_for(reports, ckpt, tmp_path, "fast", "sdxl", overrides={"shuffle_caption": True})
    with pytest.raises(TrainingError, match="unknown option --noise_ofset"):
        plan_for(reports, ckpt, tmp_path, extra_args=["--noise_ofset", "0.1"])
    with pytest.raises(TrainingError, match="--train_data_dir cannot be added"):
        plan_for(reports, ckpt, tmp_path, extra_args=["--train_data_dir", str(flat_dir)])
    with pytest.raises(TrainingError, match="already set by the plan"):
        plan_for(reports, ckpt, tmp_path, extra_args=["--learning_rate", "1e-3"])
    ok = plan_for(reports, ckpt, tmp_path, extra_args=["--noise_offset", "0.05"])
    assert ok.script_args()[-2:] == ("--noise_offset", "0.05")


def test_dataset_errors_block_the_plan(ckpt, tmp_path):
    folder = _images(tmp_path / "d", 16)
    (folder / "000.txt").write_bytes(b"")  # sd-scripts would stop: "caption file is empty"
    report = check_dataset(folder, "mychar", "sd1")
    with pytest.raises(TrainingError, match="caption file is empty"):
        make_plan(report, ckpt, "sd1", "mychar")
    assert make_plan(report, ckpt, "sd1", "mychar", allow_dataset_errors=True).image_count == 16


def test_overrides_change_the_arguments(reports, ckpt, tmp_path):
    plan = plan_for(
        reports, ckpt, tmp_path,
        overrides={"steps": 1234, "batch_size": 4, "learning_rate": 3e-4, "network_dim": 16, "network_alpha": 8,
                   "resolution": 768, "repeats": 3, "seed": 7, "lr_scheduler": "constant", "mixed_precision": "fp16",
                   "save_every_n_steps": 200, "sample_every_n_steps": 400, "max_data_loader_n_workers": 0,
                   "clip_skip": 2},
    )  # fmt: skip
    a = plan.script_args()
    assert opt(a, "--max_train_steps") == "1234" and not plan.steps_auto
    assert opt(a, "--train_batch_size") == "4" and float(opt(a, "--learning_rate")) == 3e-4
    assert opt(a, "--network_dim") == "16" and opt(a, "--network_alpha") == "8"
    assert opt(a, "--resolution") == "768,768" and opt(a, "--seed") == "7"
    assert opt(a, "--lr_scheduler") == "constant" and opt(a, "--lr_warmup_steps") == "0"
    assert opt(a, "--mixed_precision") == "fp16" and opt(plan.accelerate_args(), "--mixed_precision") == "fp16"
    assert opt(a, "--save_every_n_steps") == "200" and opt(a, "--sample_every_n_steps") == "400"
    assert opt(a, "--max_data_loader_n_workers") == "0" and "--persistent_data_loader_workers" not in a
    assert opt(a, "--clip_skip") == "2"
    doc = tomllib.loads(plan.dataset_toml())
    assert doc["datasets"][0]["resolution"] == 768 and doc["datasets"][0]["subsets"][0]["num_repeats"] == 3


def test_short_runs_have_no_periodic_saves(reports, ckpt, tmp_path):
    plan = plan_for(reports, ckpt, tmp_path, overrides={"steps": 40})
    assert plan.save_every_n_steps is None and plan.sample_every_n_steps == 40
    assert "--save_every_n_steps" not in plan.script_args() and "--save_state" not in plan.script_args()


def test_fast_preset_warns_about_many_buckets(ckpt, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, size in enumerate([(512, 512), (512, 768), (768, 512), (512, 1024), (1024, 512)] * 4):
        Image.new("RGB", size, (i * 10 % 255, 40, 90)).save(folder / f"{i}.png", compress_level=1)
        (folder / f"{i}.txt").write_text("mychar", encoding="utf-8")
    report = check_dataset(folder, "mychar", "sd1")
    plan = make_plan(report, ckpt, "sd1", "mychar", "fast", free_vram_bytes=80 * GiB)
    assert any("buckets" in w and "CUDA graphs" in w for w in plan.warnings)


# -- opt-in: the real sd-scripts ------------------------------------------------------------------------------------------


@pytest.mark.trainer
@pytest.mark.slow
def test_real_sd_scripts_trains_and_resumes_from_a_plan(tmp_path, fixtures_dir):
    """Runs the planned command with the real sd-scripts on CPU at 64 px: 4 steps with saves every 2,
    then a resume from the step-2 state that must skip the trained steps. Needs SD_SCRIPTS_DIR,
    TRAINER_PYTHON and LORA_STUDIO_TEST_SD15 (a random-weight SD1.5 checkpoint or diffusers folder)."""
    sd, py, base = (os.environ.get(k, "") for k in ("SD_SCRIPTS_DIR", "TRAINER_PYTHON", "LORA_STUDIO_TEST_SD15"))
    if not (sd and py and base):
        pytest.skip("set SD_SCRIPTS_DIR, TRAINER_PYTHON and LORA_STUDIO_TEST_SD15 to run the real trainer")
    import shutil
    import subprocess

    from lib_lora.safetensors_header import read_header

    data = _images(tmp_path / "data ü", 4, size=(96, 64), caption="zed, photo")
    tok = tmp_path / "tokenizers"
    shutil.copytree(fixtures_dir / "clip-tokenizer", tok / "openai_clip-vit-large-patch14")
    report = check_dataset(data, "zed", "sd1", resolution=64)
    out = tmp_path / "out dir"
    plan = make_plan(
        report, base, "sd1", "zed", "default", out, sd, py, tokenizer_cache_dir=tok, offline=True,
        overrides={"steps": 4, "batch_size": 1, "resolution": 64, "mixed_precision": "no", "save_every_n_steps": 2,
                   "sample_every_n_steps": 1000, "max_data_loader_n_workers": 0},
    )  # fmt: skip

    def run(p: TrainingPlan, log_name: str) -> str:
        spec = p.write_files(out / "_training")
        with open(tmp_path / log_name, "w", encoding="utf-8") as log:
            rc = subprocess.run(spec.command, cwd=spec.cwd, env={**os.environ, **spec.env}, stdout=log,
                                stderr=subprocess.STDOUT, timeout=1200).returncode  # fmt: skip
        text = (tmp_path / log_name).read_text(encoding="utf-8", errors="replace")
        assert rc == 0, text[-3000:]
        return text

    first = run(plan, "first.log")
    assert "found directory" in first and "4 image files" in first
    lora = out / "zed.safetensors"
    md = read_header(lora).metadata
    assert md["modelspec.trigger_phrase"] == "zed" and md["ss_output_name"] == "zed"
    assert md["ss_network_dim"] == "32" and md["ss_base_model_version"] == "sd_v1"
    state = out / "zed-step00000002-state"
    assert state.is_dir() and (out / "zed-step00000002.safetensors").is_file()
    lora.unlink()
    resumed = run(plan.with_resume(state), "resumed.log")
    assert "skipping 2 steps" in resumed
    assert lora.is_file()
