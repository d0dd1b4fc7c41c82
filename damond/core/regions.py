"""Monitoring regions of one target and the kernel's region-adjustment algorithms.

A target's regions live in parallel numpy arrays rather than one Python object per region: the
sampling loop touches every region 200 times a second, and array-at-a-time updates keep that
cost flat (DESIGN.md, "The hot path"). Regions are kept sorted by address and non-overlapping;
gaps between them are allowed (vaddr's three regions leave the two biggest unmapped gaps out).

Behaviour follows ``mm/damon/core.c`` of Linux v6.16 unless a docstring names another version;
the address-space-specific algorithms (vaddr's three regions and even split) live with their
operation set, as in the kernel. ``min_region`` plays the role of ``DAMON_MIN_REGION`` and is
always handed in: the page size in production, 1 in unit tests (as the kernel's KUnit build
redefines it). The core never reads the page size itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from damond.errors import DamonError

_U64 = np.uint64
_I64 = np.int64


def align_down(x: int, a: int) -> int:
    return x - x % a


def align_up(x: int, a: int) -> int:
    return -(-x // a) * a


class Regions:
    """The regions of one target as parallel arrays.

    ``start``/``end`` are uint64 (addresses of a 64-bit machine); the counters are int64:
    ``nr_accesses`` (samples found accessed in the current aggregation), ``nr_accesses_bp``
    (the v6.7+ pseudo moving sum in basis points), ``last_nr_accesses`` (the previous
    aggregation's count) and ``age`` (aggregations the access rate stayed similar).
    ``sampling_addr`` belongs to the operation set, which picks it each sample.
    """

    __slots__ = ("start", "end", "nr_accesses", "nr_accesses_bp", "last_nr_accesses", "age",
                 "sampling_addr")

    def __init__(self, start: Sequence[int] | np.ndarray = (), end: Sequence[int] | np.ndarray = (),
                 *, nr_accesses=None, nr_accesses_bp=None, last_nr_accesses=None,
                 age=None) -> None:
        self.start = np.array(start, dtype=_U64)
        self.end = np.array(end, dtype=_U64)
        n = self.start.shape[0]
        if self.end.shape[0] != n:
            raise ValueError("start and end differ in length")
        self.nr_accesses = _counter(nr_accesses, n)
        self.nr_accesses_bp = _counter(nr_accesses_bp, n)
        self.last_nr_accesses = _counter(last_nr_accesses, n)
        self.age = _counter(age, n)
        self.sampling_addr = self.start.copy()

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]], **counters) -> Regions:
        ranges = list(ranges)
        return cls([r[0] for r in ranges], [r[1] for r in ranges], **counters)

    @classmethod
    def from_lists(cls, start, end, nr, bp, last, age) -> Regions:
        return cls(start, end, nr_accesses=nr, nr_accesses_bp=bp, last_nr_accesses=last, age=age)

    def to_lists(self) -> tuple[list, list, list, list, list, list]:
        return (self.start.tolist(), self.end.tolist(), self.nr_accesses.tolist(),
                self.nr_accesses_bp.tolist(), self.last_nr_accesses.tolist(), self.age.tolist())

    def __len__(self) -> int:
        return int(self.start.shape[0])

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self.start.tolist(), self.end.tolist(), strict=True))

    def sizes(self) -> np.ndarray:
        return self.end - self.start

    def total_size(self) -> int:
        return int(self.sizes().sum(dtype=_U64))

    def copy(self) -> Regions:
        new = Regions.from_lists(self.start, self.end, self.nr_accesses, self.nr_accesses_bp,
                                 self.last_nr_accesses, self.age)
        new.sampling_addr = self.sampling_addr.copy()
        return new

    def select(self, keep: np.ndarray) -> Regions:
        """The regions where the boolean mask ``keep`` is true."""
        return Regions.from_lists(self.start[keep], self.end[keep], self.nr_accesses[keep],
                                  self.nr_accesses_bp[keep], self.last_nr_accesses[keep],
                                  self.age[keep])

    def __repr__(self) -> str:
        body = ", ".join(f"[{s},{e}) nr={n} age={a}" for s, e, n, a in zip(
            self.start.tolist(), self.end.tolist(), self.nr_accesses.tolist(),
            self.age.tolist(), strict=True))
        return f"Regions({body})"


def _counter(values, n: int) -> np.ndarray:
    if values is None:
        return np.zeros(n, dtype=_I64)
    arr = np.array(values, dtype=_I64)
    if arr.shape != (n,):
        arr = np.broadcast_to(arr, (n,)).copy()
    return arr


# ---------------------------------------------------------------------------------------------
# split and merge of single regions


def split_region_at(regions: Regions, i: int, sz_left: int) -> Regions:
    """``damon_split_region_at()``: region ``i`` keeps its first ``sz_left`` bytes and a new
    region with the rest, copying every counter, is inserted right after it."""
    cut = int(regions.start[i]) + sz_left
    lists = regions.to_lists()
    st, en, nr, bp, last, age = lists
    st.insert(i + 1, cut)
    en.insert(i + 1, en[i])
    en[i] = cut
    for arr in (nr, bp, last, age):
        arr.insert(i + 1, arr[i])
    return Regions.from_lists(st, en, nr, bp, last, age)


def merge_two_regions(regions: Regions, i: int) -> Regions:
    """``damon_merge_two_regions()``: region ``i`` absorbs region ``i + 1``.

    Counters are size-weighted averages (integer division); ``nr_accesses_bp`` becomes the
    merged ``nr_accesses`` in basis points; ``last_nr_accesses`` keeps the left region's value
    (the kernel does not recompute it, Appendix B #4).
    """
    st, en, nr, bp, last, age = regions.to_lists()
    _merge_into(st, en, nr, bp, age, i, st[i + 1], en[i + 1], nr[i + 1], age[i + 1])
    for arr in (st, en, nr, bp, last, age):
        del arr[i + 1]
    return Regions.from_lists(st, en, nr, bp, last, age)


def _merge_into(st, en, nr, bp, age, i, r_start, r_end, r_nr, r_age) -> None:
    sz_l = en[i] - st[i]
    sz_r = r_end - r_start
    total = sz_l + sz_r
    if total:
        nr[i] = (nr[i] * sz_l + r_nr * sz_r) // total
        age[i] = (age[i] * sz_l + r_age * sz_r) // total
    bp[i] = nr[i] * 10000
    en[i] = r_end


# ---------------------------------------------------------------------------------------------
# merge (kdamond_merge_regions)


#: Up to these many regions, merge and split run on Python lists instead of numpy arrays. For
#: a few dozen regions the array version's fixed cost (some 30 numpy calls per function) is
#: most of the work, and it is paid with cold caches: a kdamond watching an idle process
#: wakes once per aggregation, and on the host these two steps took ~400 µs of its ~1.2 ms
#: per aggregation (~250 µs with lists). Warm, on the host: the list merge is faster up to at
#: least 200 regions (158 against 190 µs), the list split up to about 48 (43 against 48 µs
#: at 40, 60 against 51 at 64, 81 against 50 at 96). Both versions give identical results
#: (tests/core).
SMALL_N_MERGE = 256
SMALL_N_SPLIT = 64


def merge_regions_of(regions: Regions, thres: int, sz_limit: int) -> Regions:
    """``damon_merge_regions_of()``: update ages, then merge adjacent similar regions (see
    ``merge_regions_of_arrays``; small inputs take ``merge_regions_of_lists``)."""
    if len(regions) <= SMALL_N_MERGE:
        return merge_regions_of_lists(regions, thres, sz_limit)
    return merge_regions_of_arrays(regions, thres, sz_limit)


def merge_regions_of_lists(regions: Regions, thres: int, sz_limit: int) -> Regions:
    """``merge_regions_of`` as the kernel's loop, on Python lists: each region's age is reset
    or incremented, then it merges into the region before it (as grown by earlier merges)
    when they are adjacent, their counts differ by at most ``thres`` and the merged size
    stays within ``sz_limit``."""
    st, en, nr, bp, last, age = regions.to_lists()
    n = len(st)
    if n == 0:
        return regions
    age = [0 if abs(nr[i] - last[i]) > thres else age[i] + 1 for i in range(n)]
    keep = [0]
    j = 0  # the region the next one may merge into
    for k in range(1, n):
        if (en[j] == st[k] and abs(nr[j] - nr[k]) <= thres
                and (en[j] - st[j]) + (en[k] - st[k]) <= sz_limit):
            _merge_into(st, en, nr, bp, age, j, st[k], en[k], nr[k], age[k])
        else:
            keep.append(k)
            j = k
    if len(keep) < n:
        st, en, nr, bp, last, age = ([a[i] for i in keep] for a in (st, en, nr, bp, last, age))
    return Regions.from_lists(st, en, nr, bp, last, age)


def merge_regions_of_arrays(regions: Regions, thres: int, sz_limit: int) -> Regions:
    """``damon_merge_regions_of()`` on numpy arrays: update ages, then merge adjacent similar
    regions.

    Every region's age is reset when its access count moved by more than ``thres`` since the
    last aggregation, else incremented. A region merges into the one before it (as possibly
    grown by earlier merges) when they are adjacent, their counts differ by at most ``thres``
    and the merged size stays within ``sz_limit``.

    The age update only reads a region's own counters, so it is done for all regions at once.
    The merge walk is inherently sequential (a grown left region is compared with the next
    one), but only where a merge can start: pairs whose *original* values do not qualify are
    skipped without Python work, which is exact because a left region that absorbed nothing
    still has its original values.
    """
    n = len(regions)
    if n == 0:
        return regions
    nr_arr = regions.nr_accesses
    changed = np.abs(nr_arr - regions.last_nr_accesses) > thres
    age_arr = np.where(changed, 0, regions.age + 1)
    if n == 1:
        return Regions.from_lists(regions.start, regions.end, nr_arr, regions.nr_accesses_bp,
                                  regions.last_nr_accesses, age_arr)
    sizes = regions.sizes()
    candidate = ((regions.end[:-1] == regions.start[1:])
                 & (np.abs(nr_arr[:-1] - nr_arr[1:]) <= thres)
                 & (sizes[:-1] + sizes[1:] <= np.uint64(sz_limit)))
    starts = np.flatnonzero(candidate)  # pair (j, j + 1) may merge for j in starts
    if starts.size == 0:
        return Regions.from_lists(regions.start, regions.end, nr_arr, regions.nr_accesses_bp,
                                  regions.last_nr_accesses, age_arr)
    st, en, nr, bp = (regions.start.tolist(), regions.end.tolist(), nr_arr.tolist(),
                      regions.nr_accesses_bp.tolist())
    age = age_arr.tolist()
    keep = np.ones(n, dtype=bool)
    j_prev_end = -1  # last index consumed by a merge chain
    for j in starts.tolist():
        if j <= j_prev_end:
            continue
        # j is unmodified here: the precomputed candidate[j] is exact, so j absorbs j + 1
        k = j + 1
        while True:
            _merge_into(st, en, nr, bp, age, j, st[k], en[k], nr[k], age[k])
            keep[k] = False
            k += 1
            if k >= n or not (en[j] == st[k] and abs(nr[j] - nr[k]) <= thres
                              and (en[j] - st[j]) + (en[k] - st[k]) <= sz_limit):
                break
        # k (if any) did not merge into j and is still unmodified, so candidate[k] is exact
        j_prev_end = k - 1
    idx = np.flatnonzero(keep)
    return Regions.from_lists(np.array(st, dtype=_U64)[idx], np.array(en, dtype=_U64)[idx],
                              np.array(nr, dtype=_I64)[idx], np.array(bp, dtype=_I64)[idx],
                              regions.last_nr_accesses[idx], np.array(age, dtype=_I64)[idx])


def merge_regions(all_regions: list[Regions], threshold: int, sz_limit: int,
                  max_nr_regions: int, max_thres: int) -> list[Regions]:
    """``kdamond_merge_regions()`` of v6.10+: repeat the merge, doubling the threshold, while
    there are more regions than ``max_nr_regions`` and the threshold can still grow.

    Each repetition updates ages again (a quirk of the kernel's loop, Appendix B #3).
    """
    while True:
        all_regions = [merge_regions_of(r, threshold, sz_limit) for r in all_regions]
        nr_regions = sum(len(r) for r in all_regions)
        threshold = max(1, threshold * 2)
        if not (nr_regions > max_nr_regions and threshold // 2 < max_thres):
            return all_regions


# ---------------------------------------------------------------------------------------------
# split (kdamond_split_regions)


def split_regions_of(regions: Regions, nr_subs: int, min_region: int,
                     rng: np.random.Generator) -> Regions:
    """``damon_split_regions_of()``: cut every region bigger than ``2 * min_region`` into
    ``nr_subs`` (2 or 3) pieces at random points between 10% and 90%.

    As in the kernel, a second cut (three-way split) is made inside the *left* piece of the
    first, and a draw that rounds to an empty piece is skipped rather than retried. New pieces
    copy all counters of the region they come from. Small inputs take
    ``split_regions_of_lists``, which draws the same numbers and cuts at the same points.
    """
    if len(regions) <= SMALL_N_SPLIT:
        return split_regions_of_lists(regions, nr_subs, min_region, rng)
    return split_regions_of_arrays(regions, nr_subs, min_region, rng)


_MASK64 = (1 << 64) - 1


def split_regions_of_lists(regions: Regions, nr_subs: int, min_region: int,
                           rng: np.random.Generator) -> Regions:
    """``split_regions_of`` with its cuts made in Python. The draws are the array version's
    (one ``rng.integers`` call per cut, for every region), and ``draw * size`` wraps at 64
    bits as the kernel's ``unsigned long`` (and numpy's ``uint64``) does. The pieces' counters
    are gathered from their regions' arrays at once."""
    st, en = regions.start.tolist(), regions.end.tolist()
    n = len(st)
    if n == 0 or nr_subs < 2:
        return regions
    two = 2 * min_region
    if not any(e - s > two for s, e in zip(st, en, strict=True)):
        return regions
    r1 = rng.integers(1, 10, size=n, dtype=_U64).tolist()
    r2 = rng.integers(1, 10, size=n, dtype=_U64).tolist() if nr_subs >= 3 else None
    o_st: list[int] = []
    o_en: list[int] = []
    owner: list[int] = []
    mr = min_region
    for i in range(n):
        s, e = st[i], en[i]
        sz = e - s
        if sz > two:
            c1 = ((r1[i] * sz) & _MASK64) // 10 // mr * mr
            ok1 = 0 < c1 < sz
            piece = s  # where the next piece starts
            if r2 is not None:
                size2 = c1 if ok1 else sz
                c2 = ((r2[i] * size2) & _MASK64) // 10 // mr * mr
                if size2 > two and 0 < c2 < size2:
                    o_st.append(piece)
                    o_en.append(s + c2)
                    owner.append(i)
                    piece = s + c2
            if ok1:
                o_st.append(piece)
                o_en.append(s + c1)
                owner.append(i)
                piece = s + c1
            s = piece
        o_st.append(s)
        o_en.append(e)
        owner.append(i)
    idx = np.array(owner, dtype=np.intp)
    return Regions.from_lists(o_st, o_en, regions.nr_accesses[idx], regions.nr_accesses_bp[idx],
                              regions.last_nr_accesses[idx], regions.age[idx])


def split_regions_of_arrays(regions: Regions, nr_subs: int, min_region: int,
                            rng: np.random.Generator) -> Regions:
    """``split_regions_of`` on numpy arrays (for many regions)."""
    n = len(regions)
    if n == 0 or nr_subs < 2:
        return regions
    sz = regions.sizes()
    mr = _U64(min_region)
    eligible = sz > _U64(2 * min_region)
    if not eligible.any():
        return regions
    r1 = rng.integers(1, 10, size=n, dtype=_U64)
    c1 = (r1 * sz // _U64(10)) // mr * mr
    ok1 = eligible & (c1 != 0) & (c1 < sz)
    if nr_subs >= 3:
        size2 = np.where(ok1, c1, sz)
        r2 = rng.integers(1, 10, size=n, dtype=_U64)
        c2 = (r2 * size2 // _U64(10)) // mr * mr
        ok2 = eligible & (size2 > _U64(2 * min_region)) & (c2 != 0) & (c2 < size2)
    else:
        c2 = np.zeros(n, dtype=_U64)
        ok2 = np.zeros(n, dtype=bool)
    # piece offsets per region: 0, then c2 (if cut), then c1 (if cut); always ascending
    offsets = np.stack([np.zeros(n, dtype=_U64), c2, c1], axis=1)
    valid = np.stack([np.ones(n, dtype=bool), ok2, ok1], axis=1)
    counts = valid.sum(axis=1)
    owner = np.repeat(np.arange(n), counts)
    piece_start = regions.start[owner] + offsets[valid]
    piece_end = np.empty_like(piece_start)
    piece_end[:-1] = piece_start[1:]
    last_of_owner = np.cumsum(counts) - 1
    piece_end[last_of_owner] = regions.end
    return Regions.from_lists(piece_start, piece_end, regions.nr_accesses[owner],
                              regions.nr_accesses_bp[owner], regions.last_nr_accesses[owner],
                              regions.age[owner])


def split_nr_subs(nr_regions: int, last_nr_regions: int, max_nr_regions: int) -> int:
    """How ``kdamond_split_regions()`` decides: 0 (no split) above half of the maximum, 3 when
    the count did not change since the last split and stays under a third, else 2."""
    if nr_regions > max_nr_regions // 2:
        return 0
    if last_nr_regions == nr_regions and nr_regions < max_nr_regions // 3:
        return 3
    return 2


def region_sz_limit(all_regions: Iterable[Regions], min_nr_regions: int,
                    min_region: int) -> int:
    """``damon_region_sz_limit()``: no merge may build a region bigger than this, which is what
    keeps at least ``min_nr_regions`` regions once there were that many."""
    sz = sum(r.total_size() for r in all_regions)
    if min_nr_regions:
        sz //= min_nr_regions
    return max(sz, min_region)


# ---------------------------------------------------------------------------------------------
# setting regions from address ranges


def set_regions(regions: Regions, ranges: Sequence[tuple[int, int]],
                min_region: int) -> Regions:
    """``damon_set_regions()`` (v6.1+, with hole filling): fit the regions to ``ranges``.

    Regions intersecting no range are dropped. For each range (ascending), the first and last
    regions intersecting it are stretched to the range's aligned bounds and gaps between the
    regions in between are filled with new zeroed regions; a range no region intersects gets one
    new region. Surviving regions keep their counters: only their bounds move.
    """
    st, en, nr, bp, last, age = regions.to_lists()
    rows = [[s, e, a, b, c, d] for s, e, a, b, c, d in zip(st, en, nr, bp, last, age,
                                                            strict=True)]

    def intersects(row, rng_):
        return not (row[1] <= rng_[0] or rng_[1] <= row[0])

    rows = [row for row in rows if any(intersects(row, r) for r in ranges)]
    pos = 0
    for r_start, r_end in ranges:
        first = last_i = None
        while pos < len(rows):
            row = rows[pos]
            if intersects(row, (r_start, r_end)):
                if first is None:
                    first = pos
                last_i = pos
            if row[0] >= r_end:
                break
            pos += 1
        if first is None:
            rows.insert(pos, [align_down(r_start, min_region), align_up(r_end, min_region),
                              0, 0, 0, 0])
            pos += 1
            continue
        rows[first][0] = align_down(r_start, min_region)
        rows[last_i][1] = align_up(r_end, min_region)
        i = first
        while i < last_i:
            if rows[i][1] != rows[i + 1][0]:
                rows.insert(i + 1, [rows[i][1], rows[i + 1][0], 0, 0, 0, 0])
                last_i += 1
                if pos > i:
                    pos += 1
            i += 1
    if not rows:
        return Regions()
    cols = list(zip(*rows, strict=True))
    return Regions.from_lists(*cols)


def check_sorted_ranges(ranges: Sequence[tuple[int, int]]) -> None:
    """The sysfs/debugfs rule for user-given regions: ``start <= end`` (sysfs) and no region
    starting below the previous one's end. Raises EINVAL otherwise."""
    prev_end = None
    for i, (s, e) in enumerate(ranges):
        if s > e:
            raise DamonError("EINVAL", f"region {i}: start {s} is above end {e}")
        if prev_end is not None and prev_end > s:
            raise DamonError("EINVAL",
                             f"region {i}: start {s} is below the previous region's end "
                             f"{prev_end} (regions must be sorted and must not overlap)")
        prev_end = e
