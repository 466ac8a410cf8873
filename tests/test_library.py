from __future__ import annotations

import builtins
import hashlib
import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lib_lora import architecture, library, paths
from lib_lora.architecture import Detection, Evidence, Hints
from lib_lora.errors import LibraryError, SidecarError
from lib_lora.library import Library, LoraInfo, bounded_metadata
from lib_lora.library import core as library_core
from lib_lora.library import index as library_index
from lib_lora.library import scan as library_scan
from lib_lora.safetensors_header import read_header, write_file

SD15 = "sd15-kohya-dim4-mychar.safetensors"
SDXL = "sdxl-kohya-unetonly.safetensors"
TINY = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": ("F16", (4, 320)),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": ("F16", (320, 4))}


def tiny(path: Path, metadata: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path, TINY, metadata or {}, sparse=True)
    return path


def touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


@pytest.fixture
def root(tmp_path: Path, fixtures_dir: Path) -> Path:
    """chars/ holds the two real kohya outputs (one with the real A1111 sidecar), styles/ a tiny one."""
    r = tmp_path / "loras"
    (r / "chars").mkdir(parents=True)
    shutil.copyfile(fixtures_dir / "kohya-outputs" / SD15, r / "chars" / SD15)
    shutil.copyfile(fixtures_dir / "kohya-outputs" / SDXL, r / "chars" / SDXL)
    shutil.copyfile(fixtures_dir / "sidecars" / "alice.json", r / "chars" / "sd15-kohya-dim4-mychar.json")
    tiny(r / "styles" / "ink.safetensors", {"ss_output_name": "inkstyle"})
    return r


@pytest.fixture
def index(tmp_path: Path) -> Path:
    return tmp_path / "data" / "index.sqlite3"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every header the library reads."""
    seen: list[str] = []
    real = library_scan.read_header

    def counting(path, *a, **k):  # type: ignore[no-untyped-def]
        seen.append(os.fspath(path))
        return real(path, *a, **k)

    monkeypatch.setattr(library_scan, "read_header", counting)
    yield seen


@pytest.fixture
def fake_detect(monkeypatch: pytest.MonkeyPatch) -> list[Hints | None]:
    """A stand-in detector (the real one is tested on its own) that records its hints."""
    calls: list[Hints | None] = []

    def detect(header, hints=None):  # type: ignore[no-untyped-def]
        calls.append(hints)
        width = next((s[1] for n, (_d, s) in header.tensors.items() if n.endswith("lora_down.weight") and len(s) == 2), 0)
        arch = {768: "sd1", 320: "sd1", 640: "sdxl"}.get(width, "unknown")
        return Detection(kind="lora", architecture=arch, family="sd15" if arch == "sd1" else None, adapter="lora",
                         rank=4, alpha=2.0, targets=("unet",), trigger_words=("mychar",),
                         evidence=(Evidence("structure", f"architecture={arch}", f"width {width}"),),
                         conflicts=(), extra={"k": "v"})

    monkeypatch.setattr(architecture, "detect", detect)
    return calls


# --- scanning ----------------------------------------------------------------------------------


def test_scan_lists_every_file_with_its_facts(root: Path, index: Path) -> None:
    lib = Library([root], index)
    result = lib.scan()
    assert result.total == 3 and len(result.added) == 3 and result.reads == 3 and not result.errors
    by_rel = {e.relpath: e for e in lib.entries()}
    assert list(by_rel) == ["chars/sd15-kohya-dim4-mychar", "chars/sdxl-kohya-unetonly", "styles/ink"]
    sd15 = by_rel["chars/sd15-kohya-dim4-mychar"]
    assert sd15.name == "sd15-kohya-dim4-mychar" and sd15.suffix == ".safetensors" and sd15.root == str(root)
    assert sd15.path == str(root / "chars" / SD15) and sd15.realpath == os.path.realpath(sd15.path)
    assert sd15.size == (root / "chars" / SD15).stat().st_size and not sd15.legacy and sd15.error is None
    assert sd15.alias == "mylora"
    assert sd15.summary.images == 2 and sd15.summary.steps == 4 and sd15.summary.base_checkpoint == "sd15_random.safetensors"
    assert sd15.summary.network_dim == 4 and sd15.summary.network_alpha == 2.0
    assert sd15.summary.top_tags[0] == ("mychar", 2)
    assert sd15.sidecars.user is not None and sd15.sidecars.user.activation_text == "zk_alice, red coat"
    assert sd15.lora_hash == "9c4a1e666816"  # kohya's sshs_model_hash, known without hashing
    sources = [(t.source, t.words, t.guessed) for t in sd15.trigger_words]
    assert sources[0] == ("activation-text", ("zk_alice", "red coat"), False)
    assert ("modelspec", ("mychar",), False) in sources
    assert sources[-1][2] is True  # guessed tags come last, flagged
    assert by_rel["styles/ink"].alias == "inkstyle"


def test_real_detector_results_are_stored(root: Path, index: Path) -> None:
    try:
        architecture.detect(read_header(root / "chars" / SD15))
    except NotImplementedError:
        pytest.skip("architecture.detect is not implemented yet")
    lib = Library([root], index)
    lib.scan()
    fresh = Library([root], index)
    fresh.scan()
    by_name = {e.name: e for e in fresh.entries()}
    assert by_name["sd15-kohya-dim4-mychar"].architecture == "sd1"
    assert by_name["sdxl-kohya-unetonly"].architecture == "sdxl"
    assert by_name["sdxl-kohya-unetonly"].detection == {e.name: e for e in lib.entries()}["sdxl-kohya-unetonly"].detection


def test_detection_is_stored_and_not_rerun_on_a_warm_index(root: Path, index: Path, fake_detect: list) -> None:
    lib = Library([root], index)
    lib.scan()
    assert len(fake_detect) == 3
    hints = {h.filename: h for h in fake_detect}
    assert hints[SD15].sidecar_sd_version == "SD1" and hints[SD15].folders == ("chars",)
    before = {e.path: e.detection for e in lib.entries()}
    fresh = Library([root], index)
    result = fresh.scan()
    assert len(fake_detect) == 3 and result.reads == 0 and result.unchanged == 3
    after = {e.path: e.detection for e in fresh.entries()}
    assert after == before
    det = after[str(root / "chars" / SDXL)]
    assert det is not None and det.architecture == "sdxl" and det.evidence[0].source == "structure"
    assert det.extra == {"k": "v"} and isinstance(det.targets, tuple)


def test_rescan_reads_only_new_and_changed_files(root: Path, index: Path, reads: list[str]) -> None:
    lib = Library([root], index)
    lib.scan()
    assert len(reads) == 3
    reads.clear()
    again = lib.scan()
    assert reads == [] and again.unchanged == 3 and not again.changed_anything
    # a fresh process on the warm index reads nothing either
    assert Library([root], index).scan().reads == 0 and reads == []

    new = tiny(root / "styles" / "new.safetensors")
    touch_later(root / "chars" / SDXL)
    (root / "styles" / "ink.safetensors").unlink()
    result = lib.scan()
    assert sorted(reads) == sorted([str(new), str(root / "chars" / SDXL)])
    assert result.added == (str(new),) and result.changed == (str(root / "chars" / SDXL),)
    assert result.removed == (str(root / "styles" / "ink.safetensors"),) and result.unchanged == 1
    assert lib.get(root / "styles" / "ink.safetensors") is None


def test_changed_sidecar_is_noticed(root: Path, index: Path, reads: list[str]) -> None:
    lib = Library([root], index)
    lib.scan()
    reads.clear()
    sidecar = root / "chars" / "sd15-kohya-dim4-mychar.json"
    data = json.loads(sidecar.read_text())
    data["activation text"] = "changed words"
    sidecar.write_text(json.dumps(data, indent=4))
    touch_later(sidecar)
    (root / "styles" / "ink.preview.png").write_bytes(b"\x89PNG")
    result = lib.scan()
    assert sorted(result.changed) == sorted([str(root / "chars" / SD15), str(root / "styles" / "ink.safetensors")])
    entry = lib.get(root / "chars" / SD15)
    assert entry is not None and entry.sidecars.user is not None
    assert entry.sidecars.user.activation_text == "changed words"
    ink = lib.get(root / "styles" / "ink.safetensors")
    assert ink is not None and ink.preview == str(root / "styles" / "ink.preview.png")


def test_code_change_rereads_everything(root: Path, index: Path, reads: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    Library([root], index).scan()
    reads.clear()
    monkeypatch.setattr(library_index, "_code_fingerprint", lambda: "a-new-detector")
    assert Library([root], index).scan().reads == 3


@pytest.mark.parametrize("package", ["lib_lora.architecture", "lib_lora.sidecars", "lib_lora.library"])
def test_code_fingerprint_covers_every_module_of_the_readers(package: str) -> None:
    """Editing any module of the detector or sidecar package (not a fixed list of files) re-reads the rows."""
    import importlib

    modules = sorted(Path(str(importlib.import_module(package).__file__)).parent.glob("*.py"))
    assert len(modules) > 1
    for path in modules:
        st = path.stat()
        before = library_index._code_fingerprint()
        try:
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
            assert library_index._code_fingerprint() != before, path.name
        finally:
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_editing_a_copy_of_the_code_rereads_old_rows(root: Path, index: Path, tmp_path: Path) -> None:
    """A copy of ``lib_lora`` run in fresh processes: editing a detection module, a module of this package or
    adding one re-reads every row of the index; an untouched copy reuses them."""
    code = tmp_path / "code"
    shutil.copytree(Path(library.__file__).resolve().parents[1], code / "lib_lora",
                    ignore=shutil.ignore_patterns("__pycache__"))
    script = (f"from lib_lora.library import Library; "
              f"print(Library([{str(root)!r}], {str(index)!r}, workers=0).scan().reads)")

    def reads_in_copy() -> int:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PYTHONPATH"] = str(code)
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return int(done.stdout.split()[-1])

    def edit(path: Path) -> None:
        path.write_text(path.read_text() + "\n# edited\n")

    detector = Path(architecture.detect.__code__.co_filename)
    assert reads_in_copy() == 3
    assert reads_in_copy() == 0
    edit(code / "lib_lora" / detector.resolve().relative_to(Path(library.__file__).resolve().parents[1]))
    assert reads_in_copy() == 3
    edit(code / "lib_lora" / "library" / "lookup.py")
    assert reads_in_copy() == 3
    (code / "lib_lora" / "library" / "extra.py").write_text('"""A module added later."""\n')
    assert reads_in_copy() == 3
    assert reads_in_copy() == 0


def test_reader_worker_command_starts_and_reads(root: Path) -> None:
    """The command that starts a reader process imports the worker and answers a job with index rows."""
    lib = Library([root], workers=0)
    found, _errors, _links = library_scan._walk(lib.roots)
    job = {"fingerprint": "fp", "files": [library_scan._found_to_json(f) for f in found]}
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(library.__file__).resolve().parents[2])
    done = subprocess.run(library_scan._worker_command(), input=json.dumps(job).encode(), capture_output=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(r[0] for r in rows) == sorted(f.path for f in found) and len(rows) == 3
    assert all(r[7] == "fp" and r[10] is None for r in rows)


def test_symlinked_folders_are_followed_once_and_loops_end(tmp_path: Path, index: Path) -> None:
    r = tmp_path / "loras"
    drive = tmp_path / "other-drive" / "packs"
    tiny(r / "local" / "a.safetensors")
    tiny(drive / "b.safetensors")
    tiny(drive / "deep" / "c.safetensors")
    (r / "linked").symlink_to(drive)  # a drive linked into the LoRA folder
    (r / "linked-again").symlink_to(drive)  # a second link to the same folder
    (r / "local" / "loop").symlink_to(r)  # a loop back to the root
    (drive / "deep" / "up").symlink_to(drive)  # a loop inside the linked folder
    (r / "local" / "a-link.safetensors").symlink_to(r / "local" / "a.safetensors")  # same file twice
    (r / "broken.safetensors").symlink_to(tmp_path / "nowhere.safetensors")
    lib = Library([r], index)
    result = lib.scan()
    rels = sorted(e.relpath for e in lib.entries())
    assert rels == ["linked/b", "linked/deep/c", "local/a"]
    c = next(e for e in lib.entries() if e.name == "c")
    assert c.realpath == str((drive / "deep" / "c.safetensors").resolve())
    assert any("broken symbolic link" in msg for _p, msg in result.errors)


def test_real_folder_wins_over_a_link_to_it(tmp_path: Path, index: Path) -> None:
    r = tmp_path / "loras"
    tiny(r / "zz-real" / "x.safetensors")
    (r / "aa-link").symlink_to(r / "zz-real")
    lib = Library([r], index)
    lib.scan()
    assert [e.relpath for e in lib.entries()] == ["zz-real/x"]


def test_unreadable_and_truncated_files_are_listed_with_an_error(tmp_path: Path, index: Path, reads: list[str]) -> None:
    r = tmp_path / "loras"
    good = tiny(r / "good.safetensors")
    data = good.read_bytes()
    (r / "truncated.safetensors").write_bytes(data[:50])
    (r / "garbage.safetensors").write_bytes(b"\xff" * 64)
    (r / "empty.safetensors").write_bytes(b"")
    lib = Library([r], index)
    result = lib.scan()
    by_name = {e.name: e for e in lib.entries()}
    assert by_name["good"].error is None
    for bad in ("truncated", "garbage", "empty"):
        assert by_name[bad].error and bad in by_name[bad].error
        assert by_name[bad].error in by_name[bad].problems
    assert {os.path.basename(p) for p, _m in result.errors} == {"truncated.safetensors", "garbage.safetensors", "empty.safetensors"}
    # files with an error are tried again on every scan (a download may have finished)
    reads.clear()
    (r / "truncated.safetensors").write_bytes(data)
    lib.scan()
    assert len(reads) == 3
    assert {e.name: e for e in lib.entries()}["truncated"].error is None


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_permission_denied_file_and_folder(tmp_path: Path, index: Path) -> None:
    r = tmp_path / "loras"
    locked = tiny(r / "locked.safetensors")
    locked.chmod(0)
    tiny(r / "closed" / "inside.safetensors")
    (r / "closed").chmod(0)
    try:
        result = Library([r], index).scan()
    finally:
        (r / "closed").chmod(0o755)
        locked.chmod(0o644)
    assert any("locked.safetensors" in p for p, _ in result.errors)
    assert any(p.endswith("closed") for p, _ in result.errors)


def test_legacy_pickles_are_listed_and_never_opened(tmp_path: Path, index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = tmp_path / "loras"
    r.mkdir()
    marker = tmp_path / "pwned"
    bomb = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    (r / "old.pt").write_bytes(bomb)
    (r / "older.ckpt").write_bytes(bomb)
    (r / "old.json").write_text('{"activation text": "oldword"}')
    real_open = builtins.open

    def guarded_open(file, *a, **k):  # type: ignore[no-untyped-def]
        if str(file).endswith((".pt", ".ckpt")):
            raise AssertionError(f"opened a pickle: {file}")
        return real_open(file, *a, **k)

    def no_unpickle(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("unpickled something")

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(pickle, "load", no_unpickle)
    monkeypatch.setattr(pickle, "loads", no_unpickle)
    lib = Library([r], index)
    result = lib.scan()
    monkeypatch.undo()
    assert result.reads == 0 and not marker.exists()
    entries = {e.filename: e for e in lib.entries()}
    assert set(entries) == {"old.pt", "older.ckpt"}
    old = entries["old.pt"]
    assert old.legacy and old.error is None and old.detection is None
    assert any("legacy" in p for p in old.problems)
    assert old.sidecars.user is not None and old.sidecars.user.activation_text == "oldword"
    assert lib.lookup("old").entry == old
    # hashing reads bytes only; A1111 uses the full-file sha256 for .pt LoRAs
    hashed = lib.ensure_hashes(old)
    assert hashed.sha256 == hashlib.sha256(bomb).hexdigest() and hashed.addnet is None
    assert hashed.lora_hash == hashed.sha256[:12] and not marker.exists()


def test_missing_root_and_file_root_are_reported(tmp_path: Path, index: Path) -> None:
    f = tiny(tmp_path / "file.safetensors")
    result = Library([tmp_path / "nope", f], index).scan()
    assert result.total == 0 and len(result.errors) == 2
    assert "not found" in result.errors[0][1] and "not a folder" in result.errors[1][1]


def test_duplicates_and_roots_sharing_one_index(tmp_path: Path, index: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    tiny(a / "chars" / "alice.safetensors")
    tiny(a / "old" / "alice.safetensors")
    tiny(b / "bob.safetensors")
    lib_a = Library([a], index)
    lib_a.scan()
    dups = lib_a.duplicates()
    assert list(dups) == ["alice"] and [e.relpath for e in dups["alice"]] == ["chars/alice", "old/alice"]
    lib_b = Library([b], index)
    assert lib_b.scan().removed == ()
    fresh_a = Library([a], index)
    assert fresh_a.scan().reads == 0 and len(fresh_a) == 2  # b's scan did not drop a's rows
    both = Library([a, b, a], index)
    assert both.roots == (str(a), str(b)) and both.scan().reads == 0 and len(both) == 3


def test_generation_changes_only_with_content(root: Path, index: Path) -> None:
    lib = Library([root], index)
    lib.scan()
    g = lib.generation
    lib.scan()
    assert lib.generation == g
    tiny(root / "x.safetensors")
    lib.scan()
    assert lib.generation > g


def test_entries_before_a_scan_come_from_the_index(root: Path, index: Path, reads: list[str]) -> None:
    Library([root], index).scan()
    reads.clear()
    lib = Library([root], index)
    assert len(lib.entries()) == 3 and reads == []
    assert lib.lookup("mylora").found


# --- the index file ----------------------------------------------------------------------------


def _foreign_db(path: Path) -> None:
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    c.execute("INSERT INTO users (name) VALUES ('someone')")
    c.commit()
    c.close()


def _old_schema(path: Path) -> None:
    c = sqlite3.connect(path)
    c.execute(f"PRAGMA application_id={library.APPLICATION_ID}")
    c.execute("PRAGMA user_version=999")
    c.execute("CREATE TABLE files (path TEXT)")
    c.commit()
    c.close()


@pytest.mark.parametrize("spoil", ["garbage", "foreign", "truncated-db"])
def test_unusable_index_is_moved_aside_and_rebuilt(root: Path, index: Path, spoil: str) -> None:
    index.parent.mkdir(parents=True)
    if spoil == "garbage":
        index.write_bytes(b"this is not a database\n" * 100)
    elif spoil == "foreign":
        _foreign_db(index)
    else:
        Library([root], index).scan()
        index.write_bytes(index.read_bytes()[:150])
        for extra in ("-wal", "-shm"):
            Path(str(index) + extra).unlink(missing_ok=True)
    original = index.read_bytes()
    lib = Library([root], index)
    result = lib.scan()
    assert result.total == 3 and result.reads == 3
    assert result.notes and "moved it to" in result.notes[0]
    backups = [p for p in index.parent.iterdir() if p.name.startswith(index.name + ".bad-") and not p.name.endswith(("-wal", "-shm"))]
    assert len(backups) == 1 and backups[0].read_bytes() == original  # the user's file is kept, not destroyed
    assert Library([root], index).scan().reads == 0  # the rebuilt index works


def test_index_of_another_version_is_rebuilt_keeping_hashes(root: Path, index: Path) -> None:
    lib = Library([root], index)
    lib.scan()
    lib.ensure_hashes(str(root / "styles" / "ink.safetensors"))
    lib.close()
    c = sqlite3.connect(index)
    c.execute("PRAGMA user_version=1")  # as an older LoRA Studio left it
    c.close()
    fresh = Library([root], index)
    result = fresh.scan()
    assert result.reads == 3 and "upgraded from format 1" in result.notes[0] and "1 cached hashes kept" in result.notes[0]
    assert fresh.get(root / "styles" / "ink.safetensors").hashes is not None
    assert not [p for p in index.parent.iterdir() if ".bad-" in p.name]  # our own cache: no backup clutter
    # a wrong version with unreadable tables still ends in a working index
    index.unlink()
    for extra in ("-wal", "-shm"):
        Path(str(index) + extra).unlink(missing_ok=True)
    _old_schema(index)
    assert Library([root], index).scan().total == 3


def test_index_corrupted_while_in_use_recovers(root: Path, index: Path) -> None:
    lib = Library([root], index)
    lib.scan()
    lib._index.close_thread_connection()
    for extra in ("-wal", "-shm"):
        Path(str(index) + extra).unlink(missing_ok=True)
    index.write_bytes(b"\0garbage" * 512)
    lib._state = None  # as a new process would
    lib._index._ready = False
    result = lib.scan()
    assert result.total == 3


def test_unwritable_index_location_falls_back_to_memory(root: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    lib = Library([root], blocker / "sub" / "index.sqlite3")
    result = lib.scan()
    assert result.total == 3 and any("in-memory" in n for n in result.notes)
    assert lib.scan().reads == 0


def test_default_index_lives_in_the_user_data_folder(root: Path, user_data: Path) -> None:
    lib = Library([root])
    assert lib.index_path == user_data / paths.INDEX_FILENAME
    lib.scan()
    assert (user_data / paths.INDEX_FILENAME).is_file()


def test_index_uses_wal(root: Path, index: Path) -> None:
    Library([root], index).scan()
    c = sqlite3.connect(index)
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    c.close()


# --- names -------------------------------------------------------------------------------------


@pytest.fixture
def names(tmp_path: Path, index: Path) -> Library:
    r = tmp_path / "loras"
    tiny(r / "chars" / "alice.safetensors", {"ss_output_name": "alice_v2"})
    tiny(r / "old" / "alice.safetensors")
    tiny(r / "styles" / "Watercolor.safetensors", {"ss_output_name": "wc"})
    tiny(r / "misc" / "bob.safetensors", {"ss_output_name": "shared_alias"})
    tiny(r / "misc" / "carol.safetensors", {"ss_output_name": "shared_alias"})
    tiny(r / "misc" / "dave.safetensors", {"ss_output_name": "Watercolor"})  # alias equal to another stem
    tiny(r / "Ünïcode name.safetensors")
    lib = Library([r], index)
    lib.scan()
    return lib


def test_lookup_by_stem_relpath_alias_and_case(names: Library) -> None:
    found = names.lookup("Watercolor")
    assert found.status == "found" and found.matched_by == "stem" and found.entry is not None
    assert found.entry.relpath == "styles/Watercolor"  # the stem wins over dave's alias "Watercolor"
    assert names.lookup("wc").matched_by == "alias"
    rel = names.lookup("chars/alice")
    assert rel.status == "found" and rel.matched_by == "relpath" and rel.entry is not None
    assert rel.entry.relpath == "chars/alice"
    assert names.lookup("chars\\alice").entry == rel.entry  # Windows separators
    assert names.lookup("chars/alice.safetensors").entry == rel.entry
    assert names.lookup("./chars/alice").entry == rel.entry
    case = names.lookup("WC")
    assert case.status == "found" and case.matched_by == "casefold" and case.entry is not None
    assert case.entry.name == "Watercolor"
    # casefold matches the stem Watercolor and dave's alias "Watercolor": not unique
    assert names.lookup("WATERCOLOR").status == "ambiguous"
    assert names.lookup("CHARS/ALICE").matched_by == "casefold"
    assert names.lookup("Ünïcode name").found
    assert names.lookup("  wc ").found


def test_ambiguous_names_list_every_candidate(names: Library) -> None:
    amb = names.lookup("alice")
    assert amb.status == "ambiguous" and amb.entry is None and amb.matched_by == "stem"
    assert [c.relpath for c in amb.candidates] == ["chars/alice", "old/alice"]
    assert "chars/alice" in amb.message and "old/alice" in amb.message
    alias = names.lookup("shared_alias")
    assert alias.status == "ambiguous" and {c.name for c in alias.candidates} == {"bob", "carol"}
    # alias of one file beats the case-insensitive match of another
    assert names.lookup("alice_v2").entry is not None


@pytest.mark.parametrize("bad", ["../alice", "chars/../../etc/passwd", "/etc/passwd", "C:\\loras\\alice", "..\\x", "\\\\server\\share\\x"])
def test_traversal_and_absolute_paths_are_refused(names: Library, bad: str) -> None:
    res = names.lookup(bad)
    assert res.status == "refused" and res.entry is None and "not allowed" in res.message


def test_missing_names_get_suggestions(names: Library) -> None:
    miss = names.lookup("watercolour")
    assert miss.status == "missing" and miss.suggestions and miss.suggestions[0] in ("Watercolor", "styles/Watercolor")
    assert len(miss.suggestions) <= 3 and "did you mean" in miss.message
    assert names.lookup("zzzzzzzzzz").suggestions == ()
    assert names.lookup("").status == "missing"


def test_lookup_by_hash(root: Path, index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = Library([root], index)
    lib.scan()
    # addnet short hash from kohya's sshs_model_hash: known before any hashing
    res = lib.lookup("9c4a1e666816")
    assert res.found and res.matched_by == "addnet" and res.entry is not None and res.entry.name == "sd15-kohya-dim4-mychar"
    # AutoV2 only once hashed
    miss = lib.lookup("336be815cb")
    assert miss.status == "missing" and "not computed yet" in miss.message
    lib.start_hashing()
    assert lib.wait_for_hashes(60)
    status = lib.hash_status()
    assert status.done == status.total == 3 and not status.running and status.pending == 0
    hit = lib.lookup("336BE815CB")
    assert hit.found and hit.matched_by == "autov2"
    full = hashlib.sha256((root / "chars" / SD15).read_bytes()).hexdigest()
    assert lib.lookup(full).found
    ink = lib.get(root / "styles" / "ink.safetensors")
    assert ink is not None and ink.addnet is not None and lib.lookup(ink.addnet[:12]).entry == ink
    # a new process gets the hashes from the index, without hashing again
    monkeypatch.setattr(library_core, "hash_file", lambda *a, **k: pytest.fail("hashed again"))
    fresh = Library([root], index)
    fresh.scan()
    assert fresh.lookup("336be815cb").found
    assert all(e.hashes is not None for e in fresh.entries())


def test_hashes_match_hashlib_and_a1111(root: Path, index: Path) -> None:
    lib = Library([root], index)
    lib.scan()
    for entry in lib.entries():
        got = lib.ensure_hashes(entry)
        data = Path(entry.path).read_bytes()
        n = int.from_bytes(data[:8], "little")
        assert got.sha256 == hashlib.sha256(data).hexdigest()
        assert got.autov2 == got.sha256[:10]
        assert got.addnet == hashlib.sha256(data[8 + n :]).hexdigest()
        assert got.hashes is not None and got.lora_hash == got.addnet[:12]


def test_changed_file_is_hashed_again(root: Path, index: Path) -> None:
    lib = Library([root], index)
    lib.scan()
    ink = root / "styles" / "ink.safetensors"
    first = lib.ensure_hashes(str(ink))
    with open(ink, "r+b") as fh:
        fh.seek(read_header(ink).data_offset)
        fh.write(b"\x01\x02")
    touch_later(ink)
    lib.scan()
    entry = lib.get(ink)
    assert entry is not None and entry.hashes is None
    assert lib.ensure_hashes(entry).sha256 != first.sha256


def test_lookups_while_hashing_in_the_background(tmp_path: Path, index: Path) -> None:
    r = tmp_path / "loras"
    for i in range(40):
        p = tiny(r / f"f{i:02d}.safetensors")
        with open(p, "ab") as fh:
            fh.write(os.urandom(200_000))  # different contents, a little to read
    lib = Library([r], index)
    lib.scan()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(300):
                assert lib.lookup("f07").found
                lib.hash_status()
                lib.entries()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    lib.start_hashing()
    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lib.wait_for_hashes(60)
    assert not errors
    assert lib.hash_status().done == 40
    assert len({e.sha256 for e in lib.entries()}) == 40


def test_stop_hashing(tmp_path: Path, index: Path) -> None:
    r = tmp_path / "loras"
    for i in range(5):
        tiny(r / f"f{i}.safetensors")
    lib = Library([r], index)
    lib.scan()
    lib.start_hashing()
    assert not lib.start_hashing() or lib.hash_status().done == 5  # one worker at a time
    lib.stop_hashing()
    assert not lib.hash_status().running
    lib.close()


# --- user metadata -----------------------------------------------------------------------------


def test_set_user_metadata_writes_the_sidecar_and_refreshes(root: Path, index: Path, fake_detect: list) -> None:
    lib = Library([root], index)
    lib.scan()
    entry = lib.get(root / "styles" / "ink.safetensors")
    assert entry is not None and entry.sidecars.user is None
    g = lib.generation
    updated = lib.set_user_metadata(entry, activation_text="inky, lines", preferred_weight=0.6, base="pony",
                                    category="style")
    sidecar = json.loads((root / "styles" / "ink.json").read_text())
    assert sidecar == {"sd version": "SD1", "activation text": "inky, lines", "preferred weight": 0.6,
                       "lora studio base": "pony", "lora studio category": "style"}
    assert updated.sidecars.user is not None and updated.sidecars.user.base == "pony"
    assert updated.category == "style" and updated.trigger_words[0].words == ("inky", "lines")
    assert fake_detect[-1] is not None and fake_detect[-1].sidecar_base == "pony"
    assert lib.generation > g and lib.get(entry.path) == updated
    assert lib.scan().reads == 0  # the index already holds the new sidecar signature
    with pytest.raises(LibraryError):
        lib.set_user_metadata(str(root / "nope.safetensors"), notes="x")


def test_set_user_metadata_refuses_a_malformed_sidecar(root: Path, index: Path) -> None:
    (root / "styles" / "ink.json").write_text("{broken")
    lib = Library([root], index)
    lib.scan()
    entry = lib.get(root / "styles" / "ink.safetensors")
    assert entry is not None and entry.sidecars.problems
    with pytest.raises(SidecarError):
        lib.set_user_metadata(entry, notes="x")
    assert (root / "styles" / "ink.json").read_text() == "{broken"


# --- metadata bounds ---------------------------------------------------------------------------


def test_bounded_metadata_caps_huge_values() -> None:
    freq = {"10_big": {f"tag{i}": i for i in range(5000)}}
    md = {
        "ss_tag_frequency": json.dumps(freq),
        "ss_datasets": json.dumps([{"resolution": [1024, 1024], "tag_frequency": freq, "subsets": [
            {"class_tokens": "zk", "img_count": 30, "is_reg": False, "bucket_info": "x" * 10_000}]}]),
        "modelspec.thumbnail": "data:image/png;base64," + "A" * 100_000,
        "ss_training_comment": "c" * 50_000,
        "ss_output_name": "big",
        **{f"other_{i}": "v" for i in range(200)},
    }
    small = bounded_metadata(md)
    assert len(json.dumps(small)) < 20_000
    kept = json.loads(small["ss_tag_frequency"])["10_big"]
    assert len(kept) == 50 and "tag4999" in kept
    ds = json.loads(small["ss_datasets"])
    assert ds == [{"resolution": [1024, 1024], "subsets": [{"class_tokens": "zk", "img_count": 30, "is_reg": False}]}]
    assert "modelspec.thumbnail" not in small and len(small["ss_training_comment"]) <= 2049
    assert sum(k.startswith("other_") for k in small) == 64
    summary = library.MetadataSummary.from_metadata(small)
    assert summary.images == 30 and summary.resolution == "1024x1024" and summary.top_tags[0] == ("tag4999", 4999)


def test_loramodel_info_is_hashable_and_comparable(root: Path, index: Path) -> None:
    lib = Library([root], index)
    lib.scan()
    entries = lib.entries()
    assert len(set(entries)) == 3
    assert isinstance(entries[0], LoraInfo) and entries == lib.entries()


def test_rows_load_lazily_and_survive_another_process_rescanning(root: Path, index: Path, reads: list[str]) -> None:
    Library([root], index).scan()
    reads.clear()
    mine = Library([root], index)
    assert mine.scan().reads == 0 and reads == []  # warm start: nothing read, nothing decoded yet
    # another process changes a file and rescans before this one asks for its entries
    ink = root / "styles" / "ink.safetensors"
    tiny(ink, {"ss_output_name": "ink_v2"})
    touch_later(ink)
    assert Library([root], index).scan().changed == (str(ink),)
    reads.clear()
    entries = {e.name: e for e in mine.entries()}
    assert entries["ink"].metadata.get("ss_output_name") == "ink_v2"  # re-read, not mismatched data
    assert reads == [str(ink)]
    assert entries["sd15-kohya-dim4-mychar"].sidecars.user is not None
    assert mine.scan().changed == (str(ink),)  # and the next scan of this process picks the change up


def test_lazy_metadata_mapping_behaves_like_a_dict(root: Path, index: Path) -> None:
    Library([root], index).scan()
    entry = next(e for e in Library([root], index).entries() if e.alias == "mylora")
    md = entry.metadata
    assert isinstance(md, library.LazyJSONMapping)
    assert md["ss_output_name"] == "mylora" and "ss_network_dim" in md and md.get("nope") is None
    assert dict(md) == json.loads(json.dumps(dict(md))) and len(md) == len(dict(md))
    assert md == dict(md)


def _many(r: Path, n: int) -> None:
    for i in range(n):
        tiny(r / f"pack{i % 3}" / f"lora_{i:03d}.safetensors", {"ss_output_name": f"out{i}", "modelspec.trigger_phrase": f"w{i}"})
    (r / "pack0" / "lora_000.json").write_text('{"activation text": "from sidecar"}')
    (r / "pack1" / "bad.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")


def _snapshot(lib: Library) -> list[tuple]:
    return [(e.path, e.alias, e.error, e.detection, dict(e.metadata), e.sidecars, e.trigger_words) for e in lib.entries()]


def test_worker_processes_give_the_same_result(tmp_path: Path, reads: list[str]) -> None:
    r = tmp_path / "loras"
    _many(r, 60)
    (r / "pack2" / "ünïcödé 名前.safetensors").write_bytes((r / "pack2" / "lora_002.safetensors").read_bytes())
    seq = Library([r], tmp_path / "seq.db", workers=0)
    par = Library([r], tmp_path / "par.db", workers=3)
    rs = seq.scan()
    reads.clear()
    rp = par.scan()
    assert reads == []  # every header was read by the worker processes
    assert rs.added == rp.added and len(rp.added) == 62 and rs.errors == rp.errors
    assert _snapshot(seq) == _snapshot(par)
    assert par.lookup("out7").found and par.get(r / "pack0" / "lora_000.safetensors").trigger_words[0].words == ("from sidecar",)


def test_a_failing_worker_falls_back_to_reading_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = tmp_path / "loras"
    _many(r, 50)
    monkeypatch.setattr(library_scan, "_worker_command", lambda: [sys.executable, "-c", "import sys; sys.exit(3)"])
    lib = Library([r], tmp_path / "i.db", workers=2)
    result = lib.scan()
    assert len(result.added) == 51 and lib.lookup("out49").found


def test_worker_count_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LORA_STUDIO_SCAN_WORKERS", "0")
    assert Library([tmp_path])._workers == 0
    monkeypatch.delenv("LORA_STUDIO_SCAN_WORKERS")
    assert 1 <= Library([tmp_path])._workers <= 4


def test_listing_does_not_wait_for_a_running_scan(root: Path, index: Path) -> None:
    Library([root], index).scan()
    tiny(root / "styles" / "new.safetensors")
    lib = Library([root], index, workers=0)
    entered, release = threading.Event(), threading.Event()

    def slow_progress(done: int, total: int, path: str) -> None:
        entered.set()
        release.wait(30)

    t = threading.Thread(target=lib.scan, kwargs={"progress": slow_progress})
    t.start()
    try:
        assert entered.wait(30)
        assert lib.lookup("mylora").found  # answered from the index while the scan is busy
        assert len(lib.entries()) == 3
    finally:
        release.set()
        t.join(30)
    assert len(lib.entries()) == 4


def test_unreadable_file_simulated_for_root(tmp_path: Path, index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a permission-denied file looks like (tests run as root in CI, where chmod 0 does not bite)."""
    r = tmp_path / "loras"
    locked = tiny(r / "locked.safetensors")
    tiny(r / "fine.safetensors")
    real_open = builtins.open

    def deny(file, *a, **k):  # type: ignore[no-untyped-def]
        if os.fspath(file) == str(locked):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **k)

    monkeypatch.setattr(builtins, "open", deny)
    lib = Library([r], index, workers=0)
    result = lib.scan()
    entry = lib.get(locked)
    assert entry is not None and entry.error is not None and "Permission denied" in entry.error
    assert any(p == str(locked) for p, _m in result.errors)
    assert lib.get(r / "fine.safetensors").error is None


def test_user_data_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LORA_STUDIO_DATA", raising=False)
    monkeypatch.setattr(paths.sys, "platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert paths.user_data_dir() == tmp_path / "xdg" / "lora-studio"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert paths.user_data_dir() == Path.home() / ".local" / "share" / "lora-studio"
    monkeypatch.setenv("LORA_STUDIO_DATA", str(tmp_path / "env"))
    assert paths.user_data_dir() == tmp_path / "env"
    assert paths.user_data_dir(tmp_path / "explicit") == tmp_path / "explicit"  # the WebUI adapter's folder wins
    assert not (tmp_path / "env").exists()
    assert paths.user_data_dir(ensure=True).is_dir()
    assert paths.default_index_path() == tmp_path / "env" / paths.INDEX_FILENAME
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LibraryError, match="cannot create"):
        paths.user_data_dir(blocker / "sub", ensure=True)


# --- hostile files -------------------------------------------------------------------------------


def _raw_safetensors(path: Path, header: dict, data: bytes) -> Path:
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data)
    return path


def test_hostile_files_are_listed_with_one_line_reasons(tmp_path: Path, index: Path) -> None:
    r = tmp_path / "loras"
    u8 = {"dtype": "U8", "shape": [4]}
    _raw_safetensors(r / "overlap.safetensors", {"a": {**u8, "data_offsets": [0, 4]}, "b": {**u8, "data_offsets": [2, 6]}}, b"\0" * 6)
    _raw_safetensors(r / "gap.safetensors", {"a": {**u8, "data_offsets": [0, 4]}}, b"\0" * 9)
    (r / "zipped.safetensors").write_bytes(b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\0" * 64)
    (r / "pickled.safetensors").write_bytes(pickle.dumps({"w": [1, 2, 3]}, protocol=4))
    nonstr = tiny(r / "nonstring.safetensors", {"ss_output_name": "nonstr"})
    data = nonstr.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["__metadata__"]["modelspec.trigger_phrase"] = {"a": 1}
    _raw_safetensors(nonstr, header, data[8 + n:])
    tiny(r / "fine.safetensors")
    lib = Library([r], index, workers=0)
    result = lib.scan()
    errors = dict(result.errors)
    expect = {"overlap": "overlap", "gap": "gap", "zipped": "PyTorch pickle/zip checkpoint, not safetensors — never opened",
              "pickled": "PyTorch pickle/zip checkpoint, not safetensors — never opened",
              "nonstring": "metadata value is not a string"}
    for stem, words in expect.items():
        entry = lib.lookup(stem).entry
        assert entry is not None and entry.error is not None and words in entry.error, (stem, entry)
        assert "\n" not in entry.error and errors[entry.path] == entry.error
        assert entry.detection is None and dict(entry.metadata) == {}
    bad = lib.lookup("nonstring").entry
    assert bad is not None and bad.alias is None and bad.trigger_words == () and "WebUI cannot load" in bad.error
    assert not lib.lookup("nonstr").found
    assert lib.lookup("fine").entry.error is None


def test_a_linked_file_pointing_outside_the_roots_is_listed_with_its_target(tmp_path: Path, index: Path) -> None:
    r = tmp_path / "loras"
    tiny(r / "mine.safetensors")
    elsewhere = tiny(tmp_path / "downloads" / "stray.safetensors", {"ss_output_name": "stray"})
    (r / "linked.safetensors").symlink_to(elsewhere)
    drive = tmp_path / "other-drive" / "packs"
    tiny(drive / "packed.safetensors")
    (r / "drive").symlink_to(drive, target_is_directory=True)
    lib = Library([r], index, workers=0)
    result = lib.scan()
    linked = lib.get(r / "linked.safetensors")
    assert linked is not None and linked.path == str(r / "linked.safetensors")
    assert linked.link_outside == str(elsewhere.resolve()) and linked.error is None
    assert f"{r / 'linked.safetensors'} links outside the LoRA folders → {elsewhere.resolve()}" in linked.problems
    assert linked.detection is not None and lib.lookup("stray").entry == linked  # still usable
    assert linked.to_dict()["link_outside"] == str(elsewhere.resolve())
    # a linked folder is followed as before, without a problem; the scan names it
    packed = lib.get(r / "drive" / "packed.safetensors")
    assert packed is not None and packed.link_outside is None and packed.problems == ()
    assert result.links == ((str(r / "drive"), str(drive.resolve())),)
    assert lib.get(r / "mine.safetensors").link_outside is None
    # kept in the index (a warm start knows it) and by reader processes
    warm = Library([r], index)
    assert warm.get(r / "linked.safetensors").link_outside == str(elsewhere.resolve())
    assert Library([r], index).scan().reads == 0
    for i in range(60):
        tiny(r / "many" / f"m{i}.safetensors")
    par = Library([r], tmp_path / "par.db", workers=2)
    par.scan()
    assert par.get(r / "linked.safetensors").link_outside == str(elsewhere.resolve())
    # once the target's folder is a LoRA folder too, the link is no longer outside
    both = Library([r, tmp_path / "other-drive", tmp_path / "downloads"], index, workers=0)
    both.scan()
    assert all(e.link_outside is None for e in both.entries())
