"""Text cleaning for classifier training data: scraped reviews and tweets."""

from __future__ import annotations

import html
import re
import unicodedata

URL_PATTERN = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
MENTION_PATTERN = re.compile(r"(?<![\w@])@\w{1,30}")
WHITESPACE_PATTERN = re.compile(r"\s+")
# C0 controls and DEL; and U+FEFF, a byte-order mark that lands inside a text when files that each
# begin with one are joined (`cat a.csv b.csv`), invisible but a different string to deduplication.
CONTROL_CHARACTERS = dict.fromkeys(code for code in range(0x20) if chr(code) not in "\t\n\r") | {0x7F: None, 0xFEFF: None}

URL_MASK = "http"
MENTION_MASK = "@user"


def clean_text(text: str, mask_urls: bool = False, mask_mentions: bool = False) -> str:
    """Unescape HTML entities, normalise Unicode (NFKC) and whitespace, optionally mask URLs and @users.

    Entities are unescaped twice because scraped text is often escaped twice (`&amp;#039;`).
    The masks follow the TweetEval convention (`http`, `@user`), which tweet models are trained on.
    """
    text = html.unescape(html.unescape(text))
    text = unicodedata.normalize("NFKC", text).translate(CONTROL_CHARACTERS)
    if mask_urls:
        text = URL_PATTERN.sub(URL_MASK, text)
    if mask_mentions:
        text = MENTION_PATTERN.sub(MENTION_MASK, text)
    return WHITESPACE_PATTERN.sub(" ", text).strip()
