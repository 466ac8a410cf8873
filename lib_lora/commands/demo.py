"""``python -m lib_lora demo [DIR] [--force]``: write a small DEMO LoRA library and print its path.

The files have the real key names, shapes and metadata of LoRAs from several trainers and base models
(kohya SD1.5 / SDXL / Flux / SD3, LyCORIS LoHa / LoKr, DoRA, Pony / Illustrious / NoobAI, one without
metadata, one with wrong metadata, a duplicate name and a legacy ``.pt``), with A1111 and Civitai
sidecars and previews — but zero weights (sparse files, a few kB on disk): they change nothing in an
image. Every name starts with ``DEMO-`` and a ``README.txt`` says so. A demo SDXL checkpoint header is
written beside the library (``DIR/checkpoints``) for ``scan --checkpoint``.

Default DIR: ``<LoRA Studio data folder>/demo-library``. An existing folder is only written into when
it is empty or an earlier demo library (``--force`` overrides).

Prints the LoRA folder (``DIR/loras``) on stdout — ``python -m lib_lora scan "$(python -m lib_lora demo)"``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

MARKER = "LoRA Studio DEMO library"

#: (relative path without suffix, synth preset, metadata overrides, A1111 sidecar or None)
DEMO_LORAS: tuple[tuple[str, str, dict[str, str | None], dict[str, Any] | None], ...] = (
    ("characters/DEMO-alice-sd15", "kohya-sd1",
     {"ss_output_name": "DEMO-alice", "modelspec.title": "DEMO Alice", "modelspec.trigger_phrase": "zk_alice"},
     {"description": "DEMO: a character LoRA (zero weights)", "sd version": "SD1",
      "activation text": "zk_alice, red coat", "preferred weight": 0.8, "negative text": "blurry",
      "notes": "demo file written by LoRA Studio", "lora studio category": "character"}),
    ("characters/DEMO-kotori-noobai", "noobai-sdxl", {"ss_output_name": "DEMO-kotori"}, None),
    ("characters/DEMO-rin-pony", "pony-sdxl", {"ss_output_name": "DEMO-rin"}, None),
    # a character in the character-library layout (characters/<name>/lora/<name>_v<N>): <char:DEMO-hero>
    ("characters/DEMO-hero/lora/DEMO-hero_v1", "kohya-sd1", {"ss_output_name": "DEMO-hero_v1"}, None),
    ("characters/DEMO-hero/lora/DEMO-hero_v2", "kohya-sd1", {"ss_output_name": "DEMO-hero_v2"}, None),
    ("styles/DEMO-watercolor-sdxl", "kohya-sdxl", {"ss_output_name": "DEMO-watercolor", "modelspec.trigger_phrase": "wcstyle"},
     {"activation text": "wcstyle, watercolor", "preferred weight": 0.7, "lora studio category": "style"}),
    ("styles/DEMO-lineart-illustrious", "illustrious-sdxl", {"ss_output_name": "DEMO-lineart"}, None),
    ("styles/DEMO-ink-loha-sd15", "loha-sd1", {}, {"lora studio category": "style"}),
    ("concepts/DEMO-glow-flux", "kohya-flux", {"ss_output_name": "DEMO-glow"}, None),
    ("concepts/DEMO-detail-lokr-sdxl", "lokr-sdxl", {}, None),
    ("concepts/DEMO-light-dora-sd15", "dora-sd1", {}, None),
    ("poses/DEMO-pose-sd3", "kohya-sd3", {}, {"lora studio category": "pose"}),
    ("misc/DEMO-no-metadata-sdxl", "nometa-sdxl", {}, None),
    ("misc/DEMO-wrong-metadata", "wrongmeta-sdxl-as-sd1", {}, None),
    ("old-versions/DEMO-alice-sd15", "kohya-sd1", {"ss_output_name": "DEMO-alice-old"}, None),
)

def _own_trigger(rel: str, preset: str) -> dict[str, str | None]:
    """Metadata giving a demo LoRA its own trigger word (``DEMO-rin-pony`` -> ``zk_rin``) and kohya
    dataset folder, as a real training would; files meant to carry no metadata get none."""
    if preset.startswith("nometa"):
        return {}
    word = "zk_" + re.sub(r"_v\d+$", "", rel.rsplit("/", 1)[-1].split("-")[1])
    folder = f"10_{word}"
    return {
        "modelspec.trigger_phrase": word,
        "ss_tag_frequency": json.dumps({folder: {word: 12, "solo": 9, "looking at viewer": 7}}),
        "ss_dataset_dirs": json.dumps({folder: {"n_repeats": 10, "img_count": 12}}),
    }


README = f"""{MARKER}
{"=" * len(MARKER)}

Everything in this folder is DEMO data written by LoRA Studio (python -m lib_lora demo).

The .safetensors files have the real tensor names, shapes and training metadata of LoRAs made by
kohya sd-scripts, LyCORIS and other trainers for several base models, but every weight is zero
(sparse files, almost no disk space). They load, and they change nothing in an image. The names
all start with DEMO-. The .json / .civitai.info / .model.json files beside them are demo sidecars
(made-up values), old-versions/ holds a duplicate name on purpose, and legacy/ a placeholder .pt
file that LoRA Studio lists but never opens.

Try:
    python -m lib_lora scan loras --checkpoint checkpoints/DEMO-sdxl-checkpoint.safetensors
    python -m lib_lora inspect loras/characters/DEMO-alice-sd15.safetensors

Delete this folder whenever you like.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", help="where to write it (default: <data folder>/demo-library)")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder that is not a demo library")
    p.add_argument("--no-checkpoints", action="store_true",
                   help="skip the demo checkpoints (their sparse files are GBs long, though nearly free on disk)")


def _preview(path: Path, label: str, color: tuple[int, int, int]) -> None:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (256, 320), color)
    draw = ImageDraw.Draw(img)
    draw.rectangle((8, 8, 247, 311), outline=(255, 255, 255), width=3)
    draw.text((24, 140), "DEMO", fill=(255, 255, 255))
    draw.text((24, 160), label[:28], fill=(255, 255, 255))
    img.save(path, format="PNG")


def _civitai(stem: str) -> tuple[dict[str, Any], dict[str, Any]]:
    version = {
        "id": 900001, "modelId": 900000, "name": "v1.0 (DEMO)", "baseModel": "NoobAI", "baseModelType": "Standard",
        "trainedWords": ["kanbe kotori, twin braids", "demo art"],
        "description": "<p>DEMO data written by LoRA Studio (made-up values).</p>",
        "model": {"name": "DEMO Kotori (character)", "type": "LORA", "nsfw": False, "poi": False},
        "files": [{"name": f"{stem}.safetensors", "type": "Model", "primary": True,
                   "hashes": {"AutoV2": "DE0000DE00"}}],
        "images": [],
    }
    model = {
        "id": 900000, "name": "DEMO Kotori (character)", "type": "LORA", "nsfw": False,
        "allowNoCredit": True, "allowCommercialUse": ["Image", "RentCivit"], "allowDerivatives": True,
        "allowDifferentLicense": False, "tags": ["character", "anime", "demo"],
        "creator": {"username": "lora-studio-demo"},
    }
    return version, model


def _is_demo(folder: Path) -> bool:
    try:
        return (folder / "README.txt").read_text(encoding="utf-8").startswith(MARKER)
    except OSError:
        return False


def write_demo_library(folder: str | os.PathLike[str], *, force: bool = False,
                       with_checkpoints: bool | None = None) -> Path:
    """Write the demo library under ``folder`` and return its LoRA folder (``folder/loras``).

    ``with_checkpoints`` (default: on POSIX systems, where the sparse files cost no disk) also writes
    two demo checkpoint headers (SDXL, SD1.5) to ``folder/checkpoints``."""
    if with_checkpoints is None:
        with_checkpoints = os.name == "posix"
    from lib_lora import synth
    from lib_lora.characters import PROMPTS_FILENAME, new_prompts_text
    from lib_lora.errors import LibraryError
    from lib_lora.sidecars import atomic_write_text, dump_user_metadata

    base = Path(folder).expanduser().resolve()
    if base.exists() and not base.is_dir():
        raise LibraryError(f"{base} is a file, not a folder")
    if base.is_dir() and any(base.iterdir()) and not _is_demo(base) and not force:
        raise LibraryError(f"{base} is not empty and not a LoRA Studio demo library; choose another folder or pass --force")
    loras = base / "loras"
    try:
        loras.mkdir(parents=True, exist_ok=True)
        (base / "README.txt").write_text(README, encoding="utf-8")
        (loras / "README.txt").write_text(README, encoding="utf-8")
        colors = [(180, 60, 60), (60, 120, 180), (70, 150, 90), (150, 110, 40), (120, 70, 160)]
        for i, (rel, preset, overrides, sidecar) in enumerate(DEMO_LORAS):
            path = loras / f"{rel}.safetensors"
            path.parent.mkdir(parents=True, exist_ok=True)
            md = {"modelspec.description": "DEMO file written by LoRA Studio: zero weights",
                  **_own_trigger(rel, preset), **overrides}
            synth.write_lora(path, preset, rank=4, metadata_overrides=md, sparse=True)
            if sidecar is not None:
                atomic_write_text(path.with_suffix(".json"), dump_user_metadata(sidecar))
            if i % 3 == 0:
                _preview(path.with_suffix(".png") if i % 2 == 0 else path.parent / f"{path.stem}.preview.png",
                         path.stem, colors[i % len(colors)])
        hero = loras / "characters" / "DEMO-hero"
        for sub in ("reference", "expressions"):
            (hero / sub).mkdir(exist_ok=True)
        _preview(hero / "reference" / "DEMO-front.png", "DEMO-hero", (200, 90, 40))
        atomic_write_text(hero / PROMPTS_FILENAME, new_prompts_text(trigger="zk_hero"))
        kotori = loras / "characters" / "DEMO-kotori-noobai"
        version, model = _civitai(kotori.name)
        atomic_write_text(kotori.with_suffix(".civitai.info"), json.dumps(version, indent=4))
        atomic_write_text(kotori.parent / f"{kotori.name}.model.json", json.dumps(model, indent=4))
        legacy = loras / "legacy"
        legacy.mkdir(exist_ok=True)
        (legacy / "DEMO-old-format.pt").write_bytes(b"DEMO placeholder: not a model. LoRA Studio never opens .pt files.\n")
        if with_checkpoints:
            # Checkpoint headers describe GBs of (zero) weights: only where sparse files cost nothing.
            ckpts = base / "checkpoints"
            ckpts.mkdir(exist_ok=True)
            synth.write_lora(ckpts / "DEMO-sdxl-checkpoint.safetensors", "ckpt-sdxl", sparse=True)
            synth.write_lora(ckpts / "DEMO-sd15-checkpoint.safetensors", "ckpt-sd1", sparse=True)
    except OSError as exc:
        raise LibraryError(f"cannot write the demo library in {base}: {exc.strerror or exc}") from None
    return loras


def run(args: argparse.Namespace) -> int:
    from lib_lora import paths

    folder = args.dir or paths.user_data_dir() / "demo-library"
    loras = write_demo_library(folder, force=args.force, with_checkpoints=False if args.no_checkpoints else None)
    print(loras)
    if sys.stderr.isatty() and (loras.parent / "checkpoints").is_dir():
        print(f"DEMO library written (zero-weight files). Try:\n  python -m lib_lora scan {loras} "
              f"--checkpoint {loras.parent / 'checkpoints' / 'DEMO-sdxl-checkpoint.safetensors'}", file=sys.stderr)
    return 0
