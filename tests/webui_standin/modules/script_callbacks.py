"""Stand-in of modules/script_callbacks.py: the on_* registrars and the runners the WebUI calls."""

import inspect
import os
from dataclasses import dataclass

from modules import errors


@dataclass
class ScriptCallback:
    script: str
    callback: object
    name: str = "unnamed"


_CATEGORIES = ("app_started", "model_loaded", "ui_tabs", "ui_settings", "infotext_pasted", "script_unloaded",
               "before_ui", "before_reload", "before_component")
callback_map = {f"callbacks_{c}": [] for c in _CATEGORIES}


def clear_callbacks():
    for callback_list in callback_map.values():
        callback_list.clear()


def add_callback(callbacks, fun, *, name=None, category="unknown", filename=None):
    if filename is None:
        stack = [x for x in inspect.stack() if x.filename != __file__]
        filename = stack[0].filename if stack else "unknown file"
    callbacks.append(ScriptCallback(filename, fun, f"{os.path.basename(filename)}/{category}/{name or ''}"))


def _run(category, *args):
    for c in callback_map[f"callbacks_{category}"]:
        try:
            c.callback(*args)
        except Exception:
            errors.report(f"Error executing callback {category} for {c.script}", exc_info=True)


def app_started_callback(demo, app):
    _run("app_started", demo, app)


def model_loaded_callback(sd_model):
    _run("model_loaded", sd_model)


def ui_tabs_callback():
    res = []
    for c in callback_map["callbacks_ui_tabs"]:
        try:
            res += c.callback() or []
        except Exception:
            errors.report(f"Error executing callback ui_tabs for {c.script}", exc_info=True)
    return res


def ui_settings_callback():
    _run("ui_settings")


def before_ui_callback():
    _run("before_ui")


def infotext_pasted_callback(infotext, params):
    _run("infotext_pasted", infotext, params)


def script_unloaded_callback():
    for c in reversed(callback_map["callbacks_script_unloaded"]):
        try:
            c.callback()
        except Exception:
            errors.report(f"Error executing callback script_unloaded for {c.script}", exc_info=True)


def on_app_started(callback, *, name=None):
    add_callback(callback_map["callbacks_app_started"], callback, name=name, category="app_started")


def on_model_loaded(callback, *, name=None):
    add_callback(callback_map["callbacks_model_loaded"], callback, name=name, category="model_loaded")


def on_ui_tabs(callback, *, name=None):
    add_callback(callback_map["callbacks_ui_tabs"], callback, name=name, category="ui_tabs")


def on_ui_settings(callback, *, name=None):
    add_callback(callback_map["callbacks_ui_settings"], callback, name=name, category="ui_settings")


def on_infotext_pasted(callback, *, name=None):
    add_callback(callback_map["callbacks_infotext_pasted"], callback, name=name, category="infotext_pasted")


def on_script_unloaded(callback, *, name=None):
    add_callback(callback_map["callbacks_script_unloaded"], callback, name=name, category="script_unloaded")


def on_before_ui(callback, *, name=None):
    add_callback(callback_map["callbacks_before_ui"], callback, name=name, category="before_ui")


def on_before_reload(callback, *, name=None):
    add_callback(callback_map["callbacks_before_reload"], callback, name=name, category="before_reload")


def on_before_component(callback, *, name=None):
    """As the real one: ``callback(component, **kwargs)`` before each gradio component of the UI is made."""
    add_callback(callback_map["callbacks_before_component"], callback, name=name, category="before_component")


def before_component_callback(component, **kwargs):
    for c in callback_map["callbacks_before_component"]:
        try:
            c.callback(component, **kwargs)
        except Exception:
            errors.report(f"Error executing callback before_component for {c.script}", exc_info=True)
