"""Hook specifications of an operation set: the kernel's ``struct damon_operations`` callbacks.

An operation set is a pluggy plugin (a module or an object) implementing these hooks, registered
under its name ("vaddr", "paddr", ...). damond's built-in sets register themselves; third-party
ones are found through the entry-point group ``damond.operations`` (the entry point's name is
the operation set's name, as written to a context's ``operations`` file).

Every callback takes the whole context, not one region, so that an implementation can batch a
sample's system calls. pluggy only finds the sets: when a context starts or commits, the registry
looks up the selected set's implementations of these hooks once and puts them, as plain
functions, into a ``damond.core.operations.DamonOperations`` record (``damon_ops_<callback>`` for
each of its callbacks), with the kernel's defaults for hooks a set leaves out; the kdamond calls
that record, never pluggy. Per-context and per-target state belongs in ``ctx.ops_data`` and
``target.ops_data``. What every set shares (the sampling-address pick, the scores) is in
``damond.ops.common``.

The core (``damond.core``) owns the counters: ``check_accesses`` reports which regions were
found accessed and the core does the counting, so an operation set cannot break the
kernel's arithmetic.
"""

from __future__ import annotations

import pluggy

PROJECT = "damond"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(firstresult=True)
def damon_ops_info():
    """Describe the operation set: return a ``damond.ops.info.OpsInfo``.

    Called by the registry at discovery time (for ``avail_operations``, ``plugins`` and
    ``features``). Must be cheap and must not fail.
    """


@hookspec(firstresult=True)
def damon_ops_validate(ctx):
    """Check a freshly built context before it is started or committed; raise
    ``damond.errors.DamonError`` with the kernel's errno to refuse it (e.g. EINVAL when a
    target's process does not exist, or when ``paddr`` gets more than one target).

    Must not change the context: a refused ``commit`` leaves the running kdamond untouched.
    Schemes whose action is in the set's ``OpsInfo.refuses`` are refused (EINVAL) before this
    hook is called.
    """


@hookspec(firstresult=True)
def damon_ops_init(ctx):
    """``ops.init``: called once when the kdamond starts, before the first sample. Set up
    private state and give every target that has no regions its initial regions (vaddr: the
    three-regions algorithm split into ``min_nr_regions`` pieces; fvaddr/paddr: none). Left
    out: nothing is done."""


@hookspec(firstresult=True)
def damon_ops_update(ctx):
    """``ops.update``: called every update interval; vaddr refreshes regions from the current
    mappings with ``damond.core.regions.set_regions``."""


@hookspec(firstresult=True)
def damon_ops_prepare_access_checks(ctx):
    """``ops.prepare_access_checks``: called at the start of every sample. Pick each region's
    ``regions.sampling_addr`` (uniform in the region, ``damon_rand``:
    ``damond.ops.common.pick_sampling_addrs``) and clear the accessed state of the sampled
    pages, all targets at once."""


@hookspec(firstresult=True)
def damon_ops_check_accesses(ctx):
    """``ops.check_accesses``: called after the sampling sleep. Return a list with one boolean
    numpy array per target (one entry per region, in region order): whether the region's
    sampled page was accessed since ``prepare_access_checks``. Left out (or answering None):
    nothing is ever accessed."""


@hookspec(firstresult=True)
def damon_ops_get_scheme_score(ctx, target, regions, scheme):
    """``ops.get_scheme_score`` for many regions: return an int array of scores 0..99 (higher
    means apply first) for ``regions`` (a ``Regions`` subset of ``target``) under ``scheme``,
    or None when the set does not prioritise (then quotas apply in address order).
    ``damond.ops.common`` has the kernel's hot and cold scores and vaddr's score rule."""


@hookspec(firstresult=True)
def damon_ops_apply_scheme(ctx, actions):
    """``ops.apply_scheme`` for one apply pass: apply each ``SchemeAction`` in order and return
    a list with the bytes really applied for each (0 when the action is not supported or
    failed). ``stat`` applies nothing and returns 0. Left out (or answering None): nothing
    is applied."""


@hookspec(firstresult=True)
def damon_ops_target_valid(ctx):
    """``ops.target_valid`` for all targets: a list of booleans, or None when the set has no
    such notion (then the kdamond runs until stopped, like paddr). A kdamond whose targets
    are all invalid stops by itself. Left out: None."""


@hookspec(firstresult=True)
def damon_ops_cleanup(ctx):
    """``ops.cleanup``: the kdamond stopped; release private state (fds, maps)."""


@hookspec(firstresult=True)
def damon_ops_wmark_metric(ctx, metric):
    """Optional: the value of a watermark metric (``free_mem_rate`` per thousand) as this set
    sees it, or None to use the system's (``/proc/meminfo``, read by
    ``damond.ops.common.system_wmark_metric``). The ``sim`` set answers with its simulated
    machine's value so that watermarks can be tried without touching real memory."""


@hookspec(firstresult=True)
def damon_ops_goal_metric(ctx, goal):
    """Optional: the current value of a DAMOS quota goal's metric (a
    ``damond.core.context.QuotaGoal``: ``goal.metric``, ``goal.spec.nid``, ``goal.spec.path``)
    as this set sees it, or None to use the system's (``damond.platform.memstat``, read by
    ``damond.ops.common.system_goal_metric``). ``user_input`` is never asked."""


@hookspec(firstresult=True)
def damon_ops_status(ctx):
    """Optional: a small dict of facts for ``status`` and ``features`` (e.g. which access-check
    backend each target uses and why better ones are unavailable). Left out (or answering
    None): an empty dict."""


@hookspec(firstresult=True)
def damon_ops_sample_aggregation(ctx, nr_samples, interval_ns, first_deadline_ns, stop):
    """Optional: run ``nr_samples`` samples in one call and answer a
    ``damond.core.operations.SampledBatch`` (which regions were accessed in each sample, and
    how late each check woke). The scheduler calls it in a worker thread, so a set with a
    native sampler runs a whole aggregation without the GIL while the event loop serves
    clients and other kdamonds; the core then counts the rows exactly as it would have
    counted the per-sample checks. Deadlines are ``CLOCK_MONOTONIC`` nanoseconds: sample k's
    check is due at ``first_deadline_ns + k * interval_ns``. ``stop`` is a one-byte bytearray
    set non-zero when the kdamond stops: end the batch early. Must not change ``ctx``. Left
    out: the kdamond samples through ``prepare_access_checks``/``check_accesses``."""


@hookspec(firstresult=True)
def damon_ops_quiet_span(ctx):
    """Optional, with ``damon_ops_sample_aggregation``: True when a batch begun now would be
    one coalesced span (``SampledBatch.coalesced``: every target known not to have run since
    its accessed state was cleared, so no sample before the last needs a wake-up). Called on
    the event loop: it must not block (answer from what the last check left). The scheduler
    then sleeps through the span itself, without waking the worker thread."""


@hookspec(firstresult=True)
def damon_ops_quiet_check(ctx):
    """Optional, with ``damon_ops_quiet_span``: after such a span, the check of its last
    sample (one boolean array per target) when it is cheap enough for the event loop (every
    target still known not to have run: nothing accessed), or None, and the scheduler runs
    that sample through ``damon_ops_sample_aggregation`` in the worker thread instead."""
