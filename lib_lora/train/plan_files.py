"""The text files of one training run, written into its job folder: the ``--dataset_config`` TOML (one
``[[datasets.subsets]]`` per image folder, so sd-scripts' ``--train_data_dir`` trap — pointing it at the
image folder logs "No data found" and exits 0 without a file — cannot happen), the sample-prompt file
(five scenes per LoRA kind, in kohya's prompt syntax), and the helpers that spell values for them."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from lib_lora.errors import TrainingError
from lib_lora.train.dataset import BUCKET_RESO_STEPS, bucket_resolutions, select_bucket

if TYPE_CHECKING:
    from lib_lora.train.training_plan import TrainingPlan

DATASET_TOML = "dataset.toml"
SAMPLE_PROMPTS = "sample_prompts.txt"
ACCELERATE_CONFIG = "accelerate_config.json"
PLAN_JSON = "plan.json"


def dataset_toml(plan: TrainingPlan) -> str:
    """The ``--dataset_config`` file (keys of sd-scripts' library/config_util.py)."""
    p = plan.preset
    lines = [
        f"# sd-scripts dataset config written by LoRA Studio for {toml_string(plan.output_name)}",
        "",
        "[general]",
        f"caption_extension = {toml_string(plan.caption_extension)}",
        f"shuffle_caption = {_bool(plan.shuffle_caption)}",
        f"keep_tokens = {plan.keep_tokens}",
        f"flip_aug = {_bool(p.flip_aug)}",
        "color_aug = false",
        "random_crop = false",
        "enable_bucket = true",
        "bucket_no_upscale = false",
        f"bucket_reso_steps = {BUCKET_RESO_STEPS}",
        f"min_bucket_reso = {plan.min_bucket_reso}",
        f"max_bucket_reso = {plan.max_bucket_reso}",
        "",
        "[[datasets]]",
        f"resolution = {plan.resolution}",
        f"batch_size = {plan.batch_size}",
    ]
    for s in plan.subsets:
        lines += [
            "",
            "  [[datasets.subsets]]",
            f"  image_dir = {toml_string(s.image_dir)}",
            f"  num_repeats = {s.num_repeats}",
            f"  class_tokens = {toml_string(s.class_tokens)}",
        ]
    return "\n".join(lines) + "\n"


def sample_prompts(plan: TrainingPlan) -> str:
    """Five scenes that render the trigger, in kohya's prompt-file syntax (``--n --w --h --d --l --s``)."""
    base = plan.preset.base
    buckets = bucket_resolutions(plan.resolution, plan.min_bucket_reso, plan.max_bucket_reso)
    sizes = {
        "square": (plan.resolution, plan.resolution),
        "portrait": select_bucket(2, 3, buckets),
        "landscape": select_bucket(3, 2, buckets),
    }
    lines = [f"# sample prompts for {plan.output_name} (trigger {plan.trigger}): one image per line at each sample step"]
    for i, (shape, scene) in enumerate(SCENES[plan.preset.kind]):
        w, h = sizes[shape]
        prompt = base.sample_prefix + scene.replace("{trigger}", plan.trigger)
        parts = [prompt]
        if base.sample_negative:
            parts.append(f"--n {base.sample_negative}")
        parts += [f"--w {w}", f"--h {h}", f"--d {1000 + i}", f"--l {number_text(base.sample_cfg)}", f"--s {base.sample_steps}"]
        if base.sample_guidance is not None:
            parts.append(f"--g {number_text(base.sample_guidance)}")
        lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"


# -- sample scenes --------------------------------------------------------------------------------------

SCENES: dict[str, tuple[tuple[str, str], ...]] = {
    "character": (
        ("square", "{trigger}, portrait, looking at viewer, simple background"),
        ("portrait", "{trigger}, full body, standing in a city street at night, neon lights"),
        ("landscape", "{trigger}, sitting in a cozy cafe, holding a cup of coffee, warm light"),
        ("landscape", "{trigger}, walking on a beach at sunset, wind"),
        ("portrait", "{trigger}, in a snowy forest, winter coat, falling snow"),
    ),
    "style": (
        ("square", "{trigger}, a cat sleeping on a windowsill"),
        ("landscape", "{trigger}, a lighthouse on a cliff at dusk, stormy sea"),
        ("portrait", "{trigger}, portrait of an old fisherman"),
        ("landscape", "{trigger}, a busy market street in the rain"),
        ("square", "{trigger}, a bowl of fruit on a wooden table"),
    ),
    "concept": (
        ("square", "{trigger}, close-up"),
        ("portrait", "{trigger}, a woman standing in a park, daytime"),
        ("landscape", "{trigger}, a man in a modern office"),
        ("landscape", "{trigger}, in a kitchen, soft light"),
        ("portrait", "{trigger}, outdoors at night, city lights"),
    ),
}


def number_text(x: float) -> str:
    """A number as the trainer should read it: whole numbers without ".0", others in full precision."""
    f = float(x)
    if f.is_integer() and abs(f) < 1e15:
        return str(int(f))
    return repr(f)


def _bool(b: bool) -> str:
    return "true" if b else "false"


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(s: str) -> str:
    """A TOML basic string; everything outside printable ASCII is escaped (``\\uXXXX`` / ``\\UXXXXXXXX``),
    so the file is plain ASCII and reads the same with tomllib, tomli and the old ``toml`` package
    sd-scripts uses, whatever the platform's default encoding."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif 0xD800 <= o <= 0xDFFF:
            raise TrainingError(
                f"the path or text {s!r} contains bytes that are not valid Unicode: rename it to train from it"
            )
        elif o < 0x20 or o == 0x7F or o > 0x7E:
            out.append(f"\\u{o:04X}" if o <= 0xFFFF else f"\\U{o:08X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


__all__ = [
    "ACCELERATE_CONFIG",
    "DATASET_TOML",
    "PLAN_JSON",
    "SAMPLE_PROMPTS",
    "SCENES",
    "dataset_toml",
    "number_text",
    "sample_prompts",
    "toml_string",
    "write_atomic",
]
