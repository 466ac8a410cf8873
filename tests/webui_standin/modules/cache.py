def cached_data_for_file(subsection, title, filename, func):
    return func()
