"""Stand-in of modules/scripts.py: Script, AlwaysVisible, script loading (basedir on sys.path while a
file executes, as the WebUIs do) and the ScriptRunner hooks in the real order."""

import inspect
import os
import sys
from collections import namedtuple

from modules import errors, script_callbacks, script_loading

AlwaysVisible = object()


class PostprocessBatchListArgs:
    def __init__(self, images):
        self.images = images


class Script:
    name = None
    section = None
    filename = None
    args_from = None
    args_to = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    infotext_fields = None
    paste_field_names = None

    def title(self):
        raise NotImplementedError

    def ui(self, is_img2img):
        pass

    def show(self, is_img2img):
        return True

    def run(self, p, *args):
        pass

    def setup(self, p, *args):
        pass

    def before_process(self, p, *args):
        pass

    def process(self, p, *args):
        pass

    def before_process_batch(self, p, *args, **kwargs):
        pass

    def after_extra_networks_activate(self, p, *args, **kwargs):
        pass

    def process_batch(self, p, *args, **kwargs):
        pass

    def postprocess_batch(self, p, *args, **kwargs):
        pass

    def postprocess(self, p, processed, *args):
        pass

    def before_hr(self, p, *args):
        pass


ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])
scripts_data = []
scripts_txt2img = None
scripts_img2img = None


def load_scripts(script_files):
    """``script_files``: (basedir, path) pairs in the WebUI's order (built-in extensions first)."""
    global scripts_txt2img, scripts_img2img
    scripts_data.clear()
    script_callbacks.clear_callbacks()
    syspath = sys.path
    for basedir, path in script_files:
        try:
            sys.path = [basedir] + sys.path
            module = script_loading.load_module(path)
            for obj in module.__dict__.values():
                if inspect.isclass(obj) and issubclass(obj, Script) and obj is not Script:
                    scripts_data.append(ScriptClassData(obj, path, basedir, module))
        except Exception:
            errors.report(f"Error loading script: {os.path.basename(path)}", exc_info=True)
        finally:
            sys.path = syspath
    scripts_txt2img = ScriptRunner()
    scripts_img2img = ScriptRunner()
    scripts_txt2img.initialize_scripts(False)
    scripts_img2img.initialize_scripts(True)


class ScriptRunner:
    def __init__(self):
        self.scripts = []
        self.selectable_scripts = []
        self.alwayson_scripts = []
        self.infotext_fields = []
        self.paste_field_names = []
        self.inputs = [None]

    def initialize_scripts(self, is_img2img):
        for script_data in scripts_data:
            script = script_data.script_class()
            script.filename = script_data.path
            script.is_txt2img = not is_img2img
            script.is_img2img = is_img2img
            visibility = script.show(script.is_img2img)
            if visibility == AlwaysVisible:
                self.scripts.append(script)
                self.alwayson_scripts.append(script)
                script.alwayson = True
            elif visibility:
                self.scripts.append(script)
                self.selectable_scripts.append(script)
        for script in self.scripts:
            controls = script.ui(script.is_img2img) or []
            script.args_from = len(self.inputs)
            self.inputs += list(controls)
            script.args_to = len(self.inputs)
            if script.infotext_fields is not None:
                self.infotext_fields += script.infotext_fields
            if script.paste_field_names is not None:
                self.paste_field_names += script.paste_field_names

    def default_args(self):
        return [getattr(c, "value", c) for c in self.inputs]

    def _each(self, method, p, *args, **kwargs):
        for script in self.alwayson_scripts:
            if getattr(type(script), method) is getattr(Script, method):
                continue
            try:
                script_args = p.script_args[script.args_from:script.args_to]
                getattr(script, method)(p, *args, *script_args, **kwargs)
            except Exception:
                errors.report(f"Error running {method}: {script.filename}", exc_info=True)

    def before_process(self, p):
        self._each("before_process", p)

    def process(self, p):
        self._each("process", p)

    def before_process_batch(self, p, **kwargs):
        self._each("before_process_batch", p, **kwargs)

    def after_extra_networks_activate(self, p, **kwargs):
        self._each("after_extra_networks_activate", p, **kwargs)

    def process_batch(self, p, **kwargs):
        self._each("process_batch", p, **kwargs)

    def postprocess(self, p, processed):
        for script in self.alwayson_scripts:
            try:
                script_args = p.script_args[script.args_from:script.args_to]
                script.postprocess(p, processed, *script_args)
            except Exception:
                errors.report(f"Error running postprocess: {script.filename}", exc_info=True)

    def before_hr(self, p):
        self._each("before_hr", p)
