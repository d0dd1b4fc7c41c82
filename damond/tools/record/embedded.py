"""Recording from an embedded kdamond: monitoring in this process, no daemon needed.

``damond record -- COMMAND`` monitors the command until it exits (a ``vaddr`` kdamond stops by
itself when its target is gone), ``--pid PID`` a running process, ``--ops sim`` a simulated one.

``damond.api`` (the in-process daemon: scheduler, operation sets; ~145 ms to import) is imported
inside the two functions that use it, to keep it out of every other path through this package:
building the ``damond`` command's parser (``damond ctl``, ``--help``) and recording a daemon's
kdamond.
"""

from __future__ import annotations

import argparse
import subprocess

import trio

from damond.core.spec import AttrsSpec, ContextSpec
from damond.errors import DamonError
from damond.tools.record.command import wait_exit
from damond.tools.record.errors import RecordError
from damond.tools.record.sink import FileSink

OPS = ("vaddr", "fvaddr", "paddr", "sim")
#: damo's monitoring defaults (``damo start``), not the kernel's 60 s ops update: a recorded
#: process's new mappings should show up within a second
DEFAULTS = {"sample_us": 5_000, "aggr_us": 100_000, "update_us": 1_000_000,
            "min_nr_regions": 10, "max_nr_regions": 1_000}


def build_context(args: argparse.Namespace, pid: int) -> ContextSpec:
    """The monitoring context the options describe, for ``pid`` (0: none)."""
    from damond import api  # heavy: see the module doc

    attrs = AttrsSpec(**{k: getattr(args, k) or v for k, v in DEFAULTS.items()})
    return api.context(args.ops, attrs=attrs,
                       targets=[api.target(pid=pid, regions=args.regions or None)])


async def record_embedded(args: argparse.Namespace, pid: int, proc: subprocess.Popen | None,
                          sink: FileSink) -> str:
    """Monitor with an in-process kdamond until it stops (its target process is gone) or, for
    operation sets without a process target, until the command exits; why it ended."""
    from damond import api  # heavy: see the module doc

    sink.update_us = args.update_us or DEFAULTS["update_us"]
    budget = getattr(args, "cpu_budget", None)
    async with api.session(seed=args.seed, **({} if budget is None else
                                              {"cpu_budget": budget})) as session:
        try:
            kd = await session.start(build_context(args, pid))
        except DamonError as e:
            raise RecordError(f"cannot start monitoring ({args.ops}): {e}") from None
        kd.subscribe(sink.push)
        await sink.open()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_when_set, kd.finished, nursery.cancel_scope)
            if proc is not None and pid:
                # the kdamond stops once its target is reaped (until then the exited command
                # is a zombie, which is still a valid target, as in the kernel's vaddr)
                nursery.start_soon(wait_exit, proc)
            if proc is None or pid:  # a process target: the kdamond stops when it is gone
                await trio.sleep_forever()
            await wait_exit(proc)  # paddr, sim: the command only sets the duration
            nursery.cancel_scope.cancel()
        if kd.finished.is_set():
            reason = f"monitoring ended ({kd.stop_reason})"
        else:
            reason = "the command exited"
        if proc is not None and proc.poll():
            reason += f"; the command exited with status {proc.returncode}"
        return reason


async def _cancel_when_set(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
