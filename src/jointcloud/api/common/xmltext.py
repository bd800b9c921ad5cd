"""What XML 1.0 can carry: both XML protocols (S3, the gateway's facade)
echo request text in their answers and must not write a document no
parser reads."""

from __future__ import annotations

import re

# A character outside XML 1.0's Char production: not even a character
# reference can carry it (Go's isInCharacterRange).
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> str:
    """``text`` with what XML cannot carry replaced by U+FFFD."""
    return NOT_XML.sub("\ufffd", text)
