from modules.paths import data_path, extensions_dir, models_path, script_path  # noqa: F401
