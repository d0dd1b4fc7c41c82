"""``damond mount``: sysfs file semantics through a real FUSE mount of a real daemon."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import time

import pytest

from tests.fuse.conftest import (
    DAMOND,
    fuse_mounted,
    needs_fuse,
    start_daemon,
    start_mount,
    stop_mount,
    wait_for,
)

pytestmark = needs_fuse


def kdamonds(mnt: str) -> str:
    return os.path.join(mnt, "admin", "kdamonds")


def write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def test_bash_echo_gets_the_kernels_errno(mounted):
    nr = os.path.join(kdamonds(mounted), "nr_kdamonds")
    out = subprocess.run(["bash", "-c", f"echo abc > {nr}"], capture_output=True, text=True)
    assert out.returncode == 1
    assert "Invalid argument" in out.stderr
    assert read(nr) == "0\n"  # nothing was stored


def test_nr_writes_make_and_remove_directories(mounted):
    kd = kdamonds(mounted)
    write(os.path.join(kd, "nr_kdamonds"), "2\n")
    assert sorted(os.listdir(kd)) == ["0", "1", "nr_kdamonds"]
    assert os.path.isdir(os.path.join(kd, "1", "contexts"))
    write(os.path.join(kd, "nr_kdamonds"), "0\n")
    assert os.listdir(kd) == ["nr_kdamonds"]
    assert not os.path.exists(os.path.join(kd, "1"))
    with pytest.raises(FileNotFoundError):
        read(os.path.join(kd, "0", "state"))


def test_protocol_aliases_are_not_names_of_the_file_system(mounted):
    kd = kdamonds(mounted)
    assert os.path.exists(os.path.join(kd, "nr_kdamonds"))
    assert not os.path.exists(os.path.join(kd, "nr"))  # 'ctl' accepts it; sysfs has no such file


def test_cached_names_never_outlive_their_numbered_directory(daemon, mounted):
    """Names other than numbers may stay in the kernel's cache (``STABLE_S``): a directory
    removed by another client must still vanish from the mount at once, with its files."""
    kd = kdamonds(mounted)
    write(os.path.join(kd, "nr_kdamonds"), "1\n")
    state = os.path.join(kd, "0", "state")
    assert read(state) == "off\n"  # now looked up and cached
    out = subprocess.run([DAMOND, "ctl", "--socket", daemon.socket,
                          "echo 0 > kdamonds/nr_kdamonds"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert not os.path.exists(state)
    with pytest.raises(FileNotFoundError):
        read(state)
    out = subprocess.run([DAMOND, "ctl", "--socket", daemon.socket,
                          "echo 1 > kdamonds/nr_kdamonds"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # the same path again: a new directory with the same files
    assert read(os.path.join(kd, "0", "contexts", "nr_contexts")) == "0\n"


def test_modes_sizes_and_owner_are_the_kernels(mounted):
    kd = kdamonds(mounted)
    write(os.path.join(kd, "nr_kdamonds"), "1\n")
    expected = {"nr_kdamonds": 0o600, "0/state": 0o600, "0/pid": 0o400,
                "0/contexts/nr_contexts": 0o600}
    for rel, mode in expected.items():
        st = os.stat(os.path.join(kd, rel))
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == mode, rel
        assert st.st_size == 4096 and st.st_uid == 0 and st.st_gid == 0, rel
    st = os.stat(os.path.join(kd, "0"))
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755
    assert os.listdir(mounted) == ["admin"]


def test_each_write_is_one_store_whatever_the_offset(mounted):
    """sysfs ignores the file position: a second write(2) on one open file is a new store."""
    nr = os.path.join(kdamonds(mounted), "nr_kdamonds")
    fd = os.open(nr, os.O_WRONLY)
    try:
        assert os.write(fd, b"1") == 1
        assert read(nr) == "1\n"
        assert os.write(fd, b"3\n") == 2
        assert read(nr) == "3\n"
        with pytest.raises(OSError) as e:
            os.write(fd, b"x\n")
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    assert read(nr) == "3\n"


def test_a_read_produces_the_whole_content_at_offset_zero(mounted):
    nr = os.path.join(kdamonds(mounted), "nr_kdamonds")
    write(nr, "12\n")
    fd = os.open(nr, os.O_RDONLY)
    try:
        assert os.pread(fd, 1, 0) == b"1"
        assert os.pread(fd, 10, 1) == b"2\n"  # the same text, continued
        assert os.pread(fd, 10, 3) == b""
    finally:
        os.close(fd)


def test_open_follows_sysfs_permission_rules_even_for_root(mounted):
    kd = kdamonds(mounted)
    write(os.path.join(kd, "nr_kdamonds"), "1\n")
    with pytest.raises(PermissionError):
        write(os.path.join(kd, "0", "pid"), "1\n")  # 0400: no store method
    assert read(os.path.join(kd, "0", "pid")) == "-1\n"
    with pytest.raises(PermissionError):  # sysfs directories have no create
        write(os.path.join(kd, "new_file"), "1\n")
    with pytest.raises(PermissionError) as e:
        os.mkdir(os.path.join(kd, "2"))
    assert e.value.errno == errno.EPERM
    with pytest.raises(PermissionError):
        os.rmdir(os.path.join(kd, "0"))


def test_other_users_may_list_but_not_read_or_write(mounted):
    os.chmod(os.path.dirname(mounted), 0o755)  # the test's directory, so others reach the mount
    nr = os.path.join(kdamonds(mounted), "nr_kdamonds")
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    listed = subprocess.run([*as_nobody, "ls", kdamonds(mounted)], capture_output=True, text=True)
    assert listed.returncode == 0 and listed.stdout.split() == ["nr_kdamonds"]
    cat = subprocess.run([*as_nobody, "cat", nr], capture_output=True, text=True)
    assert cat.returncode == 1 and "Permission denied" in cat.stderr
    echo = subprocess.run([*as_nobody, "sh", "-c", f"echo 1 > {nr}"], capture_output=True,
                          text=True)
    assert echo.returncode != 0 and "Permission denied" in echo.stderr
    assert read(nr) == "0\n"


def test_debugfs_refuses_a_second_write_on_one_open_file(daemon):
    mnt = os.path.join(daemon.workdir, "dbgfs")
    proc = start_mount(daemon.socket, mnt, "--debugfs")
    try:
        attrs = os.path.join(mnt, "attrs")
        assert stat.S_IMODE(os.stat(attrs).st_mode) == 0o600
        assert os.stat(attrs).st_size == 0  # debugfs shows no size
        fd = os.open(attrs, os.O_WRONLY)
        try:
            assert os.write(fd, b"1 2 3 4 5\n") == 10
            with pytest.raises(OSError) as e:  # "We do not accept continuous write"
                os.write(fd, b"6 7 8 9 10\n")
            assert e.value.errno == errno.EINVAL
        finally:
            os.close(fd)
        assert read(attrs) == "1 2 3 4 5\n"
    finally:
        stop_mount(proc, mnt)


@pytest.mark.parametrize("how", ["umount", "fusermount3"])
def test_unmounting_ends_damond_mount(daemon, how):
    mnt = os.path.join(daemon.workdir, "mnt")
    proc = start_mount(daemon.socket, mnt)
    cmd = ["umount", mnt] if how == "umount" else ["fusermount3", "-u", mnt]
    subprocess.run(cmd, check=True)
    assert proc.wait(timeout=20) == 0
    assert not fuse_mounted(mnt)


def test_sigterm_unmounts(daemon):
    mnt = os.path.join(daemon.workdir, "mnt")
    proc = start_mount(daemon.socket, mnt)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert not fuse_mounted(mnt)


def test_a_killed_mount_does_not_block_the_next(daemon):
    mnt = os.path.join(daemon.workdir, "mnt")
    proc = start_mount(daemon.socket, mnt)
    proc.kill()
    proc.wait()
    with pytest.raises(OSError) as e:
        os.stat(os.path.join(mnt, "admin"))
    assert e.value.errno == errno.ENOTCONN  # the dead mount is still there...
    again = start_mount(daemon.socket, mnt)  # ...and the next mount replaces it
    try:
        assert read(os.path.join(kdamonds(mnt), "nr_kdamonds")) == "0\n"
    finally:
        stop_mount(again, mnt)


def test_a_dead_daemon_gives_enotconn_not_a_hang(workdir):
    d = start_daemon(workdir)
    mnt = os.path.join(workdir, "mnt")
    proc = start_mount(d.socket, mnt)
    try:
        nr = os.path.join(kdamonds(mnt), "nr_kdamonds")
        write(nr, "1\n")
        d.proc.kill()
        d.proc.wait()
        t0 = time.monotonic()
        cat = subprocess.run(["cat", nr], capture_output=True, text=True, timeout=30)
        assert cat.returncode == 1
        assert "Transport endpoint is not connected" in cat.stderr
        assert time.monotonic() - t0 < 10
        os.unlink(d.socket)  # a killed daemon leaves its socket file
        d2 = start_daemon(workdir)  # the mount reconnects to a new daemon on the same socket
        try:
            assert read(nr) == "0\n"
        finally:
            d2.stop()
    finally:
        stop_mount(proc, mnt)


def test_without_a_daemon_mount_refuses_to_start(workdir):
    out = subprocess.run([DAMOND, "mount", workdir, "--socket",
                          os.path.join(workdir, "none.sock")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "cannot reach the daemon" in out.stderr
    assert not fuse_mounted(workdir)


def test_serve_mount_serves_in_process_and_unmounts_on_stop(workdir):
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(mnt)
    d = start_daemon(workdir, "--mount", mnt)
    wait_for(lambda: fuse_mounted(mnt), what="the in-process mount")
    nr = os.path.join(kdamonds(mnt), "nr_kdamonds")
    out = subprocess.run(["bash", "-c", f"echo abc > {nr}"], capture_output=True, text=True)
    assert "Invalid argument" in out.stderr
    write(nr, "1\n")
    assert sorted(os.listdir(kdamonds(mnt))) == ["0", "nr_kdamonds"]
    assert d.stop() == 0
    assert not fuse_mounted(mnt)


def test_serve_mount_killed_gives_enotconn_and_is_replaced(workdir):
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(mnt)
    d = start_daemon(workdir, "--mount", mnt)
    wait_for(lambda: fuse_mounted(mnt), what="the in-process mount")
    d.proc.kill()
    d.proc.wait()
    with pytest.raises(OSError) as e:
        read(os.path.join(kdamonds(mnt), "nr_kdamonds"))
    assert e.value.errno == errno.ENOTCONN
    os.unlink(d.socket)
    d2 = start_daemon(workdir, "--mount", mnt)
    try:
        wait_for(lambda: os.path.isdir(kdamonds(mnt)), what="the new mount")
        assert read(os.path.join(kdamonds(mnt), "nr_kdamonds")) == "0\n"
    finally:
        assert d2.stop() == 0
    assert not fuse_mounted(mnt)
