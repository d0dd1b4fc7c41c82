"""The ``damond`` command."""

from __future__ import annotations

import argparse
import sys

from damond import __version__


def _cmd_demo(args: argparse.Namespace) -> int:
    from damond.demo import run_demo

    return run_demo(seconds=args.seconds, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="damond", description="DAMON and DAMOS as a user-space daemon")
    parser.add_argument("--version", action="version", version=f"damond {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="monitor a simulated workload and print what DAMON sees")
    demo.add_argument("--seconds", type=float, default=10.0)
    demo.add_argument("--seed", type=int, default=1)
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from damond import logs

    logs.configure(getattr(args, "log_level", None) or "warning")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
