"""Stand-in for the WebUI's ``modules`` package (see ../README.md). Flavour: "a1111" or "forge"."""

import os

FLAVOR = os.environ.get("LORA_STUDIO_STANDIN_FLAVOR", "a1111")
