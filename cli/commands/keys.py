"""`glimpse keys new|hash`: make API keys and the digests the server is configured with.

The key goes to its user and is shown once; the server only ever gets its sha256
(`GLIMPSE_API_KEY_HASHES`, comma-separated), so nothing on the server can reveal a key.
"""

from __future__ import annotations

import argparse
import sys

from glimpse.errors import InvalidParams
from glimpse.keys import hash_key, key_id, new_key


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="make API keys and the digests to configure the server with")
    ksub = p.add_subparsers(dest="keys_command", required=True)

    new = ksub.add_parser("new", help="print a new random key and its sha256 digest")
    new.set_defaults(run=run_new)

    digest = ksub.add_parser("hash", help="print the sha256 digest of a key")
    digest.add_argument(
        "key",
        nargs="?",
        default="-",
        metavar="KEY",
        help="the key; '-' or none: read it from stdin (keeps it out of the shell's history)",
    )
    digest.set_defaults(run=run_hash)


def run_new(args: argparse.Namespace) -> int:
    key = new_key()
    digest = hash_key(key)
    print(f"key:    {key}")
    print(f"sha256: {digest}")
    print(f"id:     {key_id(digest)}")
    print(
        "Give the key to its user (it is not stored anywhere); add the sha256 to "
        "GLIMPSE_API_KEY_HASHES (comma-separated) and restart the API.",
        file=sys.stderr,
    )
    return 0


def run_hash(args: argparse.Namespace) -> int:
    key = sys.stdin.readline() if args.key == "-" else args.key
    if not key.strip():
        raise InvalidParams("no key given (as an argument or on stdin)")
    print(hash_key(key))
    return 0
