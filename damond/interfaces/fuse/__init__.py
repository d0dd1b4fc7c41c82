"""damond's sysfs and debugfs files as a real file system (FUSE, through pyfuse3).

Programs that ``open()`` DAMON's files (damo, the kernel's selftests, shell one-liners) can
only talk to files, not to a socket. This package serves damond's tree with the kernel's file
semantics: ``backend`` says where the files come from (the daemon's :class:`Vfs` in-process, or
a protocol client), ``tree`` is the file system (inodes, open/read/write as sysfs and debugfs
do them), ``session`` mounts and unmounts it, ``mounts`` holds the few mount-table system calls
(stale-mount cleanup, ``damond exec``'s private namespace).
"""
