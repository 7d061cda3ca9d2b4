"""The `novalite` command."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def _positive(kind: str):  # type: ignore[no-untyped-def]
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{kind} must be an integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{kind} must be >= 1, got {value}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="novalite",
        description="novalite: OpenStack Nova rebuilt lean and fast.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = sub.add_parser(
        "placement-demo",
        help="place thousands of servers on a simulated cloud with the placement core",
        description="Build a table of simulated hosts, place servers of mixed flavors "
                    "(some in server groups) with Nova's filters and weighers, and print "
                    "a summary: hosts used, per-filter rejections, decisions per second.",
    )
    demo.add_argument("--hosts", type=_positive("--hosts"), default=100_000, help="simulated hosts (default 100000)")
    demo.add_argument("--servers", type=_positive("--servers"), default=10_000, help="servers to place (default 10000)")
    demo.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    demo.add_argument("--no-progress", action="store_true", help="do not draw a progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "placement-demo":
        from novalite import placement_demo

        result = placement_demo.run(args.hosts, args.servers, args.seed, progress=not args.no_progress)
        placement_demo.report(result)
        return 0 if result.servers_placed == result.servers_requested else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
