"""The few places where gradio 3.41 (AUTOMATIC1111 1.10) and gradio 4.40 (Forge) differ, for our builders.

- JavaScript on an event: ``_js=`` in 3.x, ``js=`` in 4.x;
- components accept different keyword arguments (4.x has ``key``, ``filterable``…): :func:`make` drops
  what the running version does not know instead of failing;
- ``visible=False`` components are not in the DOM at all in 4.x, so inputs that JavaScript writes to are
  kept visible and hidden with CSS (:data:`HIDDEN`);
- a one-line ``Textbox`` is an ``<input>`` in 4.x and a ``<textarea>`` in 3.x: JavaScript looks for both;
- queue options: ``concurrency_count`` (3.x) vs ``default_concurrency_limit`` (4.x);
- ``mount_gradio_app`` exists in both with the same first three arguments.
"""

from __future__ import annotations

import inspect
from typing import Any

import gradio as gr

GRADIO_VERSION: tuple[int, ...] = tuple(int(p) for p in gr.__version__.split(".")[:2] if p.isdigit())
IS_GRADIO_4 = GRADIO_VERSION >= (4, 0)

#: CSS class that hides a component JavaScript still needs to reach (see style.css).
HIDDEN = "lora-studio-hidden"


def js_kwargs(code: str | None) -> dict[str, Any]:
    """Keyword argument that attaches a JavaScript function to an event listener."""
    if not code:
        return {}
    return {"js": code} if IS_GRADIO_4 else {"_js": code}


_PARAMS: dict[type, frozenset[str]] = {}


def _params(cls: type) -> frozenset[str]:
    known = _PARAMS.get(cls)
    if known is None:
        known = frozenset(inspect.signature(cls).parameters) - {"self", "kwargs"}
        _PARAMS[cls] = known
    return known


def make(cls: type, **kwargs: Any) -> Any:
    """Create a component, silently dropping keyword arguments this gradio version does not accept."""
    known = _params(cls)
    return cls(**{k: v for k, v in kwargs.items() if k in known})


def update(**kwargs: Any) -> Any:
    return gr.update(**kwargs)


def queue(blocks: Any, concurrency: int = 4) -> Any:
    if IS_GRADIO_4:
        return blocks.queue(default_concurrency_limit=concurrency)
    return blocks.queue(concurrency_count=concurrency)


def mount(app: Any, blocks: Any, path: str = "/") -> Any:
    return gr.mount_gradio_app(app, blocks, path=path)


def blocks(**kwargs: Any) -> Any:
    return make(gr.Blocks, **kwargs)
