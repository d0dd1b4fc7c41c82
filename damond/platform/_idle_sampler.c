/*
 * damond.platform._idle_sampler: a whole batch of page_idle samples per call, without the GIL.
 *
 * Why native: under emulation Python's fixed cost per sample (~2 ms) and per region dwarfs the
 * system calls themselves (issue 9). This module copies its inputs into C buffers, releases the
 * GIL and runs every sample of an aggregation interval in one loop: pick one address per region,
 * read the PFNs of PM_AHEAD samples at once from pagemap (sorted, close pages sharing a pread),
 * mark the pages idle (one pwrite per group of bitmap words at most MAX_GAP_WORDS apart: the
 * zero words in between change nothing), and read the idle bits back at least one interval
 * later (one read per run of consecutive needed words: never a wide span, since every
 * idle-flagged page in a word read costs the kernel a reverse-map walk). Samples are pipelined:
 * sample k+1 is marked right before sample k is checked, so a sample costs one interval rather
 * than an interval plus its work (see py_sample).
 *
 * The semantics are those of damond.ops.access_check.PageIdleCheck (and of the kernel's
 * damon_va_young()): the zero page is never accessed; a page absent at prepare is accessed iff
 * a real page is present at check; inside THP-eligible areas a huge page's idle flag lives on its
 * head PFN (kpageflags THP or COMPOUND_TAIL), and a region sampled inside the same folio as the
 * previous region reuses that check. damond/platform/idle_sampler.py holds the argument checks
 * and a pure-Python twin of this loop; both must stay in step (same PRNG, same grouping).
 *
 * The check's bitmap reads go out in one io_uring submission where the kernel allows it (raw
 * syscalls, no liburing): under emulation a system call's entry and exit cost as much as the
 * page_idle work of a word, and one io_uring_enter replaces a pread per run of words (measured
 * in the guest: 0.55-0.83x the CPU per region-sample of pread; docs/sampler.md). pread is the
 * fallback (no CONFIG_IO_URING, io_uring_disabled, seccomp). Pagemap reads and bitmap writes stay
 * synchronous: io_uring would hand them to an iou-wrk thread, which costs more.
 *
 * floor() replays exactly the system calls one pass of the sampler made for given addresses,
 * with nothing else around them: the bench's floor.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define MAX_GAP_WORDS 16       /* marks: words at most this far apart go in one pwrite */
#define PM_GAP_PAGES 128       /* pagemap: sampled pages this close share one pread */
#define PM_SPAN_PAGES 4096     /* ... of at most this many entries */
#define PM_AHEAD 20            /* samples whose entries one prefetch reads (default: 100 ms) */
#define PFN_MASK ((UINT64_C(1) << 55) - 1)
#define PM_PRESENT (UINT64_C(1) << 63)
#define KPF_COMPOUND_TAIL 16
#define KPF_THP 22
#define HUGE_PART ((UINT64_C(1) << KPF_THP) | (UINT64_C(1) << KPF_COMPOUND_TAIL))
#define GOLDEN UINT64_C(0x9E3779B97F4A7C15)

#define PFN_ABSENT (-1)
#define PFN_UNTRACKABLE (-2)

static unsigned page_shift = 12;
static uint64_t pmd_pages = 512;
static uint64_t max_io_words = 512; /* sysfs moves at most one page per call */

/* splitmix64 on a counter: the Python twin computes the same with numpy, vectorised */
static inline uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static inline uint64_t pick(uint64_t seed, uint64_t ctr, uint64_t start, uint64_t end)
{
    return start + mix(seed + ctr * GOLDEN) % (end - start);
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- recorded system calls (floor) ---------------------------------------------------- */

struct call {
    int fd;
    int write;     /* 0 pread, 1 pwrite, 2 one io_uring submission of len reads */
    uint64_t off;
    size_t len;
    uint64_t *data; /* bytes written (writes); (offset, length) pairs (io_uring reads) */
};

struct plan {
    struct call *calls;
    size_t n, cap;
    int oom;
};

static void record(struct plan *p, int fd, int write, uint64_t off, const void *buf, size_t len)
{
    if (!p || p->oom)
        return;
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 1024;
        struct call *c = realloc(p->calls, cap * sizeof(*c));
        if (!c) {
            p->oom = 1;
            return;
        }
        p->calls = c;
        p->cap = cap;
    }
    struct call *c = &p->calls[p->n];
    c->fd = fd;
    c->write = write;
    c->off = off;
    c->len = len;
    c->data = NULL;
    if (write) {
        c->data = malloc(len);
        if (!c->data) {
            p->oom = 1;
            return;
        }
        memcpy(c->data, buf, len);
    }
    p->n++;
}

static void plan_free(struct plan *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->calls[i].data);
    free(p->calls);
}

/* ---- io_uring, raw ------------------------------------------------------------------------ */

struct ring {
    int fd;
    unsigned entries;
    unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    void *sq_ptr, *cq_ptr, *sqe_ptr;
    size_t sq_sz, cq_sz, sqes_sz;
};

static void ring_close(struct ring *r)
{
    if (r->sqe_ptr && r->sqe_ptr != MAP_FAILED)
        munmap(r->sqe_ptr, r->sqes_sz);
    if (r->cq_ptr && r->cq_ptr != MAP_FAILED && r->cq_ptr != r->sq_ptr)
        munmap(r->cq_ptr, r->cq_sz);
    if (r->sq_ptr && r->sq_ptr != MAP_FAILED)
        munmap(r->sq_ptr, r->sq_sz);
    if (r->fd >= 0)
        close(r->fd);
    memset(r, 0, sizeof(*r));
    r->fd = -1;
}

/* 0, or the errno that keeps io_uring from working here (r is left closed) */
static int ring_open(struct ring *r, unsigned entries)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    memset(r, 0, sizeof(*r));
    r->fd = (int)syscall(__NR_io_uring_setup, entries, &p);
    if (r->fd < 0) {
        int err = errno;
        r->fd = -1;
        return err;
    }
    r->entries = p.sq_entries;
    r->sq_sz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    int single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single)
        r->sq_sz = r->cq_sz = r->sq_sz > r->cq_sz ? r->sq_sz : r->cq_sz;
    r->sq_ptr = mmap(NULL, r->sq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                     IORING_OFF_SQ_RING);
    r->cq_ptr = single ? r->sq_ptr
                       : mmap(NULL, r->cq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                              r->fd, IORING_OFF_CQ_RING);
    r->sqes_sz = p.sq_entries * sizeof(struct io_uring_sqe);
    r->sqe_ptr = mmap(NULL, r->sqes_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                      IORING_OFF_SQES);
    if (r->sq_ptr == MAP_FAILED || r->cq_ptr == MAP_FAILED || r->sqe_ptr == MAP_FAILED) {
        int err = errno;
        ring_close(r);
        return err;
    }
    char *sq = r->sq_ptr, *cq = r->cq_ptr;
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    r->sqes = r->sqe_ptr;
    return 0;
}

/* n reads of fd: lens[i] bytes at offs[i] into bufs[i]; res[i] = bytes read or -errno.
 * Submitted and reaped in batches of the ring's size. Returns 0 or an errno. */
static int ring_reads(struct ring *r, int fd, size_t n, void *const *bufs, const uint32_t *lens,
                      const uint64_t *offs, int32_t *res)
{
    size_t done = 0;
    while (done < n) {
        unsigned batch = n - done > r->entries ? r->entries : (unsigned)(n - done);
        unsigned tail = *r->sq_tail;
        for (unsigned i = 0; i < batch; i++) {
            unsigned idx = (tail + i) & *r->sq_mask;
            struct io_uring_sqe *q = &r->sqes[idx];
            memset(q, 0, sizeof(*q));
            q->opcode = IORING_OP_READ;
            q->fd = fd;
            q->addr = (uint64_t)(uintptr_t)bufs[done + i];
            q->len = lens[done + i];
            q->off = offs[done + i];
            q->user_data = done + i;
            r->sq_array[idx] = idx;
        }
        __atomic_store_n(r->sq_tail, tail + batch, __ATOMIC_RELEASE);
        unsigned got = 0, to_submit = batch;
        while (got < batch) {
            int k = (int)syscall(__NR_io_uring_enter, r->fd, to_submit, batch - got,
                                 IORING_ENTER_GETEVENTS, NULL, 0);
            if (k < 0 && errno != EINTR)
                return errno;
            if (k > 0)
                to_submit -= (unsigned)k > to_submit ? to_submit : (unsigned)k;
            unsigned head = *r->cq_head;
            unsigned ctail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
            for (; head != ctail; head++, got++) {
                struct io_uring_cqe *c = &r->cqes[head & *r->cq_mask];
                res[c->user_data] = c->res;
            }
            __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
        }
        done += batch;
    }
    return 0;
}

static void record_ring(struct plan *p, int fd, size_t n, const uint32_t *lens,
                        const uint64_t *offs)
{
    if (!p || p->oom)
        return;
    uint64_t *pairs = malloc((n ? n : 1) * 16);
    if (!pairs) {
        p->oom = 1;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        pairs[2 * i] = offs[i];
        pairs[2 * i + 1] = lens[i];
    }
    record(p, fd, 0, 0, NULL, n);
    if (p->oom) {
        free(pairs);
        return;
    }
    p->calls[p->n - 1].write = 2;
    p->calls[p->n - 1].data = pairs;
}

/* pread of up to len bytes; returns bytes read (short at EOF) or -errno */
static ssize_t rd(struct plan *p, int fd, void *buf, size_t len, uint64_t off)
{
    record(p, fd, 0, off, NULL, len);
    size_t done = 0;
    while (done < len) {
        ssize_t r = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

static int wr(struct plan *p, int fd, const void *buf, size_t len, uint64_t off)
{
    record(p, fd, 1, off, buf, len);
    size_t done = 0;
    while (done < len) {
        ssize_t r = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -EIO;
        done += (size_t)r;
    }
    return 0;
}

/* ---- one target ------------------------------------------------------------------------ */

struct wordref {
    uint64_t word;
    uint32_t region;
};

/* One sample's pages of one target, from resolve() to check(). Two are in flight at once: the
 * next sample's pages are marked just before this one's are checked (see py_sample). */
struct set {
    uint64_t *addr;
    int64_t *pfn;
    uint64_t *folio;
    int large;
    uint64_t *uwords, *ubits, *uvals; /* the bitmap words the sample needs, sorted, unique */
    uint8_t *ularge;                  /* word holds a huge page's head */
    uint8_t *ulate;                   /* word's mark waits for the previous sample's check */
    uint32_t *widx;                   /* region -> its word */
    Py_ssize_t nu, nlate;
};

struct target {
    int fd;
    Py_ssize_t n, nthp;
    uint64_t *starts, *ends, *thp_s, *thp_e;
    uint64_t ctr0;  /* PRNG counter of region 0 within a sample */
    uint8_t *hits;  /* output rows (nr_samples x n), zeroed by the caller */
    int err;
    struct set sets[2];
    struct wordref *refs; /* resolve()'s scratch */
    /* addresses and pagemap entries of samples [pf_first, pf_first + pf_count), rows of n */
    uint64_t *addrs, *entries;
    uint64_t pf_first, pf_count, pf_cap;
    const uint64_t *given; /* floor(): the addresses of every sample, rows of n */
    /* the check's reads, one per run of words */
    void **rbufs;
    uint32_t *rlens;
    uint64_t *roffs;
    int32_t *rres;
    Py_ssize_t *rfirst, *rlast;
};

/* The words (and, for huge pages, PMD blocks of PFNs) of the sample still waiting for its
 * check, over all targets: a mark landing on one of them would erase what the check is about
 * to read (page_idle marks whole folios), so such marks wait until after the check. */
struct pending {
    uint64_t *words, *blocks, *lblocks; /* sorted, unique */
    size_t nw, nb, nl;
};

struct shared {
    int bfd, kfd;
    int64_t zero_pfn;
    uint64_t seed, total;
    uint64_t *buf;   /* max_io_words */
    uint64_t *pmbuf; /* PM_SPAN_PAGES */
    struct plan *plan;
    struct ring *ring; /* NULL: the check reads with pread */
    struct pending pend;
};

static int cmp_ref(const void *a, const void *b)
{
    uint64_t x = ((const struct wordref *)a)->word, y = ((const struct wordref *)b)->word;
    return (x > y) - (x < y);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int in_thp(const struct target *t, uint64_t a)
{
    Py_ssize_t lo = 0, hi = t->nthp; /* first start > a */
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (t->thp_s[mid] <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && a < t->thp_e[lo - 1];
}

static int has_u64(const uint64_t *v, size_t n, uint64_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && v[lo] == x;
}

static size_t sort_unique(uint64_t *v, size_t n)
{
    if (n < 2)
        return n;
    qsort(v, n, 8, cmp_u64);
    size_t m = 1;
    for (size_t i = 1; i < n; i++)
        if (v[i] != v[m - 1])
            v[m++] = v[i];
    return m;
}

/* A short pagemap read means "past the address-space limit" or "the mm is gone"; page 0 is
 * always below the limit, so EOF there means the process has exited. */
static int gone(struct shared *s, struct target *t)
{
    uint64_t e;
    ssize_t r = rd(s->plan, t->fd, &e, 8, 0);
    if (r < 0)
        return (int)-r;
    return r == 0 ? ESRCH : 0;
}

struct pageref {
    uint64_t page, slot;
};

static int cmp_page(const void *a, const void *b)
{
    uint64_t x = ((const struct pageref *)a)->page, y = ((const struct pageref *)b)->page;
    return (x > y) - (x < y);
}

/* Pick the addresses of samples [k0, k0 + nr) and read their pagemap entries at once: sorted,
 * pages at most PM_GAP_PAGES apart share one pread (under emulation a system call costs what
 * ~300 entries of a longer read cost; read per sampled page, pagemap was the biggest share of a
 * sample's work). An entry is then used up to PM_AHEAD samples later (one aggregation at the
 * defaults): a page that moved or was freed meanwhile is checked where it was, as the design
 * measured in issue 9 accepts; pages absent here are read again at their check. `given`
 * (floor) holds the addresses. 0 or an errno. */
static int prefetch(struct shared *s, struct target *t, uint64_t k0, uint64_t nr,
                    const uint64_t *given)
{
    size_t m = (size_t)nr * (size_t)t->n;
    struct pageref *refs = malloc((m ? m : 1) * sizeof(*refs));
    if (!refs)
        return ENOMEM;
    t->pf_first = k0;
    t->pf_count = nr;
    for (uint64_t k = 0; k < nr; k++) {
        for (Py_ssize_t i = 0; i < t->n; i++) {
            size_t slot = (size_t)k * (size_t)t->n + (size_t)i;
            uint64_t a = given ? given[slot]
                               : pick(s->seed, (k0 + k) * s->total + t->ctr0 + (uint64_t)i,
                                      t->starts[i], t->ends[i]);
            t->addrs[slot] = a;
            t->entries[slot] = 0;
            refs[slot].page = a >> page_shift;
            refs[slot].slot = slot;
        }
    }
    qsort(refs, m, sizeof(*refs), cmp_page);
    int shortread = 0, err = 0;
    for (size_t j = 0; j < m && !err;) {
        uint64_t first = refs[j].page;
        size_t e = j;
        while (e + 1 < m && refs[e + 1].page - refs[e].page <= PM_GAP_PAGES &&
               refs[e + 1].page - first < PM_SPAN_PAGES)
            e++;
        size_t len = (size_t)(refs[e].page - first + 1);
        ssize_t r = rd(s->plan, t->fd, s->pmbuf, len * 8, first << 3);
        if (r < 0) {
            err = (int)-r;
            break;
        }
        if ((size_t)r < len * 8)
            shortread = 1;
        for (size_t q = j; q <= e; q++) {
            uint64_t off = refs[q].page - first;
            if (off < (uint64_t)r / 8)
                t->entries[refs[q].slot] = s->pmbuf[off];
        }
        j = e + 1;
    }
    free(refs);
    if (!err && shortread)
        err = gone(s, t);
    return err;
}

/* Sample k's pages (from prefetch()): PFNs, huge pages, the bitmap words they need. 0 or an
 * errno. */
static int resolve(struct shared *s, struct target *t, struct set *st, uint64_t k,
                   uint64_t nr_samples)
{
    st->large = 0;
    if (k >= t->pf_first + t->pf_count) {
        uint64_t nr = nr_samples - k < t->pf_cap ? nr_samples - k : t->pf_cap;
        int err = prefetch(s, t, k, nr, t->given ? t->given + k * (uint64_t)t->n : NULL);
        if (err)
            return err;
    }
    for (Py_ssize_t i = 0; i < t->n; i++) {
        size_t slot = (size_t)(k - t->pf_first) * (size_t)t->n + (size_t)i;
        uint64_t a = t->addrs[slot], e = t->entries[slot];
        st->addr[i] = a;
        st->folio[i] = 1;
        ssize_t r;
        if (!(e & PM_PRESENT)) {
            st->pfn[i] = PFN_ABSENT;
            continue;
        }
        uint64_t p = e & PFN_MASK;
        if (p == 0 || (int64_t)p == s->zero_pfn) {
            st->pfn[i] = PFN_UNTRACKABLE; /* zero page (or PFNs hidden: no CAP_SYS_ADMIN) */
            continue;
        }
        if (t->nthp && s->kfd >= 0 && in_thp(t, a)) {
            uint64_t fl = 0;
            r = rd(s->plan, s->kfd, &fl, 8, p << 3);
            if (r < 0)
                return (int)-r;
            if (r == 8 && (fl & HUGE_PART)) {
                p -= (a >> page_shift) % pmd_pages;
                st->folio[i] = pmd_pages;
                st->large = 1;
            }
        }
        st->pfn[i] = (int64_t)p;
    }
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0; i < t->n; i++) {
        if (st->pfn[i] >= 0) {
            t->refs[m].word = (uint64_t)st->pfn[i] >> 6;
            t->refs[m].region = (uint32_t)i;
            m++;
        }
    }
    qsort(t->refs, (size_t)m, sizeof(*t->refs), cmp_ref);
    st->nu = 0;
    st->nlate = 0;
    for (Py_ssize_t j = 0; j < m; j++) {
        if (j == 0 || t->refs[j].word != t->refs[j - 1].word) {
            st->uwords[st->nu] = t->refs[j].word;
            st->ubits[st->nu] = 0;
            st->ularge[st->nu] = 0;
            st->ulate[st->nu] = 0;
            st->nu++;
        }
        uint32_t i = t->refs[j].region;
        st->ubits[st->nu - 1] |= UINT64_C(1) << ((uint64_t)st->pfn[i] & 63);
        st->ularge[st->nu - 1] |= st->folio[i] > 1;
        st->widx[i] = (uint32_t)(st->nu - 1);
    }
    return 0;
}

/* Which of st's words must wait for the pending sample's check: the same word, or the same
 * PMD block of PFNs where either side is a huge page. Returns how many. */
static Py_ssize_t find_late(const struct pending *pd, struct set *st)
{
    st->nlate = 0;
    for (Py_ssize_t j = 0; j < st->nu; j++) {
        uint64_t w = st->uwords[j], b = w >> 3; /* 64 PFNs a word, 512 a PMD */
        st->ulate[j] = has_u64(pd->words, pd->nw, w) || has_u64(pd->lblocks, pd->nl, b) ||
                       (st->ularge[j] && has_u64(pd->blocks, pd->nb, b));
        st->nlate += st->ulate[j];
    }
    return st->nlate;
}

/* Mark st's pages idle: the words whose ulate equals late, one pwrite per group of words at
 * most MAX_GAP_WORDS apart (the zero words in between change nothing). 0 or an errno. */
static int mark(struct shared *s, struct set *st, int late)
{
    Py_ssize_t j = 0;
    while (j < st->nu && st->ulate[j] != late)
        j++;
    while (j < st->nu) {
        uint64_t first = st->uwords[j];
        Py_ssize_t e = j, q = j + 1;
        for (; q < st->nu; q++) {
            if (st->ulate[q] != late)
                continue;
            if (st->uwords[q] - st->uwords[e] > MAX_GAP_WORDS ||
                st->uwords[q] - first >= max_io_words)
                break;
            e = q;
        }
        size_t len = (size_t)(st->uwords[e] - first + 1);
        memset(s->buf, 0, len * 8);
        for (Py_ssize_t r = j; r <= e; r++)
            if (st->ulate[r] == late)
                s->buf[st->uwords[r] - first] = st->ubits[r];
        int err = wr(s->plan, s->bfd, s->buf, len * 8, first << 3);
        if (err)
            return -err;
        j = q;
        while (j < st->nu && st->ulate[j] != late)
            j++;
    }
    return 0;
}

/* resolve + mark everything: one sample's prepare step (floor() replays it) */
static int prepare(struct shared *s, struct target *t, struct set *st, uint64_t k,
                   uint64_t nr_samples)
{
    int err = resolve(s, t, st, k, nr_samples);
    return err ? err : mark(s, st, 0);
}

/* Read back the idle bits of st's words whose ulate equals late: one read per run of
 * consecutive such words, all in one io_uring submission where there is a ring. */
static int read_words(struct shared *s, struct target *t, struct set *st, int late)
{
    size_t nr = 0;
    for (Py_ssize_t j = 0; j < st->nu;) {
        if (st->ulate[j] != late) {
            j++;
            continue;
        }
        Py_ssize_t e = j;
        while (e + 1 < st->nu && st->ulate[e + 1] == late &&
               st->uwords[e + 1] == st->uwords[e] + 1 && (uint64_t)(e + 1 - j) < max_io_words)
            e++;
        t->rbufs[nr] = st->uvals + j;
        t->rlens[nr] = (uint32_t)(e - j + 1) * 8;
        t->roffs[nr] = st->uwords[j] << 3;
        t->rfirst[nr] = j;
        t->rlast[nr] = e;
        nr++;
        j = e + 1;
    }
    if (s->ring && nr) {
        record_ring(s->plan, s->bfd, nr, t->rlens, t->roffs);
        int err = ring_reads(s->ring, s->bfd, nr, t->rbufs, t->rlens, t->roffs, t->rres);
        if (err)
            return err;
    } else {
        for (size_t q = 0; q < nr; q++) {
            ssize_t r = rd(s->plan, s->bfd, t->rbufs[q], t->rlens[q], t->roffs[q]);
            t->rres[q] = (int32_t)r; /* bytes, or -errno */
        }
    }
    for (size_t q = 0; q < nr; q++) {
        if (t->rres[q] < 0)
            return -t->rres[q];
        for (Py_ssize_t w = t->rfirst[q] + t->rres[q] / 8; w <= t->rlast[q]; w++)
            st->uvals[w] = ~UINT64_C(0); /* beyond the max PFN: reads as still idle */
    }
    return 0;
}

/* The sample's answers from the bits read back (and pagemap, for pages absent at prepare) into
 * row. Returns 0 or an errno. */
static int evaluate(struct shared *s, struct target *t, struct set *st, uint8_t *row)
{
    int shortread = 0;
    for (Py_ssize_t i = 0; i < t->n; i++) {
        int64_t p = st->pfn[i];
        if (p == PFN_UNTRACKABLE) {
            row[i] = 0;
        } else if (p == PFN_ABSENT) {
            /* not mapped at prepare: accessed iff a real page was faulted in since */
            uint64_t e = 0;
            ssize_t r = rd(s->plan, t->fd, &e, 8, (st->addr[i] >> page_shift) << 3);
            if (r < 0)
                return (int)-r;
            if (r < 8)
                shortread = 1;
            uint64_t q = e & PFN_MASK;
            row[i] = r == 8 && (e & PM_PRESENT) && q != 0 && (int64_t)q != s->zero_pfn;
        } else {
            row[i] = !((st->uvals[st->widx[i]] >> ((uint64_t)p & 63)) & 1);
        }
    }
    if (shortread) {
        int err = gone(s, t);
        if (err)
            return err;
    }
    if (st->large) {
        /* the kernel's same-folio cache (damon_va_check_accesses()) */
        int have = 0;
        uint64_t base = 0, size = 0;
        uint8_t last = 0;
        for (Py_ssize_t i = 0; i < t->n; i++) {
            uint64_t a = st->addr[i];
            if (have && a - a % size == base) {
                row[i] = last;
                continue;
            }
            size = st->folio[i] << page_shift;
            base = a - a % size;
            last = row[i];
            have = 1;
        }
    }
    return 0;
}

/* Read the idle bits back into row (floor's pass: no late words). 0 or an errno. */
static int check(struct shared *s, struct target *t, struct set *st, uint8_t *row)
{
    int err = read_words(s, t, st, 0);
    if (!err && st->nlate)
        err = read_words(s, t, st, 1);
    return err ? err : evaluate(s, t, st, row);
}

static int set_alloc(struct set *st, size_t n)
{
    st->addr = malloc(n * 8);
    st->pfn = malloc(n * 8);
    st->folio = malloc(n * 8);
    st->uwords = malloc(n * 8);
    st->ubits = malloc(n * 8);
    st->uvals = malloc(n * 8);
    st->ularge = malloc(n);
    st->ulate = malloc(n);
    st->widx = malloc(n * 4);
    return st->addr && st->pfn && st->folio && st->uwords && st->ubits && st->uvals &&
           st->ularge && st->ulate && st->widx;
}

static void set_free(struct set *st)
{
    free(st->addr);
    free(st->pfn);
    free(st->folio);
    free(st->uwords);
    free(st->ubits);
    free(st->uvals);
    free(st->ularge);
    free(st->ulate);
    free(st->widx);
}

static int target_alloc(struct target *t, uint64_t rows)
{
    size_t n = t->n ? (size_t)t->n : 1;
    t->pf_cap = rows ? rows : 1;
    size_t all = n * (size_t)t->pf_cap;
    t->addrs = malloc(all * 8);
    t->entries = malloc(all * 8);
    int ok = set_alloc(&t->sets[0], n) & set_alloc(&t->sets[1], n);
    t->refs = malloc(n * sizeof(*t->refs));
    t->rbufs = malloc(n * sizeof(void *));
    t->rlens = malloc(n * 4);
    t->roffs = malloc(n * 8);
    t->rres = malloc(n * 4);
    t->rfirst = malloc(n * sizeof(Py_ssize_t));
    t->rlast = malloc(n * sizeof(Py_ssize_t));
    return ok && t->addrs && t->entries && t->refs && t->rbufs && t->rlens && t->roffs && t->rres && t->rfirst &&
           t->rlast;
}

static void target_free(struct target *t)
{
    free(t->starts);
    free(t->ends);
    free(t->thp_s);
    free(t->thp_e);
    set_free(&t->sets[0]);
    set_free(&t->sets[1]);
    free(t->addrs);
    free(t->entries);
    free(t->refs);
    free(t->rbufs);
    free(t->rlens);
    free(t->roffs);
    free(t->rres);
    free(t->rfirst);
    free(t->rlast);
}

/* ---- the pipelined batch ---------------------------------------------------------------- */

/* Set `which` of every live target becomes the pending one (marked, not yet checked). */
static void pending_build(struct shared *s, struct target *ts, Py_ssize_t nt, int which)
{
    struct pending *pd = &s->pend;
    pd->nw = pd->nb = pd->nl = 0;
    for (Py_ssize_t j = 0; j < nt; j++) {
        struct set *st = &ts[j].sets[which];
        if (ts[j].err)
            continue;
        for (Py_ssize_t q = 0; q < st->nu; q++) {
            pd->words[pd->nw++] = st->uwords[q];
            pd->blocks[pd->nb++] = st->uwords[q] >> 3;
            if (st->ularge[q])
                pd->lblocks[pd->nl++] = st->uwords[q] >> 3;
        }
    }
    pd->nw = sort_unique(pd->words, pd->nw);
    pd->nb = sort_unique(pd->blocks, pd->nb);
    pd->nl = sort_unique(pd->lblocks, pd->nl);
}

static Py_ssize_t resolve_all(struct shared *s, struct target *ts, Py_ssize_t nt, int which,
                              uint64_t k, uint64_t nr_samples)
{
    Py_ssize_t alive = 0;
    for (Py_ssize_t j = 0; j < nt; j++) {
        if (ts[j].err)
            continue;
        ts[j].err = resolve(s, &ts[j], &ts[j].sets[which], k, nr_samples);
        alive += !ts[j].err;
    }
    return alive;
}

static void mark_all(struct shared *s, struct target *ts, Py_ssize_t nt, int which, int late)
{
    for (Py_ssize_t j = 0; j < nt; j++) {
        struct set *st = &ts[j].sets[which];
        if (!ts[j].err && (!late || st->nlate))
            ts[j].err = mark(s, st, late);
    }
}

static void sleep_until(int64_t when)
{
    struct timespec ts = {when / 1000000000, when % 1000000000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* ---- argument plumbing ------------------------------------------------------------------ */

static int copy_u64(PyObject *obj, uint64_t **out, Py_ssize_t *n)
{
    Py_buffer b;
    if (PyObject_GetBuffer(obj, &b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    if (b.itemsize != 8 || b.len % 8) {
        PyBuffer_Release(&b);
        PyErr_SetString(PyExc_TypeError, "expected a contiguous buffer of 64-bit items");
        return -1;
    }
    *n = b.len / 8;
    *out = malloc(b.len ? (size_t)b.len : 8);
    if (!*out) {
        PyBuffer_Release(&b);
        PyErr_NoMemory();
        return -1;
    }
    memcpy(*out, b.buf, (size_t)b.len);
    PyBuffer_Release(&b);
    return 0;
}

static int write_buffer(PyObject *obj, Py_buffer *b, Py_ssize_t want, const char *what)
{
    if (PyObject_GetBuffer(obj, b, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (b->len != want) {
        PyBuffer_Release(b);
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, expected %zd", what, b->len, want);
        return -1;
    }
    return 0;
}

static const char sample_doc[] =
    "sample(targets, hits, lateness, stop, bitmap_fd, kpageflags_fd, zero_pfn, nr_samples,\n"
    "       interval_ns, first_deadline_ns, seed, uring) -> (samples_done, overruns, errors,\n"
    "       used_uring, uring_errno)\n\n"
    "uring: 0 the check reads with pread, 1 with io_uring where the kernel allows it, 2 only\n"
    "with io_uring (else OSError); uring_errno says why io_uring was not used (0: it was).\n"
    "targets: sequence of (pagemap_fd, starts, ends, thp_starts, thp_ends) with uint64 buffers;\n"
    "hits: per target a writable zeroed uint8 buffer of nr_samples * nr_regions bytes;\n"
    "lateness: writable int64 buffer of nr_samples items; stop: bytearray or None.\n"
    "Checked arguments only: damond.platform.idle_sampler.sample_batch validates them.";

static PyObject *py_sample(PyObject *self, PyObject *args)
{
    PyObject *targets, *hits_list, *lat_obj, *stop_obj;
    int bfd, kfd;
    long long zero_pfn, first_deadline;
    unsigned long long nr_samples, interval, seed;
    int uring_mode;
    if (!PyArg_ParseTuple(args, "OOOOiiLKKLKi", &targets, &hits_list, &lat_obj, &stop_obj, &bfd,
                          &kfd, &zero_pfn, &nr_samples, &interval, &first_deadline, &seed,
                          &uring_mode))
        return NULL;
    PyObject *tseq = PySequence_Fast(targets, "targets must be a sequence");
    if (!tseq)
        return NULL;
    PyObject *hseq = PySequence_Fast(hits_list, "hits must be a sequence");
    if (!hseq) {
        Py_DECREF(tseq);
        return NULL;
    }
    Py_ssize_t nt = PySequence_Fast_GET_SIZE(tseq);
    PyObject *result = NULL;
    struct target *ts = calloc(nt ? (size_t)nt : 1, sizeof(*ts));
    Py_buffer *hb = calloc(nt ? (size_t)nt : 1, sizeof(*hb));
    Py_buffer lat = {0}, stopb = {0};
    int have_lat = 0, have_stop = 0;
    Py_ssize_t nhb = 0;
    struct shared s = {.bfd = bfd, .kfd = kfd, .zero_pfn = zero_pfn, .seed = seed};
    struct ring ring = {.fd = -1};
    int uring_errno = EOPNOTSUPP;
    s.buf = malloc(max_io_words * 8);
    s.pmbuf = malloc(PM_SPAN_PAGES * 8);
    if (!ts || !hb || !s.buf || !s.pmbuf) {
        PyErr_NoMemory();
        goto out;
    }
    if (PySequence_Fast_GET_SIZE(hseq) != nt) {
        PyErr_SetString(PyExc_ValueError, "one hits buffer per target");
        goto out;
    }
    for (Py_ssize_t j = 0; j < nt; j++) {
        struct target *t = &ts[j];
        PyObject *tup = PySequence_Fast_GET_ITEM(tseq, j);
        PyObject *st, *en, *hs, *he;
        Py_ssize_t ne, nhe;
        if (!PyArg_ParseTuple(tup, "iOOOO", &t->fd, &st, &en, &hs, &he))
            goto out;
        if (copy_u64(st, &t->starts, &t->n) < 0 || copy_u64(en, &t->ends, &ne) < 0 ||
            copy_u64(hs, &t->thp_s, &t->nthp) < 0 || copy_u64(he, &t->thp_e, &nhe) < 0)
            goto out;
        if (ne != t->n || nhe != t->nthp) {
            PyErr_SetString(PyExc_ValueError, "starts and ends differ in length");
            goto out;
        }
        for (Py_ssize_t i = 0; i < t->n; i++) {
            if (t->ends[i] <= t->starts[i]) {
                PyErr_SetString(PyExc_ValueError, "a region ends at or before its start");
                goto out;
            }
        }
        if (t->n > UINT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "too many regions");
            goto out;
        }
        t->ctr0 = s.total;
        s.total += (uint64_t)t->n;
        if (!target_alloc(t, nr_samples < PM_AHEAD ? nr_samples : PM_AHEAD)) {
            PyErr_NoMemory();
            goto out;
        }
        if (write_buffer(PySequence_Fast_GET_ITEM(hseq, j), &hb[j],
                         (Py_ssize_t)nr_samples * t->n, "hits") < 0)
            goto out;
        nhb++;
        t->hits = hb[j].buf;
    }
    if (write_buffer(lat_obj, &lat, (Py_ssize_t)nr_samples * 8, "lateness") < 0)
        goto out;
    have_lat = 1;
    volatile const char *stop = NULL;
    if (stop_obj != Py_None) {
        if (PyObject_GetBuffer(stop_obj, &stopb, PyBUF_SIMPLE) < 0)
            goto out;
        have_stop = 1;
        if (stopb.len < 1) {
            PyErr_SetString(PyExc_ValueError, "stop must hold at least one byte");
            goto out;
        }
        stop = stopb.buf;
    }
    if (uring_mode) {
        uring_errno = ring_open(&ring, 256);
        if (!uring_errno) {
            s.ring = &ring;
        } else if (uring_mode == 2) {
            errno = uring_errno;
            PyErr_SetFromErrno(PyExc_OSError);
            goto out;
        }
    }
    int64_t *lateness = lat.buf;
    uint64_t done = 0, overruns = 0;

    size_t npend = s.total ? (size_t)s.total : 1;
    s.pend.words = malloc(npend * 8);
    s.pend.blocks = malloc(npend * 8);
    s.pend.lblocks = malloc(npend * 8);
    if (!s.pend.words || !s.pend.blocks || !s.pend.lblocks) {
        PyErr_NoMemory();
        goto out;
    }

    /* The pipeline: sample k+1's pages are marked idle just before sample k's are checked, so
     * each sample's window (mark to check) spans the sampling interval while the work of the
     * next one runs inside it, as the kernel's windows hold its kdamond's own work. A sample
     * costs one interval, not an interval plus the work, while the work fits in an interval.
     * A sample is marked at one tick of the schedule and checked at the next, so its window is
     * one interval give or take the wake-ups' jitter (the kernel's kdamond sleeps one interval
     * between prepare and check, with its own jitter); the first sample of a batch is checked
     * a whole interval after its marks. A mark of sample k+1 that lands on a word or huge page
     * sample k still has to read waits until after that check (late); late words are read
     * after the others at the next tick, so they too get about one interval. No second sleep
     * per tick: it would add a wake-up's latency (ms under emulation) to every sample. */
    Py_BEGIN_ALLOW_THREADS
    int64_t deadline = first_deadline;
    int64_t marked0 = 0;
    int late[2] = {0, 0};
    Py_ssize_t alive = 0;
    if (nr_samples && !(stop && stop[0])) {
        alive = resolve_all(&s, ts, nt, 0, 0, nr_samples);
        mark_all(&s, ts, nt, 0, 0);
        marked0 = mono_ns();
        if (nr_samples > 1)
            alive = resolve_all(&s, ts, nt, 1, 1, nr_samples);
        int64_t now = mono_ns();
        if (now > deadline)
            overruns++;
        if (deadline < marked0 + (int64_t)interval)
            deadline = marked0 + (int64_t)interval;
    }
    for (uint64_t k = 0; k < nr_samples; k++) {
        if ((stop && stop[0]) || (nt && !alive))
            break;
        int a = (int)(k & 1), b = a ^ 1;
        int next = k + 1 < nr_samples;
        int64_t now = mono_ns();
        if (k && now > deadline) { /* the work overran the interval: restart from now */
            overruns++;
            deadline = now;
        }
        sleep_until(deadline);
        lateness[k] = mono_ns() - deadline;
        if (next) {
            pending_build(&s, ts, nt, a);
            late[b] = 0;
            for (Py_ssize_t j = 0; j < nt; j++)
                if (!ts[j].err && find_late(&s.pend, &ts[j].sets[b]))
                    late[b] = 1;
            mark_all(&s, ts, nt, b, 0);
        }
        /* the words marked on time first, then those marked late (after the last check), so
         * that both kinds are checked about one interval after their marks */
        for (int pass = 0; pass < 2; pass++) {
            for (Py_ssize_t j = 0; j < nt; j++) {
                struct target *t = &ts[j];
                if (!t->err && (!pass || t->sets[a].nlate))
                    t->err = read_words(&s, t, &t->sets[a], pass);
            }
        }
        alive = 0;
        for (Py_ssize_t j = 0; j < nt; j++) {
            struct target *t = &ts[j];
            uint8_t *row = t->hits + k * (uint64_t)t->n;
            if (!t->err)
                t->err = evaluate(&s, t, &t->sets[a], row);
            if (t->err) {
                memset(row, 0, (size_t)t->n);
                continue;
            }
            alive++;
        }
        done = k + 1;
        if (next && late[b])
            mark_all(&s, ts, nt, b, 1);
        if (k + 2 < nr_samples)
            alive = resolve_all(&s, ts, nt, a, k + 2, nr_samples);
        deadline += (int64_t)interval;
    }
    Py_END_ALLOW_THREADS

    PyObject *errs = PyTuple_New(nt);
    if (!errs)
        goto out;
    for (Py_ssize_t j = 0; j < nt; j++)
        PyTuple_SET_ITEM(errs, j, PyLong_FromLong(ts[j].err));
    result = Py_BuildValue("KKNOi", (unsigned long long)done, (unsigned long long)overruns, errs,
                           s.ring ? Py_True : Py_False, s.ring ? 0 : uring_errno);
out:
    ring_close(&ring);
    for (Py_ssize_t j = 0; j < nhb; j++)
        PyBuffer_Release(&hb[j]);
    if (have_lat)
        PyBuffer_Release(&lat);
    if (have_stop)
        PyBuffer_Release(&stopb);
    if (ts)
        for (Py_ssize_t j = 0; j < nt; j++)
            target_free(&ts[j]);
    free(ts);
    free(hb);
    free(s.buf);
    free(s.pmbuf);
    free(s.pend.words);
    free(s.pend.blocks);
    free(s.pend.lblocks);
    Py_DECREF(tseq);
    Py_DECREF(hseq);
    return result;
}

static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char floor_doc[] =
    "floor(pagemap_fd, bitmap_fd, zero_pfn, addrs, nr_samples, uring) -> (cpu_ns, wall_ns,\n"
    "       calls)\n\n"
    "uring: the check's reads as one io_uring submission (as sample() does with uring).\n"
    "One untimed pass of the sampler's prepare and check over addrs (uint64, nr_samples rows\n"
    "of regions, no THP areas, no sleeping) records its system calls; they are then replayed\n"
    "alone, and the replay's whole-process CPU time and wall time are returned: the floor.";

static PyObject *py_floor(PyObject *self, PyObject *args)
{
    int pfd, bfd;
    long long zero_pfn;
    Py_ssize_t nr_samples;
    PyObject *addrs_obj;
    int uring;
    if (!PyArg_ParseTuple(args, "iiLOnp", &pfd, &bfd, &zero_pfn, &addrs_obj, &nr_samples,
                          &uring))
        return NULL;
    uint64_t *addrs;
    Py_ssize_t na;
    if (copy_u64(addrs_obj, &addrs, &na) < 0)
        return NULL;
    if (nr_samples <= 0 || na % nr_samples) {
        free(addrs);
        PyErr_SetString(PyExc_ValueError, "addrs must hold nr_samples rows");
        return NULL;
    }
    struct plan plan = {0};
    struct target t = {.fd = pfd, .n = na / nr_samples};
    struct shared s = {.bfd = bfd, .kfd = -1, .zero_pfn = zero_pfn, .plan = &plan};
    struct ring ring = {.fd = -1};
    s.buf = malloc(max_io_words * 8);
    s.pmbuf = malloc(PM_SPAN_PAGES * 8);
    uint8_t *row = malloc(t.n ? (size_t)t.n : 1);
    /* the replay reads into it: bitmap runs (max_io_words) and pagemap spans (PM_SPAN_PAGES) */
    uint64_t *scratch = malloc((max_io_words > PM_SPAN_PAGES ? max_io_words : PM_SPAN_PAGES) * 8);
    size_t nmax = (size_t)(t.n ? t.n : 1);
    void **bufs = malloc(nmax * sizeof(void *));
    uint32_t *lens = malloc(nmax * 4);
    uint64_t *offs = malloc(nmax * 8);
    int32_t *res = malloc(nmax * 4);
    PyObject *result = NULL;
    if (!s.buf || !row || !scratch || !bufs || !lens || !offs || !res || !s.pmbuf ||
        !target_alloc(&t, nr_samples < PM_AHEAD ? (uint64_t)nr_samples : PM_AHEAD)) {
        PyErr_NoMemory();
        goto out;
    }
    if (uring) {
        int e = ring_open(&ring, 256);
        if (e) {
            errno = e;
            PyErr_SetFromErrno(PyExc_OSError);
            goto out;
        }
        s.ring = &ring;
    }
    for (size_t i = 0; i < nmax; i++)
        bufs[i] = scratch; /* the replay's data is thrown away */
    int err = 0;
    int64_t c0 = 0, w0 = 0, c1 = 0, w1 = 0;
    Py_BEGIN_ALLOW_THREADS
    t.given = addrs; /* read ahead PM_AHEAD samples at a time, as sample() does */
    for (Py_ssize_t k = 0; k < nr_samples && !err; k++) {
        err = prepare(&s, &t, &t.sets[0], (uint64_t)k, (uint64_t)nr_samples);
        if (!err)
            err = check(&s, &t, &t.sets[0], row);
    }
    if (!err && !plan.oom) {
        w0 = mono_ns();
        c0 = cpu_ns();
        for (size_t i = 0; i < plan.n; i++) {
            struct call *c = &plan.calls[i];
            if (c->write == 2) {
                for (size_t q = 0; q < c->len; q++) {
                    offs[q] = c->data[2 * q];
                    lens[q] = (uint32_t)c->data[2 * q + 1];
                }
                (void)ring_reads(&ring, c->fd, c->len, bufs, lens, offs, res);
            } else if (c->write)
                (void)!pwrite(c->fd, c->data, c->len, (off_t)c->off);
            else
                (void)!pread(c->fd, scratch, c->len, (off_t)c->off);
        }
        c1 = cpu_ns();
        w1 = mono_ns();
    }
    Py_END_ALLOW_THREADS
    if (plan.oom) {
        PyErr_NoMemory();
        goto out;
    }
    if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto out;
    }
    result = Py_BuildValue("LLn", (long long)(c1 - c0), (long long)(w1 - w0),
                           (Py_ssize_t)plan.n);
out:
    plan_free(&plan);
    ring_close(&ring);
    free(bufs);
    free(lens);
    free(offs);
    free(res);
    t.starts = t.ends = t.thp_s = t.thp_e = NULL;
    target_free(&t);
    free(s.buf);
    free(s.pmbuf);
    free(row);
    free(scratch);
    free(addrs);
    return result;
}

static PyMethodDef methods[] = {
    {"sample", py_sample, METH_VARARGS, sample_doc},
    {"floor", py_floor, METH_VARARGS, floor_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_idle_sampler",
    "page_idle sampling batches without the GIL (see damond.platform.idle_sampler).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__idle_sampler(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    if (ps > 0) {
        page_shift = 0;
        while ((1L << page_shift) < ps)
            page_shift++;
        pmd_pages = (uint64_t)ps / 8;
        max_io_words = (uint64_t)ps / 8;
    }
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (PyModule_AddIntConstant(m, "MAX_GAP_WORDS", MAX_GAP_WORDS) < 0 ||
        PyModule_AddIntConstant(m, "MAX_IO_WORDS", (long)max_io_words) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
