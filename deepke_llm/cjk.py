"""Scripts written without spaces between words (Chinese, Japanese kana, Korean syllables).

The one definition for word-boundary tests (grounding, the KG2Instruction gazetteer: a CJK mention
may start anywhere), language detection, token estimates and the context scorer's tokens (CJK runs
become character unigrams and bigrams instead of words).
"""

from __future__ import annotations

import re
from bisect import bisect_right

# (first, last) code points, ascending: kana, CJK extension A, unified ideographs, Hangul
# syllables, compatibility ideographs, supplementary ideographs
CJK_BLOCKS = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF),
              (0xF900, 0xFAFF), (0x20000, 0x2FA1F))
CJK_RUN = re.compile("[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in CJK_BLOCKS) + "]+")
_EDGES = tuple(edge for first, last in CJK_BLOCKS for edge in (first, last + 1))


def is_cjk(char: str) -> bool:
    """True for a character of :data:`CJK_BLOCKS` (one bisect: this runs per gazetteer match)."""
    return bisect_right(_EDGES, ord(char)) % 2 == 1


def is_wide(char: str) -> bool:
    """CJK characters plus CJK punctuation and full-width forms (a token each, roughly)."""
    return is_cjk(char) or "\u3000" <= char <= "\u303f" or "\uff00" <= char <= "\uffef"


_WIDE = re.compile("[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in CJK_BLOCKS)
                   + "\u3000-\u303f\uff00-\uffef]")


def count_wide(text: str) -> int:
    """How many characters of ``text`` are :func:`is_wide` (one regex pass, not a Python loop)."""
    return len(text) - len(_WIDE.sub("", text))
