"""damo's kdamonds JSON/YAML configuration, read into and printed from damond's spec model.

Users of damond already keep their DAMON setups as the files ``damo args damon --format
json|yaml`` prints (and ``damo start --kdamonds`` reads). :func:`load_kdamonds` loads such a file
into :class:`damond.core.spec.KdamondSpec` objects and :func:`dump_kdamonds` prints specs back in
the same format. The package's modules: ``load`` (the document's sections, read into specs),
``dump`` (specs printed), ``later`` (the sections of 6.3 .. 6.18 features), ``fields``
(field-by-field reading with damo's defaults, collecting every error), ``convert`` (damo's
conversions of parsed numbers into sysfs values, shared by loader and dumper); the number texts
themselves are ``damond.formats.damo.units``.

Loading converts every value exactly as damo 3.4.3 converts it when it writes the kernel's sysfs
files, so a file means the same to damond as to ``damo start`` on a kernel:

* numbers are damo's text forms: ``"1,000"``, ``"128.000 MiB"``, ``"1 s 200 ms"``, ``"50 %"``,
  ``"max"``/``"min"``; parsed by ``units.text_to_nr`` and friends, which keep damo's int/float
  results so that damo's float arithmetic (and its truncations) is reproduced bit for bit
  (``_damo_fmt_str.py``: ``text_to_nr``, ``try_common_input``, ``text_to_bytes``, ``text_to_ns``,
  ``text_to_us``, ``text_to_ms``, ``text_to_ratio``, ``text_to_percent``, ``text_to_permil``);
* each value is then written the way ``_damon_sysfs.py`` writes it: ``'%d' % value`` (Python's
  ``%d`` truncates a float toward zero), and ``min(value, ULONG_MAX)`` for the access pattern
  (``write_ulong``);
* ``nr_accesses`` in percent becomes ``int(percent * (aggr_us / sample_us) / 100)`` samples, and an
  ``age`` in time becomes ``int(age_us / aggr_us)`` aggregation intervals, using the context's
  intervals as damo parsed them (``_damon.py``: ``DamonNrAccesses.add_unset_unit``,
  ``DamonAge.add_unset_unit``, called from ``_damon_sysfs.write_context_dir``);
* a missing optional section takes damo's default, which is not always the kernel's: e.g. a
  missing ``quotas`` means ``reset_interval_ms`` = ``max`` and a missing ``intervals`` means an
  update interval of 1 s (``_damon.py``: ``DamosQuotas.__init__``, ``DamonIntervals.__init__``).

One deliberate difference: ``damo args damon --raw`` prints the ``age`` range, ``quotas.time_ms``,
``quotas.reset_interval_ms`` and ``watermarks.interval_us`` in **nanoseconds**
(``format_time_us_exact``/``format_time_ms_exact`` with ``machine_friendly``), but damo reads the
same bare numbers back in their field's unit (us or ms), so damo itself turns a raw "30 s" age into
8 h 20 m. damond reads a raw file (detected, or forced with ``raw=True``) the way damo printed it:
those bare numbers are nanoseconds. A warning says so.

The Linux 6.18 features load, run and dump back: DAMOS filters (to ``core_filters`` or
``ops_filters`` by type, as damo writes them on 6.18), quota goals, ``dests`` and ``target_nid``,
the intervals goal, ``apply_interval_us``, ``addr_unit`` and ``refresh_ms`` (``later``). Fields
of features newer than 6.18 or that damond does not implement (probes, ``pause``,
``sample_control``, ``goal_tuner``, ``fail_charge_*``, target ``obsolete``, the
``probe_hits_wsum`` filter, goal ``complement``, newer goal metrics and actions) are refused with
``EINVAL`` naming each field by its path, unless they hold their default. A key damo 3.4.3 does
not know is refused too (a misspelt key would otherwise leave its field at the default
silently).

Dumping prints what damo prints (same keys, order, and text forms) except where damo's text would
not load back to the same number (damo rounds sizes to ``%.3f MiB`` and times to ``%.3f s``, and
prints 290 permil as ``28 %``): there it falls back to an exact form damo also reads the same way
(``"N samples"``, ``"N aggr_intervals"``, or a plain integer in the field's unit).
"""

from damond.formats.damo.kdamonds.dump import dump_kdamonds
from damond.formats.damo.kdamonds.load import load_kdamonds

__all__ = ["dump_kdamonds", "load_kdamonds"]
