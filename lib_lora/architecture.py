"""Base-model taxonomy and detection of a LoRA's / a checkpoint's base model from its header alone.

Three layers, strongest first:

1. **Structure** (tensor names and shapes) decides the *architecture* — whether a LoRA can load on a
   checkpoint at all. The trainer prefix (``lora_unet_``, ``lora_te1_``, ``unet.``, ``transformer.``,
   ``diffusion_model.`` …) is stripped, the block layout names the model type (U-Net
   ``down_blocks``/``input_blocks``, Flux ``double_blocks``, SD3 ``joint_blocks`` …) and one width
   separates the members of a type (U-Net cross-attention ``attn2.to_k`` input: 768 SD1, 1024 SD2,
   2048 SDXL, 1280 SDXL refiner; MMDiT hidden 1536 / 2432; Flux hidden 3072 …). Where structure cannot
   separate two architectures (Flux.1 vs Chroma) it reports ``candidates`` and lets metadata choose.
2. **Metadata** written by the trainer (``ss_base_model_version``, ``modelspec.architecture``,
   ``ss_v2``) and the user's sidecars choose among candidates; when they contradict the structure the
   structure wins and the contradiction is reported in ``conflicts``.
3. **Family** (finetunes sharing one architecture: Pony, Illustrious, NoobAI …) comes, in order, from the
   LoRA Studio sidecar override, Civitai ``baseModel``, the training checkpoint's sha256 against
   :data:`KNOWN_BASE_HASHES`, ``ss_sd_model_name`` patterns, ``score_9`` tags (Pony), file/folder names.

Speed: a scan looks at evenly spaced windows of consecutive keys (whole modules, so every adapter's
tensors are seen) and answers the few questions that need every key with ``str.find`` on one joined
string of names plus a handful of direct dict lookups — never a regex per key. An SDXL LoRA header
(~2,200-3,000 keys) costs a fraction of a millisecond, far below reading its 300 kB JSON header.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from lib_lora.safetensors_header import Header

# Architecture ids (what decides whether a LoRA can load at all).
UNKNOWN = "unknown"

#: WebUI ids used in :attr:`Architecture.webuis`.
A1111 = "a1111"
FORGE = "forge"


@dataclass(frozen=True)
class Architecture:
    """One base-model architecture: LoRAs for it load on its checkpoints and nowhere else."""

    id: str
    label: str  # display name, e.g. "SDXL"
    group: str  # architectures of one group accept each other's LoRAs with a warning (Flux.1 <-> Chroma)
    webuis: tuple[str, ...] = ()  # WebUIs whose built-in Lora loader can run it ("a1111", "forge")
    media: str = "image"  # "image" | "video"
    text_encoders: tuple[str, ...] = ()  # LoRA target ids of its text encoders
    denoiser: str = "transformer"  # LoRA target id of its denoiser: "unet" | "transformer"


_BOTH = (A1111, FORGE)

#: Every architecture LoRA Studio knows. A1111 1.10 runs SD1, SD2, SDXL (+ refiner) and SD3 Medium;
#: Forge adds Flux.1 and Chroma. The rest are recognised so that their LoRAs are labelled, not loaded.
ARCHITECTURES: dict[str, Architecture] = {a.id: a for a in (
    Architecture("sd1", "SD 1.5", "sd1", _BOTH, text_encoders=("te",), denoiser="unet"),
    Architecture("sd2", "SD 2.x", "sd2", _BOTH, text_encoders=("te",), denoiser="unet"),
    Architecture("sdxl", "SDXL", "sdxl", _BOTH, text_encoders=("te1", "te2"), denoiser="unet"),
    Architecture("sdxl-refiner", "SDXL Refiner", "sdxl-refiner", _BOTH, text_encoders=("te",), denoiser="unet"),
    Architecture("sd3", "SD 3 Medium", "sd3-medium", _BOTH, text_encoders=("te1", "te2", "te3")),
    Architecture("sd3.5-medium", "SD 3.5 Medium", "sd3-medium", text_encoders=("te1", "te2", "te3")),
    Architecture("sd3.5-large", "SD 3.5 Large", "sd3.5-large", text_encoders=("te1", "te2", "te3")),
    Architecture("flux1", "Flux.1", "flux1", (FORGE,), text_encoders=("te1", "te3")),
    Architecture("chroma", "Chroma", "flux1", (FORGE,), text_encoders=("te3",)),
    Architecture("flux2", "Flux.2", "flux2"),
    Architecture("auraflow", "AuraFlow", "auraflow"),
    Architecture("stable-cascade", "Stable Cascade", "stable-cascade", denoiser="unet"),
    Architecture("pixart", "PixArt", "pixart"),
    Architecture("hunyuan-dit", "Hunyuan-DiT", "hunyuan-dit"),
    Architecture("hunyuan-image", "HunyuanImage 2.1", "hunyuan-image"),
    Architecture("lumina2", "Lumina 2", "lumina2"),
    Architecture("hidream", "HiDream", "hidream"),
    Architecture("qwen-image", "Qwen-Image", "qwen-image"),
    Architecture("wan", "Wan Video", "wan", media="video"),
    Architecture("hunyuan-video", "HunyuanVideo", "hunyuan-video", media="video"),
    Architecture("ltx-video", "LTX-Video", "ltx-video", media="video"),
    Architecture(UNKNOWN, "Unknown", UNKNOWN),
)}


@dataclass(frozen=True)
class Family:
    """A finetune lineage inside one architecture (cannot be told apart by tensor shapes)."""

    id: str
    label: str
    architecture: str
    generic: bool = False  # a plain base: LoRAs trained on it are not flagged on other finetunes


FAMILIES: dict[str, Family] = {f.id: f for f in (
    Family("sd15", "SD 1.5", "sd1", generic=True),
    Family("sd15-lcm", "SD 1.5 LCM", "sd1"),
    Family("sd15-hyper", "SD 1.5 Hyper", "sd1"),
    Family("sd2-512", "SD 2 (512)", "sd2", generic=True),
    Family("sd2-768v", "SD 2 (768-v)", "sd2", generic=True),
    Family("sdxl-base", "SDXL 1.0", "sdxl", generic=True),
    Family("pony", "Pony", "sdxl"),
    Family("illustrious", "Illustrious", "sdxl"),
    Family("noobai", "NoobAI", "sdxl"),
    Family("sdxl-fast", "SDXL Lightning/Turbo/Hyper", "sdxl"),
    Family("playground", "Playground v2.5", "sdxl"),
    Family("flux1-dev", "Flux.1 Dev", "flux1"),
    Family("flux1-schnell", "Flux.1 Schnell", "flux1"),
    Family("flux1-kontext", "Flux.1 Kontext", "flux1"),
    Family("pony-v7", "Pony V7", "auraflow"),
)}

#: Adapter ids and labels.
ADAPTERS: dict[str, str] = {
    "lora": "LoRA", "locon": "LoCon", "loha": "LoHa", "lokr": "LoKr", "ia3": "IA3", "oft": "OFT", "boft": "BOFT",
    "glora": "GLoRA", "dora": "DoRA", "full": "Full (diff)", "norm": "Norm", "dylora": "DyLoRA",
}

#: LoRA target ids and labels.
TARGETS: dict[str, str] = {"unet": "U-Net", "transformer": "Transformer", "te": "TE", "te1": "TE1", "te2": "TE2",
                           "te3": "T5"}

#: sha256 of well-known base checkpoints (kohya writes the training checkpoint's into
#: ``ss_new_sd_model_hash``). Each entry was checked against several public sources (Hugging Face
#: LFS object ids quoted in download scripts and model catalogues).
KNOWN_BASE_HASHES: dict[str, tuple[str, str, str]] = {
    # sha256: (architecture, family, file)
    "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b": ("sdxl", "sdxl-base", "sd_xl_base_1.0.safetensors"),
    "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa": ("sd1", "sd15", "v1-5-pruned-emaonly.safetensors"),
    "1a189f0be69d6106a48548e7626207dddd7042a418dbf372cefd05e0cdba61b6": ("sd1", "sd15", "v1-5-pruned.safetensors"),
}


@dataclass(frozen=True)
class Evidence:
    """One observation behind a conclusion, shown to the user as "why"."""

    source: str  # "structure" | "metadata" | "sidecar" | "civitai" | "hash" | "name" | "tags"
    claim: str  # what it supports, e.g. "architecture=sdxl", "family=pony", "adapter=loha"
    detail: str  # human text, e.g. "attn2 to_k input width 2048 (lora_unet_input_blocks_4_1_...)"


@dataclass(frozen=True)
class Hints:
    """Information from outside the header that can decide the family (never the architecture)."""

    sidecar_sd_version: str | None = None  # A1111 "sd version": SD1|SD2|SDXL|Flux|Unknown
    sidecar_base: str | None = None  # LoRA Studio's own override (architecture or family id) from the sidecar
    civitai_base_model: str | None = None  # Civitai "baseModel", e.g. "Pony", "Illustrious", "SDXL 1.0"
    filename: str | None = None  # file name (stem + suffix)
    folders: tuple[str, ...] = ()  # folder names between the library root and the file
    sha256: str | None = None  # the file's own sha256 when known (checkpoints: matched against KNOWN_BASE_HASHES)


@dataclass(frozen=True)
class Detection:
    kind: str  # "lora" | "checkpoint" | "unknown"
    architecture: str  # an id from ARCHITECTURES, or "unknown"
    candidates: tuple[str, ...] = ()  # when structure cannot separate architectures, e.g. ("flux1", "chroma")
    family: str | None = None  # "sdxl-base", "pony", "illustrious", "noobai", "sdxl-fast", "playground", "sd15", ...
    adapter: str | None = None  # "lora", "locon", "loha", "lokr", "ia3", "oft", "boft", "glora", "dora", "full", "norm", "dylora"
    rank: int | None = None
    alpha: float | None = None
    targets: tuple[str, ...] = ()  # subset of ("unet", "te", "te1", "te2", "te3", "transformer")
    trigger_words: tuple[str, ...] = ()  # from metadata (modelspec.trigger_phrase, ...)
    evidence: tuple[Evidence, ...] = ()
    conflicts: tuple[str, ...] = ()  # human text: metadata vs structure disagreements
    extra: dict[str, str] = field(default_factory=dict)
    #: most frequent training tags (``ss_tag_frequency``): a guess, never inserted automatically
    guessed_tags: tuple[str, ...] = ()
    #: what chose ``architecture``: "structure" | "metadata" | "sidecar" | "civitai" | "default" | "none"
    architecture_source: str = "structure"

    @property
    def possible_architectures(self) -> tuple[str, ...]:
        """The architectures this file may be for: the candidates while undecided, else the one."""
        if self.candidates and self.architecture_source in ("default", "none"):
            return self.candidates
        return (self.architecture,)

    @property
    def label(self) -> str:
        return architecture_label(self.architecture)


# --------------------------------------------------------------------------------------------------
# Labels


def architecture_label(arch: str | None) -> str:
    a = ARCHITECTURES.get(arch or UNKNOWN)
    return a.label if a else str(arch)


def family_label(family: str | None) -> str:
    if not family:
        return ""
    f = FAMILIES.get(family)
    return f.label if f else family


def runs_in(arch: str, webui: str) -> bool:
    """Whether ``webui`` ("a1111" / "forge") can load ``arch`` with its built-in loader."""
    a = ARCHITECTURES.get(arch)
    return bool(a and webui in a.webuis)


def _targets_text(det: Detection) -> str:
    arch = ARCHITECTURES.get(det.architecture)
    tes = [t for t in det.targets if t.startswith("te")]
    parts = [TARGETS[t] for t in det.targets if not t.startswith("te") and t in TARGETS]
    if tes:
        if arch is not None and arch.text_encoders and set(tes) == set(arch.text_encoders):
            parts.append("TE")
        else:
            parts.extend(TARGETS.get(t, t) for t in tes)
    return "+".join(parts)


def describe(det: Detection) -> str:
    """One line for lists and logs, e.g. ``SDXL · Pony · LoRA r32/α16 · U-Net+TE``."""
    if det.candidates and det.architecture_source == "default":
        base = " or ".join(architecture_label(c) for c in det.candidates)
    else:
        base = architecture_label(det.architecture)
    parts = [base]
    if det.family and family_label(det.family) != base:
        parts.append(family_label(det.family))
    if det.kind == "lora":
        a = ADAPTERS.get(det.adapter or "", det.adapter or "LoRA")
        if det.rank is not None:
            a += f" r{det.rank}"
            if det.alpha is not None:
                a += f"/α{det.alpha:g}"
        parts.append(a)
        t = _targets_text(det)
        if t:
            parts.append(t)
    elif det.kind == "checkpoint":
        parts.append("checkpoint")
    else:
        parts.append("not a LoRA or checkpoint" if det.extra.get("content") is None else det.extra["content"])
    return " · ".join(parts)


# --------------------------------------------------------------------------------------------------
# Key scanning

#: last name component -> adapter token (keys without a ``.weight`` ending)
_LAST_TOKENS = frozenset({
    "alpha", "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2",
    "lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t1", "lokr_t2",
    "oft_blocks", "oft_diag", "rescale", "dora_scale", "lora_magnitude_vector", "diff", "diff_b",
    "w_norm", "b_norm", "on_input", "scalar",
})
#: ``<module>.<mid>.weight`` adapter tokens
_WEIGHT_MIDS = frozenset({"lora_down", "lora_up", "lora_A", "lora_B", "lora_mid", "a1", "a2", "b1", "b2", "bm",
                          "lora_magnitude_vector"})
#: determinant token -> adapter (one per adapted module, like LyCORIS' ``weight_list_det``)
_DETERMINANTS = {
    "lora_down": "lora", "lora_A": "lora", "lora.down": "lora", "hada_w1_a": "loha", "lokr_w1": "lokr",
    "lokr_w1_a": "lokr", "oft_blocks": "oft", "oft_diag": "oft", "a1": "glora", "diff": "full", "w_norm": "norm",
    "on_input": "ia3",
}
#: tokens whose shape[0] is the rank and shape[1] the input width
_DOWN_TOKENS = frozenset({"lora_down", "lora_A", "lora.down", "hada_w1_b", "a2"})

#: key prefix -> target group (denoiser / te / te1 / te2 / te3 / vae / skip)
_LORA_SUBPREFIX = (("unet_", "denoiser"), ("te1_", "te1"), ("te2_", "te2"), ("te3_", "te3"), ("te_", "te"),
                   ("prior_unet_", "cascade"), ("transformer_", "denoiser"))
_DOTTED_PREFIX = {
    "unet": "denoiser", "transformer": "denoiser", "diffusion_model": "denoiser", "text_encoder": "te",
    "text_encoder_2": "te2", "text_encoder_3": "te3", "prior": "cascade",
    "cond_stage_model": "te", "conditioner": "te", "text_encoders": "te", "first_stage_model": "vae", "vae": "vae",
    "model_ema": "skip",
}

_WINDOWS = 12  # evenly spaced runs of consecutive keys
_WINDOW = 8  # keys per run (a LoHa+DoRA module has 6 tensors, kohya LoRA 3)


def _split(key: str) -> tuple[str, str]:
    """``(module, token)`` of one key: ``x.lora_down.weight`` -> ``("x", "lora_down")``."""
    head, dot, last = key.rpartition(".")
    if not dot:
        return key, "other"
    if last == "weight":
        h2, dot2, mid = head.rpartition(".")
        if dot2:
            if mid in _WEIGHT_MIDS:
                return h2, mid
            if (mid == "down" or mid == "up") and (h2.endswith(".lora") or h2.endswith("_lora")):
                return h2[:-5], "lora." + mid
        return head, "weight"
    if last in _LAST_TOKENS:
        return head, last
    if last == "bias":
        return head, "bias"
    return head, "other"


def _prefix(module: str) -> tuple[str, str, str]:
    """``(prefix, group, rest)`` of a module name; ``rest`` is the path inside the component."""
    if module.startswith("lora_"):
        tail = module[5:]
        for sub, group in _LORA_SUBPREFIX:
            if tail.startswith(sub):
                n = 5 + len(sub)
                return module[:n], group, module[n:]
        return "lora_", "denoiser", tail
    if module.startswith("lycoris_"):
        return "lycoris_", "denoiser", module[8:]
    first, dot, rest = module.partition(".")
    if not dot:
        return "", "", module
    if first == "model" and rest.startswith("diffusion_model."):
        return "model.diffusion_model.", "denoiser", rest[16:]
    if first == "base_model" and rest.startswith("model."):
        return "base_model.model.", "denoiser", rest[6:]
    g = _DOTTED_PREFIX.get(first)
    if g is None:
        return "", "", module
    return first + ".", g, rest


_UNET_SGM = ("input_blocks_", "middle_block_", "output_blocks_")
_UNET_DIFFUSERS = ("down_blocks_", "mid_block_", "up_blocks_")


def _tag(rest: str) -> str:
    """Structural family of a module path (``_`` separators)."""
    if rest.startswith(_UNET_SGM) or rest.startswith(("label_emb_", "time_embed_")):
        return "unet-sgm"
    if rest.startswith(_UNET_DIFFUSERS) or rest.startswith(("add_embedding_", "time_embedding_")):
        return "unet-diffusers"
    if rest.startswith(("double_blocks_", "single_blocks_")):
        return "bfl"
    if rest.startswith("joint_blocks_"):
        return "mmdit"
    if rest.startswith("single_transformer_blocks_"):
        return "dit-mm"
    if rest.startswith(("joint_transformer_blocks_", "double_layers_", "single_layers_")):
        return "auraflow"
    if rest.startswith(("double_stream_blocks_", "single_stream_blocks_")):
        return "hidream"
    if rest.startswith("transformer_blocks_"):
        if "_img_mlp_" in rest or "_txt_mlp_" in rest or "_img_mod_" in rest or "_txt_mod_" in rest:
            return "qwen"
        if "_attn1_" in rest or "_attn2_" in rest:
            return "dit-attn12" if "_attn_" not in rest else "dit-mm"
        return "dit-mm"
    if rest.startswith("blocks_"):
        if "_self_attn_" in rest or "_cross_attn_" in rest or "_ffn_" in rest:
            return "wan"
        if "_attn1_" in rest or "_attn2_" in rest or "_ff_" in rest:
            return "blocks-attn12"
        return "other"
    if rest.startswith(("layers_", "noise_refiner_", "context_refiner_")):
        if "_attention_" in rest or "_attn_" in rest or "_feed_forward_" in rest:
            return "lumina"
        return "other"
    if rest.startswith("text_model_") or "_self_attn_" in rest and rest.startswith("encoder_layers_"):
        return "clip"
    if rest.startswith(("encoder_block_", "encoder_final_layer_norm", "shared")):
        return "t5"
    if rest.startswith("embedders_"):
        return "clip"
    return "other"


class _Scan:
    """What one pass over a header's keys tells: adapter tokens, module samples, a joined name string."""

    __slots__ = ("tensors", "blob", "sep", "det_counts", "tokens", "modules", "groups", "prefixes", "tags",
                 "rank_counts", "conv_rank_counts", "plain", "boft", "names")

    def __init__(self, tensors: dict[str, tuple[str, tuple[int, ...]]]) -> None:
        self.tensors = tensors
        keys = list(tensors)
        n = len(keys)
        self.blob = "\n" + "\n".join(keys) + "\n"
        if n <= _WINDOWS * _WINDOW:
            sample = keys
        else:
            stride = (n - _WINDOW) / (_WINDOWS - 1)
            sample = []
            for w in range(_WINDOWS):
                start = int(w * stride)
                sample.extend(keys[start:start + _WINDOW])
        det_counts: Counter[str] = Counter()
        tokens: set[str] = set()
        modules: dict[str, str] = {}
        rank_counts: Counter[int] = Counter()
        conv_rank_counts: Counter[int] = Counter()
        plain = 0
        boft = False
        for key in sample:
            module, token = _split(key)
            tokens.add(token)
            det = _DETERMINANTS.get(token)
            if det is not None:
                det_counts[det] += 1
                if token == "oft_blocks" and len(tensors[key][1]) == 4:
                    boft = True
            elif token == "weight" or token == "bias":
                plain += 1
            if token in _DOWN_TOKENS or token == "lokr_w2_b" or token == "lokr_w1_b":
                shape = tensors[key][1]
                if len(shape) == 2:
                    rank_counts[shape[0]] += 1
                elif len(shape) == 4:
                    (conv_rank_counts if shape[2] * shape[3] > 1 else rank_counts)[shape[0]] += 1
            if module not in modules:
                modules[module] = token
        self.det_counts = det_counts
        self.tokens = tokens
        self.modules = modules
        self.rank_counts = rank_counts
        self.conv_rank_counts = conv_rank_counts
        self.plain = plain
        self.boft = boft
        # prefixes / structural tags of the sampled modules
        groups: Counter[str] = Counter()
        prefixes: dict[str, str] = {}
        tags: Counter[str] = Counter()
        self.names: list[str] = []
        dotted = 0
        for module in modules:
            pfx, group, rest = _prefix(module)
            if "." in rest:
                dotted += 1
            self._note(pfx, group, rest, groups, prefixes, tags)
        self.sep = "." if dotted * 2 >= len(modules) and modules else "_"
        self.groups = groups
        self.prefixes = prefixes
        self.tags = tags

    def _note(self, pfx: str, group: str, rest: str, groups: Counter[str], prefixes: dict[str, str],
              tags: Counter[str]) -> None:
        norm = rest.replace(".", "_")
        tag = _tag(norm)
        if not group:
            group = "te" if tag in ("clip", "t5") else "denoiser"
        elif group == "te" and pfx == "conditioner.":
            group = "te2" if norm.startswith("embedders_1_") else "te1"
        groups[group] += 1
        prefixes.setdefault(pfx, group)
        if group in ("denoiser", "cascade"):
            tags["cascade" if group == "cascade" else tag] += 1
            self.names.append(norm)
        elif group != "vae" and group != "skip":
            tags["te:" + tag] += 1

    # --- questions the sample answers (a trainer names every block the same way)
    def sampled(self, *parts: str) -> bool:
        """Whether a sampled denoiser module path (``_`` separators) contains one of ``parts``."""
        return any(p in n for n in self.names for p in parts)

    # --- direct lookups of well-known module names: no scan at all
    def direct_width(self, *paths: str) -> tuple[int | None, str | None]:
        for pfx, group in self.prefixes.items():
            if group != "denoiser":
                continue
            for path in paths:
                m = pfx + self.needle(path)[:-1]
                w = self.width(m)
                if w is not None:
                    return w, m
        return None, None

    def direct_key(self, *names: str) -> bool:
        """Whether a checkpoint tensor ``name`` (dotted, with its ``.weight``) exists under a denoiser prefix."""
        return any(pfx + n in self.tensors for pfx, g in self.prefixes.items() if g == "denoiser" for n in names)

    # --- whole-header questions, answered on the joined names
    def needle(self, path: str, end: bool = True) -> str:
        """``path`` (dotted, e.g. ``attn2.to_k``) in this header's separator style; ``end``: module ends there."""
        n = path.replace(".", "_") if self.sep == "_" else path
        return n + "." if end else n

    def has(self, path: str, end: bool = True) -> bool:
        return self.blob.find(self.needle(path, end)) >= 0

    def has_start(self, path: str) -> bool:
        """A module path that starts right after a trainer prefix (``transformer.transformer_blocks.19``)."""
        n = self.needle(path, end=False)
        return any(self.blob.find("\n" + p + n) >= 0 for p, g in self.prefixes.items() if g == "denoiser")

    def find_module(self, path: str, end: bool = True) -> str | None:
        """The full module name of the first key containing ``path``."""
        n = self.needle(path, end)
        i = self.blob.find(n)
        if i < 0:
            return None
        s = self.blob.rfind("\n", 0, i) + 1
        if end:
            return self.blob[s:i + len(n) - 1]
        e = self.blob.find("\n", i)
        return _split(self.blob[s:e])[0]

    def width(self, module: str | None) -> int | None:
        """Input width of ``module`` from whatever adapter (or plain weight) it has."""
        if module is None:
            return None
        t = self.tensors
        for suffix in (".lora_down.weight", ".lora_A.weight", ".lora.down.weight", "_lora.down.weight",
                       ".hada_w1_b", ".a2.weight", ".diff", ".weight"):
            info = t.get(module + suffix)
            if info is not None and len(info[1]) >= 2:
                return info[1][1]
        if module.endswith("_lora"):
            info = t.get(module + ".down.weight")
            if info is not None and len(info[1]) >= 2:
                return info[1][1]
        w1 = t.get(module + ".lokr_w1") or t.get(module + ".lokr_w1_b")
        w2 = t.get(module + ".lokr_w2") or t.get(module + ".lokr_w2_b")
        if w1 is not None and w2 is not None and len(w1[1]) == 2 and len(w2[1]) >= 2:
            return w1[1][1] * w2[1][1]
        return None

    def first_width(self, *paths: str) -> tuple[int | None, str | None]:
        for p in paths:
            m = self.find_module(p)
            w = self.width(m)
            if w is not None:
                return w, m
        return None, None

    def probe_prefixes(self, style_prefixes: Iterable[str]) -> None:
        """Make sure rare components (a few TE modules among thousands) are counted: one find each."""
        for pfx in style_prefixes:
            if pfx in self.prefixes:
                continue
            i = self.blob.find("\n" + pfx)
            if i < 0:
                continue
            e = self.blob.find("\n", i + 1)
            module = _split(self.blob[i + 1:e])[0]
            p, group, rest = _prefix(module)
            self._note(p, group, rest, self.groups, self.prefixes, self.tags)


# --------------------------------------------------------------------------------------------------
# Structure -> architecture


@dataclass
class _Result:
    arch: str = UNKNOWN
    candidates: tuple[str, ...] = ()
    evidence: list[Evidence] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    family: str | None = None  # a variant structure itself shows (checkpoints: Flux dev vs schnell)

    def set(self, arch: str, detail: str, candidates: tuple[str, ...] = ()) -> _Result:
        self.arch = arch
        self.candidates = candidates
        claim = "architecture=" + ("|".join(candidates) if candidates else arch)
        self.evidence.append(Evidence("structure", claim, detail))
        return self


def _short(module: str | None) -> str:
    if module is None:
        return "?"
    return module if len(module) <= 72 else module[:34] + "…" + module[-34:]


_UNET_WIDTHS = {768: "sd1", 1024: "sd2", 2048: "sdxl", 1280: "sdxl-refiner"}


_ATTN2_PROBES = tuple(f"{block}.transformer_blocks.0.attn2.to_k" for block in (
    "input_blocks.4.1", "input_blocks.1.1", "down_blocks.1.attentions.0", "down_blocks.0.attentions.0",
    "middle_block.1", "mid_block.attentions.0"))


def _unet(s: _Scan, r: _Result) -> _Result:
    w, m = None, None
    for pfx, group in s.prefixes.items():  # direct lookups first: no scan
        if group == "denoiser" and w is None:
            for path in _ATTN2_PROBES:
                m = pfx + s.needle(path)[:-1]
                w = s.width(m)
                if w is not None:
                    break
    if w is None:
        # diffusers attention-processor LoRAs name the layer "attn2.processor.to_k_lora"
        w, m = s.first_width("attn2.to_k", "attn2.to_v", "attn2.processor.to_k_lora")
    if w is not None:
        arch = _UNET_WIDTHS.get(w)
        if arch:
            return r.set(arch, f"U-Net cross-attention input width {w} ({_short(m)})")
        return r.set(UNKNOWN, f"U-Net cross-attention input width {w} matches no known base ({_short(m)})")
    # no readable cross-attention width: other structural signs
    m = s.find_module("label_emb", end=False)
    if m is not None:
        lw = s.width(m)
        if lw == 2560:
            return r.set("sdxl-refiner", f"label_emb input width 2560 ({_short(m)})")
        return r.set("sdxl", f"label_emb (class/size conditioning exists only in SDXL) ({_short(m)})")
    pw, pm = s.first_width("proj_in", "attn1.to_q")
    if pw in (384, 768, 1536) and s.has("transformer_blocks.3.", end=False):
        return r.set("sdxl-refiner", f"transformer widths {pw} and depth 4 (SDXL refiner) ({_short(pm)})")
    if s.has("transformer_blocks.2.", end=False):
        return r.set("sdxl", "transformer_blocks index 2 or higher (SD1/SD2 have one block per level)")
    if s.has("input_blocks.4.1.", end=False) and not s.has("input_blocks.1.1.", end=False):
        return r.set("sdxl", "attention at input_blocks 4.1 but none at 1.1 (SDXL's first level has no attention)")
    if s.has("down_blocks.1.attentions.", end=False) and not s.has("down_blocks.0.attentions.", end=False):
        return r.set("sdxl", "attention in down_blocks 1 but none in down_blocks 0 (SDXL's first level has none)")
    pm = s.find_module("proj_in")
    if pm is not None:
        info = s.tensors.get(pm + ".lora_down.weight") or s.tensors.get(pm + ".lora_A.weight") or \
            s.tensors.get(pm + ".weight")
        if info is not None and len(info[1]) == 4:
            return r.set("sd1", f"proj_in is a 1x1 convolution (SD1.x; SD2 and SDXL use Linear) ({_short(pm)})")
        if info is not None and len(info[1]) == 2 and (s.has("down_blocks.0.attentions.", end=False)
                                                       or s.has("input_blocks.1.1.", end=False)):
            return r.set("sd2", f"Linear proj_in with attention on the first level (SD2.x) ({_short(pm)})")
    if s.has("down_blocks.0.attentions.", end=False) or s.has("input_blocks.1.1.", end=False):
        return r.set(UNKNOWN, "U-Net attention on the first level (SD1.x or SD2.x; SDXL has none there) but no "
                              "readable width", ("sd1", "sd2"))
    return r.set(UNKNOWN, "U-Net layers without a cross-attention width", ("sd1", "sd2", "sdxl"))


def _bfl(s: _Scan, r: _Result) -> _Result:
    if s.sampled("img_mlp_fc1", "txt_mlp_fc1", "img_mod_linear", "modulation_linear"):
        return r.set("hunyuan-video", "double/single blocks with img_mlp.fc1 / mod.linear names (HunyuanVideo)")
    if s.direct_key("distilled_guidance_layer.in_proj.weight"):
        return r.set("chroma", "distilled_guidance_layer (Chroma's modulation approximator)")
    if s.direct_key("double_stream_modulation_img.lin.weight"):
        return r.set("flux2", "shared double_stream_modulation layers (Flux.2)")
    w, m = s.direct_width("double_blocks.0.img_attn.qkv", "double_blocks.0.txt_attn.qkv", "single_blocks.0.linear1")
    if w is None:
        w, m = s.first_width("img_attn.qkv", "txt_attn.qkv", "linear1", "img_attn.proj", "txt_attn.proj")
    if w == 3584:
        return r.set("hunyuan-image", f"double/single blocks, hidden width 3584 ({_short(m)})")
    if w in (4096, 6144):
        return r.set("flux2", f"double/single blocks, hidden width {w} (Flux.2) ({_short(m)})")
    if w == 3072 and s.direct_width("double_blocks.19.img_attn.qkv", "double_blocks.19.txt_attn.qkv",
                                    "single_blocks.38.linear1", "single_blocks.39.linear1")[0] is not None:
        return r.set("hunyuan-video", "20 double / 40 single blocks at width 3072 (HunyuanVideo)")
    mlp, mm = s.direct_width("single_blocks.0.linear2", "single_blocks.1.linear2", "double_blocks.0.img_mlp.2",
                             "double_blocks.0.txt_mlp.2")
    if mlp is None:
        mlp, mm = s.first_width("linear2", "img_mlp.2", "txt_mlp.2")
    flux2 = mlp in (12288, 9216) if mm is not None and mm.endswith("linear2") else mlp == 9216
    if flux2:
        return r.set("flux2", f"SwiGLU MLP width {mlp} (Flux.2 ratio 3) ({_short(mm)})")
    if w is not None and w != 3072:
        return r.set(UNKNOWN, f"double/single blocks at unknown width {w} ({_short(m)})", ("flux1", "chroma", "flux2"))
    modulation = s.sampled("_img_mod_lin", "_txt_mod_lin", "_modulation_lin") or s.direct_width(
        *(f"double_blocks.{i}.{x}_mod.lin" for i in (0, 1, 2) for x in ("img", "txt")),
        *(f"single_blocks.{i}.modulation.lin" for i in (0, 1, 2)))[0] is not None
    if modulation:
        if s.direct_key("guidance_in.in_layer.weight"):
            r.family = "flux1-dev"
        elif s.direct_key("time_in.in_layer.weight"):
            r.family = "flux1-schnell"
        return r.set("flux1", "double/single blocks with per-block modulation layers (Flux.1; Chroma has none)")
    cands: tuple[str, ...] = ("flux1", "chroma") if mlp is not None else ("flux1", "chroma", "flux2")
    return r.set("flux1", "double/single blocks without modulation layers: Flux.1 and Chroma share this layout",
                 cands)


def _mmdit(s: _Scan, r: _Result) -> _Result:
    w, m = s.direct_width("joint_blocks.0.x_block.attn.qkv", "joint_blocks.0.context_block.attn.qkv",
                          "joint_blocks.1.x_block.attn.qkv")
    if w is None:
        w, m = s.first_width("x_block.attn.qkv", "context_block.attn.qkv", "x_block.mlp.fc1", "x_block.attn.proj")
    if w == 2432:
        return r.set("sd3.5-large", f"MMDiT hidden width 2432 ({_short(m)})")
    if w == 1536 or w is None:
        if s.sampled("_x_block_attn2_") or s.direct_width("joint_blocks.0.x_block.attn2.qkv",
                                                           "joint_blocks.1.x_block.attn2.qkv")[0] is not None:
            return r.set("sd3.5-medium", "MMDiT x_block.attn2 layers (SD 3.5 Medium's MMDiT-X)")
        if w == 1536 and m is not None and "joint_blocks" + s.sep + "0" + s.sep + "x_block" in m:
            return r.set("sd3", f"MMDiT hidden width 1536 without x_block.attn2 ({_short(m)})")
        if w is None and s.has_start("joint_blocks.37."):
            return r.set("sd3.5-large", "38 joint blocks (SD 3.5 Large)")
        if w == 1536:
            return r.set("sd3", f"MMDiT hidden width 1536 ({_short(m)})", ("sd3", "sd3.5-medium"))
        return r.set(UNKNOWN, "MMDiT joint blocks without a readable width", ("sd3", "sd3.5-medium", "sd3.5-large"))
    return r.set(UNKNOWN, f"MMDiT joint blocks at unknown width {w} ({_short(m)})")


def _dit_mm(s: _Scan, r: _Result) -> _Result:
    if s.sampled("to_qkv_mlp_proj", "_ff_linear_in", "_ff_context_linear_in"):
        return r.set("flux2", "to_qkv_mlp_proj / SwiGLU linear_in layers (Flux.2, diffusers names)")
    w, m = s.direct_width("transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k",
                          "transformer_blocks.0.attn.add_q_proj", "single_transformer_blocks.0.attn.to_q")
    if w is None:
        w, m = s.first_width("attn.to_q", "attn.add_q_proj", "attn.to_k", "attn.to_v", "proj_mlp", "ff.net.0.proj")
    if w == 2432:
        return r.set("sd3.5-large", f"joint transformer hidden width 2432 ({_short(m)})")
    if w == 1536:
        if s.sampled("_attn2_") or s.direct_width("transformer_blocks.0.attn2.to_q",
                                                   "transformer_blocks.0.attn2.to_k")[0] is not None:
            return r.set("sd3.5-medium", "transformer_blocks with attn2 (SD 3.5 Medium)")
        if m is not None and "transformer_blocks" + s.sep + "0" + s.sep + "attn" + s.sep in m:
            return r.set("sd3", f"joint transformer hidden width 1536 without attn2 ({_short(m)})")
        return r.set("sd3", f"joint transformer hidden width 1536 ({_short(m)})", ("sd3", "sd3.5-medium"))
    if w in (4096, 6144):
        return r.set("flux2", f"joint transformer hidden width {w} (Flux.2) ({_short(m)})")
    if w == 3072:
        if s.sampled("token_refiner") or s.direct_width(
                "transformer_blocks.19.attn.to_q", "transformer_blocks.19.attn.to_k", "single_transformer_blocks.38.attn.to_q",
                "single_transformer_blocks.39.attn.to_q")[0] is not None:
            return r.set("hunyuan-video", "more than 19 double / 38 single blocks at width 3072 (HunyuanVideo)")
        if s.sampled("_norm1_linear", "_norm1_context_linear", "_norm_linear") or s.direct_width(
                "transformer_blocks.0.norm1.linear", "single_transformer_blocks.0.norm.linear")[0] is not None:
            return r.set("flux1", "per-block norm1.linear modulation (Flux.1; Chroma has none)")
        single = any(n.startswith("single_transformer_blocks_") for n in s.names) or \
            s.find_module("single_transformer_blocks", end=False) is not None
        cands: tuple[str, ...] = ("flux1", "chroma") if single else ("flux1", "chroma", "flux2")
        return r.set("flux1", "transformer_blocks + single_transformer_blocks at width 3072: Flux.1 and Chroma "
                              "share this layout", cands)
    return r.set(UNKNOWN, f"joint transformer blocks at unknown width {w} ({_short(m)})")


def _dit_attn12(s: _Scan, r: _Result) -> _Result:
    w, m = s.first_width("attn1.to_q", "attn1.to_k", "attn2.to_q")
    if w == 1152:
        return r.set("pixart", f"transformer_blocks attn1/attn2 at width 1152 (PixArt) ({_short(m)})")
    if w == 2048:
        return r.set("ltx-video", f"transformer_blocks attn1/attn2 at width 2048 (LTX-Video) ({_short(m)})")
    return r.set(UNKNOWN, f"transformer_blocks attn1/attn2 at width {w} ({_short(m)})", ("pixart", "ltx-video"))


def _blocks_attn12(s: _Scan, r: _Result) -> _Result:
    if s.sampled("_ffn_"):
        return r.set("wan", "blocks.N.attn1/attn2 with ffn (Wan, diffusers names)")
    w, m = s.first_width("attn1.to_q", "attn1.to_k")
    if w == 1408:
        return r.set("hunyuan-dit", f"blocks.N.attn1 at width 1408 (Hunyuan-DiT) ({_short(m)})")
    if w in (1536, 5120, 3072):
        return r.set("wan", f"blocks.N.attn1 at width {w} (Wan) ({_short(m)})")
    return r.set(UNKNOWN, f"blocks.N.attn1 at width {w} ({_short(m)})", ("hunyuan-dit", "wan"))


def _te_only(s: _Scan, r: _Result) -> _Result:
    groups = {g for g, n in s.groups.items() if n and g.startswith("te")}
    te = _te_widths(s)
    if "te" in groups and not groups & {"te1", "te2", "te3"}:
        w = te.get("te")
        if w == 768:
            return r.set("sd1", "text encoder only, width 768 (CLIP ViT-L: SD1.x)")
        if w == 1024:
            return r.set("sd2", "text encoder only, width 1024 (OpenCLIP ViT-H: SD2.x)")
        return r.set(UNKNOWN, f"text encoder only, width {w}")
    if {"te1", "te2", "te3"} <= groups:
        return r.set("sd3", "text encoders CLIP-L + CLIP-G + T5 (SD3 family)", ("sd3", "sd3.5-medium", "sd3.5-large"))
    if {"te1", "te2"} <= groups or ("te" in groups and "te2" in groups):
        return r.set("sdxl", f"two CLIP text encoders (widths {te.get('te1') or te.get('te')} + {te.get('te2')}: SDXL)",
                     ("sdxl", "sd3", "sd3.5-medium", "sd3.5-large") if "te3" not in groups else ())
    if "te1" in groups and "te3" in groups:
        return r.set("flux1", "CLIP-L + T5 text encoders without CLIP-G (Flux.1)")
    if groups == {"te1"}:
        return r.set("sdxl", "CLIP-L text encoder only", ("sdxl", "flux1", "sd3"))
    if groups == {"te2"}:
        return r.set("sdxl", "CLIP-G text encoder only", ("sdxl", "sd3"))
    if groups == {"te3"}:
        return r.set("flux1", "T5 text encoder only", ("flux1", "chroma", "sd3"))
    return r


def _te_widths(s: _Scan) -> dict[str, int]:
    """Hidden width of each text encoder the header adapts (CLIP-L 768, OpenCLIP-H 1024, CLIP-G 1280, T5 4096)."""
    out: dict[str, int] = {}
    blob = s.blob
    for pfx, group in s.prefixes.items():
        if not group.startswith("te") or group in out:
            continue
        start = blob.find("\n" + pfx)
        if start < 0:
            continue
        for path in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.fc1", "SelfAttention.q"):
            n = s.needle(path)
            i = blob.find(n, start)
            if i < 0:
                continue
            ls = blob.rfind("\n", 0, i) + 1
            if not blob.startswith(pfx, ls):
                continue
            w = s.width(blob[ls:i + len(n) - 1])
            if w:
                out[group] = w
                break
    return out


_BRANCHES = {
    "unet-sgm": _unet, "unet-diffusers": _unet, "bfl": _bfl, "mmdit": _mmdit, "dit-mm": _dit_mm,
    "dit-attn12": _dit_attn12, "blocks-attn12": _blocks_attn12,
}
_DIRECT = {
    "cascade": ("stable-cascade", "lora_prior_unet_ prefix (Stable Cascade prior)"),
    "auraflow": ("auraflow", "joint_transformer_blocks / double_layers (AuraFlow)"),
    "hidream": ("hidream", "double_stream_blocks / single_stream_blocks (HiDream)"),
    "qwen": ("qwen-image", "transformer_blocks with img_mlp / txt_mlp / img_mod (Qwen-Image)"),
    "wan": ("wan", "blocks.N.self_attn / cross_attn / ffn (Wan)"),
    "lumina": ("lumina2", "layers.N.attention / feed_forward (Lumina 2)"),
}


_DECISIVE = ("cascade", "auraflow", "hidream", "qwen", "wan", "lumina")


def _structure(s: _Scan) -> _Result:
    r = _Result()
    denoiser = [(n, t) for t, n in s.tags.items() if not t.startswith("te:") and t != "other"]
    if denoiser:
        # a few layouts are decisive even when another tag has more samples (AuraFlow's 4 joint blocks
        # among 32 single_transformer_blocks, Qwen-Image's attention next to its img_mlp)
        tag = next((t for t in _DECISIVE if s.tags.get(t)), None) or max(denoiser)[1]
        if tag in _DIRECT:
            arch, detail = _DIRECT[tag]
            return r.set(arch, detail)
        return _BRANCHES[tag](s, r)
    if any(t.startswith("te:") for t in s.tags):
        return _te_only(s, r)
    return r


# --------------------------------------------------------------------------------------------------
# Metadata, hints -> architecture choice, family, conflicts

_KOHYA_VERSIONS = {
    "sd_v1": "sd1", "sd_v1_v": "sd1", "sd_v2": "sd2", "sd_v2_v": "sd2", "sdxl_base_v1-0": "sdxl", "flux1": "flux1",
    "chroma": "chroma", "medium": "sd3", "5-large": "sd3.5-large", "5-medium": "sd3.5-medium", "lumina2": "lumina2",
    "hunyuan-image-2.1": "hunyuan-image",
}


def _modelspec_arch(value: str) -> tuple[str | None, str | None]:
    v = value.lower().split("/", 1)[0].strip()
    if v.startswith("stable-diffusion-v1"):
        return "sd1", None
    if v.startswith("stable-diffusion-v2"):
        return "sd2", "sd2-768v" if "768-v" in v else "sd2-512"
    if v.startswith("stable-diffusion-xl-v1-refiner") or v.startswith("stable-diffusion-xl-refiner"):
        return "sdxl-refiner", None
    if v.startswith(("stable-diffusion-xl", "sdxl")):
        return "sdxl", None
    if v.startswith(("stable-diffusion-3", "sd3")):
        t = v.replace(".", "-")
        if "5-large" in t:
            return "sd3.5-large", None
        if "5-medium" in t:
            return "sd3.5-medium", None
        return "sd3", None
    if v.startswith("chroma") or "chroma" in v:
        return "chroma", None
    if v.startswith(("flux-1", "flux.1", "flux1")):
        return "flux1", "flux1-schnell" if "schnell" in v else ("flux1-dev" if "dev" in v else None)
    if v.startswith(("flux-2", "flux.2", "flux2")):
        return "flux2", None
    if v.startswith("lumina"):
        return "lumina2", None
    if v.startswith("hunyuan-image"):
        return "hunyuan-image", None
    if v.startswith(("auraflow", "aura-flow")):
        return "auraflow", None
    if v.startswith(("wan", "wan2")):
        return "wan", None
    if v.startswith("hunyuan-video"):
        return "hunyuan-video", None
    if v.startswith(("hidream", "hi-dream")):
        return "hidream", None
    if v.startswith("qwen-image"):
        return "qwen-image", None
    return None, None


_CIVITAI_EXACT: dict[str, tuple[tuple[str, ...], str | None]] = {
    "sd 1.4": (("sd1",), "sd15"), "sd 1.5": (("sd1",), "sd15"), "sd 1.5 lcm": (("sd1",), "sd15-lcm"),
    "sd 1.5 hyper": (("sd1",), "sd15-hyper"), "sd 2.0": (("sd2",), "sd2-512"), "sd 2.0 768": (("sd2",), "sd2-768v"),
    "sd 2.1": (("sd2",), "sd2-512"), "sd 2.1 768": (("sd2",), "sd2-768v"), "sd 2.1 unclip": (("sd2",), None),
    "sdxl 0.9": (("sdxl",), "sdxl-base"), "sdxl 1.0": (("sdxl",), "sdxl-base"), "sdxl 1.0 lcm": (("sdxl",), "sdxl-fast"),
    "sdxl lightning": (("sdxl",), "sdxl-fast"), "sdxl turbo": (("sdxl",), "sdxl-fast"),
    "sdxl hyper": (("sdxl",), "sdxl-fast"), "sdxl distilled": (("sdxl",), "sdxl-fast"),
    "pony": (("sdxl",), "pony"), "pony v7": (("auraflow",), "pony-v7"), "illustrious": (("sdxl",), "illustrious"),
    "noobai": (("sdxl",), "noobai"), "playground v2": (("sdxl",), "playground"),
    "playground v2.5": (("sdxl",), "playground"), "sd 3": (("sd3",), None),
    "sd 3.5": (("sd3.5-large", "sd3.5-medium"), None), "sd 3.5 large": (("sd3.5-large",), None),
    "sd 3.5 large turbo": (("sd3.5-large",), None), "sd 3.5 medium": (("sd3.5-medium",), None),
    "flux.1 d": (("flux1",), "flux1-dev"), "flux.1 s": (("flux1",), "flux1-schnell"),
    "flux.1 kontext": (("flux1",), "flux1-kontext"), "flux.1 krea": (("flux1",), "flux1-dev"),
    "chroma": (("chroma",), None), "auraflow": (("auraflow",), None), "stable cascade": (("stable-cascade",), None),
    "pixart a": (("pixart",), None), "pixart e": (("pixart",), None), "hunyuan 1": (("hunyuan-dit",), None),
    "hunyuan video": (("hunyuan-video",), None), "lumina": (("lumina2",), None), "hidream": (("hidream",), None),
    "qwen": (("qwen-image",), None), "ltxv": (("ltx-video",), None),
}
_CIVITAI_PREFIX = (("wan video", "wan"), ("flux.2", "flux2"), ("flux.1", "flux1"), ("sdxl", "sdxl"), ("sd 1", "sd1"),
                   ("sd 2", "sd2"), ("sd 3.5", "sd3.5-large"), ("hunyuan video", "hunyuan-video"), ("pixart", "pixart"),
                   ("ltxv", "ltx-video"), ("illustrious", "sdxl"), ("pony", "sdxl"), ("noobai", "sdxl"))


def civitai_base(base_model: str) -> tuple[tuple[str, ...], str | None]:
    """Civitai ``baseModel`` -> (possible architectures, family)."""
    b = " ".join(base_model.lower().split())
    hit = _CIVITAI_EXACT.get(b)
    if hit is not None:
        return hit
    for prefix, arch in _CIVITAI_PREFIX:
        if b.startswith(prefix):
            fam = {"illustrious": "illustrious", "pony": "pony", "noobai": "noobai"}.get(prefix)
            return (arch,), fam
    return (), None


_SIDECAR_SD_VERSION = {"sd1": ("sd1",), "sd2": ("sd2",), "sdxl": ("sdxl",), "flux": ("flux1", "chroma"),
                       "sd3": ("sd3", "sd3.5-medium", "sd3.5-large")}

_CAMEL = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


def _tokens(name: str) -> list[str]:
    return [t.lower() for t in _CAMEL.findall(name)]


def name_family(name: str, arch: str, *, loose: bool = False) -> str | None:
    """The family a file or checkpoint name points to within ``arch`` (``loose``: a checkpoint name)."""
    low = name.lower()
    toks = _tokens(name)
    joined = "".join(toks)
    if arch == "sdxl":
        if any(t.startswith("noob") for t in toks):
            return "noobai"
        if any(t.startswith("illustrious") for t in toks) or "ilxl" in joined:
            return "illustrious"
        if "pdxl" in joined or any(t == "pony" or (t.startswith("pony") and not t.startswith("ponytail")) for t in toks):
            return "pony"
        if loose and "pony" in low and "ponytail" not in low:
            return "pony"
        if "playground" in toks:
            return "playground"
        if any(t in ("lightning", "turbo") for t in toks) or "hypersd" in joined or "lcm" in toks:
            return "sdxl-fast"
        if loose and any(s in low for s in ("sd_xl_base", "sdxl_base", "sdxl-base", "stable-diffusion-xl-base")):
            return "sdxl-base"
    elif arch == "sd1":
        if "lcm" in toks:
            return "sd15-lcm"
        if "hypersd" in joined or ("hyper" in toks and "sd" in toks):
            return "sd15-hyper"
        if loose and any(s in low for s in ("v1-5", "v1_5", "sd15", "sd-1-5", "sd_1.5", "sd1.5", "stable-diffusion-v1-5")):
            return "sd15"
    elif arch == "sd2":
        if "768-v" in low or "768v" in low or "v2-1_768" in low:
            return "sd2-768v"
        if loose and ("512-base" in low or "v2-1_512" in low):
            return "sd2-512"
    elif arch == "flux1":
        if "schnell" in toks:
            return "flux1-schnell"
        if "kontext" in toks:
            return "flux1-kontext"
        if loose and "dev" in toks and "flux" in joined:
            return "flux1-dev"
    return None


def _json(text: str | None, limit: int = 4_000_000) -> object:
    if not text or len(text) > limit:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _class_tokens(folder: str) -> str | None:
    base = folder.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    head, sep, rest = base.partition("_")
    rest = rest.strip()
    return rest if sep and head.isdigit() and rest else None


def _trigger_words(md: dict[str, str]) -> tuple[list[Evidence], tuple[str, ...], tuple[str, ...]]:
    ev: list[Evidence] = []
    words: list[str] = []
    seen: set[str] = set()

    def add(w: str) -> bool:
        w = w.strip()
        if w and w.lower() not in seen:
            seen.add(w.lower())
            words.append(w)
            return True
        return False

    phrase = md.get("modelspec.trigger_phrase")
    if phrase:
        found = [p for p in phrase.split(",") if add(p)]
        if found:
            ev.append(Evidence("metadata", "trigger", f"modelspec.trigger_phrase = {phrase!r}"))
    dirs = _json(md.get("ss_dataset_dirs"))
    folders: list[str] = list(dirs) if isinstance(dirs, dict) else []
    if not folders and "ss_datasets" in md:
        data = _json(md.get("ss_datasets"))
        if isinstance(data, list):
            for ds in data:
                for sub in (ds.get("subsets") or []) if isinstance(ds, dict) else []:
                    if isinstance(sub, dict) and not sub.get("is_reg"):
                        tok = sub.get("class_tokens")
                        if isinstance(tok, str) and add(tok):
                            ev.append(Evidence("metadata", "trigger", f"ss_datasets class_tokens {tok!r}"))
    freq = _json(md.get("ss_tag_frequency"))
    if not folders and isinstance(freq, dict):
        folders = list(freq)  # the same "<repeats>_<class tokens>" folder names key the tag counts
    for folder in folders:
        tok = _class_tokens(folder)
        if tok and add(tok):
            ev.append(Evidence("metadata", "trigger", f"kohya dataset folder {folder!r} (class tokens {tok!r})"))
    guessed: list[str] = []
    if isinstance(freq, dict):
        total: Counter[str] = Counter()
        for tags in freq.values():
            if isinstance(tags, dict):
                for tag, n in tags.items():
                    if isinstance(n, int):
                        total[tag.strip()] += n
        guessed = [t for t, _ in total.most_common(12) if t and t.lower() not in seen][:10]
    return ev, tuple(words), tuple(guessed)


def _has_score_tags(md: dict[str, str]) -> bool:
    text = md.get("ss_tag_frequency") or ""
    return '"score_9' in text or '"score_8_up' in text


# --------------------------------------------------------------------------------------------------
# Detection


def _adapter(s: _Scan, md: dict[str, str], arch: str, ev: list[Evidence], extra: dict[str, str]) -> str | None:
    if not s.det_counts:
        return None
    base = s.det_counts.most_common(1)[0][0]
    if len(s.det_counts) > 1:
        extra["adapters"] = "+".join(sorted(s.det_counts))
    detail = {
        "lora": "lora_down/lora_up (or lora_A/lora_B) pairs", "loha": "hada_w1_a/hada_w1_b/hada_w2_a/hada_w2_b (LyCORIS LoHa)",
        "lokr": "lokr_w1 / lokr_w2 Kronecker factors (LyCORIS LoKr)", "oft": "oft_blocks orthogonal blocks",
        "glora": "a1/a2/b1/b2 weights (LyCORIS GLoRA)", "full": "diff / diff_b full weight differences",
        "norm": "w_norm / b_norm norm-layer deltas", "ia3": "weight + on_input (IA3)",
    }[base]
    adapter = base
    if base == "oft" and s.boft:
        adapter, detail = "boft", "4-D oft_blocks (butterfly OFT)"
    if "dora_scale" in s.tokens or "lora_magnitude_vector" in s.tokens:
        extra["dora_base"] = base
        adapter, detail = "dora", f"dora_scale magnitude vectors on {ADAPTERS[base]} modules (DoRA)"
    elif base == "lora":
        module = md.get("ss_network_module", "")
        conv = bool(s.conv_rank_counts)
        if not conv and module:
            # kohya writes conv_dim into ss_network_args when it adapts the 3x3 convolutions
            args = _json(md.get("ss_network_args"))
            conv = isinstance(args, dict) and str(args.get("conv_dim") or "0") not in ("0", "None")
        elif not conv and ARCHITECTURES.get(arch, ARCHITECTURES[UNKNOWN]).denoiser == "unet":
            sgm = s.tags.get("unet-sgm", 0) >= s.tags.get("unet-diffusers", 0)
            conv = s.sampled("_in_layers_", "_out_layers_", "_resnets_") or (
                s.has("in_layers.2", end=False) if sgm else s.has("resnets.0.conv", end=False))
        if "dylora" in module.lower():
            adapter, detail = "dylora", f"lora_down/lora_up with ss_network_module = {module}"
        elif conv:
            adapter, detail = "locon", "LoRA on convolution (ResNet) layers too (LoCon)"
    ev.append(Evidence("structure" if adapter != "dylora" else "metadata", f"adapter={adapter}", detail))
    return adapter


def _rank_alpha(s: _Scan, md: dict[str, str], ev: list[Evidence], extra: dict[str, str]) -> tuple[int | None, float | None]:
    rank: int | None = None
    if s.rank_counts:
        rank = s.rank_counts.most_common(1)[0][0]
        ev.append(Evidence("structure", f"rank={rank}", "most common adapter inner dimension"))
    if s.conv_rank_counts:
        extra["conv_rank"] = str(s.conv_rank_counts.most_common(1)[0][0])
    dim = md.get("ss_network_dim", "")
    if dim.isdigit():
        if rank is None:
            rank = int(dim)
            ev.append(Evidence("metadata", f"rank={rank}", "ss_network_dim"))
        elif int(dim) != rank:
            extra["rank_metadata"] = dim
            ev.append(Evidence("metadata", f"rank={dim}", f"ss_network_dim says {dim}; the tensors say {rank} (resized?)"))
    alpha: float | None = None
    raw = md.get("ss_network_alpha")
    if raw not in (None, "", "None"):
        try:
            alpha = float(raw or "")
            ev.append(Evidence("metadata", f"alpha={alpha:g}", "ss_network_alpha"))
        except ValueError:
            alpha = None
    if alpha is None:
        extra["alpha"] = "unknown"
    return rank, alpha


def _claims(md: dict[str, str], hints: Hints) -> list[tuple[str, str, tuple[str, ...], str | None]]:
    """``(source, text, architectures, family)`` claims, strongest first."""
    out: list[tuple[str, str, tuple[str, ...], str | None]] = []
    if hints.sidecar_base:
        v = hints.sidecar_base.strip()
        low = v.lower()
        if low in ARCHITECTURES and low != UNKNOWN:
            out.append(("sidecar", f"the sidecar's base {v!r}", (low,), None))
        elif low in FAMILIES:
            out.append(("sidecar", f"the sidecar's base {v!r}", (FAMILIES[low].architecture,), low))
        else:
            archs, fam = civitai_base(v)
            if archs:
                out.append(("sidecar", f"the sidecar's base {v!r}", archs, fam))
    version = md.get("ss_base_model_version", "").strip()
    if version in _KOHYA_VERSIONS:
        fam = "sd2-768v" if version == "sd_v2_v" else None
        out.append(("metadata", f"ss_base_model_version = {version!r}", (_KOHYA_VERSIONS[version],), fam))
    spec = md.get("modelspec.architecture", "").strip()
    if spec:
        arch, fam = _modelspec_arch(spec)
        if arch:
            out.append(("metadata", f"modelspec.architecture = {spec!r}", (arch,), fam))
    if md.get("ss_v2", "").strip().lower() == "true":
        out.append(("metadata", "ss_v2 = True", ("sd2",), None))
    if hints.civitai_base_model:
        archs, fam = civitai_base(hints.civitai_base_model)
        if archs:
            out.append(("civitai", f"Civitai baseModel {hints.civitai_base_model!r}", archs, fam))
    if hints.sidecar_sd_version:
        archs2 = _SIDECAR_SD_VERSION.get(hints.sidecar_sd_version.strip().lower())
        if archs2:
            out.append(("sidecar", f"the sidecar's \"sd version\" {hints.sidecar_sd_version!r}", archs2, None))
    return out


def _labels(archs: Iterable[str]) -> str:
    return " or ".join(architecture_label(a) for a in archs)


def _decide(r: _Result, md: dict[str, str], hints: Hints, conflicts: list[str]) -> tuple[str, str]:
    """Final architecture and what chose it; records conflicts (structure always wins)."""
    claims = _claims(md, hints)
    arch = r.arch
    source = "structure" if arch != UNKNOWN else "none"
    if r.candidates:
        source = "default" if arch != UNKNOWN else "none"
        chosen = None
        for src, text, archs, _fam in claims:
            hit = [a for a in archs if a in r.candidates]
            if hit and chosen is None:
                chosen = (hit[0], src, text)
        if chosen is not None:
            arch, source = chosen[0], chosen[1]
            r.evidence.append(Evidence(chosen[1], f"architecture={arch}",
                                       f"{chosen[2]} chooses among {_labels(r.candidates)}"))
        for _src, text, archs, _fam in claims:
            if not any(a in r.candidates for a in archs):
                conflicts.append(f"{text} says {_labels(archs)}, but the tensors are {_labels(r.candidates)}; "
                                 f"the structure wins")
        return arch, source
    if arch == UNKNOWN:
        for src, text, archs, _fam in claims:
            if src in ("metadata", "sidecar"):
                r.evidence.append(Evidence(src, f"architecture={archs[0]}",
                                           f"{text} (the tensor layout itself was not recognised)"))
                return archs[0], src
        return arch, "none"
    detail = next((e.detail for e in r.evidence if e.claim.startswith("architecture=")), "")
    for src, text, archs, _fam in claims:
        if arch not in archs:
            conflicts.append(f"{text} says {_labels(archs)}, but the tensors are {architecture_label(arch)} "
                             f"({detail}); the structure wins")
        else:
            r.evidence.append(Evidence(src, f"architecture={arch}", f"{text} agrees"))
    return arch, source


def _family(arch: str, r: _Result, md: dict[str, str], hints: Hints, ev: list[Evidence],
            conflicts: list[str]) -> str | None:
    def fits(fam: str | None) -> bool:
        return fam is not None and fam in FAMILIES and FAMILIES[fam].architecture == arch

    # 1. LoRA Studio sidecar override, 2. Civitai baseModel
    for src, value in (("sidecar", hints.sidecar_base), ("civitai", hints.civitai_base_model)):
        if not value:
            continue
        low = value.strip().lower()
        fam = low if low in FAMILIES else civitai_base(value)[1]
        if fits(fam):
            ev.append(Evidence(src, f"family={fam}", f"{'sidecar base' if src == 'sidecar' else 'Civitai baseModel'} "
                                                     f"{value!r}"))
            return fam
        # a family of another architecture was already reported as an architecture conflict by _decide
    # 3. the training checkpoint's (or this checkpoint's own) sha256
    for text, sha in (("ss_new_sd_model_hash", md.get("ss_new_sd_model_hash")), ("file sha256", hints.sha256)):
        known = KNOWN_BASE_HASHES.get((sha or "").strip().lower())
        if known and known[0] == arch:
            ev.append(Evidence("hash", f"family={known[1]}", f"{text} is {known[2]}"))
            return known[1]
    # 4. ss_sd_model_name patterns
    name = md.get("ss_sd_model_name")
    if name:
        fam = name_family(name, arch, loose=True)
        if fam:
            ev.append(Evidence("metadata", f"family={fam}", f"trained on {name!r} (ss_sd_model_name)"))
            return fam
    # 5. Pony score tags
    if arch == "sdxl" and _has_score_tags(md):
        ev.append(Evidence("tags", "family=pony", "score_9 / score_8_up tags in ss_tag_frequency (Pony captions)"))
        return "pony"
    # 6. file and folder names
    for label, value in (("file name", hints.filename), *(("folder", f) for f in hints.folders)):
        if value:
            fam = name_family(value, arch)
            if fam:
                ev.append(Evidence("name", f"family={fam}", f"{label} {value!r}"))
                return fam
    # variants the metadata or structure state (Flux dev/schnell, SD2 768-v)
    if r.family and fits(r.family):
        return r.family
    for src, text, archs, fam in _claims(md, Hints()):
        if fits(fam) and arch in archs:
            ev.append(Evidence(src, f"family={fam}", text))
            return fam
    return None


def _targets(s: _Scan, arch: str) -> tuple[str, ...]:
    a = ARCHITECTURES.get(arch, ARCHITECTURES[UNKNOWN])
    out: list[str] = []
    groups = {g for g, n in s.groups.items() if n}
    if groups & {"denoiser", "cascade"}:
        den = a.denoiser
        if arch == UNKNOWN:
            den = "unet" if any(t.startswith("unet") for t in s.tags) else "transformer"
        out.append(den)
    two_clip = "te1" in a.text_encoders
    if a.text_encoders == ("te",) and groups & {"te", "te1", "te2", "te3"}:
        groups = (groups - {"te1", "te2", "te3"}) | {"te"}
    if "te" in groups:
        out.append("te1" if two_clip else "te")
    if "te1" in groups and "te1" not in out:
        out.append("te1")
    if "te2" in groups:
        # diffusers Flux: text_encoder_2 is T5
        out.append("te3" if arch in ("flux1", "chroma") else "te2")
    if "te3" in groups and "te3" not in out:
        out.append("te3")
    order = ("unet", "transformer", "te", "te1", "te2", "te3")
    return tuple(sorted(out, key=order.index))


#: trainer style -> (denoiser prefixes, CLIP text-encoder stem, {TE target: prefix}); long needles scan fastest
_STYLES: dict[str, tuple[tuple[str, ...], str, dict[str, str]]] = {
    "kohya": (("lora_unet_",), "text_model_encoder_layers_", {"te": "lora_te_", "te1": "lora_te1_",
                                                              "te2": "lora_te2_", "te3": "lora_te3_"}),
    "peft": (("unet.", "transformer."), "text_model.encoder.layers.", {"te": "text_encoder.", "te1": "text_encoder.",
                                                                      "te2": "text_encoder_2.", "te3": "text_encoder_3."}),
}


def _style(s: _Scan) -> str | None:
    if any(p.startswith("lora_") for p in s.prefixes):
        return "kohya"
    if any(p in ("unet.", "transformer.", "text_encoder.", "text_encoder_2.") for p in s.prefixes):
        return "peft"
    return None


def _probe_denoiser(s: _Scan) -> None:
    """A few denoiser modules among many text-encoder ones may escape the sample: one find."""
    style = _style(s)
    if style is not None and not any(g in ("denoiser", "cascade") for g in s.prefixes.values()):
        s.probe_prefixes(_STYLES[style][0])


def _probe_text_encoders(s: _Scan, arch: str) -> None:
    """Count the text encoders ``arch`` has that the sample missed: one find per missing one (none if seen)."""
    style = _style(s)
    if style is None:
        return
    _den, stem, prefixes = _STYLES[style]
    seen = {g for g in s.prefixes.values() if g.startswith("te")}
    expected = ARCHITECTURES.get(arch, ARCHITECTURES[UNKNOWN]).text_encoders or ("te", "te1", "te2", "te3")
    if style == "peft" and arch in ("flux1", "chroma"):
        expected = ("te1", "te2")  # diffusers Flux: text_encoder (CLIP-L), text_encoder_2 (T5)
    if not seen and s.blob.find(stem) < 0:
        # no CLIP encoder anywhere; only a T5 (kohya lora_te3_) can still be there
        if "te3" in expected and style == "kohya":
            s.probe_prefixes(("lora_te3_",))
        return
    for group in expected:
        if group not in seen and not (group == "te1" and "te" in seen):
            s.probe_prefixes((prefixes[group],))


def _content(s: _Scan) -> str | None:
    """What a file that is neither a LoRA nor a checkpoint holds (direct lookups, no scan)."""
    t = s.tensors
    if "emb_params" in t or "clip_l" in t or "clip_g" in t or "string_to_param.*" in t:
        return "textual inversion embedding"
    if "encoder.conv_in.weight" in t or "decoder.conv_in.weight" in t:
        return "VAE"
    return None


def _build(header: Header, hints: Hints | None, kind: str, s: _Scan) -> Detection:
    hints = hints or Hints()
    md = header.metadata
    if kind == "lora":
        _probe_denoiser(s)
    r = _structure(s)
    conflicts: list[str] = []
    arch, source = _decide(r, md, hints, conflicts)
    if kind == "lora":
        _probe_text_encoders(s, arch)
    ev = r.evidence
    extra = r.extra
    fam = _family(arch, r, md, hints, ev, conflicts)
    adapter = rank = alpha = None
    trig: tuple[str, ...] = ()
    guessed: tuple[str, ...] = ()
    if kind == "lora":
        adapter = _adapter(s, md, arch, ev, extra)
        rank, alpha = _rank_alpha(s, md, ev, extra)
        tev, trig, guessed = _trigger_words(md)
        ev.extend(tev)
    targets = _targets(s, arch)
    return Detection(kind=kind, architecture=arch, candidates=r.candidates, family=fam, adapter=adapter, rank=rank,
                     alpha=alpha, targets=targets, trigger_words=trig, evidence=tuple(ev), conflicts=tuple(conflicts),
                     extra=extra, guessed_tags=guessed, architecture_source=source)


def _unknown(header: Header, s: _Scan | None, why: str) -> Detection:
    extra: dict[str, str] = {}
    content = _content(s) if s is not None else None
    if content:
        extra["content"] = content
    return Detection(kind="unknown", architecture=UNKNOWN, evidence=(Evidence("structure", "kind=unknown", why),),
                     extra=extra, architecture_source="none")


def detect(header: Header, hints: Hints | None = None) -> Detection:
    """Classify any safetensors header: a LoRA (adapter tensors), a checkpoint (plain weights) or unknown."""
    s = _Scan(header.tensors)
    if not header.tensors:
        return _unknown(header, None, "the file holds no tensors")
    if s.det_counts:
        return _build(header, hints, "lora", s)
    if _content(s) is None and s.plain:
        det = _build(header, hints, "checkpoint", s)
        if det.architecture != UNKNOWN or det.candidates:
            return det
    return _unknown(header, s, "neither adapter tensors nor a known model layout")


def detect_lora(header: Header, hints: Hints | None = None) -> Detection:
    """Detect a LoRA; a header without any adapter tensors is reported as ``kind="unknown"``."""
    s = _Scan(header.tensors)
    if not s.det_counts:
        return _unknown(header, s, "no LoRA/LyCORIS adapter tensors (lora_down, lora_A, hada_w1_a, lokr_w1 …)")
    return _build(header, hints, "lora", s)


def detect_checkpoint(header: Header, hints: Hints | None = None) -> Detection:
    """Classify a checkpoint (ldm/sgm single file, diffusers U-Net/transformer, Flux, SD3 …) from its header."""
    s = _Scan(header.tensors)
    if not header.tensors:
        return _unknown(header, None, "the file holds no tensors")
    det = _build(header, hints, "checkpoint", s)
    if det.architecture == UNKNOWN and not det.candidates:
        return _unknown(header, s, "no known checkpoint layout")
    return det
