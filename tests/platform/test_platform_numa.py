"""``damond.platform.numa`` on this machine: the N_MEMORY node list and move_pages(2) on real
pages of this process."""

from __future__ import annotations

import ctypes
import mmap
import os

import numpy as np

from damond.platform import numa
from damond.platform.pagesize import PAGE_SIZE


def test_parse_node_list():
    assert numa.parse_node_list("0\n") == [0]
    assert numa.parse_node_list("0-2,4") == [0, 1, 2, 4]


def test_move_pages_reports_present_pages_on_their_node_and_absent_ones_enoent():
    nodes = numa.memory_nodes()
    assert nodes and all(n >= 0 for n in nodes)
    m = mmap.mmap(-1, 8 * PAGE_SIZE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    for i in range(4):  # touch the first half only
        m[i * PAGE_SIZE] = 1
    addrs = np.arange(base, base + 8 * PAGE_SIZE, PAGE_SIZE, dtype=np.uint64)
    status = numa.move_pages(os.getpid(), addrs, np.full(8, nodes[0], dtype=np.int32))
    assert status[:4].tolist() == [nodes[0]] * 4
    assert all(s < 0 for s in status[4:].tolist())  # -ENOENT: never touched
    del addrs
