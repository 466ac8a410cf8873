"""Stand-in of modules/sd_models.py: the checkpoint list, name matching and lazy model data."""

import os
import re

from modules import FLAVOR, paths, shared

model_path = os.path.join(paths.models_path, "Stable-diffusion")
checkpoints_list = {}
checkpoint_aliases = {}
re_strip_checksum = re.compile(r"\s*\[[^]]*]\s*$")


class CheckpointInfo:
    def __init__(self, filename, shorthash=None):
        self.filename = filename
        abspath = os.path.abspath(filename)
        name = abspath.replace(os.path.abspath(model_path), "") if abspath.startswith(os.path.abspath(model_path)) else os.path.basename(filename)
        name = name.lstrip("/\\")
        self.name = name
        self.name_for_extra = os.path.splitext(os.path.basename(filename))[0]
        self.model_name = os.path.splitext(name.replace("/", "_").replace("\\", "_"))[0]
        self.hash = None
        self.sha256 = None
        self.shorthash = shorthash
        self.title = name if shorthash is None else f"{name} [{shorthash}]"
        self.short_title = self.name_for_extra if shorthash is None else f"{self.name_for_extra} [{shorthash}]"
        self.ids = [self.hash, self.model_name, self.title, name, self.name_for_extra, f"{name} [{self.hash}]"]
        if self.shorthash:
            self.ids += [self.shorthash, self.sha256, f"{self.name} [{self.shorthash}]"]

    def register(self):
        checkpoints_list[self.title] = self
        for i in self.ids:
            checkpoint_aliases[i] = self


def list_models():
    checkpoints_list.clear()
    checkpoint_aliases.clear()
    for filename in shared.walk_files(model_path, allowed_extensions=[".ckpt", ".safetensors"]):
        CheckpointInfo(filename).register()


def get_closet_checkpoint_match(search_string):
    if not search_string:
        return None
    info = checkpoint_aliases.get(search_string, None)
    if info is not None:
        return info
    found = sorted([i for i in checkpoints_list.values() if search_string in i.title], key=lambda x: len(x.title))
    if found:
        return found[0]
    without = re.sub(re_strip_checksum, "", search_string)
    found = sorted([i for i in checkpoints_list.values() if without in i.title], key=lambda x: len(x.title))
    return found[0] if found else None


def select_checkpoint():
    info = checkpoint_aliases.get(shared.opts.sd_model_checkpoint, None)
    if info is not None:
        return info
    if not checkpoints_list:
        if FLAVOR == "forge":
            return None
        raise FileNotFoundError("No checkpoints found")
    return next(iter(checkpoints_list.values()))


class FakeInitialModel:
    def __init__(self):
        self.cond_stage_model = None
        self.chunk_length = 75


class LoadedModel:
    """What a loaded model looks like to extensions: sd_checkpoint_info, is_sdxl ..."""

    def __init__(self, info):
        self.sd_checkpoint_info = info
        self.sd_model_hash = info.shorthash
        self.filename = info.filename
        self.is_sdxl = "xl" in info.name.lower()
        self.is_sd1 = not self.is_sdxl
        self.lowvram = False
        self.device = "cuda"

    def to(self, device):
        self.device = device
        return self


class SdModelData:
    def __init__(self):
        self.sd_model = FakeInitialModel() if FLAVOR == "forge" else None
        self.loaded_sd_models = []
        self.was_loaded_at_least_once = False
        self.load_count = 0  # stand-in only: how many loads happened
        self.forge_loading_parameters = {}

    def get_sd_model(self):
        if FLAVOR == "forge":
            return self.sd_model
        if self.sd_model is None and not self.was_loaded_at_least_once:
            load_model()
        return self.sd_model

    def set_sd_model(self, v):
        self.sd_model = v
        if v is not None and v not in self.loaded_sd_models:
            self.loaded_sd_models.insert(0, v)


model_data = SdModelData()


def load_model(checkpoint_info=None):
    info = checkpoint_info or select_checkpoint()
    model_data.load_count += 1
    model_data.was_loaded_at_least_once = True
    model_data.set_sd_model(LoadedModel(info))
    from modules import script_callbacks

    script_callbacks.model_loaded_callback(model_data.sd_model)
    return model_data.sd_model


def reload_model_weights(sd_model=None, info=None, forced_reload=False):
    info = info or select_checkpoint()
    current = model_data.sd_model
    if isinstance(current, LoadedModel) and current.sd_checkpoint_info is info:
        return current
    return load_model(info)


def forge_model_reload():
    return reload_model_weights()


def send_model_to_cpu(m):
    if m is not None:
        m.to("cpu")


def send_model_to_device(m):
    m.to("cuda")


def unload_model_weights(sd_model=None, info=None):
    send_model_to_cpu(sd_model or shared.sd_model)
    return sd_model


def read_metadata_from_safetensors(filename):
    import json
    import struct

    with open(filename, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return {k: str(v) for k, v in header.get("__metadata__", {}).items()}
