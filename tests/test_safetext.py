"""lib_lora.safetext: the one place that makes file text safe for a terminal and for HTML."""

from __future__ import annotations

import io

from lib_lora.safetext import TerminalStream, html_data, html_isolated, html_text, unfiltered, visible

BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def test_visible_shows_controls_escapes_and_bidi_as_codes() -> None:
    assert visible("a\x1b[31mb") == "a\\u001b[31mb"
    assert visible(BIDI) == "".join(f"\\u{ord(c):04x}" for c in BIDI)
    assert visible("\x00\x07\x7f\x85\x9b") == "\\u0000\\u0007\\u007f\\u0085\\u009b"
    assert visible("l1\nl2\tx\r") == "l1\\u000al2\\u0009x\\u000d"
    assert visible("l1\nl2\tx\r\x1b", keep_layout=True) == "l1\nl2\tx\r\\u001b"
    assert visible("ünïcödé 名前 עברית C:\\path") == "ünïcödé 名前 עברית C:\\path"  # text itself is untouched
    assert visible(None) == "" and visible(3) == "3"


def test_html_escapes_shows_and_isolates() -> None:
    assert html_text('<b a="1">\u202e&') == "&lt;b a=&quot;1&quot;&gt;\\u202e&amp;"
    assert html_text("line\nnext") == "line\nnext"  # white space in HTML
    assert html_isolated("x\u202ey<") == "<bdi>x\\u202ey&lt;</bdi>"
    assert html_data('n"\u202e\x1b<') == "n&quot;&#x202e;&#x1b;&lt;"


def test_terminal_stream_filters_writes_and_hands_out_the_raw_stream() -> None:
    raw = io.StringIO()
    stream = TerminalStream(raw)
    print("name\u202etxt\x1b[2J", "ok", file=stream)  # type: ignore[arg-type]
    stream.writelines(["a\x07\n"])
    assert raw.getvalue() == "name\\u202etxt\\u001b[2J ok\na\\u0007\n"
    assert stream.isatty() is False and unfiltered(stream) is raw and unfiltered(raw) is raw
    unfiltered(stream).write("\r\x1b[K")
    assert raw.getvalue().endswith("\r\x1b[K")
