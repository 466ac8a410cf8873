"""Training lands in a character: characters/<name>/lora/<name>_v<N>, references, prompts.txt — through
the real training service with the replayed kohya trainer (tests/test_train_service.py's World)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_train_service import World

from lib_lora.characters import create_character, scan_characters
from lib_lora.characters.training import character_training, pick_references
from lib_lora.errors import TrainingError
from lib_lora.safetensors_header import read_header
from lib_lora.train.runner import SUCCEEDED

pytestmark = pytest.mark.skipif(os.name == "nt", reason="the stand-in trainer is a shell script")


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    captions = {0: "zed, looking at viewer, smile", 1: "zed, from side", 2: "zed, profile", 3: "zed, portrait, looking at viewer"}
    for i, text in captions.items():
        images = sorted(p for p in w.images.iterdir() if p.suffix == ".png")
        images[i].with_suffix(".txt").write_text(text, encoding="utf-8")
    yield w
    w.close()


def test_new_character_v1_then_v2(world: World) -> None:
    root = world.loras / "characters"
    view = world.service.wait(world.service.start(world.request(character="Zed", trigger="zed")), timeout=60)
    assert view.state == SUCCEEDED and view.installed is not None, view.install_error
    v1 = root / "Zed" / "lora" / "Zed_v1.safetensors"
    assert view.installed.path == str(v1)
    assert read_header(v1).metadata["ss_output_name"] == "Zed_v1"  # trained with --output_name Zed_v1
    assert json.loads((root / "Zed" / "lora" / "Zed_v1.json").read_text())["activation text"] == "zed"
    char = scan_characters(root).find("zed")
    assert char is not None and char.prompts.trigger == ("zed",)
    assert char.prompts.anchors and char.prompts.drift
    refs = [Path(r).name for r in char.references]
    images = sorted(p.name for p in world.images.iterdir() if p.suffix == ".png")
    assert refs[:2] == sorted([images[0], images[3]]) or set(refs[:2]) == {images[0], images[3]}
    assert images[1] not in refs and images[2] not in refs  # side views are not references

    # the second run of an existing character: no --trigger needed, the next version, nothing overwritten
    before = v1.read_bytes()
    view2 = world.service.wait(world.service.start(world.request(character="zed", trigger="")), timeout=60)
    assert view2.installed is not None, view2.install_error
    assert view2.installed.path == str(root / "Zed" / "lora" / "Zed_v2.safetensors")
    assert v1.read_bytes() == before
    char = scan_characters(root).find("Zed")
    assert char is not None and [v.label for v in char.versions] == ["v2", "v1"]
    assert len(char.references) == len(refs)  # the same references are not copied twice
    assert world.host.library().lookup("Zed_v2").found


def test_character_requests_are_checked(world: World, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="new character: give its trigger"):
        world.service.plan(world.request(character="newbie", trigger=""))
    with pytest.raises(TrainingError, match="must start with a letter"):
        world.service.plan(world.request(character="../evil", trigger="x"))
    create_character(world.loras / "characters", "silent")
    with pytest.raises(TrainingError, match="no trigger in its prompts.txt"):
        world.service.plan(world.request(character="silent", trigger=""))
    with pytest.raises(TrainingError, match="reference image not found: /nowhere.png"):
        world.service.plan(world.request(character="silent", trigger="quiet", references=("/nowhere.png",)))
    plan = world.service.plan(world.request(character="silent", trigger="quiet"))
    assert plan.output_name == "silent_v1" and plan.trigger == "quiet"


def test_pick_references_and_character_training(tmp_path: Path) -> None:
    data = tmp_path / "ds" / "10_zed"
    data.mkdir(parents=True)
    for name, caption in (("a", "zed, from behind"), ("b", "zed"), ("c", "zed, looking at viewer"), ("d", None)):
        (data / f"{name}.png").write_bytes(b"x")
        if caption:
            (data / f"{name}.txt").write_text(caption)
    assert [Path(p).name for p in pick_references(tmp_path / "ds", count=2)] == ["c.png", "b.png"]
    ct = character_training(tmp_path / "chars", "Hero", "herotok")
    assert ct.new and ct.output_name == "Hero_v1"


def test_two_trainings_started_together_get_their_own_versions(world: World) -> None:
    """The second is planned while the first still runs: it must not be trained as ``_v1`` too (its file
    would be installed as ``_v2`` with the alias ``Zed_v1``, which the WebUI's alias table gives to the
    wrong file)."""
    first = world.service.start(world.request(character="Zed", trigger="zed"))
    second = world.service.start(world.request(character="Zed", trigger="zed"))
    assert world.service.plan(world.request(character="Zed", trigger="zed")).output_name == "Zed_v3"
    lora = world.loras / "characters" / "Zed" / "lora"
    for job_id, n in ((second, 2), (first, 1)):  # the later one may finish first: each keeps its number
        view = world.service.wait(job_id, timeout=60)
        assert view.state == SUCCEEDED and view.installed is not None, view.install_error
        assert view.installed.path == str(lora / f"Zed_v{n}.safetensors")
        assert read_header(view.installed.path).metadata["ss_output_name"] == f"Zed_v{n}"


def test_install_places_exactly_the_trained_version(tmp_path: Path) -> None:
    from lib_lora.characters.training import destination_args

    lora = tmp_path / "chars" / "Hero" / "lora"
    lora.mkdir(parents=True)
    (lora / "Hero_v2.safetensors").write_bytes(b"x")
    intent = {"root": str(tmp_path / "chars"), "name": "Hero", "version": 1}
    folder, stem, numbering, exact = destination_args(intent)
    assert folder == str(lora) and stem == "Hero" and exact
    assert numbering(stem, 1) == "Hero_v1"
    # an intent without a version (an older job record): the next free one, numbered on
    _, _, plain, exact = destination_args({"root": str(tmp_path / "chars"), "name": "Hero"})
    assert not exact and [plain(stem, n) for n in (1, 2)] == ["Hero_v3", "Hero_v4"]
    # versions held by trainings not installed yet are skipped; another character's or root's are not
    pending = [{"root": str(tmp_path / "chars"), "name": "hero", "version": 4},
               {"root": str(tmp_path / "chars"), "name": "Other", "version": 9},
               {"root": str(tmp_path / "elsewhere"), "name": "Hero", "version": 7}]
    assert character_training(tmp_path / "chars", "Villain", "v", pending).version == 1
    assert character_training(tmp_path / "chars", "HERO", "h", pending).output_name == "Hero_v5"
    assert character_training(tmp_path / "chars", "Hero", "h", pending[1:]).output_name == "Hero_v3"
    assert character_training(tmp_path / "chars", "Villain", "v", [{**pending[1], "name": "villain"}]).version == 10


def test_a_resumed_job_keeps_its_version(world: World) -> None:
    """A cancelled job holds its version while it can be resumed: a training started meanwhile takes the
    next one, and the resumed job is placed under its own name (stem = ss_output_name)."""
    from factory import wait_for

    from lib_lora.characters.reservation import reserved_versions
    from lib_lora.train.runner import CANCELLED

    lora = world.loras / "characters" / "Zed" / "lora"
    world.hang.touch()
    first = world.service.start(world.request(character="Zed", trigger="zed"))
    wait_for(lambda: world.service.status(first).status.last_save, what="the periodic save")
    world.service.cancel(first)
    view = world.service.wait(first, timeout=30)
    assert view.state == CANCELLED and view.resumable
    assert reserved_versions(lora, "Zed") == [1]  # kept while it can be resumed
    world.hang.unlink()
    meanwhile = world.service.wait(world.service.start(world.request(character="Zed", trigger="zed")), timeout=60)
    assert meanwhile.installed is not None and meanwhile.installed.path == str(lora / "Zed_v2.safetensors")
    assert reserved_versions(lora, "Zed") == [1]

    resumed = world.service.wait(world.service.resume(first), timeout=60)
    assert resumed.state == SUCCEEDED and resumed.installed is not None, resumed.install_error
    assert resumed.installed.path == str(lora / "Zed_v1.safetensors")
    assert read_header(lora / "Zed_v1.safetensors").metadata["ss_output_name"] == "Zed_v1"
    assert reserved_versions(lora, "Zed") == []


def test_a_resume_whose_version_was_taken_is_refused(world: World) -> None:
    from factory import make_lora, wait_for

    from lib_lora.characters.reservation import marker_name

    lora = world.loras / "characters" / "Zed" / "lora"
    world.hang.touch()
    first = world.service.start(world.request(character="Zed", trigger="zed"))
    wait_for(lambda: world.service.status(first).status.last_save, what="the periodic save")
    world.service.cancel(first)
    world.service.wait(first, timeout=30)
    world.hang.unlink()
    (lora / marker_name("Zed", 1)).unlink()  # a user tidied the folder and copied a file in
    make_lora(lora, "Zed_v1")
    with pytest.raises(TrainingError, match=r"Zed_v1 is taken: .*Zed_v1.safetensors"):
        world.service.resume(first)
    assert len(world.jobs.list()) == 1  # nothing was queued


def test_reservations_of_jobs_that_never_place_are_given_back(world: World) -> None:
    from lib_lora.characters.reservation import reserved_versions
    from lib_lora.errors import TrainerEnvironmentError
    from lib_lora.train.runner import CANCELLED

    root = world.loras / "characters"
    world.hang.touch()
    running = world.service.start(world.request(character="Zed", trigger="zed"))
    queued = world.service.start(world.request(character="Zed", trigger="zed"))  # waits for the GPU
    assert reserved_versions(root / "Zed" / "lora", "Zed") == [1, 2]
    world.service.cancel(queued)  # cancelled before it started: nothing to resume from
    assert world.service.wait(queued, timeout=30).state == CANCELLED
    assert reserved_versions(root / "Zed" / "lora", "Zed") == [1]
    (Path(world.sd) / "train_network.py").unlink()
    with pytest.raises(TrainerEnvironmentError):
        world.service.start(world.request(character="Newbie", trigger="nb"))  # refused after reserving
    assert not (root / "Newbie").exists()  # its folder was made only for the reservation
    world.service.cancel(running)
    world.service.wait(running, timeout=30)
