"""Will this LoRA work on that checkpoint? Four levels, one sentence for the user.

* **exact** — same architecture and the same family, or a family that is unknown or a plain base
  (most SDXL checkpoints are merges whose lineage nobody recorded: no warning for those);
* **cross-family** — same architecture, two *known* and different finetunes (a Pony LoRA on an
  Illustrious checkpoint), or two architectures of one group (a Flux.1 LoRA on Chroma): it loads,
  results vary — warn, don't hide;
* **incompatible** — another architecture: the WebUI's loader finds no matching layers and ignores the
  LoRA (Forge may stop the batch);
* **unknown** — either side could not be classified, or no checkpoint is selected.
"""

from __future__ import annotations

from dataclasses import dataclass

from lib_lora.architecture import (
    ARCHITECTURES,
    FAMILIES,
    UNKNOWN,
    Detection,
    architecture_label,
    family_label,
)

EXACT = "exact"
CROSS_FAMILY = "cross-family"
INCOMPATIBLE = "incompatible"
UNKNOWN_LEVEL = "unknown"

#: every level, best first
LEVELS = (EXACT, CROSS_FAMILY, INCOMPATIBLE, UNKNOWN_LEVEL)

_LABELS = {EXACT: "Compatible", CROSS_FAMILY: "Other finetune", INCOMPATIBLE: "Incompatible",
           UNKNOWN_LEVEL: "Unknown"}


@dataclass(frozen=True)
class Compat:
    level: str  # "exact" | "cross-family" | "incompatible" | "unknown"
    message: str  # one sentence for the user

    @property
    def loads(self) -> bool:
        """Whether the WebUI will apply the LoRA at all (exact or cross-family)."""
        return self.level in (EXACT, CROSS_FAMILY)

    @property
    def label(self) -> str:
        return label(self.level)


def label(level: str) -> str:
    """Short display text of a level: "Compatible", "Other finetune", "Incompatible", "Unknown"."""
    return _LABELS.get(level, level)


def _article(text: str) -> str:
    first = text[:1].upper()
    vowel = first in "AEIOU" or text.startswith(("SD", "LTX"))
    return f"{'an' if vowel else 'a'} {text}"


def _arch_text(det: Detection) -> str:
    archs = [a for a in det.possible_architectures if a != UNKNOWN]
    return " or ".join(architecture_label(a) for a in archs) or "unknown"


def _name(det: Detection, arch: str) -> str:
    """``Pony`` / ``SDXL`` / ``Flux.1 Dev``: the family when it says more than the architecture."""
    fam = det.family
    if fam and fam in FAMILIES and not FAMILIES[fam].generic:
        return family_label(fam)
    return architecture_label(arch)


def _specific(family: str | None) -> bool:
    return bool(family) and family in FAMILIES and not FAMILIES[family or ""].generic


def check(lora: Detection, checkpoint: Detection | None) -> Compat:
    """Compatibility of ``lora`` with ``checkpoint`` (both from :mod:`lib_lora.architecture`)."""
    if checkpoint is None:
        return Compat(UNKNOWN_LEVEL, "No checkpoint selected: compatibility cannot be checked.")
    l_archs = tuple(a for a in lora.possible_architectures if a != UNKNOWN)
    c_archs = tuple(a for a in checkpoint.possible_architectures if a != UNKNOWN)
    if lora.kind == "unknown" or not l_archs:
        return Compat(UNKNOWN_LEVEL, "The LoRA's base model could not be detected from its tensors or metadata.")
    if checkpoint.kind == "unknown" or not c_archs:
        return Compat(UNKNOWN_LEVEL, "The checkpoint's base model could not be detected from its header.")

    common = [a for a in l_archs if a in c_archs]
    if common and (len(l_archs) > 1 or len(c_archs) > 1):
        groups = {ARCHITECTURES[a].group for a in l_archs + c_archs if a in ARCHITECTURES}
        if len(groups) > 1:
            return Compat(UNKNOWN_LEVEL, f"The LoRA is for {_arch_text(lora)} (its tensors cannot tell which) and the "
                                         f"checkpoint is {_arch_text(checkpoint)}: it may or may not load.")
    if common:
        arch = common[0]
        lf, cf = lora.family, checkpoint.family
        lname = _name(lora, arch) if len(l_archs) == 1 else _arch_text(lora)
        cname = _name(checkpoint, arch) if len(c_archs) == 1 else _arch_text(checkpoint)
        if _specific(lf) and _specific(cf) and lf != cf:
            return Compat(CROSS_FAMILY, f"{lname} LoRA on {_article(cname)} checkpoint: same "
                                        f"{architecture_label(arch)} architecture, so it loads, but it was trained "
                                        f"for another finetune and results may differ.")
        return Compat(EXACT, f"{lname} LoRA on {_article(cname)} checkpoint.")

    l_groups = {ARCHITECTURES[a].group for a in l_archs}
    c_groups = {ARCHITECTURES[a].group for a in c_archs}
    lname = " or ".join(_name(lora, a) for a in l_archs)
    cname = " or ".join(_name(checkpoint, a) for a in c_archs)
    if l_groups == c_groups and len(l_groups) == 1:
        return Compat(CROSS_FAMILY, f"{lname} LoRA on {_article(cname)} checkpoint: related architectures, most "
                                    f"layers match so it loads, but results may differ.")
    return Compat(INCOMPATIBLE, f"{lname} LoRA on {_article(cname)} checkpoint: the loader will ignore it "
                                f"(no matching layers).")
