"""The ``spikeforge`` command line.

Each subcommand lives in its own module under :mod:`spikeforge.commands` and exposes
``register(subparsers)``; this module only collects them. Start-up imports neither torch
nor onnx: a subcommand imports heavy frameworks inside its handler.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from spikeforge import __version__
from spikeforge.errors import SpikeforgeError

#: subcommand modules, in the order ``spikeforge --help`` lists them
COMMANDS = ("targets", "inspect", "emulate", "compile", "stream", "board", "events")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spikeforge",
        description="Compile, emulate bit-accurately and stream spiking networks on neuromorphic chips.",
    )
    parser.add_argument("--version", action="version", version=f"spikeforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"spikeforge.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SpikeforgeError as exc:
        print(f"spikeforge {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"spikeforge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
