"""pidfd liveness and process_madvise on live children (PAGEOUT into real zram swap)."""

from __future__ import annotations

import mmap
import os

import numpy as np
import pytest

from damond.errors import DamonError
from damond.platform import madvise as mv
from damond.platform import pagemap as pm
from damond.platform.refs import read_smaps
from damond.platform.zram import zram_swap

PAGE = mmap.PAGESIZE


@pytest.fixture
def pidfd_of():
    fds: list[int] = []

    def make(pid: int) -> int:
        fds.append(mv.pidfd_open(pid))
        return fds[-1]

    yield make
    for fd in fds:
        os.close(fd)


def _missing_pid() -> int:
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read()) + 1


def test_pidfd_tracks_exit_before_and_after_reaping(spawn, pidfd_of, need):
    need("pidfd_open")
    child = spawn(1)
    fd = pidfd_of(child.pid)
    assert mv.pidfd_alive(fd)
    child.proc.stdin.write("exit\n")
    child.proc.stdin.flush()
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # a zombie now
    assert not mv.pidfd_alive(fd)
    child.proc.wait()
    assert not mv.pidfd_alive(fd)


def test_pidfd_errors():
    with pytest.raises(DamonError) as info:
        mv.pidfd_open(_missing_pid())
    assert info.value.errno_name == "ESRCH"
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(DamonError) as info:
        mv.pidfd_alive(r)
    assert info.value.errno_name == "EBADF"


def test_pageout_swaps_pages_out_and_drops_rss(spawn, pidfd_of, need):
    need("process_madvise")
    need("zram")
    child = spawn(512)
    child.fill()
    with zram_swap(64 << 20) as swap:
        assert os.path.exists(swap.device)
        with open("/proc/swaps") as f:
            assert swap.device in f.read()
        before = next(e for e in read_smaps(child.pid) if e.start <= child.addr < e.end)
        res = mv.process_madvise(pidfd_of(child.pid), [(child.addr, 512 * PAGE)],
                                 mv.MADV_PAGEOUT)
        assert res.complete and res.advised == res.requested == 512 * PAGE
        with pm.Pagemap(child.pid) as p:
            e = p.read(child.page_addrs())
        after = next(e for e in read_smaps(child.pid) if e.start <= child.addr < e.end)
        assert pm.is_swapped(e).mean() > 0.9
        assert not (pm.is_swapped(e) & pm.is_present(e)).any()
        assert before.rss >= 512 * PAGE and after.rss < 0.1 * before.rss
        assert after.swap > 0.9 * 512 * PAGE
        assert _swap_used(swap.device) > 0  # (others may run zram swap of equal priority)
        child.read(0, 512)  # faulting back in, while the swap still exists
        with pm.Pagemap(child.pid) as p:
            assert pm.is_present(p.read(child.page_addrs())).all()


def _swap_used(device: str) -> int:
    with open("/proc/swaps") as f:
        rows = [line.split() for line in f.read().splitlines()[1:]]
    return next(int(r[3]) for r in rows if r[0] == device) * 1024


def test_many_ranges_batched_by_iov_max(spawn, pidfd_of, need, monkeypatch):
    need("process_madvise")
    child = spawn(2100)
    ranges = [(child.addr + i * PAGE, PAGE) for i in range(2100)]
    calls = []
    real = mv._CALL

    def counting(pidfd, iov, n, advice):
        calls.append(n)
        return real(pidfd, iov, n, advice)

    monkeypatch.setattr(mv, "_CALL", counting)
    res = mv.process_madvise(pidfd_of(child.pid), ranges, mv.MADV_COLD)
    assert calls == [1024, 1024, 52]
    assert res.complete and res.advised == res.requested == 2100 * PAGE and res.failed == ()


def test_a_failing_range_is_reported_and_the_rest_advised(spawn, pidfd_of, need):
    need("process_madvise")
    child = spawn(64)
    ranges = np.array([(child.addr, 16 * PAGE), (PAGE, PAGE), (child.addr + 32 * PAGE, 0),
                       (child.addr + 32 * PAGE, 32 * PAGE)], dtype=np.uint64)
    res = mv.process_madvise(pidfd_of(child.pid), ranges, mv.MADV_COLD)
    assert res.advised == 48 * PAGE and res.requested == 49 * PAGE
    assert res.failed == (1,)
    assert res.error is not None and res.error.errno_name == "ENOMEM"
    with pytest.raises(DamonError):
        res.raise_for_error()


def test_advice_not_allowed_remotely_is_einval_in_one_call(spawn, pidfd_of, need, monkeypatch):
    need("process_madvise")
    child = spawn(8)
    calls = []
    real = mv._CALL
    monkeypatch.setattr(mv, "_CALL", lambda *a: calls.append(a) or real(*a))
    res = mv.process_madvise(pidfd_of(child.pid), [(child.addr, PAGE), (child.addr + PAGE, PAGE)],
                             mv.MADV_HUGEPAGE)
    assert len(calls) == 1
    assert res.advised == 0 and res.failed == (0, 1)
    assert res.error.errno_name == "EINVAL" and "not allowed" in res.error.why


def test_exited_target_is_esrch(spawn, pidfd_of, need):
    need("process_madvise")
    child = spawn(8)
    fd = pidfd_of(child.pid)
    child.exit()
    res = mv.process_madvise(fd, [(child.addr, PAGE)] * 3, mv.MADV_PAGEOUT)
    assert res.advised == 0 and res.failed == (0, 1, 2)
    assert res.error.errno_name == "ESRCH"


def test_without_cap_sys_nice_remote_advice_is_eperm(spawn, run_without_caps, need):
    need("process_madvise")
    child = spawn(8)
    code = (
        "from damond.platform import madvise as mv\n"
        f"fd = mv.pidfd_open({child.pid})\n"
        f"r = mv.process_madvise(fd, [({child.addr}, 4096)], mv.MADV_COLD)\n"
        "print(r.advised, r.error.errno_name if r.error else None)\n"
    )
    res = run_without_caps(code, (23,))  # CAP_SYS_NICE
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["0", "EPERM"]


def test_local_argument_checks():
    with pytest.raises(DamonError) as info:
        mv.process_madvise(-1, [(PAGE + 1, PAGE)], mv.MADV_COLD)
    assert info.value.errno_name == "EINVAL"
    with pytest.raises(DamonError):
        mv.process_madvise(-1, [(PAGE, -1)], mv.MADV_COLD)
    res = mv.process_madvise(-1, [], mv.MADV_COLD)
    assert res.complete and res.advised == res.requested == 0
