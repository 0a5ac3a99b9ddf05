"""Command line: `python -m graddesc` (also the `graddesc` script)."""

from __future__ import annotations

import argparse
import sys

import graddesc


def _print_config() -> None:
    for key, value in graddesc.config().items():
        print(f"{key}: {value}")


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit code."""
    parser = argparse.ArgumentParser(prog="graddesc", description=graddesc.__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("config", help="print the build and runtime configuration")
    args = parser.parse_args(argv)
    if args.command in (None, "config"):
        _print_config()
        if args.command is None:
            print("subcommands: " + ", ".join(sorted(sub.choices)))
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
