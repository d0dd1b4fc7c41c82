"""The ``fvaddr`` operation set (v5.19): fixed virtual address ranges of processes.

vaddr without ``init`` and ``update``: damond never creates or moves regions; the user's
initial regions are monitored as given (adaptive split and merge still happen inside them). A
target without regions is not monitored.
"""

from __future__ import annotations

from damond.ops.common import scheme_scores
from damond.ops.hookspecs import hookimpl
from damond.plugins import vaddr

NAME = "fvaddr"


@hookimpl
def damon_ops_info():
    return vaddr.info(NAME, "fixed virtual address ranges of processes (user-given regions)")


@hookimpl
def damon_ops_validate(ctx):
    vaddr.validate_targets(ctx)


@hookimpl
def damon_ops_init(ctx):
    vaddr.sync_targets(ctx)


@hookimpl
def damon_ops_update(ctx):
    vaddr.sync_targets(ctx)


@hookimpl
def damon_ops_prepare_access_checks(ctx):
    vaddr.prepare_access_checks(ctx)


@hookimpl
def damon_ops_check_accesses(ctx):
    return vaddr.check_accesses(ctx)


@hookimpl
def damon_ops_get_scheme_score(ctx, target, regions, scheme):
    return scheme_scores(ctx, regions, scheme)


@hookimpl
def damon_ops_apply_scheme(ctx, actions):
    return vaddr.apply_scheme(ctx, actions)


@hookimpl
def damon_ops_target_valid(ctx):
    return vaddr.target_valid(ctx)


@hookimpl
def damon_ops_cleanup(ctx):
    vaddr.cleanup(ctx)


@hookimpl
def damon_ops_status(ctx):
    return vaddr.status(ctx)


@hookimpl
def damon_ops_sample_aggregation(ctx, nr_samples, interval_ns, first_deadline_ns, stop):
    return vaddr.sample_aggregation(ctx, nr_samples, interval_ns, first_deadline_ns, stop)


@hookimpl
def damon_ops_quiet_span(ctx):
    return vaddr.quiet_span(ctx)


@hookimpl
def damon_ops_quiet_check(ctx):
    return vaddr.quiet_check(ctx)
