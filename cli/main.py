"""`glimpse`: explain images, run the service, manage models and API keys (docs/cli.md).

Each subcommand lives in cli/commands/; errors end as one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from glimpse.errors import GlimpseError


def build_parser() -> argparse.ArgumentParser:
    from cli.commands import explain, keys, models, up

    parser = argparse.ArgumentParser(prog="glimpse", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    explain.register(sub)
    up.register(sub)
    models.register(sub)
    keys.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except GlimpseError as exc:
        print(f"glimpse: {exc.title.lower()}: {exc.detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("glimpse: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
