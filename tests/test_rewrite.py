"""The prompt rewrite on a real library of real LoRA files (kohya outputs and synth headers)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from factory import make_lora
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lib_lora import settings as settings_mod
from lib_lora.cli import main as cli_main
from lib_lora.library import Library
from lib_lora.prompt import parse_prompt
from lib_lora.rewrite import (
    AMBIGUOUS,
    MISSING,
    REFUSED,
    RESOLVED,
    RewriteSettings,
    format_infotext,
    loader_name_for,
    parse_infotext,
    preview,
    resolve_name,
    rewrite_batch,
    rewrite_prompt,
)

SD15 = "sd15-kohya-dim4-mychar.safetensors"  # ss_output_name "mylora", trigger "mychar", sshs_model_hash 9c4a1e66...
SDXL = "sdxl-kohya-unetonly.safetensors"  # ss_output_name "myxl"
SD15_ADDNET12 = "9c4a1e666816"


def lora(root: Path, name: str, preset: str = "kohya-sd1", subdir: str | None = None, **metadata: str | None) -> Path:
    """A synth LoRA whose ``ss_output_name`` is its stem and whose ``sshs_model_hash`` is its own, as
    kohya writes them."""
    own = hashlib.sha256(f"{subdir}/{name}".encode()).hexdigest()
    return make_lora(root, name, preset, subdir=subdir,
                     metadata={"ss_output_name": name, "sshs_model_hash": own, **metadata})


def build_library_root(root: Path, fixtures: Path) -> None:
    """A user's LoRA folder: real kohya outputs, real sidecars, and shadowed names."""
    (root / "chars").mkdir(parents=True)
    shutil.copyfile(fixtures / "kohya-outputs" / SD15, root / "chars" / "mychar.safetensors")
    shutil.copyfile(fixtures / "kohya-outputs" / SDXL, root / "xl_style.safetensors")
    # alice exists twice: chars/alice (with the user's sidecar) and old/alice -> the built-in loader
    # would load whichever it scanned last.
    lora(root, "alice", subdir="chars", **{"modelspec.trigger_phrase": "alice_tok"})
    shutil.copyfile(fixtures / "sidecars" / "alice.json", root / "chars" / "alice.json")
    lora(root, "alice", subdir="old", **{"modelspec.trigger_phrase": "old_alice"})
    lora(root, "bob", ss_output_name="bobby", **{"modelspec.trigger_phrase": "bobtok"})
    lora(root, "kotori", "kohya-sdxl", subdir="chars")
    shutil.copyfile(fixtures / "sidecars" / "kotori.civitai.info", root / "chars" / "kotori.civitai.info")
    # Only guessed trigger words (ss_tag_frequency), nothing else.
    no_words: dict[str, str | None] = {"modelspec.trigger_phrase": None, "ss_datasets": None, "ss_dataset_dirs": None}
    lora(root, "guessonly", **no_words, ss_tag_frequency=json.dumps({"img": {"1girl": 5, "smile": 3}}))
    lora(root, "Weird Name.v2 ünï", subdir="misc", **no_words, ss_tag_frequency=None)
    lora(root, "hada", "loha-sd1", subdir="lycoris")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> Iterator[Library]:
    base = tmp_path_factory.mktemp("rewrite")
    root = base / "loras"
    build_library_root(root, fixtures_dir)
    lib = Library([root], base / "index.sqlite3")
    lib.scan()
    yield lib
    lib.close()


PLAIN = RewriteSettings(trigger_policy=settings_mod.TRIGGER_OFF)


def only_tag(prompt: str, library: Library, cfg: RewriteSettings = PLAIN):  # type: ignore[no-untyped-def]
    result = rewrite_prompt(prompt, "", library, settings=cfg)
    assert len(result.tags) == 1
    return result, result.tags[0]


# --------------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "matched_by", "relpath"),
    [
        ("bob", "stem", "bob"),
        ("chars/alice", "relpath", "chars/alice"),
        ("chars/mychar.safetensors", "relpath", "chars/mychar"),
        ("mylora", "alias", "chars/mychar"),
        ("bobby", "alias", "bob"),
        (SD15_ADDNET12, "addnet", "chars/mychar"),
        ("BOB", "casefold", "bob"),
        ("Chars/Kotori", "casefold", "chars/kotori"),
        ("  bob ", "stem", "bob"),
        ("Weird Name.v2 ünï", "stem", "misc/Weird Name.v2 ünï"),
    ],
)
def test_resolution_order(library: Library, name: str, matched_by: str, relpath: str) -> None:
    result, tag = only_tag(f"x, <lora:{name}:0.7>, y", library)
    assert tag.status == RESOLVED, tag.message
    assert (tag.matched_by, tag.relpath) == (matched_by, relpath)
    assert tag.path and Path(tag.path).is_file()
    # The tag now names what the built-in loader finds, with the weight untouched.
    assert tag.output == f"<lora:{tag.loader_name}:0.7>"
    assert result.prompt == f"x, {tag.output}, y"


def test_autov2_hash_resolves_once_hashed(library: Library) -> None:
    entry = library.ensure_hashes(library.lookup("bob").entry)  # type: ignore[arg-type]
    assert entry.autov2
    _, tag = only_tag(f"<lora:{entry.autov2}:1>", library)
    assert (tag.status, tag.matched_by, tag.relpath) == (RESOLVED, "autov2", "bob")


def test_ambiguous_name_is_removed_with_candidates(library: Library) -> None:
    result, tag = only_tag("1girl, <lora:alice:0.8>, smile", library)
    assert tag.status == AMBIGUOUS
    assert tag.candidates == ("chars/alice", "old/alice")
    assert "chars/alice" in tag.message and "old/alice" in tag.message
    assert result.prompt == "1girl, , smile"
    assert "<lora" not in result.prompt
    assert result.skipped == ("alice",)
    assert result.warnings == (tag.message,)


def test_missing_name_is_removed_with_suggestions(library: Library) -> None:
    result, tag = only_tag("<lora:kotory:1> hi", library)
    assert tag.status == MISSING
    assert "kotori" in " ".join(tag.suggestions)
    assert 1 <= len(tag.suggestions) <= 3
    assert "did you mean" in tag.message
    assert result.prompt == " hi"
    result, tag = only_tag("<lora:zzzzzzzzzz:1>", library)
    assert tag.status == MISSING and tag.suggestions == () and "did you mean" not in tag.message


@pytest.mark.parametrize("name", ["../bob", "chars/../../etc/passwd", "/etc/passwd", "\\\\server\\share\\x", "..\\bob"])
def test_paths_outside_the_folders_are_refused(library: Library, name: str) -> None:
    result, tag = only_tag(f"a <lora:{name}:1> b", library)
    assert tag.status == REFUSED
    assert result.prompt == "a  b"
    assert "removed" in tag.message


@pytest.mark.parametrize("text", ["<lora:bob:heavy>", "<lora:bob:1:x>", "<lora:bob:1:1:2.5>", "<lora:te=1>", "<lora:bob:nan>"])
def test_tags_the_builtin_would_crash_on_are_refused(library: Library, text: str) -> None:
    result, tag = only_tag(f"a {text} b", library)
    assert tag.status == REFUSED
    assert "drop every LoRA" in tag.message
    assert result.prompt == "a  b"


def test_other_networks_and_text_untouched(library: Library) -> None:
    prompt = "(masterpiece:1.2), <hypernet:anime:0.5> <lyco:bob:0.6:lbw=0,1,1> <foo:bar> [x|y]"
    result = rewrite_prompt(prompt, "neg <lora:bob:1>", library, settings=PLAIN)
    assert result.prompt == prompt  # lyco:bob resolves to bob, unchanged
    assert [t.network for t in result.tags] == ["lyco"]
    assert result.negative == "neg <lora:bob:1>"  # negatives are never parsed for tags
    renamed = rewrite_prompt("<lyco:BOB:0.6:lbw=0,1,1>", "", library, settings=PLAIN)
    assert renamed.prompt == "<lyco:bob:0.6:lbw=0,1,1>"
    # Forge has no "lyco" network: the glue asks for <lora:...> there.
    forge = RewriteSettings(trigger_policy="off", lyco_as_lora=True)
    assert rewrite_prompt("<lyco:lycoris/hada:0.6> <lyco:nothere>", "", library, settings=forge).prompt == (
        "<lora:hada:0.6> "
    )


def test_tags_in_comments_are_left_alone(library: Library) -> None:
    prompt = "1girl <lora:bob:1>\n# tried <lora:nothere:1> and <lora:alice>\n"
    result = rewrite_prompt(prompt, "", library, settings=PLAIN)
    assert [t.name for t in result.tags] == ["bob"]
    assert result.prompt == prompt
    off = rewrite_prompt(prompt, "", library, settings=RewriteSettings(trigger_policy="off", prompt_comments=False))
    assert [t.status for t in off.tags] == [RESOLVED, MISSING, AMBIGUOUS]


def test_disabled_passes_through(library: Library) -> None:
    prompt = "<lora:alice:1> <lora:nothere>"
    result = rewrite_prompt(prompt, "neg", library, settings=RewriteSettings(enabled=False))
    assert (result.prompt, result.negative, result.tags, result.warnings, result.infotext) == (prompt, "neg", (), (), "")
    assert not result.changed


def test_resolve_name_reads_its_own_aliases(library: Library) -> None:
    entry = library.lookup("chars/alice").entry
    assert entry is not None
    from lib_lora.rewrite import alias_hash

    found = resolve_name(library, f"chars/alice~{alias_hash(entry)}")
    assert found.status == "found" and found.entry.path == entry.path and found.matched_by == "loader-alias"
    # A stale hash falls back to the base name.
    assert resolve_name(library, "bob~00000000").entry.relpath == "bob"


# --------------------------------------------------------------------------------------------------
# The name handed to the built-in loader
# --------------------------------------------------------------------------------------------------


class BuiltinTable:
    """A model of the built-in Lora's name table (A1111 v1.10 / Forge ``networks.py``), written from
    its documented behaviour: files are added in scan order; ``available_networks[stem]`` and
    ``available_network_aliases[stem]`` / ``[alias]`` point at the last file added; an alias met twice is
    "forbidden" (then only the stem table is used); a name is looked up in the stem table when forbidden,
    in the alias table otherwise. ``alias`` is ``ss_output_name`` or the stem."""

    def __init__(self, files: list[tuple[str, str, str]]) -> None:
        self.networks: dict[str, str] = {}
        self.aliases: dict[str, str] = {}
        self.forbidden = {"none", "addams"}
        for stem, alias, path in files:
            self.networks[stem] = path
            if alias in self.aliases:
                self.forbidden.add(alias.lower())
            self.aliases[stem] = path
            self.aliases[alias] = path

    def register(self, name: str, path: str) -> None:
        """What the WebUI glue does with ``RewriteResult.aliases``."""
        self.networks[name] = path
        self.aliases[name] = path

    def load(self, name: str) -> str | None:
        table = self.networks if name.lower() in self.forbidden else self.aliases
        return table.get(name)


def builtin_for(library: Library, reverse: bool = False) -> BuiltinTable:
    files = [(e.name, e.alias or e.name, e.path) for e in library.entries()]
    return BuiltinTable(files[::-1] if reverse else files)


@pytest.mark.parametrize("reverse", [False, True])
def test_the_chosen_file_is_the_one_the_builtin_loads(library: Library, reverse: bool) -> None:
    prompt = "<lora:chars/alice:1> <lora:old/alice:0.5> <lora:bobby> <lora:mylora:0.3> <lora:Kotori> <lora:xl_style>"
    result = rewrite_prompt(prompt, "", library, settings=PLAIN)
    assert [t.status for t in result.tags] == [RESOLVED] * 6
    table = builtin_for(library, reverse)
    for name, path in result.aliases.items():
        table.register(name, path)
    loaded = [table.load(t.name or "") for t in parse_prompt(result.prompt).lora_tags]
    assert loaded == [t.path for t in result.tags]
    # Without LoRA Studio the two alices would load the same (wrong for one of them) file.
    plain = [table.load(n) for n in ("alice", "alice")]
    assert plain[0] == plain[1]


def test_shadowed_file_gets_a_readable_unique_alias(library: Library) -> None:
    result = rewrite_prompt("<lora:old/alice:0.5>", "", library, settings=PLAIN)
    (tag,) = result.tags
    assert tag.loader_name == "old/alice"
    assert result.aliases == {"old/alice": tag.path}
    # A unique stem needs no alias.
    result = rewrite_prompt("<lora:bob>", "", library, settings=PLAIN)
    assert result.aliases == {} and result.tags[0].loader_name == "bob"


def test_same_relpath_in_two_roots_gets_a_hashed_alias(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    pa = make_lora(a, "alice", "kohya-sd1", subdir="chars")
    pb = make_lora(b, "alice", "kohya-sd1", subdir="chars")
    with Library([a, b], tmp_path / "i.sqlite3") as lib:
        lib.scan()
        entry_b = lib.get(pb)
        assert entry_b is not None
        name, register = loader_name_for(entry_b, lib)
        assert register and re.fullmatch(r"chars/alice~[0-9a-f]{8}", name)
        entry_a = lib.get(pa)
        assert entry_a is not None
        assert loader_name_for(entry_a, lib)[0] != name
        # What LoRA Studio wrote resolves back to the same file (a pasted infotext prompt).
        result = rewrite_prompt(f"<lora:{name}:0.9>", "", lib, settings=PLAIN)
        assert result.tags[0].path == str(pb) and result.tags[0].output == f"<lora:{name}:0.9>"
        assert result.aliases == {name: str(pb)}


@pytest.mark.parametrize("reverse", [False, True])
def test_stem_shared_with_another_files_alias_needs_no_alias(tmp_path: Path, reverse: bool) -> None:
    root = tmp_path / "l"
    carl = lora(root, "carl")
    other = lora(root, "other", ss_output_name="carl")  # its ss_output_name is carl's stem
    with Library([root], tmp_path / "i.sqlite3") as lib:
        lib.scan()
        result = rewrite_prompt("<lora:carl:1> <lora:other:1>", "", lib, settings=PLAIN)
        assert [t.path for t in result.tags] == [str(carl), str(other)]
        assert result.aliases == {} and [t.loader_name for t in result.tags] == ["carl", "other"]
        table = builtin_for(lib, reverse)
        assert [table.load(t.name or "") for t in parse_prompt(result.prompt).lora_tags] == [str(carl), str(other)]


def test_builtin_names_decide_when_to_register(library: Library) -> None:
    bob = library.lookup("bob").entry
    assert bob is not None
    assert loader_name_for(bob, library, None) == ("bob", False)
    assert loader_name_for(bob, library, {"bob", "bobby"}) == ("bob", False)
    # A file only LoRA Studio scans (an extra folder): the built-in table lacks it -> register the stem.
    assert loader_name_for(bob, library, {"other"}) == ("bob", True)
    # The built-in table maps "bob" to another file: use a name of our own.
    name, register = loader_name_for(bob, library, {"bob": "/elsewhere/bob.safetensors"})
    assert register and name != "bob"
    assert loader_name_for(bob, library, {"bob": bob.path}) == ("bob", False)


# --------------------------------------------------------------------------------------------------
# Compatibility with the checkpoint
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compat_lib(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> Iterator[tuple[Library, Path]]:
    base = tmp_path_factory.mktemp("compat")
    root = base / "loras"
    root.mkdir()
    shutil.copyfile(fixtures_dir / "kohya-outputs" / SD15, root / "sdone.safetensors")  # real SD1.5 kohya output
    shutil.copyfile(fixtures_dir / "kohya-outputs" / SDXL, root / "xlbase.safetensors")  # real SDXL kohya output
    lora(root, "ponyone", "pony-sdxl")
    lora(root, "illu", "illustrious-sdxl")
    with Library([root], base / "i.sqlite3") as lib:
        lib.scan()
        yield lib, base


def checkpoint(base: Path, preset: str, filename: str):  # type: ignore[no-untyped-def]
    from factory import make_checkpoint

    from lib_lora.architecture import Hints, detect_checkpoint
    from lib_lora.safetensors_header import read_header

    path = make_checkpoint(base / "ckpts", Path(filename).stem, preset)
    return detect_checkpoint(read_header(path), Hints(filename=filename))


def test_incompatible_lora_warns_by_default(compat_lib: tuple[Library, Path]) -> None:
    lib, base = compat_lib
    sd15 = checkpoint(base, "ckpt-sd1", "v1-5-pruned-emaonly.safetensors")
    result = rewrite_prompt("<lora:xlbase:1> <lora:sdone:1>", "", lib, checkpoint=sd15, settings=PLAIN)
    xl, one = result.tags
    assert (xl.status, xl.compat_level, one.compat_level) == (RESOLVED, "incompatible", "exact")
    assert result.prompt == "<lora:xlbase:1> <lora:sdone:1>"
    (warning,) = result.warnings
    assert warning.startswith("xlbase will not work with this checkpoint: SDXL LoRA on an SD") and "ignore" in warning
    assert parse_infotext(result.infotext).warnings == (warning,)


def test_incompatible_lora_skipped_when_set(compat_lib: tuple[Library, Path]) -> None:
    lib, base = compat_lib
    sd15 = checkpoint(base, "ckpt-sd1", "v1-5-pruned-emaonly.safetensors")
    cfg = RewriteSettings(incompatible=settings_mod.INCOMPATIBLE_SKIP)
    result = rewrite_prompt("a <lora:xlbase:1> <lora:sdone:0.5>", "", lib, checkpoint=sd15, settings=cfg)
    assert result.prompt == "a  mychar, <lora:sdone:0.5>"
    xl = result.tags[0]
    assert xl.status == "skipped" and xl.output == ""
    assert re.fullmatch(r"skipped xlbase: SDXL LoRA on an SD ?1\.5 checkpoint", xl.message), xl.message
    assert result.skipped == ("xlbase",)
    assert parse_infotext(result.infotext).skipped == (("xlbase", xl.reason),)
    # No trigger words for a skipped LoRA.
    assert result.inserted_words == ("mychar",)


def test_incompatible_lora_allowed_silently(compat_lib: tuple[Library, Path]) -> None:
    lib, base = compat_lib
    sd15 = checkpoint(base, "ckpt-sd1", "v1-5-pruned-emaonly.safetensors")
    cfg = RewriteSettings(incompatible=settings_mod.INCOMPATIBLE_ALLOW, trigger_policy="off")
    result = rewrite_prompt("<lora:xlbase:1>", "", lib, checkpoint=sd15, settings=cfg)
    assert result.prompt == "<lora:xlbase:1>" and result.warnings == ()
    assert result.tags[0].compat_level == "incompatible"


def test_cross_family_warns_and_unknown_family_does_not(compat_lib: tuple[Library, Path]) -> None:
    lib, base = compat_lib
    illustrious = checkpoint(base, "ckpt-sdxl", "illustriousXL_v01.safetensors")
    merge = checkpoint(base, "ckpt-sdxl", "mySDXLmerge_v3.safetensors")
    assert illustrious.family == "illustrious" and merge.family in (None, "sdxl-base")
    result = rewrite_prompt("<lora:ponyone:1> <lora:illu:1> <lora:xlbase>", "", lib, checkpoint=illustrious,
                            settings=PLAIN)
    assert [t.compat_level for t in result.tags] == ["cross-family", "exact", "exact"]
    (warning,) = result.warnings
    assert warning.startswith("ponyone: Pony LoRA on an Illustrious checkpoint")
    assert [t.status for t in result.tags] == [RESOLVED] * 3
    # A checkpoint of unknown lineage (most SDXL merges): every SDXL LoRA is fine, no warning.
    result = rewrite_prompt("<lora:ponyone:1> <lora:illu:1> <lora:xlbase>", "", lib, checkpoint=merge, settings=PLAIN)
    assert [t.compat_level for t in result.tags] == ["exact"] * 3 and result.warnings == ()


def test_no_checkpoint_no_compat_check(compat_lib: tuple[Library, Path]) -> None:
    lib, _ = compat_lib
    result = rewrite_prompt("<lora:xlbase:1>", "", lib, settings=PLAIN)
    assert result.tags[0].compat_level is None and result.warnings == ()


def test_preview_reports_compat(compat_lib: tuple[Library, Path]) -> None:
    lib, base = compat_lib
    sd15 = checkpoint(base, "ckpt-sd1", "v1-5-pruned-emaonly.safetensors")
    data = preview("<lora:xlbase:1>", "", lib, sd15, RewriteSettings(incompatible="skip"))
    assert data["checkpoint"]["architecture"] == "sd1"
    (tag,) = data["tags"]
    assert tag["status"] == "skipped" and tag["architecture"] == "sdxl"
    assert data["prompt"] == ""


# --------------------------------------------------------------------------------------------------
# Trigger words
# --------------------------------------------------------------------------------------------------


def test_trigger_words_beside_the_tag(library: Library) -> None:
    cfg = RewriteSettings(trigger_position=settings_mod.POSITION_BESIDE_TAG)
    result = rewrite_prompt("1girl, <lora:chars/alice:0.8>, smile", "lowres", library, settings=cfg)
    # The user's sidecar activation text wins over the header's trigger phrase.
    assert result.prompt == "1girl, zk_alice, red coat, <lora:chars/alice:0.8>, smile"
    assert result.inserted_words == ("zk_alice", "red coat")
    assert result.negative == "lowres, blurry, extra fingers"
    assert result.tags[0].words_inserted == ("zk_alice", "red coat")
    assert result.tags[0].negative_inserted == ("blurry", "extra fingers")


def test_trigger_words_at_prompt_start_with_emphasis(library: Library) -> None:
    cfg = RewriteSettings(trigger_policy=settings_mod.TRIGGER_EMPHASIS, trigger_position=settings_mod.POSITION_START,
                          emphasis_weight=1.3)
    result = rewrite_prompt("1girl <lora:bob:1> <lora:chars/kotori:0.7>", "", library, settings=cfg)
    assert result.prompt == (
        "(bobtok:1.3), (kanbe kotori:1.3), (twin braids:1.3), (hair flower:1.3), (official art:1.3), "
        "1girl <lora:bob:1> <lora:kotori:0.7>"
    )
    assert result.inserted_words == ("bobtok", "kanbe kotori", "twin braids", "hair flower", "official art")


def test_trigger_policy_off_inserts_nothing(library: Library) -> None:
    result = rewrite_prompt("<lora:chars/alice>", "", library, settings=PLAIN)
    assert result.prompt == "<lora:chars/alice>" and result.negative == "" and result.inserted_words == ()


@pytest.mark.parametrize(
    "already",
    ["ZK_Alice, (Red Coat:1.1)", "(zk_alice:1.2), [red   coat]", "((zk_alice)), {red coat}", "zk_alice\nred coat"],
)
def test_words_already_present_are_not_added(library: Library, already: str) -> None:
    result = rewrite_prompt(f"{already}, <lora:chars/alice>", "blurry, (extra fingers:1.2)", library)
    assert result.prompt == f"{already}, <lora:chars/alice>"
    assert result.negative == "blurry, (extra fingers:1.2)"
    assert result.inserted_words == ()


def test_lora_named_twice_adds_words_once(library: Library) -> None:
    result = rewrite_prompt("<lora:chars/alice:0.5> and <lora:chars/alice:0.3>", "", library)
    assert result.prompt.count("zk_alice") == 1
    assert result.negative == "blurry, extra fingers"
    # Two LoRAs sharing a trigger word add it once.
    result = rewrite_prompt("<lora:mylora> <lora:chars/mychar>", "", library)
    assert result.prompt.count("mychar,") == 1


def test_guessed_words_are_never_inserted(library: Library) -> None:
    result = rewrite_prompt("<lora:guessonly>", "", library)
    assert result.prompt == "<lora:guessonly>"
    data = preview("<lora:guessonly>", "", library)
    (sources,) = [t["trigger_sources"] for t in data["tags"]]
    assert sources == [
        {"source": "tag-frequency", "label": sources[0]["label"], "words": ["1girl", "smile"], "guessed": True}
    ]


def test_no_words_for_removed_tags(library: Library) -> None:
    result = rewrite_prompt("<lora:alice> <lora:nothere>", "", library)
    assert result.inserted_words == () and result.negative == ""


def test_rewrite_is_idempotent_on_its_output(library: Library) -> None:
    prompt = "1girl <lora:chars/alice:0.8> <lora:BOB> <lora:old/alice:0.2> <lora:gone> <lora:mylora>"
    once = rewrite_prompt(prompt, "", library)
    twice = rewrite_prompt(once.prompt, once.negative, library)
    assert (twice.prompt, twice.negative) == (once.prompt, once.negative)
    assert twice.warnings == ()
    assert [t.path for t in twice.tags] == [t.path for t in once.tags if t.status == RESOLVED]
    assert twice.aliases == once.aliases


names_pool = st.sampled_from(
    ["bob", "BOB", "bobby", "alice", "chars/alice", "old/alice", "mylora", "chars/mychar", "nothere", "../x",
     "Chars/Kotori", "guessonly", "xl_style", "Weird Name.v2 ünï", SD15_ADDNET12]
)
weights = st.sampled_from(["", ":1", ":0.5", ":-0.3", ":0.8:0.2", ":te=0.4", ":1:lbw=1,0,1", ":oops"])
glue = st.sampled_from([" ", ", ", "1girl, ", "(zk_alice:1.1) ", "mychar ", "\n# c <lora:bob>\n", "smile"])


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(glue, st.sampled_from(["lora", "lyco"]), names_pool, weights), max_size=5),
       st.sampled_from(settings_mod.TRIGGER_POLICIES), st.sampled_from(settings_mod.TRIGGER_POSITIONS))
def test_property_rewritten_prompt_is_stable(library: Library, parts, policy: str, position: str) -> None:  # type: ignore[no-untyped-def]
    prompt = "".join(f"{g}<{net}:{n}{w}>" for g, net, n, w in parts)
    cfg = RewriteSettings(trigger_policy=policy, trigger_position=position)
    once = rewrite_prompt(prompt, "", library, settings=cfg)
    kept = [t for t in once.tags if t.status == RESOLVED]
    # The loader sees exactly the kept tags, with their weights and other arguments.
    seen = [t for t in parse_prompt(once.prompt, comments=True).lora_tags]
    assert [(t.network, t.name) for t in seen] == [(k.network, k.loader_name) for k in kept]
    for t, k in zip(seen, kept, strict=True):
        assert t.items[1:] == parse_prompt(k.original).tags[0].items[1:]
    twice = rewrite_prompt(once.prompt, once.negative, library, settings=cfg)
    assert (twice.prompt, twice.negative) == (once.prompt, once.negative)
    assert [t.path for t in twice.tags] == [t.path for t in kept]


# --------------------------------------------------------------------------------------------------
# Infotext
# --------------------------------------------------------------------------------------------------


def webui_quote(text: str) -> str:
    """The WebUI's infotext value quoting: JSON when the value holds ',', ':' or a newline."""
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def webui_read_param(line: str, key: str) -> str:
    """Read ``key`` back from an infotext parameter line the way the WebUI's pattern does."""
    for m in re.finditer(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)', line):
        if m.group(1).strip() == key:
            value = m.group(2)
            return json.loads(value) if value.startswith('"') and value.endswith('"') else value
    raise KeyError(key)


def test_infotext_records_everything_and_survives_webui_quoting(library: Library) -> None:
    cfg = RewriteSettings(incompatible="warn")
    prompt = "<lora:chars/alice:0.8> <lora:BOB> <lora:alice> <lora:kotory> <lora:../x> <lora:bob:heavy> <lora:old/alice>"
    result = rewrite_prompt(prompt, "", library, settings=cfg)
    value = result.infotext
    assert "\n" not in value
    line = f"Steps: 20, Sampler: Euler a, LoRA Studio: {webui_quote(value)}, Version: v1.10.1"
    assert webui_read_param(line, "LoRA Studio") == value
    record = parse_infotext(webui_quote(value))
    assert [(r.name, r.loader_name, r.relpath) for r in record.loras] == [
        ("chars/alice", "chars/alice", "chars/alice"),
        ("BOB", "bob", "bob"),
        ("old/alice", "old/alice", "old/alice"),
    ]
    assert record.words == result.inserted_words
    assert record.negative_words == ("blurry", "extra fingers")
    assert record.ambiguous == (("alice", ("chars/alice", "old/alice")),)
    assert record.missing[0][0] == "kotory" and "kotori" in " ".join(record.missing[0][1])
    assert [n for n, _ in record.refused] == ["../x", "bob"]
    assert set(record.removed()) == set(result.skipped)
    assert record.loader_paths()["old/alice"] == "old/alice"


special = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


@settings(max_examples=200)
@given(special, special, special, st.lists(special, max_size=3), special)
def test_infotext_round_trips_any_text(name: str, loader: str, rel: str, words: list[str], warning: str) -> None:
    from lib_lora.rewrite import TagResolution

    tags = [
        TagResolution(original=f"<lora:{name}>", network="lora", name=name, status=RESOLVED, output="",
                      loader_name=loader, relpath=rel),
        TagResolution(original="", network="lora", name=name, status="skipped", output="", reason=warning),
        TagResolution(original="", network="lora", name=loader, status=MISSING, output="", suggestions=tuple(words)),
        TagResolution(original="", network="lyco", name=rel, status=AMBIGUOUS, output="", candidates=tuple(words)),
    ]
    value = format_infotext(tags, words, words[::-1], [warning])
    assert "\n" not in value and "\r" not in value
    rec = parse_infotext(value)
    assert [(r.network, r.name, r.loader_name, r.relpath) for r in rec.loras] == [("lora", name, loader, rel)]
    assert rec.skipped == ((name, warning),)
    assert rec.missing == ((loader, tuple(words)),)
    assert rec.ambiguous == ((rel, tuple(words)),)
    assert rec.words == tuple(words) and rec.negative_words == tuple(words[::-1])
    assert rec.warnings == (warning,)
    assert parse_infotext(json.dumps(value)) == rec


def test_parse_infotext_ignores_unknown_entries() -> None:
    rec = parse_infotext("lora a @ a; future thing: x; words: w")
    assert [r.name for r in rec.loras] == ["a"] and rec.words == ("w",)
    assert parse_infotext("") == parse_infotext("   ")


# --------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------


class CountingLibrary:
    """The real library, counting lookups."""

    def __init__(self, lib: Library) -> None:
        self.lib = lib
        self.lookups = 0
        self.generation = lib.generation

    def lookup(self, name: str):  # type: ignore[no-untyped-def]
        self.lookups += 1
        return self.lib.lookup(name)

    def entries(self):  # type: ignore[no-untyped-def]
        return self.lib.entries()


def test_batch_rewrites_identical_prompts_once(library: Library) -> None:
    counting = CountingLibrary(library)
    batch = rewrite_batch(["<lora:bob> a"] * 8, ["n"] * 8, counting)
    assert counting.lookups == 1
    assert batch.prompts == ["bobtok, <lora:bob> a"] * 8
    assert batch.warnings == ()


def test_batch_warns_when_prompts_name_different_loras(library: Library) -> None:
    prompts = ["<lora:bob:1> a", "<lora:bob:1> b", "<lora:chars/alice:0.5> c", "<lora:BOB:1> d"]
    batch = rewrite_batch(prompts, None, library, settings=PLAIN)
    assert batch.prompts == ["<lora:bob:1> a", "<lora:bob:1> b", "<lora:chars/alice:0.5> c", "<lora:bob:1> d"]
    (warning,) = batch.warnings
    assert "prompt 3" in warning and "<lora:chars/alice:0.5>" in warning and "first prompt" in warning
    assert all(warning in r.warnings for r in batch.results)
    assert all(warning in parse_infotext(r.infotext).warnings for r in batch.results)
    assert batch.all_warnings == (warning,)


# --------------------------------------------------------------------------------------------------
# Preview and CLI
# --------------------------------------------------------------------------------------------------


def test_preview_is_json_and_complete(library: Library) -> None:
    data = preview("<lora:chars/alice:0.8> <lora:nothere>", "", library, None, RewriteSettings())
    again = json.loads(json.dumps(data))
    assert again == data
    assert data["prompt"].startswith("zk_alice, red coat, <lora:chars/alice:0.8>")
    alice, missing = data["tags"]
    assert [s["source"] for s in alice["trigger_sources"]][:2] == ["activation-text", "modelspec"]
    assert alice["status"] == "resolved" and missing["status"] == "missing"
    assert data["warnings"] and data["infotext"]
    assert data["settings"]["trigger_policy"] == settings_mod.TRIGGER_INSERT


def test_settings_object_is_accepted(library: Library) -> None:
    s = settings_mod.Settings(trigger_policy=settings_mod.TRIGGER_OFF)
    assert rewrite_prompt("<lora:bob>", "", library, settings=s).prompt == "<lora:bob>"
    assert RewriteSettings.from_settings(s).trigger_policy == settings_mod.TRIGGER_OFF


def test_cli_resolve(library: Library, capsys: pytest.CaptureFixture[str]) -> None:
    root = library.roots[0]
    index = str(Path(root).parent / "cli-index.sqlite3")
    rc = cli_main(["resolve", "1girl <lora:chars/alice:0.8> <lora:kotory>", "--lora-dir", root, "--index", index])
    out = capsys.readouterr().out
    assert rc == 0
    assert "zk_alice, red coat, <lora:chars/alice:0.8>" in out
    assert "did you mean" in out and "kotori" in out
    rc = cli_main(["resolve", "<lora:BOB:0.5>", "--lora-dir", root, "--index", index, "--json", "--strict"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["prompt"] == "bobtok, <lora:bob:0.5>"
    rc = cli_main(["resolve", "<lora:nothere>", "--lora-dir", root, "--index", index, "--strict"])
    assert rc == 3
    rc = cli_main(["resolve", "x", "--lora-dir", str(Path(root) / "nope"), "--index", index])
    assert rc == 1 and "not found" in capsys.readouterr().err


def test_cli_resolve_with_checkpoint(compat_lib: tuple[Library, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from factory import make_checkpoint

    lib, base = compat_lib
    ckpt = make_checkpoint(base / "cli-ckpts", "v1-5-pruned-emaonly", "ckpt-sd1")
    args = ["resolve", "<lora:xlbase:1> <lora:sdone>", "--lora-dir", lib.roots[0], "--index", str(base / "cli.sqlite3"),
            "--checkpoint", str(ckpt)]
    assert cli_main([*args, "--incompatible", "skip"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint: sd1" in out and "skipped xlbase: SDXL LoRA on an SD" in out
    assert "prompt:    mychar, <lora:sdone>" in out
    assert cli_main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [t["compat_level"] for t in data["tags"]] == ["incompatible", "exact"]
