"""Text cleaning for classifier training data: scraped reviews and tweets.

The settings preprocess cleaned with (`TextCleaning`) travel with the model in every lineage, so
that every predictor (components.predict, the model card's snippet) cleans a new text as
training did: a model trained on `@user` and `http` placeholders has never seen a real handle.
"""

from __future__ import annotations

import html
import logging
import re
import unicodedata
from dataclasses import asdict, dataclass, fields

from components.lib.errors import UserError

URL_PATTERN = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
MENTION_PATTERN = re.compile(r"(?<![\w@])@\w{1,30}")
WHITESPACE_PATTERN = re.compile(r"\s+")
# C0 controls and DEL; and U+FEFF, a byte-order mark that lands inside a text when files that each
# begin with one are joined (`cat a.csv b.csv`), invisible but a different string to deduplication.
CONTROL_CHARACTERS = dict.fromkeys(code for code in range(0x20) if chr(code) not in "\t\n\r") | {0x7F: None, 0xFEFF: None}

URL_MASK = "http"
MENTION_MASK = "@user"
LINEAGE_KEY = "text_cleaning"

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class TextCleaning:
    """The cleaning settings of a training run: preprocess's --mask_urls and --mask_mentions."""

    mask_urls: bool = False
    mask_mentions: bool = False

    def clean(self, text: str) -> str:
        return clean_text(text, self.mask_urls, self.mask_mentions)

    def lineage(self) -> dict:
        """The lineage entry that records these settings."""
        return {LINEAGE_KEY: asdict(self)}

    @classmethod
    def from_lineage(cls, lineage: dict, where: str) -> TextCleaning:
        """The settings a model's lineage records; the defaults, with a warning, for a model from before they were recorded."""
        recorded = lineage.get(LINEAGE_KEY)
        if recorded is None:
            log.warning("%s: its lineage records no text cleaning (it predates that); cleaning without URL or mention masks", where)
            return cls()
        known = {field.name for field in fields(cls)}
        if not isinstance(recorded, dict) or set(recorded) - known:
            raise UserError(f"{where}: its lineage's {LINEAGE_KEY} {recorded!r} is not understood by this version of the code; update it")
        return cls(**recorded)
