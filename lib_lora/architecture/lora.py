"""LoRA-only facts: the adapter kind (LoRA, LoCon, LoHa, DoRA ...), rank and alpha, trigger words and tags."""

from __future__ import annotations

import json
from collections import Counter

from lib_lora.architecture.keys import _Scan
from lib_lora.architecture.taxonomy import ADAPTERS, ARCHITECTURES, UNKNOWN, Evidence


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
