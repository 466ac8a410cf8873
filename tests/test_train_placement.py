"""Placing a trained LoRA as a function of (result, destination policy), on a real standalone host: the
default numbering never replaces a file, and another policy (a character's folder with ``_v<N>``
versions) is only another :class:`Destination`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lib_lora.errors import TrainingError
from lib_lora.host import StandaloneHost
from lib_lora.train.placement import Destination, TrainedLora, lora_folder_destination, place_lora

sys.path.insert(0, str(Path(__file__).resolve().parent))
from factory import make_lora


@pytest.fixture
def setup(tmp_path: Path) -> tuple[StandaloneHost, TrainedLora, Path]:
    loras = tmp_path / "models" / "Lora"
    loras.mkdir(parents=True)
    host = StandaloneHost([str(loras)], data_dir=tmp_path / "studio")
    source = make_lora(tmp_path / "training", "zed")
    result = TrainedLora(source=str(source), name="zed", trigger="zed", arch="sd1", preferred_weight=0.7,
                         description="a test LoRA")
    return host, result, loras


def test_the_default_policy_numbers_a_taken_name_and_writes_the_sidecar(setup):
    host, result, loras = setup
    dest = lora_folder_destination({"subfolder": "zed", "name": "zed"}, [str(loras)], result)
    assert dest == Destination(folder=str(loras / "zed"), stem="zed")
    first = place_lora(result, dest, host)
    second = place_lora(result, dest, host)
    assert Path(first.path) == loras / "zed" / "zed.safetensors"
    assert Path(second.path) == loras / "zed" / "zed-2.safetensors"
    assert first.found and second.found
    assert second.tag == "<lora:zed-2:0.7>"
    assert first.sidecar is not None
    sidecar = json.loads(Path(first.sidecar).read_text(encoding="utf-8"))
    assert sidecar["activation text"] == "zed"
    assert sidecar["description"] == "a test LoRA"
    assert Path(result.source).is_file()  # the training folder keeps its own file


def test_another_policy_is_another_destination(setup, tmp_path):
    host, result, _loras = setup
    folder = tmp_path / "characters" / "zed" / "lora"
    dest = Destination(folder=str(folder), stem="zed", numbering=lambda stem, n: f"{stem}_v{n}")
    paths = [Path(place_lora(result, dest, host).path) for _ in range(3)]
    assert paths == [folder / "zed_v1.safetensors", folder / "zed_v2.safetensors", folder / "zed_v3.safetensors"]


def test_no_lora_folder_is_a_clear_error(setup):
    _host, result, _loras = setup
    with pytest.raises(TrainingError, match="no LoRA folder"):
        lora_folder_destination({"name": "zed"}, [], result)
