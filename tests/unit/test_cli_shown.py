"""``jcs ls`` prints keys as a terminal may show them: an S3 key may hold
control characters (as on AWS), and an escape sequence printed raw would
drive the terminal (clear it, retitle it, rewrite earlier lines)."""

from __future__ import annotations

from jointcloud.cli.commands_objects import shown


def test_controls_are_shown_as_escapes() -> None:
    assert shown("clear\x1b[2J") == "clear\\x1b[2J"
    assert shown("a\rb\nc\td") == "a\\x0db\\x0ac\\x09d"
    assert shown("del\x7f c1\x85") == "del\\x7f c1\\x85"


def test_printable_text_is_left_alone() -> None:
    assert shown("photos/été 2026/東京.jpg") == "photos/été 2026/東京.jpg"
