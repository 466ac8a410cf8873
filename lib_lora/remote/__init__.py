"""Civitai and Hugging Face: fetch a LoRA's info by hash, download LoRAs by URL, check for new versions.

Nothing here touches the network until a caller asks (a button, the CLI, the API, or the user's
automatic-fetch setting). HTTP goes through ``requests`` (Civitai, previews) and ``huggingface_hub``
(Hugging Face); both are shipped by the WebUIs and listed in the standalone ``[app]`` extra.
"""
