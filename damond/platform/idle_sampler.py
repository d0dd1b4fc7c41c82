"""A whole aggregation interval of page_idle samples per call, off the event loop.

Why: sampling one region costs three system calls, and under emulation Python's own cost per
sample and per region was several times that of the calls (issue 9). :func:`sample_batch` runs
``nr_samples`` samples in one call: the native version (``_idle_sampler.c``) copies its inputs
and releases the GIL for the whole loop, so a caller can run it in an OS thread while trio keeps
serving; the pure-Python version below is its twin (same PRNG, same system calls in the same
order, except that the native check submits its bitmap reads as one io_uring batch where the
kernel allows it) for machines where the extension did not build.

Per sample ``k``, per target, per region: one address uniform in ``[start, end)`` (splitmix64 on
the counter ``k * total_regions + index``, seeded by ``seed``); its PFN from pagemap, read for
``PM_AHEAD`` samples at once (sorted; pages at most ``PM_GAP_PAGES`` apart share one ``pread``);
the pages marked idle with one ``pwrite`` per group of bitmap words at most ``MAX_GAP_WORDS``
apart (the zero words in between change nothing); the idle bits read back, at least one
interval after the marks, with one ``pread`` per run of consecutive needed words (never a wide
span: each idle-flagged page in a word read costs the kernel an rmap walk).

The samples are pipelined: sample ``k+1``'s pages are marked right before sample ``k``'s are
checked, so one sample costs one interval (not an interval plus its work) while the work fits
in it. A mark that would land on a bitmap word (or a huge page's PMD block) that the pending
check still has to read waits until after that check (it would erase what the check reads:
page_idle marks whole folios).
Accessed means the idle bit was cleared. As ``damond.ops.access_check.PageIdleCheck`` and the
kernel's ``damon_va_young()`` (v6.12): the zero page is never accessed; a page absent at prepare
is accessed iff a real page (not the zero page) is present at check; in THP-eligible areas a huge
page is marked and read at its head PFN (with ``kpageflags_fd`` -1, at the sampled page itself),
and a region sampled in the same folio as the previous region reuses that result. A present
page whose PFN reads 0 (no CAP_SYS_ADMIN) is never accessed rather than checked at PFN 0.

Deadlines are CLOCK_MONOTONIC ns: ``deadline_0 = first_deadline_ns`` (moved to one interval
after the first marks when sooner), then ``+ interval_ns``; a sample is marked at one deadline
and checked at the next, so its window is one interval give or take wake-up jitter (the
kernel's kdamond sleeps one interval between prepare and check); late words are read after the
others, so they too get about one interval; a deadline already past when the sleep would begin
counts an overrun and the schedule restarts from then.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

from damond.errors import DamonError
from damond.platform.pagesize import PAGE_SHIFT, PAGE_SIZE

try:
    from damond.platform import _idle_sampler as _native
except ImportError as exc:  # not built (no compiler or Python headers at install time)
    _native = None
    KIND = "python"
    WHY = f"the native sampler is not built ({exc}); run pip install -e . with gcc and python3-dev"
else:
    KIND = "native"
    WHY = "the C extension damond.platform._idle_sampler loaded (runs without the GIL)"

MAX_GAP_WORDS = 16
PM_GAP_PAGES = 128  # pagemap: sampled pages this close share one pread ...
PM_SPAN_PAGES = 4096  # ... of at most this many entries
PM_AHEAD = 20  # samples whose entries one prefetch reads
MAX_IO_WORDS = PAGE_SIZE // 8  # sysfs moves at most one page per call
PMD_PAGES = PAGE_SIZE // 8
_PFN_MASK = (1 << 55) - 1
_PRESENT = 1 << 63
_HUGE_PART = (1 << 22) | (1 << 16)  # KPF_THP | KPF_COMPOUND_TAIL
_ABSENT, _UNTRACKABLE = -1, -2
_ALL_ONES = (1 << 64) - 1
_ORDER = sys.byteorder
_U64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class SampleTarget:
    pagemap_fd: int  # an open /proc/PID/pagemap (O_RDONLY)
    starts: np.ndarray  # uint64 region starts, sorted, non-overlapping
    ends: np.ndarray  # uint64 region ends
    thp_starts: np.ndarray  # uint64 THP-eligible areas (sorted), may be empty
    thp_ends: np.ndarray


@dataclass
class BatchResult:
    hits: list[np.ndarray]  # per target: bool (samples_done, nr_regions)
    lateness_ns: np.ndarray  # int64 (samples_done,): wake time minus deadline
    samples_done: int  # < nr_samples only when stop was set or every target failed
    overruns: int  # samples whose deadline had passed before the sleep began
    errors: list[int]  # per target: 0, or the errno that stopped its sampling
    kind: str = KIND  # which implementation ran: "native" or "python"
    check_reads: str = "pread"  # how the check read the bitmap: "io_uring" or "pread"
    check_reads_why: str = ""  # one line: why not io_uring, where it was wanted


def pick_addrs(starts: np.ndarray, ends: np.ndarray, seed: int, first_counter: int) -> np.ndarray:
    """The sampling addresses of one sample: region ``i`` uses counter ``first_counter + i``
    (``k * total_regions + index`` over all targets concatenated). The native sampler computes
    the same, so a bench can replay its exact system calls (``_idle_sampler.floor``)."""
    s = np.asarray(starts, dtype=np.uint64)
    e = np.asarray(ends, dtype=np.uint64)
    ctr = np.arange(len(s), dtype=np.uint64) + np.uint64(first_counter)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + ctr * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return s + z % (e - s)


def sample_batch(targets: list[SampleTarget], *, bitmap_fd: int, kpageflags_fd: int,
                 zero_pfn: int, nr_samples: int, interval_ns: int, first_deadline_ns: int,
                 seed: int, stop: bytearray | None = None, native: bool | None = None,
                 uring: bool | None = None) -> BatchResult:
    """Run ``nr_samples`` page_idle samples of every target (see the module docstring).

    ``native=None`` uses the C extension when it loaded; True insists on it (EOPNOTSUPP when it
    is absent), False forces the Python twin. Bad arguments raise DamonError EINVAL; a target
    whose process exits (or whose reads fail) stops being sampled and reports the errno in
    ``errors``, its later rows all False.

    ``uring`` (native only): None reads the check's bitmap words with one io_uring submission
    per target and sample where the kernel allows it, else with pread; True insists (the errno
    of io_uring_setup when refused); False always uses pread.
    """
    arrays = _check_args(targets, bitmap_fd, kpageflags_fd, zero_pfn, nr_samples, interval_ns,
                         first_deadline_ns, seed, stop)
    use_native = _native is not None if native is None else bool(native)
    if use_native and _native is None:
        raise DamonError("EOPNOTSUPP", WHY)
    if uring and not use_native:
        raise DamonError("EINVAL", "io_uring check reads exist in the native sampler only")
    hits = [np.zeros((nr_samples, len(a[1])), dtype=bool) for a in arrays]
    lateness = np.zeros(nr_samples, dtype=np.int64)
    args = (bitmap_fd, kpageflags_fd, zero_pfn, nr_samples, interval_ns, first_deadline_ns, seed)
    why = ""
    if use_native:
        mode = {None: 1, True: 2, False: 0}[uring]
        try:
            done, overruns, errs, used, uerr = _native.sample(arrays, hits, lateness, stop,
                                                              *args, mode)
        except OSError as exc:  # only with uring=True
            name = errno.errorcode.get(exc.errno or 0, "EOPNOTSUPP")
            raise DamonError(name, f"io_uring unavailable: {os.strerror(exc.errno or 0)}") \
                from None
        if not used and uring is not False:
            why = f"io_uring_setup failed: {os.strerror(uerr)}"
    else:
        done, overruns, errs = _python_sample(arrays, hits, lateness, stop, *args)
        used = False
        if uring is not False:
            why = "the Python sampler reads with pread"
    return BatchResult(hits=[h[:done] for h in hits], lateness_ns=lateness[:done],
                       samples_done=done, overruns=overruns, errors=list(errs),
                       kind="native" if use_native else "python",
                       check_reads="io_uring" if used else "pread", check_reads_why=why)


def _u64_array(value, what: str) -> np.ndarray:
    if (type(value) is np.ndarray and value.dtype == np.uint64 and value.ndim == 1
            and value.flags.c_contiguous):
        return value  # what regions hold: the general path is ~8 numpy calls per array
    a = np.asarray(value)
    if a.ndim != 1 or not (a.size == 0 or np.issubdtype(a.dtype, np.integer)):
        raise DamonError("EINVAL", f"{what} must be a 1-D array of integers")
    if a.size and np.issubdtype(a.dtype, np.signedinteger) and a.min() < 0:
        raise DamonError("EINVAL", f"{what} holds a negative address")
    return np.ascontiguousarray(a, dtype=np.uint64)


def _ranges(starts, ends, what: str) -> tuple[np.ndarray, np.ndarray]:
    s, e = _u64_array(starts, f"{what} starts"), _u64_array(ends, f"{what} ends")
    if len(s) != len(e):
        raise DamonError("EINVAL", f"{what}: {len(s)} starts but {len(e)} ends")
    if (e <= s).any():
        raise DamonError("EINVAL", f"{what}: a range ends at or before its start")
    if (s[1:] < e[:-1]).any():
        raise DamonError("EINVAL", f"{what} must be sorted and must not overlap")
    return s, e


def _is_int(v) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _check_args(targets, bitmap_fd, kpageflags_fd, zero_pfn, nr_samples, interval_ns,
                first_deadline_ns, seed, stop) -> list[tuple]:
    for name, v, lo in (("bitmap_fd", bitmap_fd, 0), ("kpageflags_fd", kpageflags_fd, -1),
                        ("zero_pfn", zero_pfn, -1), ("nr_samples", nr_samples, 0),
                        ("interval_ns", interval_ns, 0), ("seed", seed, 0)):
        if not _is_int(v) or v < lo:
            raise DamonError("EINVAL", f"{name} must be an integer >= {lo}, not {v!r}")
    if not _is_int(first_deadline_ns) or not -(1 << 62) < first_deadline_ns < 1 << 62:
        raise DamonError("EINVAL", f"first_deadline_ns must be a CLOCK_MONOTONIC time in ns, "
                                   f"not {first_deadline_ns!r}")
    if seed > _U64 or interval_ns >= 1 << 62:
        raise DamonError("EINVAL", "seed must fit 64 bits and interval_ns 62 bits")
    if stop is not None and (not isinstance(stop, bytearray) or len(stop) < 1):
        raise DamonError("EINVAL", "stop must be None or a non-empty bytearray")
    out = []
    for i, t in enumerate(targets):
        if not isinstance(t, SampleTarget):
            raise DamonError("EINVAL", f"target {i} is not a SampleTarget")
        if not _is_int(t.pagemap_fd) or t.pagemap_fd < 0:
            raise DamonError("EINVAL", f"target {i}: pagemap_fd must be an open fd")
        s, e = _ranges(t.starts, t.ends, f"target {i} regions")
        hs, he = _ranges(t.thp_starts, t.thp_ends, f"target {i} THP areas")
        out.append((int(t.pagemap_fd), s, e, hs, he))
    return out


# ---- the Python twin of _idle_sampler.c ------------------------------------------------------


class _Failed(Exception):
    def __init__(self, err: int) -> None:
        super().__init__(err)
        self.err = err


def _pread(fd: int, size: int, offset: int) -> bytes:
    """pread of up to ``size`` bytes, short only at EOF (as the C ``rd``)."""
    out = b""
    while len(out) < size:
        try:
            chunk = os.pread(fd, size - len(out), offset + len(out))
        except OSError as exc:
            raise _Failed(exc.errno or errno.EIO) from None
        if not chunk:
            break
        out += chunk
    return out


def _pwrite(fd: int, data: bytes, offset: int) -> None:
    done = 0
    while done < len(data):
        try:
            n = os.pwrite(fd, data[done:], offset + done)
        except OSError as exc:
            raise _Failed(exc.errno or errno.EIO) from None
        if n <= 0:
            raise _Failed(errno.EIO)
        done += n


def _check_gone(fd: int) -> None:
    """EOF at page 0 of pagemap means the process has exited (the mm is gone)."""
    if not _pread(fd, 8, 0):
        raise _Failed(errno.ESRCH)


class _State:
    """One sample's pages of one target, from ``_resolve`` to ``_check``."""

    __slots__ = ("addrs", "pfns", "folio", "large", "words", "bits", "huge", "late", "vals")


def _prefetch(fd: int, addrs: list[int]) -> list[int]:
    """The pagemap entries of all of a batch's addresses (the C ``prefetch()``): sorted pages
    at most ``PM_GAP_PAGES`` apart share one pread of at most ``PM_SPAN_PAGES`` entries."""
    order = sorted(range(len(addrs)), key=lambda q: addrs[q] >> PAGE_SHIFT)
    entries = [0] * len(addrs)
    short = False
    j = 0
    while j < len(order):
        first = addrs[order[j]] >> PAGE_SHIFT
        e = j
        while e + 1 < len(order) and \
                (addrs[order[e + 1]] >> PAGE_SHIFT) - (addrs[order[e]] >> PAGE_SHIFT) \
                <= PM_GAP_PAGES and (addrs[order[e + 1]] >> PAGE_SHIFT) - first < PM_SPAN_PAGES:
            e += 1
        n = (addrs[order[e]] >> PAGE_SHIFT) - first + 1
        raw = _pread(fd, n * 8, first << 3)
        short |= len(raw) < n * 8
        for q in order[j:e + 1]:
            off = ((addrs[q] >> PAGE_SHIFT) - first) * 8
            if off + 8 <= len(raw):
                entries[q] = int.from_bytes(raw[off:off + 8], _ORDER)
        j = e + 1
    if short:
        _check_gone(fd)
    return entries


def _resolve(t: tuple, addrs: list[int], entries: list[int], kfd: int, zero: int) -> _State:
    _, _, _, thp_s, thp_e = t
    pfns, folio = [], []
    large = False
    for a, e in zip(addrs, entries, strict=True):
        folio.append(1)
        if not e & _PRESENT:
            pfns.append(_ABSENT)
            continue
        p = e & _PFN_MASK
        if p == 0 or p == zero:
            pfns.append(_UNTRACKABLE)
            continue
        if thp_s and kfd >= 0:
            i = bisect_right(thp_s, a)
            if i and a < thp_e[i - 1]:
                fl = _pread(kfd, 8, p << 3)
                if len(fl) == 8 and int.from_bytes(fl, _ORDER) & _HUGE_PART:
                    p -= (a >> PAGE_SHIFT) % PMD_PAGES
                    folio[-1] = PMD_PAGES
                    large = True
        pfns.append(p)
    bits: dict[int, int] = {}
    huge: set[int] = set()
    for p, f in zip(pfns, folio, strict=True):
        if p >= 0:
            bits[p >> 6] = bits.get(p >> 6, 0) | (1 << (p & 63))
            if f > 1:
                huge.add(p >> 6)
    st = _State()
    st.addrs, st.pfns, st.folio, st.large = addrs, pfns, folio, large
    st.words, st.bits, st.huge, st.late, st.vals = sorted(bits), bits, huge, set(), {}
    return st


class _Pending:
    """The words (and PMD blocks of huge pages) of the sample still waiting for its check."""

    def __init__(self, states: list[_State]) -> None:
        self.words = {w for st in states for w in st.words}
        self.blocks = {w >> 3 for w in self.words}
        self.huge_blocks = {w >> 3 for st in states for w in st.huge}

    def find_late(self, st: _State) -> bool:
        st.late = {w for w in st.words if w in self.words or w >> 3 in self.huge_blocks
                   or (w in st.huge and w >> 3 in self.blocks)}
        return bool(st.late)


def _mark(st: _State, bfd: int, late: bool) -> None:
    """One pwrite per group of words at most MAX_GAP_WORDS apart, over the words whose
    lateness is ``late``."""
    uw = [w for w in st.words if (w in st.late) == late]
    j = 0
    while j < len(uw):
        first, e = uw[j], j
        while e + 1 < len(uw) and uw[e + 1] - uw[e] <= MAX_GAP_WORDS \
                and uw[e + 1] - first < MAX_IO_WORDS:
            e += 1
        group = set(uw[j:e + 1])
        data = b"".join(st.bits[w].to_bytes(8, _ORDER) if w in group else bytes(8)
                        for w in range(first, uw[e] + 1))
        _pwrite(bfd, data, first << 3)
        j = e + 1


def _read_words(st: _State, bfd: int, late: bool) -> None:
    """Read back the bits of the words whose lateness is ``late`` (into ``st.vals``): one
    pread per run of consecutive such words."""
    uw = [w for w in st.words if (w in st.late) == late]
    j = 0
    while j < len(uw):
        e = j
        while e + 1 < len(uw) and uw[e + 1] == uw[e] + 1 and e + 1 - j < MAX_IO_WORDS:
            e += 1
        raw = _pread(bfd, (e - j + 1) * 8, uw[j] << 3)
        for q in range(j, e + 1):
            off = (q - j) * 8
            chunk = raw[off:off + 8]
            st.vals[uw[q]] = int.from_bytes(chunk, _ORDER) if len(chunk) == 8 else _ALL_ONES
        j = e + 1


def _evaluate(t: tuple, st: _State, zero: int) -> list[bool]:
    fd = t[0]
    vals = st.vals
    row = []
    short = False
    for a, p in zip(st.addrs, st.pfns, strict=True):
        if p == _UNTRACKABLE:
            row.append(False)
        elif p == _ABSENT:
            raw = _pread(fd, 8, (a >> PAGE_SHIFT) << 3)
            if len(raw) < 8:
                short = True
                row.append(False)
                continue
            e = int.from_bytes(raw, _ORDER)
            q = e & _PFN_MASK
            row.append(bool(e & _PRESENT) and q != 0 and q != zero)
        else:
            row.append(not (vals[p >> 6] >> (p & 63)) & 1)
    if short:
        _check_gone(fd)
    if st.large:
        have, base, size, last = False, 0, 0, False
        for i, a in enumerate(st.addrs):
            if have and a - a % size == base:
                row[i] = last
                continue
            size = st.folio[i] << PAGE_SHIFT
            base, last, have = a - a % size, row[i], True
    return row


def _python_sample(arrays, hits, lateness, stop, bfd, kfd, zero, nr_samples, interval_ns,
                   first_deadline_ns, seed) -> tuple[int, int, list[int]]:
    """The C loop's pipeline, step for step (see ``py_sample`` in ``_idle_sampler.c``)."""
    sizes = [len(a[1]) for a in arrays]
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(int).tolist()
    total = offsets[-1]
    all_s = np.concatenate([a[1] for a in arrays]) if arrays else np.zeros(0, np.uint64)
    all_e = np.concatenate([a[2] for a in arrays]) if arrays else np.zeros(0, np.uint64)
    targets = [(a[0], None, None, a[3].tolist(), a[4].tolist()) for a in arrays]
    errs = [0] * len(arrays)
    sets: list[list[_State | None]] = [[None] * len(arrays), [None] * len(arrays)]
    clock = time.monotonic_ns

    rows: dict[int, list[int]] = {}  # sample -> its addresses, for PM_AHEAD samples at a time
    entries: list[dict[int, list[int]]] = [{} for _ in targets]  # per target, per sample

    def prefetch(j: int, k0: int) -> None:
        ks = range(k0, min(nr_samples, k0 + PM_AHEAD))
        for k in [k for k in rows if k < k0 - 2]:
            del rows[k]
        for k in ks:
            if k not in rows:
                rows[k] = pick_addrs(all_s, all_e, seed, k * total).tolist()
        flat = [a for k in ks for a in rows[k][offsets[j]:offsets[j + 1]]]
        got = _prefetch(targets[j][0], flat)
        n = sizes[j]
        entries[j] = {k: got[(k - k0) * n:(k - k0 + 1) * n] for k in ks}

    def resolve(which: int, k: int) -> int:
        for j, t in enumerate(targets):
            if not errs[j]:
                try:
                    if k not in entries[j]:
                        prefetch(j, k)
                    sets[which][j] = _resolve(t, rows[k][offsets[j]:offsets[j + 1]],
                                              entries[j][k], kfd, zero)
                except _Failed as f:
                    errs[j] = f.err
        return errs.count(0)

    def mark(which: int, late: bool) -> None:
        for j, st in enumerate(sets[which]):
            if not errs[j] and (not late or st.late):
                try:
                    _mark(st, bfd, late)
                except _Failed as f:
                    errs[j] = f.err

    def sleep_until(when: int) -> None:
        while (left := when - clock()) > 0:
            time.sleep(left / 1e9)

    deadline = first_deadline_ns
    done = overruns = alive = 0
    late = [False, False]
    if nr_samples and not (stop is not None and stop[0]):
        alive = resolve(0, 0)
        mark(0, False)
        marked0 = clock()
        if nr_samples > 1:
            alive = resolve(1, 1)
        if clock() > deadline:
            overruns += 1
        deadline = max(deadline, marked0 + interval_ns)
    for k in range(nr_samples):
        if (stop is not None and stop[0]) or (targets and not alive):
            break
        a, b = k & 1, (k & 1) ^ 1
        nxt = k + 1 < nr_samples
        if k and clock() > deadline:  # the work overran the interval: restart from now
            overruns += 1
            deadline = clock()
        sleep_until(deadline)
        lateness[k] = clock() - deadline
        if nxt:
            pending = _Pending([st for j, st in enumerate(sets[a]) if not errs[j]])
            late[b] = False
            for j, st in enumerate(sets[b]):
                if not errs[j] and pending.find_late(st):
                    late[b] = True
            mark(b, False)
        for late_pass in (False, True):  # the words marked on time, then the late ones
            for j, st in enumerate(sets[a]):
                if not errs[j] and (not late_pass or st.late):
                    try:
                        _read_words(st, bfd, late_pass)
                    except _Failed as f:
                        errs[j] = f.err
        alive = 0
        for j, t in enumerate(targets):
            if errs[j]:
                continue
            try:
                hits[j][k] = _evaluate(t, sets[a][j], zero)
                alive += 1
            except _Failed as f:
                errs[j] = f.err
        done = k + 1
        if nxt and late[b]:
            mark(b, True)
        if k + 2 < nr_samples:
            alive = resolve(a, k + 2)
        deadline += interval_ns
    return done, overruns, errs
