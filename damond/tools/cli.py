"""The ``damond`` command."""

from __future__ import annotations

import argparse
import sys

from damond import __version__
from damond.client import run_ctl


def _cmd_demo(args: argparse.Namespace) -> int:
    # imported here: the in-process daemon (damond.api) stays out of the other commands
    from damond.tools.demo import run_demo

    return run_demo(seconds=args.seconds, seed=args.seed, sim=args.sim, output=args.output)


def _cmd_serve(args: argparse.Namespace) -> int:
    # imported here: the daemon's modules stay out of the other commands
    from damond.service.serve import ServeOptions, check_config_file, run_serve

    if args.check:
        if not args.config:
            print("damond serve: --check needs --config FILE", file=sys.stderr)
            return 2
        return check_config_file(args.config)
    return run_serve(ServeOptions(
        socket=args.socket, admin_group=args.admin_group, seed=args.seed, config=args.config,
        log_level=args.log_level, log_format=args.log_format,
        metrics_textfile=args.metrics_textfile, metrics_interval=args.metrics_interval,
        metrics_listen=args.metrics_listen, mount=args.mount, cpu_budget=args.cpu_budget,
        offload=args.offload, sampler=args.sampler))


def _cmd_mount(args: argparse.Namespace) -> int:
    # imported here: pyfuse3 and trio stay out of the other commands
    from damond.tools.mount import run_mount

    return run_mount(args.dir, socket_path=args.socket, debugfs=args.debugfs)


def _cmd_exec(args: argparse.Namespace) -> int:
    from damond.tools.exec import run_exec

    command = args.command_line[1:] if args.command_line[:1] == ["--"] else args.command_line
    return run_exec(command, socket_path=args.socket)


def _add_fuse_parsers(sub) -> None:
    socket_help = ("control socket path (default: $DAMOND_SOCKET, your own daemon's socket, "
                   "then /run/damond/damond.sock)")
    mount = sub.add_parser(
        "mount", help="mount a running damond's sysfs (or debugfs) files on DIR (FUSE)",
        description="Serve the daemon's DAMON files at DIR with the kernel's file semantics "
                    "until DIR is unmounted (umount, fusermount3 -u) or SIGINT/SIGTERM. DIR "
                    "shows what /sys/kernel/mm/damon holds (admin/...), or with --debugfs "
                    "what <debugfs>/damon holds. See docs/fuse.md.")
    mount.add_argument("dir", metavar="DIR")
    mount.add_argument("--debugfs", action="store_true",
                       help="serve the debugfs files (<debugfs>/damon) instead")
    mount.add_argument("--socket", metavar="PATH", help=socket_help)
    mount.set_defaults(func=_cmd_mount)
    exec_ = sub.add_parser(
        "exec", help="run a command that sees damond as the kernel's DAMON",
        description="Run CMD (as root) in a private mount namespace where the daemon's files "
                    "are mounted over /sys/kernel/mm/damon and /sys/kernel/debug/damon, so "
                    "that damo and scripts use damond unmodified. Exits with CMD's status.")
    exec_.add_argument("--socket", metavar="PATH", help=socket_help)
    exec_.add_argument("command_line", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    exec_.set_defaults(func=_cmd_exec)


def _cmd_ctl(args: argparse.Namespace) -> int:
    commands = args.commands
    if args.format is not None:
        if commands != ["dump"]:
            print("damond ctl: --format applies to 'damond ctl dump' only", file=sys.stderr)
            return 2
        commands = [f"dump {args.format}"]
    return run_ctl(commands, socket_path=args.socket)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def _cpu_share(text: str) -> float:
    from damond.core.budget import check_budget

    try:
        return check_budget(float(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _host_port(text: str) -> str:
    from damond.service.metrics_http import parse_listen

    try:
        parse_listen(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _add_ctl_parser(sub) -> None:
    ctl = sub.add_parser(
        "ctl", help="send commands to a running damond",
        description="Send each COMMAND as one protocol line (or standard input as it is) "
                    "and print the answers: data on stdout, errors on stderr. Exit status 1 "
                    "if a command failed, 2 if the daemon cannot be reached.")
    ctl.add_argument("--socket", metavar="PATH",
                     help="control socket path (default: $DAMOND_SOCKET, your own daemon's "
                          "socket, then /run/damond/damond.sock)")
    ctl.add_argument("--format", choices=["json", "yaml"], default=None,
                     help="with 'dump': the format of the dumped configuration "
                          "(default: json)")
    ctl.add_argument("commands", nargs="*", metavar="COMMAND",
                     help="one command line, e.g. 'cat kdamonds/nr_kdamonds', 'dump', "
                          "'reload', 'metrics'")
    ctl.set_defaults(func=_cmd_ctl)


def _ctl_only_parser() -> argparse.ArgumentParser:
    """The ``damond`` parser with only its ``ctl`` command: ``damond ctl`` is run from scripts
    and loops, so it loads the protocol client alone (no numpy, trio or logging setup)."""
    parser = argparse.ArgumentParser(
        prog="damond", description="DAMON and DAMOS as a user-space daemon")
    _add_ctl_parser(parser.add_subparsers(dest="command", metavar="COMMAND"))
    return parser


def build_parser() -> argparse.ArgumentParser:
    from damond.core.budget import DEFAULT_CPU_BUDGET  # pure and small

    parser = argparse.ArgumentParser(
        prog="damond", description="DAMON and DAMOS as a user-space daemon")
    parser.add_argument("--version", action="version", version=f"damond {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="record a small workload and print what DAMON saw",
                          description="Record a program with a hot and a cold mapping, then "
                                      "print the access, wss and heatmap reports.")
    demo.add_argument("--seconds", type=float, default=10.0)
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--sim", action="store_true",
                      help="preview a reclaim scheme on a simulated process instead")
    demo.add_argument("-o", "--output", help="keep the record here (default: a temp dir)")
    demo.set_defaults(func=_cmd_demo)
    serve = sub.add_parser(
        "serve", help="run the daemon in the foreground with its control socket",
        description="Run damond in the foreground. With --config, start the kdamonds of a "
                    "damo kdamonds JSON/YAML file; SIGHUP reloads it (a broken file is refused "
                    "and the running kdamonds are kept). SIGINT or SIGTERM stops every "
                    "kdamond, removes the socket and exits 0. Speaks systemd's sd_notify "
                    "(Type=notify, WatchdogSec=) and socket activation protocols.")
    serve.add_argument("--socket", metavar="PATH",
                       help="control socket path (default: a socket passed by systemd, else "
                            "/run/damond/damond.sock as root, "
                            "$XDG_RUNTIME_DIR/damond/damond.sock otherwise)")
    serve.add_argument("--config", metavar="FILE",
                       help="kdamonds to start, in damo's kdamonds JSON or YAML format "
                            "(damo args damon --format json|yaml); reloaded on SIGHUP")
    serve.add_argument("--check", action="store_true",
                       help="validate --config as startup would, start nothing, exit 0 or 1")
    serve.add_argument("--log-level", default=None,
                       choices=["debug", "info", "warning", "error"],
                       help="default: the config's damond.log_level, else info")
    serve.add_argument("--log-format", default="auto", choices=["auto", "json", "console"],
                       help="auto: JSON lines when standard error is systemd's journal "
                            "(JOURNAL_STREAM), readable lines otherwise")
    serve.add_argument("--metrics-textfile", metavar="PATH",
                       help="write Prometheus metrics to PATH (atomically) for node_exporter's "
                            "textfile collector, e.g. "
                            "/var/lib/prometheus/node-exporter/damond.prom")
    serve.add_argument("--metrics-interval", metavar="SECONDS", type=_positive_seconds,
                       default=15.0, help="how often --metrics-textfile is rewritten "
                                          "(default: 15)")
    serve.add_argument("--metrics-listen", metavar="HOST:PORT", type=_host_port,
                       help="serve GET /metrics over HTTP, e.g. 127.0.0.1:9847 or [::1]:9847")
    serve.add_argument("--cpu-budget", metavar="FRACTION", type=_cpu_share,
                       default=DEFAULT_CPU_BUDGET,
                       help="each kdamond's monitoring budget, a share of one CPU including "
                            "the slowdown of targets its access check perturbs: above it the "
                            "sampling interval stretches, keeping samples per aggregation "
                            f"(default: {DEFAULT_CPU_BUDGET}; 0 disables it)")
    serve.add_argument("--offload", choices=["auto", "never"], default="auto",
                       help="auto: run a context as a kdamond of the kernel's own DAMON where "
                            "the kernel has its operation set and its DAMON tree is free "
                            "(docs/offload.md); never: damond's own sensing always "
                            "(default: auto)")
    serve.add_argument("--sampler", choices=["auto", "per-sample"], default="auto",
                       help="auto: operation sets with a batch sampler (vaddr, fvaddr) run each "
                            "aggregation's samples in a worker thread, natively (page_idle, C) "
                            "where they can (docs/sampler.md); per-sample: every sample on the "
                            "event loop (default: auto)")
    serve.add_argument("--admin-group", metavar="GROUP",
                       help="members of this group may write (root always may)")
    serve.add_argument("--mount", metavar="DIR",
                       help="also serve the sysfs files at DIR (FUSE, as 'damond mount DIR' "
                            "does, from inside the daemon)")
    serve.add_argument("--seed", type=int, default=None,
                       help="seed of the random generators (reproducible runs)")
    serve.set_defaults(func=_cmd_serve)
    _add_ctl_parser(sub)
    _add_fuse_parsers(sub)
    # imported here: the record and report tools bring numpy and trio, which 'damond ctl'
    # (parsed by _ctl_only_parser) must not pay for on every call
    from damond.tools import record, report

    record.add_parsers(sub)
    report.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ctl"]:
        args = _ctl_only_parser().parse_args(argv)
        return args.func(args)
    # imported here, for the same reason as the tools in build_parser
    from damond.service import logs
    from damond.tools.clitools import TOOL_LOG_LEVEL

    parser = build_parser()
    args = parser.parse_args(argv)
    serving = getattr(args, "func", None) is _cmd_serve
    logs.configure(getattr(args, "log_level", None) or ("info" if serving else TOOL_LOG_LEVEL),
                   fmt=getattr(args, "log_format", "auto"))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
