"""The DAMON sysfs interface (``/sys/kernel/mm/damon/admin``) as damond serves it.

The tree is Linux 6.18's (``mm/damon/sysfs.c``, ``sysfs-schemes.c``, ``sysfs-common.c`` and
``Documentation/admin-guide/mm/damon/usage.rst`` of 6.18; every entry of
``sysfs-tree-6.18.txt``), with the kernel's defaults, its ``nr_*`` directory creation (writing
N always recreates N fresh children), its number parsing (``kstrto*``: base 0, one trailing
newline, ERANGE on overflow), its exact keyword matching (``sysfs_streq``), its file modes
(0600 read-write, 0400 read-only) and its errnos. One module per part of the tree:

* ``admin``: kdamonds, contexts, the ``state`` file; ``state``: its keywords' updates;
* ``monitoring``: monitoring attributes and the intervals goal; ``targets``: targets, regions;
* ``schemes``: a scheme with its access pattern, quotas and goals, watermarks, dests, stats and
  tried regions; ``filters``: the three filter directories;
* ``files``: the kinds of file; ``views``: what the kernel fills in (stats, tried regions).
"""

from damond.interfaces.sysfs.admin import STATE_COMMANDS, UNIMPLEMENTED, SysfsAdmin
from damond.interfaces.sysfs.files import MAX_NR_DIRS
from damond.interfaces.sysfs.views import SchemeView, SysfsContext, SysfsKdamond

__all__ = ["MAX_NR_DIRS", "STATE_COMMANDS", "UNIMPLEMENTED", "SchemeView", "SysfsAdmin",
           "SysfsContext", "SysfsKdamond"]
