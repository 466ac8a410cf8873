import sys
import traceback

reported: list[str] = []


def report(message, *, exc_info=False):
    reported.append(message)
    print("***", message, file=sys.stderr)
    if exc_info:
        traceback.print_exc()


def display(e, task, *, full_traceback=False):
    reported.append(f"{task}: {type(e).__name__}: {e}")
    print(f"{task}: {type(e).__name__}: {e}", file=sys.stderr)
