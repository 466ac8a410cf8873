"""Key scanning: one pass over a header's tensor names that normalises trainer prefixes and samples modules."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

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
