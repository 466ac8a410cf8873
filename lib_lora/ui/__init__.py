"""Gradio builders for LoRA Studio (browser panel, Train tab). They take a Host and import no WebUI module."""
