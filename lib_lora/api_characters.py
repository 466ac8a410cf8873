"""The characters' HTTP routes (under ``/lora-studio/v1``): list, read, create and edit characters and
serve their images. Its one job is the HTTP shape; the work is :mod:`lib_lora.characters`.

``GET /characters`` (root and every character), ``GET /characters/{name}``, ``PUT /characters/{name}``
(``prompts.txt`` fields; ``add_references``: image files on the server to copy into ``reference/``),
``POST /characters`` (create from scratch or from a library LoRA, ``move_lora`` to move it into
``lora/``), ``GET /characters/{name}/image/{kind}/{index}`` (a reference or expression image). Every
write is refused to remote users, like training.
"""

from __future__ import annotations

import mimetypes
import os
from typing import Any, List, Optional  # noqa: UP035 - pydantic 1 + python 3.10 need typing names

from fastapi import HTTPException
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, constr

ShortText = constr(strict=True, max_length=10_000)
NameText = constr(strict=True, max_length=4096)
CharName = constr(strict=True, min_length=1, max_length=64)


class CharacterCreate(BaseModel):
    """A new character; ``lora`` names a library LoRA (as in ``<lora:NAME>``) it uses."""

    name: CharName  # type: ignore[valid-type]
    trigger: ShortText = ""  # type: ignore[valid-type]
    lora: Optional[NameText] = Field(None, description="a LoRA of the library (name as in <lora:NAME>)")  # type: ignore[valid-type]  # noqa: UP045
    move_lora: bool = Field(False, description="move the LoRA (and its sidecars) into the character's lora/ folder")
    anchors: Optional[List[ShortText]] = None  # type: ignore[valid-type]  # noqa: UP006, UP045
    drift: Optional[List[ShortText]] = None  # type: ignore[valid-type]  # noqa: UP006, UP045
    trigger_weight: Optional[float] = Field(None, ge=0.1, le=2.0)  # noqa: UP045


class CharacterUpdate(BaseModel):
    """``prompts.txt`` fields to set (left out: unchanged); ``add_references``: images to copy in."""

    trigger: Optional[ShortText] = None  # type: ignore[valid-type]  # noqa: UP045
    trigger_weight: Optional[float] = Field(None, ge=0.1, le=2.0)  # noqa: UP045
    anchors: Optional[List[ShortText]] = None  # type: ignore[valid-type]  # noqa: UP006, UP045
    drift: Optional[List[ShortText]] = None  # type: ignore[valid-type]  # noqa: UP006, UP045
    lora_weight: Optional[float] = Field(None, ge=-5.0, le=5.0)  # noqa: UP045
    use_trigger: Optional[bool] = None  # noqa: UP045
    use_anchors: Optional[bool] = None  # noqa: UP045
    use_drift: Optional[bool] = None  # noqa: UP045
    use_lora: Optional[bool] = None  # noqa: UP045
    scenes: Optional[List[ShortText]] = None  # type: ignore[valid-type]  # noqa: UP006, UP045
    add_references: Optional[List[NameText]] = None  # type: ignore[valid-type]  # noqa: UP006, UP045


def _fields(body: BaseModel) -> dict[str, Any]:
    raw = body.dict() if hasattr(body, "dict") else body.model_dump()  # pydantic 1 and 2
    return {k: v for k, v in raw.items() if v is not None}


def add_routes(router: Any, host: Any, *, problem: Any, refuse_remote: Any) -> None:
    """Add the character routes to ``router``; ``problem(status, message)`` builds an HTTPException and
    ``refuse_remote(what)`` raises 403 for a remote user."""
    from lib_lora import characters as chars
    from lib_lora.commands.characters import character_rows

    def library() -> Any:
        return chars.characters_for_host(host)

    def find(name: str) -> Any:
        lib = library()
        found = lib.find(name)
        if found is None:
            sugg = lib.suggestions(name)
            did = f" (did you mean {', '.join(sugg)}?)" if sugg else ""
            raise problem(404, f"no character named {name!r}{did}")
        return found

    def one(character: Any) -> dict[str, Any]:
        return character_rows(chars.CharacterLibrary(root=None, characters=(character,)))[0]

    @router.get("/characters", summary="Every character: trigger, LoRA versions, references, expressions")
    def list_characters() -> Any:
        lib = library()
        return {"root": lib.root, "characters": character_rows(lib)}

    @router.get("/characters/{name}", summary="One character, with its prompts.txt fields")
    def get_character(name: str) -> Any:
        return one(find(name))

    @router.post("/characters", status_code=201, summary="Create a character (from scratch or from a LoRA)")
    def create_character(body: CharacterCreate) -> Any:
        refuse_remote("creating a character")
        lib = library()
        if lib.root is None:
            raise problem(409, "there is no characters folder (no LoRA folder and no setting)")
        lora_path = None
        lora_name = None
        if body.lora:
            lookup = host.library().lookup(body.lora)
            if getattr(lookup, "status", "") != "found" or lookup.entry is None:
                raise problem(404, f"no LoRA named {body.lora!r} in the library")
            lora_path, lora_name = lookup.entry.path, lookup.entry.relpath
        try:
            created = chars.create_character(
                lib.root, body.name, trigger=body.trigger, lora_path=lora_path, lora_name=lora_name,
                move_lora=body.move_lora, anchors=body.anchors, drift=body.drift, trigger_weight=body.trigger_weight,
            )
        except chars.CharacterError as exc:
            raise problem(409 if "already exists" in str(exc) else 422, str(exc)) from None
        if body.lora and body.move_lora:
            host.rescan(wait=True)
        return one(created)

    @router.put("/characters/{name}", summary="Edit a character's prompts.txt fields, add reference images")
    def put_character(name: str, body: CharacterUpdate) -> Any:
        refuse_remote("editing a character")
        character = find(name)
        values = _fields(body)
        refs = values.pop("add_references", None)
        if "scenes" in values:
            values["scene"] = values.pop("scenes")
        try:
            if values:
                character = chars.update_prompts(character, values)
            if refs:
                chars.add_images(character, [os.path.expanduser(r) for r in refs])
                character = chars.load_character(character.folder)
        except chars.CharacterError as exc:
            raise problem(422, str(exc)) from None
        return one(character)

    @router.get("/characters/{name}/image/{kind}/{index}", summary="A reference or expression image")
    def character_image(name: str, kind: str, index: int) -> Any:
        character = find(name)
        images = {"reference": character.references, "expressions": character.expressions}.get(kind)
        if images is None:
            raise problem(404, "kind is 'reference' or 'expressions'")
        if not 0 <= index < len(images):
            raise problem(404, f"{character.name} has {len(images)} {kind} image(s)")
        path = images[index]
        return FileResponse(path, media_type=mimetypes.guess_type(path)[0] or "application/octet-stream")


__all__ = ["CharacterCreate", "CharacterUpdate", "HTTPException", "add_routes"]
