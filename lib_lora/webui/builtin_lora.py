"""The built-in Lora extension's network table, seen and filled by LoRA Studio.

Its one job: tell which names the built-in Lora's lookup answers to now (:func:`builtin_table`), and make
it answer a name with exactly the file LoRA Studio resolved (:func:`ensure_loadable`). The built-in's
``networks`` / ``network`` modules are taken from ``sys.modules`` as the WebUI imported them; LoRA Studio
never creates modules with those names.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from lib_lora.webui.adapter import _m

#: The built-in Lora extension's module names (taken: never create modules with these names).
BUILTIN_LORA_MODULES = ("networks", "network")


def builtin_networks() -> Any | None:
    """The built-in Lora's ``networks`` module as the WebUI imported it (``None`` if it is not loaded)."""
    mod = sys.modules.get("networks")
    if mod is None or not hasattr(mod, "available_network_aliases"):
        return None
    return mod



def _lyco_registered() -> bool:
    """A1111 registers ``lyco`` as an alias of the built-in ``lora``; Forge does not (its tags are dropped)."""
    try:
        en = _m("modules.extra_networks")
    except Exception:
        return True
    registry = getattr(en, "extra_network_registry", {})
    aliases = getattr(en, "extra_network_aliases", {})
    if "lora" not in registry:
        return True  # cannot tell yet: leave the tags as typed
    return "lyco" in registry or "lyco" in aliases


def builtin_table() -> dict[str, str] | None:
    """name -> file of every name the built-in Lora's lookup answers to now (``None``: not loaded)."""
    net = builtin_networks()
    if net is None:
        return None
    forbidden = getattr(net, "forbidden_network_aliases", {})
    table: dict[str, str] = {}
    for name, entry in list(net.available_network_aliases.items()):
        if name.lower() in forbidden:
            entry = net.available_networks.get(name)
        if getattr(entry, _OWN_ENTRY, False):
            continue  # LoRA Studio's own registration: not a name the built-in found by itself
        filename = getattr(entry, "filename", None)
        if filename:
            table[name] = filename
    return table


#: Marks the built-in ``NetworkOnDisk`` entries LoRA Studio registered.
_OWN_ENTRY = "lora_studio_registered"


def ensure_loadable(name: str, path: str) -> bool:
    """Make the built-in Lora's lookup of ``name`` give exactly ``path`` (register it if needed).

    Returns True when the table was changed. Only the alias table is touched (and the name table for a
    name the built-in treats as forbidden), so the Lora page does not list LoRA Studio's aliases.
    """
    net = builtin_networks()
    network_mod = sys.modules.get("network")
    if net is None or network_mod is None:
        return False
    forbidden = name.lower() in getattr(net, "forbidden_network_aliases", {})
    current = (net.available_networks if forbidden else net.available_network_aliases).get(name)
    if current is not None and _same_path(getattr(current, "filename", ""), path):
        return False
    entry = network_mod.NetworkOnDisk(name, path)
    entry.alias = name  # the built-in's paste-by-hash then writes this name back
    setattr(entry, _OWN_ENTRY, True)
    net.available_network_aliases[name] = entry
    if forbidden:
        net.available_networks[name] = entry
    return True


def _same_path(a: str, b: str) -> bool:
    if not a or not b:
        return False
    if os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b)):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False



def _table_changed(name: str, path: str) -> bool:
    net = builtin_networks()
    if net is None:
        return False
    entry = net.available_network_aliases.get(name)
    return entry is None or not _same_path(getattr(entry, "filename", ""), path)

