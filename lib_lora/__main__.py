"""``python -m lib_lora``: hands the command line to :mod:`lib_lora.cli`."""

import sys

from lib_lora.cli import main

sys.exit(main())
