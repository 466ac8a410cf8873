"""Detection: classify a header as a LoRA, a checkpoint or unknown and assemble its Detection."""

from __future__ import annotations

from lib_lora.architecture.claims import _decide, _family
from lib_lora.architecture.keys import _Scan
from lib_lora.architecture.lora import _adapter, _rank_alpha, _trigger_words
from lib_lora.architecture.structure import _structure
from lib_lora.architecture.taxonomy import ARCHITECTURES, UNKNOWN, Detection, Evidence, Hints
from lib_lora.safetensors_header import Header


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
