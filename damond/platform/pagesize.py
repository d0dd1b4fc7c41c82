"""This machine's page size, the one source every other module reads it from.

The kernel compiles ``PAGE_SIZE`` in; user space asks for it (``sysconf(_SC_PAGESIZE)``, which is
what ``mmap.PAGESIZE`` holds). x86-64 has 4 KiB pages, but arm64, ppc64 and loongarch kernels are
often built with 16 or 64 KiB pages: a hard-coded 4096 would misread ``pagemap`` (one entry per
page) and misalign ``process_madvise`` ranges there.

The core never reads this module: it takes its region alignment (``min_region``, the kernel's
``DAMON_MIN_REGION``) as a parameter from whoever builds a context.
"""

from __future__ import annotations

import mmap

#: Bytes per base page.
PAGE_SIZE: int = mmap.PAGESIZE
#: log2(PAGE_SIZE): ``addr >> PAGE_SHIFT`` is a page number (``pagemap`` index, PFN).
PAGE_SHIFT: int = PAGE_SIZE.bit_length() - 1
#: Base pages in a PMD-mapped huge page: one page-table page holds PAGE_SIZE / 8 entries of 8
#: bytes (512 with 4 KiB pages: 2 MiB THPs; 8192 with 64 KiB pages: 512 MiB).
PMD_PAGES: int = PAGE_SIZE // 8
