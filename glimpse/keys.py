"""API keys: made by `glimpse keys new`, configured as their sha256 digests only.

A key is `gk_` + 32 random bytes (urlsafe base64). The server is given the hex sha256 of
each key (`GLIMPSE_API_KEY_HASHES`), never the key itself. A plain, fast hash is enough: a
slow password hash guards low-entropy secrets against guessing, and a 256-bit random key
cannot be guessed from its digest. The same property makes a dictionary lookup of the
presented key's digest safe (app/auth.py): what a timing difference could reveal is a
digest, and a digest does not authenticate.

A job records its owner's key id, the first 16 hex digits of the digest: enough to tell
keys apart, useless to authenticate with, safe to keep in Redis and in logs.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets

KEY_PREFIX = "gk_"
KEY_ID_LENGTH = 16
_DIGEST = re.compile(r"[0-9a-f]{64}")


def new_key() -> str:
    """A fresh API key: 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The hex sha256 of a key, as GLIMPSE_API_KEY_HASHES lists it."""
    return hashlib.sha256(key.strip().encode("utf-8")).hexdigest()


def key_id(digest: str) -> str:
    """The non-secret id of a key, recorded as the owner of its jobs."""
    return digest[:KEY_ID_LENGTH]


def parse_digests(value: object) -> list[str]:
    """GLIMPSE_API_KEY_HASHES as a list of lower-case hex digests: a JSON list, or digests
    separated by commas or whitespace. Raises ValueError naming the position of a bad entry
    (never its value: it may be a key pasted by mistake)."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError("not a valid JSON list of sha256 hex digests") from None
        else:
            value = [part for part in re.split(r"[,\s]+", text) if part]
    if not isinstance(value, list | tuple | set | frozenset):
        raise ValueError("must be a list of sha256 hex digests")
    digests = []
    for i, item in enumerate(value):
        digest = str(item).strip().lower()
        if not _DIGEST.fullmatch(digest):
            raise ValueError(
                f"entry {i} is not a sha256 hex digest (64 hex digits); "
                "`glimpse keys hash KEY` prints the digest of a key"
            )
        digests.append(digest)
    return list(dict.fromkeys(digests))
