"""The ``damond`` command."""

from __future__ import annotations

import argparse
import sys

from damond import __version__


def _cmd_demo(args: argparse.Namespace) -> int:
    from damond.demo import run_demo

    return run_demo(seconds=args.seconds, seed=args.seed)


def _cmd_serve(args: argparse.Namespace) -> int:
    from damond.serve import ServeOptions, run_serve

    return run_serve(ServeOptions(socket=args.socket, admin_group=args.admin_group,
                                  seed=args.seed))


def _cmd_ctl(args: argparse.Namespace) -> int:
    from damond.client import run_ctl

    return run_ctl(args.commands, socket_path=args.socket)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="damond", description="DAMON and DAMOS as a user-space daemon")
    parser.add_argument("--version", action="version", version=f"damond {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="monitor a simulated workload and print what DAMON sees")
    demo.add_argument("--seconds", type=float, default=10.0)
    demo.add_argument("--seed", type=int, default=1)
    demo.set_defaults(func=_cmd_demo)
    serve = sub.add_parser(
        "serve", help="run the daemon in the foreground with its control socket",
        description="Run damond in the foreground. SIGINT or SIGTERM stops every kdamond, "
                    "removes the socket and exits 0.")
    serve.add_argument("--socket", metavar="PATH",
                       help="control socket path (default: /run/damond/damond.sock as root, "
                            "$XDG_RUNTIME_DIR/damond/damond.sock otherwise)")
    serve.add_argument("--log-level", default="info",
                       choices=["debug", "info", "warning", "error"])
    serve.add_argument("--admin-group", metavar="GROUP",
                       help="members of this group may write (root always may)")
    serve.add_argument("--seed", type=int, default=None,
                       help="seed of the random generators (reproducible runs)")
    serve.set_defaults(func=_cmd_serve)
    ctl = sub.add_parser(
        "ctl", help="send commands to a running damond",
        description="Send each COMMAND as one protocol line (or standard input as it is) "
                    "and print the answers: data on stdout, errors on stderr. Exit status 1 "
                    "if a command failed, 2 if the daemon cannot be reached.")
    ctl.add_argument("--socket", metavar="PATH",
                     help="control socket path (default: $DAMOND_SOCKET, your own daemon's "
                          "socket, then /run/damond/damond.sock)")
    ctl.add_argument("commands", nargs="*", metavar="COMMAND",
                     help="one command line, e.g. 'cat kdamonds/nr_kdamonds'")
    ctl.set_defaults(func=_cmd_ctl)
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
