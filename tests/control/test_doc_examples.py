"""The kernel documentation's examples (usage.rst of v5.18), pasted as they are.

Only what a user's shell would do before sending is done here: ``$(pidof <workload>)`` becomes
a real pid and ``$((1024*1024*1024))`` its value. Every file is read back afterwards.
"""

from __future__ import annotations

import subprocess

from tests.control.conftest import DAMOND, needs_vaddr, transcript

SHORT_EXAMPLE = """\
    # cd /sys/kernel/mm/damon/admin/
    # echo 1 > kdamonds/nr && echo 1 > kdamonds/0/contexts/nr
    # echo vaddr > kdamonds/0/contexts/0/operations
    # echo 1 > kdamonds/0/contexts/0/targets/nr
    # echo $(pidof <workload>) > kdamonds/0/contexts/0/targets/0/pid
    # echo on > kdamonds/0/state
"""

SCHEME_EXAMPLE = """\
    # cd <sysfs>/kernel/mm/damon/admin
    # # populate directories
    # echo 1 > kdamonds/nr_kdamonds; echo 1 > kdamonds/0/contexts/nr_contexts;
    # echo 1 > kdamonds/0/contexts/0/schemes/nr_schemes
    # cd kdamonds/0/contexts/0/schemes/0
    # # set the basic access pattern and the action
    # echo 4096 > access_patterns/sz/min
    # echo 8192 > access_patterns/sz/max
    # echo 0 > access_patterns/nr_accesses/min
    # echo 5 > access_patterns/nr_accesses/max
    # echo 10 > access_patterns/age/min
    # echo 20 > access_patterns/age/max
    # echo pageout > action
    # # set quotas
    # echo 10 > quotas/ms
    # echo $((1024*1024*1024)) > quotas/bytes
    # echo 1000 > quotas/reset_interval_ms
    # # set watermark
    # echo free_mem_rate > watermarks/metric
    # echo 5000000 > watermarks/interval_us
    # echo 600 > watermarks/high
    # echo 500 > watermarks/mid
    # echo 300 > watermarks/low
"""

CTX = "kdamonds/0/contexts/0"


def statuses(lines: list[str]) -> list[str]:
    return [line for line in lines if line == "OK" or line.startswith("ERR ")]


def shell_expand(text: str, **values: str) -> str:
    """What the user's shell substitutes before the line reaches damond."""
    text = text.replace("$((1024*1024*1024))", str(1024 * 1024 * 1024))
    if "pid" in values:
        text = text.replace("$(pidof <workload>)", values["pid"])
    return text


def test_short_example_with_sim_runs(damond, child_pids):
    # the same paste with the simulated operation set, which needs no pid
    text = shell_expand(SHORT_EXAMPLE, pid=str(child_pids[0])).replace("vaddr", "sim")
    lines = transcript(damond.path, text)
    assert statuses(lines) == ["OK"] * 7, lines
    # the documentation's loose spellings are accepted, with a note saying so
    assert "# 'nr' is accepted as 'nr_kdamonds' (the kernel's file name)" in lines
    with damond.conn() as c:
        assert c.value("kdamonds/0/state") == "on"
        assert c.value("kdamonds/0/pid") == str(damond.proc.pid)
        assert c.value(f"{CTX}/operations") == "sim"
        assert c.value(f"{CTX}/targets/0/pid_target") == str(child_pids[0])
        c.ok("echo off > kdamonds/0/state")
        assert c.value("kdamonds/0/state") == "off"
        assert c.value("kdamonds/0/pid") == "-1"


@needs_vaddr
def test_short_example_vaddr(damond, child_pids):
    lines = transcript(damond.path, shell_expand(SHORT_EXAMPLE, pid=str(child_pids[0])))
    assert statuses(lines) == ["OK"] * 7, lines
    with damond.conn() as c:
        assert c.value("kdamonds/nr_kdamonds") == "1"
        assert c.value("kdamonds/0/contexts/nr_contexts") == "1"
        assert c.value(f"{CTX}/operations") == "vaddr"
        assert c.value(f"{CTX}/targets/nr_targets") == "1"
        assert c.value(f"{CTX}/targets/0/pid_target") == str(child_pids[0])
        assert c.value("kdamonds/0/state") == "on"
        assert c.value("kdamonds/0/pid") == str(damond.proc.pid)
        c.ok("echo off > kdamonds/0/state")


def test_scheme_example(damond):
    lines = transcript(damond.path, shell_expand(SCHEME_EXAMPLE))
    # 2 cd + 3 populating commands (two on one line) + 6 pattern + action + 3 quota + 5 wmark
    assert statuses(lines) == ["OK"] * 20, lines
    with damond.conn() as c:
        assert c.value("kdamonds/nr_kdamonds") == "1"
        assert c.value("kdamonds/0/contexts/nr_contexts") == "1"
        assert c.value(f"{CTX}/schemes/nr_schemes") == "1"
        c.ok(f"cd {CTX}/schemes/0")
        expected = {
            "access_pattern/sz/min": "4096", "access_pattern/sz/max": "8192",
            "access_pattern/nr_accesses/min": "0", "access_pattern/nr_accesses/max": "5",
            "access_pattern/age/min": "10", "access_pattern/age/max": "20",
            "action": "pageout",
            "quotas/ms": "10", "quotas/bytes": "1073741824", "quotas/reset_interval_ms": "1000",
            "quotas/weights/sz_permil": "0", "quotas/weights/nr_accesses_permil": "0",
            "quotas/weights/age_permil": "0",
            "watermarks/metric": "free_mem_rate", "watermarks/interval_us": "5000000",
            "watermarks/high": "600", "watermarks/mid": "500", "watermarks/low": "300",
            "stats/nr_tried": "0", "stats/sz_tried": "0", "stats/nr_applied": "0",
            "stats/sz_applied": "0", "stats/qt_exceeds": "0",
        }
        assert {k: c.value(k) for k in expected} == expected
        # and nothing else was touched: the context keeps its defaults
        c.ok("cd")
        assert c.value(f"{CTX}/operations") == "vaddr"
        assert c.value(f"{CTX}/monitoring_attrs/intervals/sample_us") == "5000"
        assert c.value(f"{CTX}/monitoring_attrs/intervals/aggr_us") == "100000"
        assert c.value(f"{CTX}/monitoring_attrs/intervals/update_us") == "60000000"
        assert c.value(f"{CTX}/monitoring_attrs/nr_regions/min") == "10"
        assert c.value(f"{CTX}/monitoring_attrs/nr_regions/max") == "1000"
        assert c.value(f"{CTX}/targets/nr_targets") == "0"


def test_scheme_example_through_damond_ctl(damond):
    proc = subprocess.run([DAMOND, "ctl", "--socket", damond.path],
                          input=shell_expand(SCHEME_EXAMPLE).encode(), capture_output=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b""  # every command only writes
    notes = proc.stderr.decode().splitlines()
    assert len(notes) == 6 and all("'access_patterns' is accepted" in n for n in notes)
    with damond.conn() as c:
        assert c.value(f"{CTX}/schemes/0/quotas/bytes") == "1073741824"


# --------------------------------------------------------------------------------------------
# debugfs
# --------------------------------------------------------------------------------------------

def test_debugfs_attrs(conn):
    conn.ok("    # cd <debugfs>/damon")
    conn.ok("    # echo 5000 100000 1000000 10 1000 > attrs")
    assert conn.ok("    # cat attrs") == ["5000 100000 1000000 10 1000"]
    assert conn.ok("pwd") == ["/sys/kernel/debug/damon"]


def test_debugfs_target_ids_and_init_regions(damond, child_pids):
    p1, p2 = child_pids
    paste = f"""\
    # cd <debugfs>/damon
    # echo {p1} {p2} > target_ids
    # cat target_ids
    # echo "0   1       100
            0   100     200
            1   20      40
            1   50      100" > init_regions
    # cat init_regions
"""
    lines = transcript(damond.path, paste)
    assert lines == ["OK", "OK", f"{p1} {p2}", "OK", "OK",
                     "0 1 100", "0 100 200", "1 20 40", "1 50 100", "OK"]


def test_debugfs_paddr_target(conn):
    conn.ok("cd <debugfs>/damon")
    conn.ok("echo paddr > target_ids")
    assert conn.ok("cat target_ids") == ["42"]


def test_debugfs_scheme_line(conn):
    conn.ok("cd <debugfs>/damon")
    # what the documentation's scheme="..."; scheme+="..." lines build, expanded by a shell
    scheme = "4096 8192  0 5    10 20    2 10 1073741824 1000 0 0 100 1 5000000 600 500 300"
    conn.ok(f'echo "{scheme}" > schemes')
    assert conn.ok("cat schemes") == [
        "4096 8192 0 5 10 20 2 10 1073741824 1000 0 0 100 1 5000000 600 500 300 0 0 0 0 0"]
    # the variable assignments themselves are refused with a reason, and change nothing
    assert conn.err('scheme="4096 8192  0 5    10 20    2"  # target access pattern') == "EINVAL"
    conn.ok('echo "" > schemes')
    assert conn.ok("cat schemes") == []


def test_debugfs_short_scheme_line_is_ignored_as_in_v5_18_with_a_note(conn):
    """v5.18 answers success for a line of fewer than 18 numbers and installs nothing; damond
    does the same and says so in a note, so the user is not left guessing."""
    conn.ok("cd <debugfs>/damon")
    full = "4096 8192 0 5 10 20 2 10 1073741824 1000 0 0 100 1 5000000 600 500 300"
    conn.ok(f'echo "{full}" > schemes')
    data, status = conn.cmd('echo "4096 8192  0 5    10 20    2" > schemes')
    assert status == "OK"
    [note] = data
    assert note.startswith("# 0 schemes installed; the rest was ignored: it starts with 7 "
                           "numbers where a scheme needs 18"), note
    assert conn.ok("cat schemes") == []
    # a full line and a short one: the full one is kept, the rest named
    data, status = conn.cmd(f'echo "{full}\n1 2 3" > schemes')
    assert status == "OK" and data[0].startswith("# 1 scheme installed; the rest was "
                                                 "ignored: it starts with 3 numbers"), data
    assert len(conn.ok("cat schemes")) == 1
    # nothing to say about a full line
    data, status = conn.cmd(f'echo "{full}" > schemes')
    assert (data, status) == ([], "OK")


def test_debugfs_monitor_off_and_kdamond_pid_none(conn):
    conn.ok("cd <debugfs>/damon")
    assert conn.ok("cat monitor_on") == ["off"]
    assert conn.ok("cat kdamond_pid") == ["none"]
    assert conn.err("echo off > monitor_on") == "EPERM"


@needs_vaddr
def test_debugfs_monitor_on_off_vaddr(damond, child_pids):
    p1, p2 = child_pids
    paste = f"""\
    # cd <debugfs>/damon
    # echo {p1} {p2} > target_ids
    # cat monitor_on
    # cat kdamond_pid
    # echo on > monitor_on
    # cat monitor_on
    # cat kdamond_pid
    # echo off > monitor_on
    # cat monitor_on
    # cat kdamond_pid
"""
    lines = transcript(damond.path, paste)
    pid = str(damond.proc.pid)
    assert lines == ["OK", "OK", "off", "OK", "none", "OK", "OK", "on", "OK", pid, "OK",
                     "OK", "off", "OK", "none", "OK"]


def test_debugfs_contexts(conn):
    conn.ok("    # cd <debugfs>/damon")
    assert conn.err("    # ls foo") == "ENOENT"
    conn.ok("    # echo foo > mk_contexts")
    assert conn.ok("    # ls foo") == ["attrs", "init_regions", "kdamond_pid", "schemes",
                                       "target_ids"]
    assert "foo/" in conn.ok("ls")
    conn.ok("    # echo foo > rm_contexts")
    assert conn.err("    # ls foo") == "ENOENT"
    assert "foo/" not in conn.ok("ls")


def test_documentation_output_lines_are_refused_not_run(conn):
    # pasting a whole block including the shell's output: output lines are no commands
    _, status = conn.cmd("    # ls: cannot access 'foo': No such file or directory")
    assert status.startswith("ERR EINVAL ls:")
    assert conn.ok("pwd") == ["/sys/kernel/mm/damon/admin"]


def test_relative_paths_after_cd_and_absolute_forms(conn):
    conn.ok("echo 1 > /sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds")
    assert conn.value("<sysfs>/kernel/mm/damon/admin/kdamonds/nr_kdamonds") == "1"
    conn.ok("cd kdamonds/0")
    assert conn.ok("pwd") == ["/sys/kernel/mm/damon/admin/kdamonds/0"]
    assert conn.value("state") == "off"
    assert conn.value("../nr_kdamonds") == "1"
    conn.ok("cd /sys/kernel/debug/damon")
    assert conn.value("monitor_on") == "off"
    conn.ok("cd")
    assert conn.ok("pwd") == ["/sys/kernel/mm/damon/admin"]
    assert conn.ok("ls") == ["kdamonds/"]
