"""LoRA Studio core: reads, checks, indexes and trains LoRAs without importing any WebUI module."""

__version__ = "0.1.0"
