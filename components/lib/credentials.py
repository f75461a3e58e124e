"""What a credential looks like in a value: kept out of compiled YAML, run parameters and logs.

A name can be checked (`MLFLOW_TRACKING_TOKEN` is a credential); a value needs these shapes: a URL
with a user and password in it (`https://user:password@host`), and the keys of services the
pipeline talks to.
"""

from __future__ import annotations

import re

CREDENTIAL_NAME = re.compile(r"TOKEN|PASSWORD|SECRET|API_KEY|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)  # a variable that holds one
SHAPES = {
    "a URL with a password in it": re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE),
    "an AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "a secret assigned in the text": re.compile(r"(?i)(aws_secret_access_key|secret_key|password|token)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{20,}"),
    "a bearer token": re.compile(r"(?i)bearer\s+[A-Za-z0-9._-]{20,}"),
    "a Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    "a GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
}


def credential_in(value: object) -> str:
    """What kind of credential the text of `value` holds, or ''."""
    text = str(value)
    return next((kind for kind, shape in SHAPES.items() if shape.search(text)), "")


def credentials_in(text: str) -> list[tuple[str, str]]:
    """(kind, the first characters of the match) for every credential-shaped part of `text`."""
    return [(kind, match.group(0)[:12]) for kind, shape in SHAPES.items() for match in shape.finditer(text)]
