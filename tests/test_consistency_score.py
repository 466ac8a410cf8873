"""The consistency score: ranking on known embeddings, and real ``open_clip`` 2.7.0 with a random-weight
ViT-B-32 built locally (no download): identical renders score highest; missing weights, an unknown
model or no open_clip at all skip the score with a message while the sheet is still made."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lib_lora.consistency import SheetManager, SheetRequest
from lib_lora.consistency import score as score_module
from lib_lora.consistency.score import (
    ClipEmbedder,
    ScoreUnavailable,
    cell_similarities,
    normalise,
    rank_columns,
    score_sheet,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from consistency_support import ColourEmbedder, RenderHost
from factory import make_lora


def _known_embeddings(seed: int = 0) -> np.ndarray:
    """5 scenes × 3 columns × 16 dims: column 0 nearly one vector, column 2 moderately close, column 1 random."""
    rng = np.random.default_rng(seed)
    anchor = rng.normal(size=16)
    e = np.zeros((5, 3, 16))
    for s in range(5):
        e[s, 0] = anchor + 0.01 * rng.normal(size=16)
        e[s, 1] = rng.normal(size=16)
        e[s, 2] = anchor + 0.8 * rng.normal(size=16)
    return e


def test_among_renders_ranks_the_consistent_column_first() -> None:
    sims = cell_similarities(_known_embeddings())
    assert sims.shape == (5, 3)
    assert np.all(sims[:, 0] > 0.99)
    scores, best = rank_columns(sims)
    assert best == 0 and scores[0] > scores[2] > scores[1]
    assert abs(scores.sum()) < 1e-9  # relative to each scene's mean


def test_against_references_ranks_the_column_nearest_the_references() -> None:
    e = _known_embeddings(1)
    refs = e[:, 1][:2]  # the references look like column 1's first two renders
    sims = cell_similarities(e, refs)
    _scores, best = rank_columns(sims)
    assert best == 1


def test_ranking_leaves_out_missing_cells_and_ties_pick_the_first() -> None:
    sims = np.array([[0.9, np.nan, 0.5], [0.8, 0.95, 0.4]])
    scores, best = rank_columns(sims)
    assert best == 1 and not np.isnan(scores[1])
    assert rank_columns(np.array([[0.5, 0.5]]))[1] == 0
    assert rank_columns(np.full((2, 2), np.nan))[1] is None
    assert np.isnan(cell_similarities(np.ones((1, 2, 4)))).all()  # one scene, no references
    assert np.allclose(np.linalg.norm(normalise(np.array([[3.0, 4.0], [0.0, 0.0]])), axis=1), [1.0, 0.0])


def test_score_sheet_with_known_embedder_and_missing_cells() -> None:
    red, blue = Image.new("RGB", (32, 32), (250, 10, 10)), Image.new("RGB", (32, 32), (10, 10, 250))
    mixed = [Image.new("RGB", (32, 32), c) for c in ((250, 10, 10), (10, 250, 10), (10, 10, 250))]
    images = [[red, mixed[i], None if i == 2 else blue] for i in range(3)]
    res = score_sheet(images, [], ColourEmbedder())
    assert res.best_column == 0 and res.cells is not None and np.isnan(res.cells[2, 2])
    assert "no reference images" in res.message and "mean colour" in res.message
    assert score_sheet(images, [], None).message.startswith("score skipped")
    assert score_sheet([[None]], [], ColourEmbedder()).message == "score skipped: nothing was rendered"


# -- real open_clip ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip() -> ClipEmbedder:
    try:
        score_module.import_open_clip()
    except ImportError as exc:
        pytest.skip(f"open_clip 2.7.0 is not installed in this environment ({exc})")
    emb = ClipEmbedder("ViT-B-32", pretrained="", device="cpu")
    emb.load()
    return emb


def _noise(seed: int, size: int = 96) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8))


def test_open_clip_random_weights_identical_renders_score_highest(clip: ClipEmbedder) -> None:
    from importlib.metadata import version

    assert version("open_clip_torch") == "2.7.0"
    same = _noise(1)
    images = [[same, _noise(10 + s), same.rotate(90 * (s % 2))] for s in range(5)]
    res = score_sheet(images, [], clip)
    assert res.cells is not None and res.best_column == 0
    assert np.allclose(res.cells[:, 0], 1.0, atol=1e-4)
    assert res.cells[:, 0].min() > res.cells[:, 1].max()
    assert "ViT-B-32 (random weights)" in res.message
    vecs = clip.embed([same, same, _noise(2)])
    assert vecs.shape == (3, 512) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert float(vecs[0] @ vecs[1]) > float(vecs[0] @ vecs[2])
    with_refs = score_sheet(images, [_noise(10), _noise(11)], clip)  # references like column 1's first rows
    assert with_refs.cells is not None and with_refs.cells[0, 1] > with_refs.cells[0, 0]


def test_missing_weights_or_model_skip_the_score(clip: ClipEmbedder) -> None:
    res = score_sheet([[_noise(1)], [_noise(2)]], [], ClipEmbedder("ViT-B-32", "no-such-weights", device="cpu"))
    assert res.cells is None and res.best_column is None
    assert res.message.startswith("score skipped: the CLIP model ViT-B-32 (no-such-weights) could not be loaded")
    with pytest.raises(ScoreUnavailable, match="NoSuchModel"):
        ClipEmbedder("NoSuchModel", "", device="cpu").load()


def test_without_open_clip_the_score_is_skipped(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def missing():  # type: ignore[no-untyped-def]
        raise ImportError("No module named 'open_clip'")

    monkeypatch.setattr(score_module, "import_open_clip", missing)
    res = score_sheet([[_noise(1)], [_noise(2)]], [], ClipEmbedder(device="cpu"))
    assert res.message.startswith("score skipped: open_clip is not installed")


def test_sheet_with_the_real_scorer_and_offline_weights(clip: ClipEmbedder, tmp_path: Path) -> None:
    make_lora(tmp_path / "loras", "zed", "kohya-sd1")
    host = RenderHost([tmp_path / "loras"], data_dir=tmp_path / "data")
    host.rescan(wait=True)
    req = SheetRequest(lora="zed", weights=(0.5, 1.0), width=64, height=64, steps=2)
    manager = SheetManager(host, embedder=lambda: clip)
    st = manager.wait(manager.submit(req), timeout=120)
    assert st.state == "succeeded" and st.best is not None
    assert all(c.score is not None for c in st.cells)
    # offline: the default weights tag is not there and cannot be fetched → the sheet is made, no score
    host.update_settings(consistency_clip_pretrained="not-downloaded-tag")
    manager = SheetManager(host)
    st = manager.wait(manager.submit(req), timeout=120)
    assert st.state == "succeeded" and Path(st.sheet).is_file()
    assert all(c.score is None for c in st.cells) and st.best is None
    assert "could not be loaded" in st.score_message

