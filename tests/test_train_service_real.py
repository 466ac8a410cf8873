"""Opt-in: the real kohya sd-scripts on the CPU at 64 px through the TrainingService — the way the Train tab
starts it — to a LoRA installed in the LoRA folder with its sidecar and a preview from a real sample image,
found by the library as an SD1 LoRA with its trigger word; and two trainings into one character
(``characters/hero/lora/hero_v1`` then ``hero_v2``, each trained with ``--output_name hero_v<N>`` so the
name inside the file matches the stem, each with its sidecar; the picked reference images copied once;
``prompts.txt`` written with the trigger, anchor and drift phrases; v1 left untouched by v2).

Runs only when ``SD_SCRIPTS_DIR`` and ``TRAINER_PYTHON`` are set (see tests/test_trainer_real.py); the
random-weight checkpoint is cached in ``$LORA_STUDIO_TEST_CACHE`` when set. A few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from lib_lora.characters import scan_characters
from lib_lora.host import StandaloneHost
from lib_lora.safetensors_header import read_header
from lib_lora.train.jobs import JobManager
from lib_lora.train.service import TOKENIZER_DIR, TrainingRequest, TrainingService

pytestmark = [pytest.mark.trainer, pytest.mark.slow]

SD_SCRIPTS = os.environ.get("SD_SCRIPTS_DIR", "").strip()
TRAINER_PY = os.environ.get("TRAINER_PYTHON", "").strip()
if not (SD_SCRIPTS and TRAINER_PY):
    pytest.skip("real-trainer suite: set SD_SCRIPTS_DIR and TRAINER_PYTHON to run it", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import train_smoke  # noqa: E402

TRIGGER = "zkchar"


def _world(tmp_path: Path) -> tuple[Any, Path, StandaloneHost, JobManager, TrainingService]:
    """The dataset and checkpoint (train_smoke), a LoRA folder, and a service over them."""
    cache = os.environ.get("LORA_STUDIO_TEST_CACHE") or str(tmp_path / "cache")
    setup = train_smoke.prepare(tmp_path / "work", SD_SCRIPTS, TRAINER_PY, device="cpu", cache_dir=cache, images=6,
                                trigger=TRIGGER, resolution=64)  # fmt: skip
    loras, data = tmp_path / "Lora", tmp_path / "data"
    loras.mkdir()
    data.mkdir()
    os.symlink(setup.tokenizers, data / TOKENIZER_DIR)  # the service's default tokenizer cache
    host = StandaloneHost([str(loras)], data_dir=data, checkpoint_dirs=[str(Path(setup.checkpoint).parent)])
    jobs = JobManager(data, grace_seconds=10.0)
    return setup, loras, host, jobs, TrainingService(host, jobs, sd_scripts_dir=SD_SCRIPTS, trainer_python=TRAINER_PY)


def test_real_training_ends_installed_in_the_lora_folder(tmp_path: Path) -> None:
    setup, loras, host, jobs, service = _world(tmp_path)
    try:
        request = TrainingRequest(
            folder=setup.dataset, trigger=TRIGGER, base=Path(setup.checkpoint).name, arch="sd1", steps=4,
            batch_size=1, resolution=64, offline=True,
            overrides={"mixed_precision": "no", "max_data_loader_n_workers": 0, "sample_every_n_steps": 4},
        )
        job_id = service.start(request)
        view = service.wait(job_id, timeout=900)
        assert view.state == "succeeded", (view.status.message, view.status.log_tail[-20:])
        installed = view.installed
        assert installed is not None, view.install_error
        assert installed.path == str(loras / TRIGGER / f"{TRIGGER}.safetensors")
        meta = read_header(installed.path).metadata
        assert meta["ss_output_name"] == TRIGGER and meta.get("modelspec.trigger_phrase") == TRIGGER
        sidecar = json.loads(Path(installed.sidecar).read_text(encoding="utf-8"))
        assert sidecar["activation text"] == TRIGGER and sidecar["sd version"] == "SD1"
        assert view.status.samples, "sd-scripts wrote no sample image"
        assert installed.preview and Path(installed.preview).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        lookup = host.library().lookup(TRIGGER)
        assert lookup.found and lookup.entry.path == installed.path and lookup.entry.architecture == "sd1"
        assert TRIGGER in " ".join(str(w) for w in lookup.entry.trigger_words)
    finally:
        service.close()
        jobs.close()


def test_two_real_trainings_into_a_character_make_v1_and_v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LORA_STUDIO_CHARACTERS", raising=False)
    setup, loras, host, jobs, service = _world(tmp_path)
    folder = loras / "characters" / "hero"
    # train_smoke's captions: only img005 says "close-up" (front-facing); the rest fill up in dataset order
    picked = ["img005.png", "img000.png", "img001.png"]
    try:
        v1_bytes = b""
        for n, trigger in ((1, TRIGGER), (2, "")):  # the second run takes the trigger from prompts.txt
            request = TrainingRequest(
                folder=setup.dataset, trigger=trigger, base=Path(setup.checkpoint).name, arch="sd1", steps=2,
                batch_size=1, resolution=64, offline=True, character="hero",
                overrides={"mixed_precision": "no", "max_data_loader_n_workers": 0},
            )
            view = service.wait(service.start(request), timeout=900)
            assert view.state == "succeeded", (view.status.message, view.status.log_tail[-20:])
            assert view.installed is not None, view.install_error
            target = folder / "lora" / f"hero_v{n}.safetensors"
            assert view.installed.path == str(target) and view.installed.name == f"hero_v{n}"
            # trained with --output_name hero_v<N>: the alias inside the file is its stem
            assert f"--output_name hero_v{n}" in " ".join(jobs.get(view.id).spec["command"])
            meta = read_header(target).metadata
            assert meta["ss_output_name"] == f"hero_v{n}" and meta.get("modelspec.trigger_phrase") == TRIGGER
            sidecar = json.loads((folder / "lora" / f"hero_v{n}.json").read_text(encoding="utf-8"))
            assert view.installed.sidecar == str(folder / "lora" / f"hero_v{n}.json")
            assert sidecar["activation text"] == TRIGGER and sidecar["sd version"] == "SD1"
            # the picked dataset images are copied into reference/ once, byte for byte
            assert sorted(p.name for p in (folder / "reference").iterdir()) == sorted(picked)
            for name in picked:
                assert (folder / "reference" / name).read_bytes() == (Path(setup.dataset) / name).read_bytes()
            if n == 1:
                v1_bytes = target.read_bytes()
        assert (folder / "lora" / "hero_v1.safetensors").read_bytes() == v1_bytes  # v2 overwrote nothing
        prompts = (folder / "prompts.txt").read_text(encoding="utf-8")
        assert f"trigger: {TRIGGER}" in prompts.splitlines()
        char = scan_characters(loras / "characters").find("hero")
        assert char is not None and [v.label for v in char.versions] == ["v2", "v1"]
        assert char.prompts.trigger == (TRIGGER,) and char.prompts.trigger_weight == 1.3
        assert char.prompts.anchors == ("same character", "consistent appearance")
        assert char.prompts.drift == ("different person", "character change", "inconsistent appearance")
        assert [Path(r).name for r in char.references] == sorted(picked)
        assert host.library().lookup("hero_v2").found and host.library().lookup("hero_v1").found
    finally:
        service.close()
        jobs.close()
