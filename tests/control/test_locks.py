"""Write locks by part of the tree: a wait on one kdamond holds up writes to it only."""

from __future__ import annotations

import trio
import trio.testing

from damond.control.locks import TreeLocks, lock_key, needs_lock

K = "/sys/kernel/mm/damon/admin/kdamonds"


def test_lock_keys_and_which_writes_lock():
    assert lock_key(f"{K}/3/state") == ("sysfs", 3)
    assert lock_key(f"{K}/3/contexts/0/targets/nr_targets") == ("sysfs", 3)
    assert lock_key(f"{K}/nr_kdamonds") == ("sysfs", None)
    assert lock_key("/sys/kernel/debug/damon/monitor_on") == ("debugfs", None)
    assert needs_lock(f"{K}/0/state") and needs_lock(f"{K}/nr_kdamonds")
    assert needs_lock(f"{K}/0/contexts/0/schemes/nr")  # the documentation's spelling
    assert not needs_lock(f"{K}/0/contexts/0/monitoring_attrs/intervals/sample_us")
    assert not needs_lock(f"{K}/0/contexts/0/targets/0/pid_target")
    assert needs_lock("/sys/kernel/debug/damon/attrs")


def test_a_held_kdamond_blocks_itself_and_the_whole_tree_not_others():
    async def main() -> None:
        locks = TreeLocks()
        order: list[str] = []
        release = trio.Event()

        async def holder() -> None:
            async with locks.write(("sysfs", 0)):
                order.append("0 held")
                await release.wait()
            order.append("0 released")

        async def writer(key, name: str) -> None:
            async with locks.write(key):
                order.append(name)

        async with trio.open_nursery() as n:
            n.start_soon(holder)
            await trio.testing.wait_all_tasks_blocked()
            n.start_soon(writer, ("sysfs", 1), "1")
            n.start_soon(writer, ("debugfs", None), "debugfs")
            n.start_soon(writer, None, "attribute")
            n.start_soon(writer, ("sysfs", 0), "0 again")
            n.start_soon(writer, ("sysfs", None), "nr_kdamonds")
            await trio.testing.wait_all_tasks_blocked()
            assert order[0] == "0 held" and set(order[1:]) == {"1", "debugfs", "attribute"}
            assert locks.busy() == {"writes": 1, "writes_waiting": 2}
            release.set()
        assert order[4] == "0 released" and set(order[5:]) == {"0 again", "nr_kdamonds"}
        assert locks.busy() == {"writes": 0, "writes_waiting": 0}

    trio.run(main)
