"""Consistency sheets: prove a character LoRA holds across scenes — render five scenes (or the
expressions row) × versions or epoch files × weights through the WebUI's own generation, assemble a
labelled grid, score it with CLIP image embeddings and mark the best version and weight.

Modules: :mod:`.scenes` (the rows), :mod:`.versions` (the columns; staging of epoch files), :mod:`.grid`
(the image), :mod:`.score` (open_clip 2.7.0 embeddings, ranking), :mod:`.sheet` (the jobs).
"""

from lib_lora.consistency.sheet import (
    DEFAULT_WEIGHTS,
    Cell,
    SheetManager,
    SheetRequest,
    SheetStatus,
    manager_for,
)

__all__ = ["DEFAULT_WEIGHTS", "Cell", "SheetManager", "SheetRequest", "SheetStatus", "manager_for"]
