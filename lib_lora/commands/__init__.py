"""One module per ``python -m lib_lora`` command, each with ``add_arguments(parser)`` and ``run(args)``."""
