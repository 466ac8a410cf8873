"""Characters: one folder per character — its LoRA versions, reference images, expressions and the
``prompts.txt`` that keeps it stable — and the ``<char:NAME[:vN][:WEIGHT]>`` prompt tag.

One job per module: ``promptsfile`` (the ``prompts.txt`` format, read and written without losing a
line), ``layout`` (finding and reading character folders, version order, the character root),
``create`` (writing: new characters, prompt fields, reference images, the next version's name),
``expand`` (the ``<char:...>`` expansion used by the prompt rewrite), ``training`` (a training that
lands in a character: ``<name>_v<N>``, reference images, ``prompts.txt``), ``reservation`` (the
version a training holds from its start to its placement, across processes), ``ipadapter`` (the
IP-Adapter unit a character's reference image gets; reaching ControlNet is ``lib_lora.webui.ipadapter``).
"""

from lib_lora.characters.create import (
    CharacterError,
    add_images,
    check_name,
    create_character,
    move_lora_into,
    next_version,
    update_prompts,
    version_stem,
)
from lib_lora.characters.expand import (
    INFOTEXT_KEY,
    CharacterUse,
    ExpandSettings,
    Expansion,
    expand_characters,
    has_character_tags,
)
from lib_lora.characters.layout import (
    ENV_ROOT,
    Character,
    CharacterLibrary,
    LoraVersion,
    character_root,
    characters_for_host,
    load_character,
    order_versions,
    scan_characters,
    version_number,
)
from lib_lora.characters.promptsfile import PROMPTS_FILENAME, CharacterPrompts, new_prompts_text

__all__ = [
    "ENV_ROOT",
    "INFOTEXT_KEY",
    "PROMPTS_FILENAME",
    "Character",
    "CharacterError",
    "CharacterLibrary",
    "CharacterPrompts",
    "CharacterUse",
    "ExpandSettings",
    "Expansion",
    "LoraVersion",
    "add_images",
    "character_root",
    "characters_for_host",
    "check_name",
    "create_character",
    "expand_characters",
    "has_character_tags",
    "load_character",
    "move_lora_into",
    "new_prompts_text",
    "next_version",
    "order_versions",
    "scan_characters",
    "update_prompts",
    "version_number",
    "version_stem",
]
