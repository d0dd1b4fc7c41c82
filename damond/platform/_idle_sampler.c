/*
 * damond.platform._idle_sampler: a whole batch of page_idle samples per call, without the GIL.
 *
 * Why native: under emulation Python's fixed cost per sample (~2 ms) and per region dwarfs the
 * system calls themselves (issue 9). This module copies its inputs into C buffers, releases the
 * GIL and runs every sample of an aggregation interval in one loop: pick one address per region,
 * read its PFN from pagemap (one pread per sampled page), mark the pages idle (one pwrite per
 * group of bitmap words at most MAX_GAP_WORDS apart: the zero words in between change nothing),
 * sleep until the sample's deadline (CLOCK_MONOTONIC, absolute), then read the idle bits back
 * (one pread per run of consecutive needed words: never a wide span, since every idle-flagged
 * page in a word read costs the kernel a reverse-map walk).
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

struct target {
    int fd;
    Py_ssize_t n, nthp;
    uint64_t *starts, *ends, *thp_s, *thp_e;
    uint64_t ctr0;  /* PRNG counter of region 0 within a sample */
    uint8_t *hits;  /* output rows (nr_samples x n), zeroed by the caller */
    int err;
    /* per-sample scratch */
    uint64_t *addr;
    int64_t *pfn;
    uint64_t *folio;
    int large;
    struct wordref *refs;
    uint64_t *uwords, *ubits, *uvals;
    uint32_t *widx;
    Py_ssize_t nu;
    /* the check's reads, one per run of words */
    void **rbufs;
    uint32_t *rlens;
    uint64_t *roffs;
    int32_t *rres;
    Py_ssize_t *rfirst, *rlast;
};

struct shared {
    int bfd, kfd;
    int64_t zero_pfn;
    uint64_t seed, total;
    uint64_t *buf; /* max_io_words */
    struct plan *plan;
    struct ring *ring; /* NULL: the check reads with pread */
};

static int cmp_ref(const void *a, const void *b)
{
    uint64_t x = ((const struct wordref *)a)->word, y = ((const struct wordref *)b)->word;
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

/* Pick addresses, read PFNs, mark them idle. Returns 0 or an errno. */
static int prepare(struct shared *s, struct target *t, uint64_t k, const uint64_t *given)
{
    int shortread = 0;
    t->large = 0;
    for (Py_ssize_t i = 0; i < t->n; i++) {
        uint64_t a = given ? given[i]
                           : pick(s->seed, k * s->total + t->ctr0 + (uint64_t)i, t->starts[i],
                                  t->ends[i]);
        uint64_t e = 0;
        t->addr[i] = a;
        t->folio[i] = 1;
        ssize_t r = rd(s->plan, t->fd, &e, 8, (a >> page_shift) << 3);
        if (r < 0)
            return (int)-r;
        if (r < 8) {
            shortread = 1;
            t->pfn[i] = PFN_ABSENT;
            continue;
        }
        if (!(e & PM_PRESENT)) {
            t->pfn[i] = PFN_ABSENT;
            continue;
        }
        uint64_t p = e & PFN_MASK;
        if (p == 0 || (int64_t)p == s->zero_pfn) {
            t->pfn[i] = PFN_UNTRACKABLE; /* zero page (or PFNs hidden: no CAP_SYS_ADMIN) */
            continue;
        }
        if (t->nthp && s->kfd >= 0 && in_thp(t, a)) {
            uint64_t fl = 0;
            r = rd(s->plan, s->kfd, &fl, 8, p << 3);
            if (r < 0)
                return (int)-r;
            if (r == 8 && (fl & HUGE_PART)) {
                p -= (a >> page_shift) % pmd_pages;
                t->folio[i] = pmd_pages;
                t->large = 1;
            }
        }
        t->pfn[i] = (int64_t)p;
    }
    if (shortread) {
        int err = gone(s, t);
        if (err)
            return err;
    }
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0; i < t->n; i++) {
        if (t->pfn[i] >= 0) {
            t->refs[m].word = (uint64_t)t->pfn[i] >> 6;
            t->refs[m].region = (uint32_t)i;
            m++;
        }
    }
    qsort(t->refs, (size_t)m, sizeof(*t->refs), cmp_ref);
    t->nu = 0;
    for (Py_ssize_t j = 0; j < m; j++) {
        if (j == 0 || t->refs[j].word != t->refs[j - 1].word) {
            t->uwords[t->nu] = t->refs[j].word;
            t->ubits[t->nu] = 0;
            t->nu++;
        }
        uint32_t i = t->refs[j].region;
        t->ubits[t->nu - 1] |= UINT64_C(1) << ((uint64_t)t->pfn[i] & 63);
        t->widx[i] = (uint32_t)(t->nu - 1);
    }
    for (Py_ssize_t j = 0; j < t->nu;) {
        uint64_t first = t->uwords[j];
        Py_ssize_t e = j;
        while (e + 1 < t->nu && t->uwords[e + 1] - t->uwords[e] <= MAX_GAP_WORDS &&
               t->uwords[e + 1] - first < max_io_words)
            e++;
        size_t len = (size_t)(t->uwords[e] - first + 1);
        memset(s->buf, 0, len * 8);
        for (Py_ssize_t q = j; q <= e; q++)
            s->buf[t->uwords[q] - first] = t->ubits[q];
        int err = wr(s->plan, s->bfd, s->buf, len * 8, first << 3);
        if (err)
            return -err;
        j = e + 1;
    }
    return 0;
}

/* Read the idle bits back into row. Returns 0 or an errno. */
static int check(struct shared *s, struct target *t, uint8_t *row)
{
    size_t nr = 0;
    for (Py_ssize_t j = 0; j < t->nu;) {
        Py_ssize_t e = j;
        while (e + 1 < t->nu && t->uwords[e + 1] == t->uwords[e] + 1 &&
               (uint64_t)(e + 1 - j) < max_io_words)
            e++;
        t->rbufs[nr] = t->uvals + j;
        t->rlens[nr] = (uint32_t)(e - j + 1) * 8;
        t->roffs[nr] = t->uwords[j] << 3;
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
            t->uvals[w] = ~UINT64_C(0); /* beyond the max PFN: reads as still idle */
    }
    int shortread = 0;
    for (Py_ssize_t i = 0; i < t->n; i++) {
        int64_t p = t->pfn[i];
        if (p == PFN_UNTRACKABLE) {
            row[i] = 0;
        } else if (p == PFN_ABSENT) {
            /* not mapped at prepare: accessed iff a real page was faulted in since */
            uint64_t e = 0;
            ssize_t r = rd(s->plan, t->fd, &e, 8, (t->addr[i] >> page_shift) << 3);
            if (r < 0)
                return (int)-r;
            if (r < 8)
                shortread = 1;
            uint64_t q = e & PFN_MASK;
            row[i] = r == 8 && (e & PM_PRESENT) && q != 0 && (int64_t)q != s->zero_pfn;
        } else {
            row[i] = !((t->uvals[t->widx[i]] >> ((uint64_t)p & 63)) & 1);
        }
    }
    if (shortread) {
        int err = gone(s, t);
        if (err)
            return err;
    }
    if (t->large) {
        /* the kernel's same-folio cache (damon_va_check_accesses()) */
        int have = 0;
        uint64_t base = 0, size = 0;
        uint8_t last = 0;
        for (Py_ssize_t i = 0; i < t->n; i++) {
            uint64_t a = t->addr[i];
            if (have && a - a % size == base) {
                row[i] = last;
                continue;
            }
            size = t->folio[i] << page_shift;
            base = a - a % size;
            last = row[i];
            have = 1;
        }
    }
    return 0;
}

static int target_alloc(struct target *t)
{
    size_t n = t->n ? (size_t)t->n : 1;
    t->addr = malloc(n * 8);
    t->pfn = malloc(n * 8);
    t->folio = malloc(n * 8);
    t->refs = malloc(n * sizeof(*t->refs));
    t->uwords = malloc(n * 8);
    t->ubits = malloc(n * 8);
    t->uvals = malloc(n * 8);
    t->widx = malloc(n * 4);
    t->rbufs = malloc(n * sizeof(void *));
    t->rlens = malloc(n * 4);
    t->roffs = malloc(n * 8);
    t->rres = malloc(n * 4);
    t->rfirst = malloc(n * sizeof(Py_ssize_t));
    t->rlast = malloc(n * sizeof(Py_ssize_t));
    return t->addr && t->pfn && t->folio && t->refs && t->uwords && t->ubits && t->uvals &&
           t->widx && t->rbufs && t->rlens && t->roffs && t->rres && t->rfirst && t->rlast;
}

static void target_free(struct target *t)
{
    free(t->starts);
    free(t->ends);
    free(t->thp_s);
    free(t->thp_e);
    free(t->addr);
    free(t->pfn);
    free(t->folio);
    free(t->refs);
    free(t->uwords);
    free(t->ubits);
    free(t->uvals);
    free(t->widx);
    free(t->rbufs);
    free(t->rlens);
    free(t->roffs);
    free(t->rres);
    free(t->rfirst);
    free(t->rlast);
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
    if (!ts || !hb || !s.buf) {
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
        if (!target_alloc(t)) {
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

    Py_BEGIN_ALLOW_THREADS
    int64_t deadline = first_deadline;
    for (uint64_t k = 0; k < nr_samples; k++) {
        if (stop && stop[0])
            break;
        /* the window: pages marked idle from here on are checked no sooner than one interval
         * later, as the kernel's kdamond sleeps a whole interval between its prepare and
         * check steps. A schedule tighter than that (the last check and this prepare ate
         * into the interval) is moved; the kernel's own cycle is interval + its work. */
        int64_t earliest = mono_ns() + (int64_t)interval;
        Py_ssize_t alive = 0;
        for (Py_ssize_t j = 0; j < nt; j++) {
            struct target *t = &ts[j];
            if (t->err)
                continue;
            t->err = prepare(&s, t, k, NULL);
            alive += !t->err;
        }
        if (nt && !alive)
            break;
        int64_t now = mono_ns();
        if (now > deadline)
            overruns++;
        if (deadline < earliest)
            deadline = earliest;
        struct timespec ts_dl = {deadline / 1000000000, deadline % 1000000000};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts_dl, NULL) == EINTR)
            ;
        lateness[k] = mono_ns() - deadline;
        for (Py_ssize_t j = 0; j < nt; j++) {
            struct target *t = &ts[j];
            if (t->err)
                continue;
            uint8_t *row = t->hits + k * (uint64_t)t->n;
            t->err = check(&s, t, row);
            if (t->err)
                memset(row, 0, (size_t)t->n);
        }
        done = k + 1;
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
    uint8_t *row = malloc(t.n ? (size_t)t.n : 1);
    uint64_t *scratch = malloc(max_io_words * 8);
    size_t nmax = (size_t)(t.n ? t.n : 1);
    void **bufs = malloc(nmax * sizeof(void *));
    uint32_t *lens = malloc(nmax * 4);
    uint64_t *offs = malloc(nmax * 8);
    int32_t *res = malloc(nmax * 4);
    PyObject *result = NULL;
    if (!s.buf || !row || !scratch || !bufs || !lens || !offs || !res || !target_alloc(&t)) {
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
    for (Py_ssize_t k = 0; k < nr_samples && !err; k++) {
        err = prepare(&s, &t, (uint64_t)k, addrs + k * t.n);
        if (!err)
            err = check(&s, &t, row);
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
