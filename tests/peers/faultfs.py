#!/usr/bin/env python3
"""A pass-through FUSE file system that fails writes or syncs on demand.

    faultfs.py BACKING MOUNTPOINT CONTROL

Every file operation under MOUNTPOINT is done on BACKING. The first line of
the file CONTROL (read at each write and sync) chooses a fault:

    eio-write   every write fails with EIO
    eio-sync    every fsync and fdatasync fails with EIO (the data written
                before stays in BACKING's cache, as Linux leaves it)
    (empty)     no fault

It stays in the foreground until unmounted. Used by tests/disk_faults.rs
for I/O errors end to end: the store's own code sees the errors a failing
disk gives, through the kernel.
"""

import errno
import os
import sys

from fuse import FUSE, FuseOSError, Operations


class FaultFS(Operations):
    def __init__(self, backing, control):
        self.backing = backing
        self.control = control

    def _path(self, path):
        return os.path.join(self.backing, path.lstrip("/"))

    def _fault(self):
        try:
            with open(self.control) as f:
                return f.readline().strip()
        except OSError:
            return ""

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except OSError as e:
            raise FuseOSError(e.errno or errno.EIO)

    # Metadata.
    def access(self, path, mode):
        if not os.access(self._path(path), mode):
            raise FuseOSError(errno.EACCES)

    def getattr(self, path, fh=None):
        st = self._call(os.lstat, self._path(path))
        keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime", "st_mtime", "st_ctime", "st_ino")
        return {k: getattr(st, k) for k in keys}

    def readdir(self, path, fh):
        return [".", ".."] + self._call(os.listdir, self._path(path))

    def chmod(self, path, mode):
        return self._call(os.chmod, self._path(path), mode)

    def chown(self, path, uid, gid):
        return self._call(os.chown, self._path(path), uid, gid)

    def utimens(self, path, times=None):
        return self._call(os.utime, self._path(path), times)

    def statfs(self, path):
        st = self._call(os.statvfs, self._path(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")
        return {k: getattr(st, k) for k in keys}

    # Names.
    def mkdir(self, path, mode):
        return self._call(os.mkdir, self._path(path), mode)

    def rmdir(self, path):
        return self._call(os.rmdir, self._path(path))

    def unlink(self, path):
        return self._call(os.unlink, self._path(path))

    def rename(self, old, new):
        return self._call(os.rename, self._path(old), self._path(new))

    def link(self, target, source):
        return self._call(os.link, self._path(source), self._path(target))

    def symlink(self, name, target):
        return self._call(os.symlink, target, self._path(name))

    def readlink(self, path):
        return self._call(os.readlink, self._path(path))

    # Files.
    def open(self, path, flags):
        return self._call(os.open, self._path(path), flags)

    def create(self, path, mode, fi=None):
        return self._call(os.open, self._path(path), os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)

    def read(self, path, size, offset, fh):
        return self._call(os.pread, fh, size, offset)

    def write(self, path, data, offset, fh):
        if self._fault() == "eio-write":
            raise FuseOSError(errno.EIO)
        return self._call(os.pwrite, fh, data, offset)

    def truncate(self, path, length, fh=None):
        if self._fault() == "eio-write":
            raise FuseOSError(errno.EIO)
        if fh is not None:
            return self._call(os.ftruncate, fh, length)
        return self._call(os.truncate, self._path(path), length)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        return self._call(os.close, fh)

    def fsync(self, path, datasync, fh):
        if self._fault() == "eio-sync":
            raise FuseOSError(errno.EIO)
        return self._call(os.fdatasync if datasync else os.fsync, fh)

    def fsyncdir(self, path, datasync, fh):
        if self._fault() == "eio-sync":
            raise FuseOSError(errno.EIO)
        return 0


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: faultfs.py BACKING MOUNTPOINT CONTROL")
    backing, mountpoint, control = sys.argv[1:]
    FUSE(FaultFS(os.path.abspath(backing), os.path.abspath(control)), mountpoint, foreground=True, nothreads=True,
         allow_other=True, default_permissions=True)


if __name__ == "__main__":
    main()
