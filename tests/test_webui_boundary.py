"""The WebUI boundary: only the ``lib_lora/webui/`` package may touch the WebUI's ``modules.*``.

Every other ``lib_lora`` module is parsed (not imported) and searched for an ``import modules...``,
a ``from modules... import``, an ``importlib.import_module("modules")`` / ``__import__`` / ``find_spec``
call, or any call given a dotted WebUI module name such as ``"modules.shared"`` (a lookup helper like the
package's own ``_m``) — the ways a module of the core could reach a WebUI module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parent.parent / "lib_lora"
WEBUI_PACKAGE = LIB / "webui"
#: Top-level names of the WebUIs' own packages (A1111's ``modules``; Forge adds these).
WEBUI_TOP = ("modules", "modules_forge", "backend")
#: Functions that import a module named by their first argument.
IMPORTERS = ("import_module", "__import__", "find_spec")


def _is_webui(name: str | None) -> bool:
    return bool(name) and str(name).split(".")[0] in WEBUI_TOP


def webui_imports(source: str, filename: str = "<source>") -> list[str]:
    """``line: what`` for each place ``source`` imports a WebUI module."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if _is_webui(a.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and _is_webui(node.module):
                found.append(f"{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            literal = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
            # import_module("modules"), or any helper given a dotted WebUI module name ("modules.shared")
            if literal and _is_webui(literal) and (called in IMPORTERS or "." in literal):
                found.append(f"{node.lineno}: {called}({first.value!r})")
    return found


def _core_modules() -> list[Path]:
    return sorted(p for p in LIB.rglob("*.py") if WEBUI_PACKAGE not in p.parents)


def test_only_the_webui_package_imports_webui_modules() -> None:
    offenders = {
        str(path.relative_to(LIB.parent)): hits
        for path in _core_modules()
        if (hits := webui_imports(path.read_text(encoding="utf-8"), str(path)))
    }
    assert offenders == {}


def test_the_webui_package_is_where_modules_are_reached() -> None:
    """The check sees the package's real accesses (else it would pass vacuously over the core)."""
    hits = [h for p in sorted(WEBUI_PACKAGE.glob("*.py")) for h in webui_imports(p.read_text(encoding="utf-8"))]
    assert any("'modules.shared'" in h for h in hits) and any("'modules.script_callbacks'" in h for h in hits)
    assert len(_core_modules()) > 20


@pytest.mark.parametrize(
    "source",
    [
        "import modules.shared\n",
        "from modules import shared\n",
        "def f():\n    from modules.sd_models import model_data\n",
        "import importlib\nimportlib.import_module('modules.shared')\n",
        "from importlib import import_module\nimport_module('modules_forge.main_entry')\n",
        "__import__('backend.memory_management')\n",
        "import importlib.util\nimportlib.util.find_spec('modules_forge')\n",
        "def _m(n): ...\n_m('modules.sd_models').checkpoints_list\n",
    ],
)
def test_every_way_of_importing_is_seen(source: str) -> None:
    assert webui_imports(source)


@pytest.mark.parametrize(
    "source",
    [
        "from . import modules\n",
        "import lib_lora.modules_list\n",
        "x = 'modules.shared'\n",
        "print('modules')\n",
        "import importlib\nimportlib.import_module('lib_lora.compat')\n",
    ],
)
def test_lookalikes_are_not_flagged(source: str) -> None:
    assert webui_imports(source) == []
