"""/proc/meminfo and /proc/iomem against independent readings of the same machine."""

from __future__ import annotations

import psutil
import pytest

from damond.platform import iomem, meminfo


def test_meminfo_in_bytes_agrees_with_psutil():
    info = meminfo.read_meminfo()
    vm = psutil.virtual_memory()
    assert info["MemTotal"] == vm.total
    assert 0 < info["MemFree"] <= info["MemAvailable"] <= info["MemTotal"]
    assert info["MemTotal"] % 1024 == 0
    assert isinstance(info["HugePages_Total"], int) and info["HugePages_Total"] < 1 << 30
    assert info["Hugepagesize"] in (2 << 20, 1 << 20, 512 << 20, 32 << 20, 16 << 20, 64 << 10)


def test_free_mem_rate_is_the_kernel_formula():
    rate = meminfo.free_mem_rate()
    info = meminfo.read_meminfo()
    assert 0 <= rate <= 1000
    # MemFree moves between the two reads; allow a few permille of drift
    assert abs(rate - info["MemFree"] * 1000 // info["MemTotal"]) <= 5


@pytest.fixture
def iomem_ok(need):
    need("iomem")


def test_system_ram_ranges_are_sane(iomem_ok):
    ranges = iomem.system_ram_ranges()
    assert ranges == sorted(ranges)
    assert all(s < e for s, e in ranges)
    assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    total = sum(e - s for s, e in ranges)
    mem_total = meminfo.read_meminfo()["MemTotal"]
    assert mem_total <= total <= 1.25 * mem_total + (256 << 20)


def test_biggest_system_ram_keeps_the_kernel_quirk(iomem_ok):
    start, end = iomem.biggest_system_ram()
    ranges = iomem.system_ram_ranges()
    biggest = max(e - s for s, e in ranges)
    assert (start, end + 1) in ranges
    assert end + 1 - start == biggest
    # equal-sized later resources win, as in the kernel's walk_system_ram()
    later = [r for r in ranges if r[1] - r[0] == biggest]
    assert (start, end + 1) == later[-1]


def test_non_admin_sees_zeroes_and_gets_eperm(run_without_caps, iomem_ok):
    code = (
        "from damond.platform import iomem\n"
        "from damond.errors import DamonError\n"
        "print(open('/proc/iomem').read().count('00000000-00000000 : System RAM') > 0)\n"
        "try:\n"
        "    iomem.system_ram_ranges()\n"
        "except DamonError as e:\n"
        "    print(e.errno_name)\n"
    )
    res = run_without_caps(code, (21,))  # CAP_SYS_ADMIN
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True", "EPERM"]

