"""An example third-party operation set for damond: ``stripes``.

Each target is a synthetic address range made of equal stripes that alternate hot (always
accessed) and cold (never accessed). It shows the smallest useful operation set: initial
regions in ``init``, sampling addresses in ``prepare_access_checks``, results in
``check_accesses``; everything else falls back to damond's defaults.

Target options (``ops_args``): ``size`` (bytes, default 64 MiB), ``stripe`` (bytes, default
4 MiB).
"""

import numpy as np

from damond.core.regions import Regions
from damond.ops.hookspecs import hookimpl
from damond.ops.info import OpsInfo

BASE = 0x4000_0000


def _layout(target):
    size = int(target.ops_args.get("size", 64 << 20))
    stripe = int(target.ops_args.get("stripe", 4 << 20))
    return size, stripe


@hookimpl
def damon_ops_info():
    return OpsInfo(name="stripes", summary="synthetic alternating hot/cold stripes (example)")


@hookimpl
def damon_ops_init(ctx):
    for t in ctx.targets:
        if not len(t.regions):
            size, _ = _layout(t)
            t.regions = Regions([BASE], [BASE + size])


@hookimpl
def damon_ops_prepare_access_checks(ctx):
    rng = ctx.rng
    for t in ctx.targets:
        r = t.regions
        offsets = (rng.random(len(r)) * r.sizes()).astype(np.uint64)
        r.sampling_addr = r.start + offsets


@hookimpl
def damon_ops_check_accesses(ctx):
    out = []
    for t in ctx.targets:
        _, stripe = _layout(t)
        stripe_no = (t.regions.sampling_addr - np.uint64(BASE)) // np.uint64(stripe)
        out.append(stripe_no % np.uint64(2) == 0)
    return out
