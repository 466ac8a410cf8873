"""The Characters view of the LoRA Studio tab (gradio 3.41 and 4.40, WebUI and standalone app).

A card per character (first reference image, trigger, LoRA versions with base-model badges against the
selected checkpoint, expressions); a click on a card inserts ``<char:NAME>`` into the active prompt (a
second click removes it; ``javascript/lora_studio.js``). Below: an editor for the character's anchors,
drift phrases and trigger weight (written into its ``prompts.txt``, every other line kept), adding
reference images, and creating a character from scratch or from a library LoRA (moved into ``lora/``
only when "move" is ticked). Writes are refused to remote users, as training is.

:class:`CharactersController` holds the logic and the HTML (no gradio needed); :func:`build_characters`
makes the components inside the current ``gr.Blocks``.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from typing import Any

from lib_lora import characters as chars
from lib_lora.host import remote_refusal
from lib_lora.safetext import html_data, html_isolated
from lib_lora.ui.browser import _initials
from lib_lora.ui.browser import esc as _esc

VIEW_ID = "lora_studio_characters"
NO_CHARACTER = ""


def _phrases(text: str) -> list[str]:
    from lib_lora.triggers import split_phrases

    return list(split_phrases(text or ""))


_LEVEL_MARK = {"exact": "\u2713", "cross-family": "~", "incompatible": "\u2717"}


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def image_url(character: chars.Character, index: int = 0, kind: str = "reference") -> str:
    images = character.references if kind == "reference" else character.expressions
    try:
        version = int(os.path.getmtime(images[index]))
    except (OSError, IndexError):
        version = 0
    name = urllib.parse.quote(character.name, safe="")
    return f"lora-studio/v1/characters/{name}/image/{kind}/{index}?v={version}"


@dataclass(frozen=True)
class EditorValues:
    """What the editor shows for one character."""

    name: str = ""
    trigger: str = ""
    trigger_weight: float = 1.3
    anchors: str = ""
    drift: str = ""
    use_trigger: bool = True
    use_anchors: bool = True
    use_drift: bool = True
    use_reference: bool = False

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.trigger, self.trigger_weight, self.anchors, self.drift, self.use_trigger, self.use_anchors,
                self.use_drift, self.use_reference)


class CharactersController:
    """The view's logic over a :class:`lib_lora.host.Host`."""

    def __init__(self, host: Any) -> None:
        self.host = host

    def library(self) -> chars.CharacterLibrary:
        return chars.characters_for_host(self.host)

    def names(self) -> list[str]:
        return list(self.library().names)

    def _refuse_remote(self, what: str) -> None:
        refused = remote_refusal(self.host, what)
        if refused:
            raise chars.CharacterError(refused)

    # -- badges
    def _badges(self, character: chars.Character) -> list[tuple[str, str, str]]:
        """``(label, css level, tooltip)`` per version."""
        from lib_lora import compat

        try:
            library = self.host.library()
            ref = self.host.selected_checkpoint()
            checkpoint = self.host.checkpoint_detection(ref) if ref is not None else None
        except Exception:
            library, checkpoint = None, None
        out = []
        for v in character.versions:
            entry = None
            if library is not None:
                try:
                    entry = library.get(v.path) if v.path else library.lookup(character.prompts.lora or v.stem).entry
                except Exception:
                    entry = None
            detection = getattr(entry, "detection", None)
            if detection is None or checkpoint is None:
                out.append((v.label, "unknown", "base model not known" if detection is None else "no checkpoint"))
                continue
            result = compat.check(detection, checkpoint)
            out.append((v.label, str(result.level), f"{detection.architecture}: {result.message}"))
        return out

    def render(self) -> str:
        lib = self.library()
        if lib.root is None:
            return '<div class="lss-empty">No characters folder: there is no LoRA folder and no setting.</div>'
        if not lib.characters:
            return (f'<div class="lss-chars lss-empty" data-root="{_esc(lib.root)}">No characters yet in '
                    f'{_esc(lib.root)}: create one below, or train one (Train tab, "character").</div>')
        cards = [self.render_card(c) for c in lib.characters]
        return f'<div class="lss-chars" data-root="{_esc(lib.root)}">' + "".join(cards) + "</div>"

    def render_card(self, c: chars.Character) -> str:
        if c.references:
            picture = f'<img class="lss-char-img" loading="lazy" alt="" src="{_esc(image_url(c))}">'
        else:
            picture = f'<div class="lss-char-img lss-initials">{_esc(_initials(c.name))}</div>'
        trigger = ", ".join(c.prompts.trigger) or "(trigger from the LoRA)"
        badges = "".join(  # the level as a mark too, not only as a colour
            f'<span class="lss-badge lss-compat-{_esc(level)}" title="{_esc(tip)}"><b>{_esc(label)}</b> '
            f'{_LEVEL_MARK.get(level, "?")}</span>'
            for label, level, tip in self._badges(c)
        ) or '<span class="lss-badge lss-compat-none">no LoRA yet</span>'
        expressions = ", ".join(c.expression_names)
        counts = f"{_count(len(c.references), 'reference')}, {_count(len(c.expressions), 'expression')}"
        return (
            f'<div class="lss-char-card" data-char="{html_data(c.name)}" tabindex="0" '
            f'title="click: insert &lt;char:{_esc(c.name)}&gt; into the prompt">'
            f"{picture}"
            f'<div class="lss-char-name">{html_isolated(c.name)}</div>'
            f'<div class="lss-char-trigger">{html_isolated(trigger)}</div>'
            f'<div class="lss-char-versions">{badges}</div>'
            + (f'<div class="lss-char-expr">{html_isolated(expressions)}</div>' if expressions else "")
            + f'<div class="lss-char-counts">{counts}</div>'
            "</div>"
        )

    # -- editor
    def values(self, name: str | None) -> EditorValues:
        c = self.library().find(name) if name else None
        if c is None:
            return EditorValues()
        p = c.prompts
        return EditorValues(c.name, ", ".join(p.trigger), p.trigger_weight, ", ".join(p.anchors), ", ".join(p.drift),
                            p.use_trigger, p.use_anchors, p.use_drift, p.use_reference)

    def _find(self, name: str | None) -> chars.Character:
        c = self.library().find(name) if name else None
        if c is None:
            raise chars.CharacterError("choose a character first")
        return c

    def save(self, name: str | None, trigger: str, weight: Any, anchors: str, drift: str, use_trigger: bool,
             use_anchors: bool, use_drift: bool, use_reference: bool = False) -> str:
        self._refuse_remote("editing a character")
        c = self._find(name)
        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise chars.CharacterError(f"trigger weight {weight!r} is not a number") from None
        chars.update_prompts(c, {
            "trigger": _phrases(trigger), "trigger_weight": w, "anchors": _phrases(anchors),
            "drift": _phrases(drift), "use_trigger": bool(use_trigger), "use_anchors": bool(use_anchors),
            "use_drift": bool(use_drift), "use_reference": bool(use_reference),
        })
        return f"Saved {c.prompts_path}"

    def add_references(self, name: str | None, files: Any) -> str:
        self._refuse_remote("adding reference images")
        c = self._find(name)
        paths = [str(getattr(f, "name", f)) for f in (files or []) if f]
        if not paths:
            raise chars.CharacterError("choose image files first")
        added = chars.add_images(c, paths)
        return f"Added {len(added)} reference image(s) to {c.reference_folder}"

    def create(self, name: str, trigger: str, lora: str, move: bool) -> str:
        self._refuse_remote("creating a character")
        lib = self.library()
        if lib.root is None:
            raise chars.CharacterError("there is no characters folder (no LoRA folder and no setting)")
        lora_path = lora_name = None
        if (lora or "").strip():
            found = self.host.library().lookup(lora.strip())
            if getattr(found, "status", "") != "found" or found.entry is None:
                sugg = ", ".join(getattr(found, "suggestions", ())[:3])
                raise chars.CharacterError(f"no LoRA named {lora.strip()!r}" + (f" (did you mean {sugg}?)" if sugg else ""))
            lora_path, lora_name = found.entry.path, found.entry.relpath
        c = chars.create_character(lib.root, name, trigger=trigger or "", lora_path=lora_path, lora_name=lora_name,
                                   move_lora=bool(move))
        if lora_path and move:
            self.host.rescan(wait=True)
        how = "" if not lora_path else (" with its LoRA moved into lora/" if move else f" using the LoRA {lora_name}")
        return f"Created {c.folder}{how}"


def _msg(text: str, ok: bool = True) -> str:
    return f'<div class="lss-msg {"lss-ok" if ok else "lss-err"}">{_esc(text)}</div>'


def build_characters(host: Any) -> CharactersController:
    """Build the view inside the current ``gr.Blocks`` context."""
    import gradio as gr

    from lib_lora.ui import compat_gradio as cg

    ctl = CharactersController(host)
    with gr.Column(elem_id=VIEW_ID, elem_classes=["lora-studio"]):
        with gr.Row():
            refresh = cg.make(gr.Button, value="Refresh characters", elem_id="lora_studio_char_refresh", size="sm",
                              scale=0)
        cards = cg.make(gr.HTML, value=ctl.render, elem_id="lora_studio_char_cards")
        with gr.Row():
            with gr.Column(scale=2):
                pick = cg.make(gr.Dropdown, label="Character to edit", choices=ctl.names(), value=None,
                               elem_id="lora_studio_char_pick", interactive=True, allow_custom_value=False)
                trigger = cg.make(gr.Textbox, label="Trigger word(s)", lines=1, elem_id="lora_studio_char_trigger")
                weight = cg.make(gr.Slider, label="Trigger weight", minimum=0.1, maximum=2.0, step=0.05, value=1.3,
                                 elem_id="lora_studio_char_weight")
                anchors = cg.make(gr.Textbox, label="Anchor phrases (added to the prompt)", lines=2,
                                  elem_id="lora_studio_char_anchors")
                drift = cg.make(gr.Textbox, label="Drift phrases (added to the negative prompt)", lines=2,
                                elem_id="lora_studio_char_drift")
                with gr.Row():
                    use_trigger = cg.make(gr.Checkbox, label="use trigger", value=True, elem_id="lora_studio_char_use_trigger")
                    use_anchors = cg.make(gr.Checkbox, label="use anchors", value=True, elem_id="lora_studio_char_use_anchors")
                    use_drift = cg.make(gr.Checkbox, label="use drift", value=True, elem_id="lora_studio_char_use_drift")
                    use_reference = cg.make(gr.Checkbox, label="use reference image (IP-Adapter)", value=False,
                                            elem_id="lora_studio_char_use_reference")
                save = cg.make(gr.Button, value="Save to prompts.txt", variant="primary", elem_id="lora_studio_char_save")
                files = cg.make(gr.File, label="Reference images", file_count="multiple", file_types=["image"],
                                elem_id="lora_studio_char_files")
                add = cg.make(gr.Button, value="Add reference images", elem_id="lora_studio_char_add")
            with gr.Column(scale=1):
                new_name = cg.make(gr.Textbox, label="New character name", lines=1, elem_id="lora_studio_char_new_name")
                new_trigger = cg.make(gr.Textbox, label="Its trigger word", lines=1, elem_id="lora_studio_char_new_trigger")
                new_lora = cg.make(gr.Textbox, label="From an existing LoRA (name as in <lora:NAME>, optional)", lines=1,
                                   elem_id="lora_studio_char_new_lora")
                new_move = cg.make(gr.Checkbox, label="Move that LoRA into the character's lora/ folder", value=False,
                                   elem_id="lora_studio_char_new_move")
                create = cg.make(gr.Button, value="Create character", elem_id="lora_studio_char_create")
        status = cg.make(gr.HTML, value="", elem_id="lora_studio_char_status")

    fields = [trigger, weight, anchors, drift, use_trigger, use_anchors, use_drift, use_reference]

    def on_pick(name: str | None) -> tuple[Any, ...]:
        return ctl.values(name).as_tuple()

    pick.change(on_pick, inputs=[pick], outputs=fields, show_progress="hidden")

    def refreshed(name: str | None = None) -> tuple[Any, Any]:
        names = ctl.names()
        return ctl.render(), cg.update(choices=names, value=name if name in names else None)

    refresh.click(lambda n: refreshed(n), inputs=[pick], outputs=[cards, pick], show_progress="hidden")

    def on_save(name: str | None, *values: Any) -> tuple[Any, ...]:
        try:
            message = _msg(ctl.save(name, *values))
        except chars.CharacterError as exc:
            return (_msg(f"Not saved: {exc.message}", ok=False), cg.update())
        return (message, ctl.render())

    save.click(on_save, inputs=[pick, *fields], outputs=[status, cards], show_progress="hidden")

    def on_add(name: str | None, uploaded: Any) -> tuple[Any, ...]:
        try:
            message = _msg(ctl.add_references(name, uploaded))
        except chars.CharacterError as exc:
            return (_msg(f"Not added: {exc.message}", ok=False), cg.update())
        return (message, ctl.render())

    add.click(on_add, inputs=[pick, files], outputs=[status, cards], show_progress="hidden")

    def on_create(name: str, trig: str, lora: str, move: bool) -> tuple[Any, ...]:
        try:
            message = _msg(ctl.create(name, trig, lora, move))
        except chars.CharacterError as exc:
            return (_msg(f"Not created: {exc.message}", ok=False), cg.update(), cg.update())
        html_out, picker = refreshed((name or "").strip())
        return (message, html_out, picker)

    create.click(on_create, inputs=[new_name, new_trigger, new_lora, new_move], outputs=[status, cards, pick],
                 show_progress="hidden")
    return ctl
