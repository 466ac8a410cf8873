"""Stand-in marker: its presence makes LoRA Studio treat the WebUI as Forge."""
