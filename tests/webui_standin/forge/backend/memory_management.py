calls: list[str] = []


def unload_all_models():
    calls.append("unload_all_models")


def soft_empty_cache(force=False):
    calls.append(f"soft_empty_cache(force={force})")
