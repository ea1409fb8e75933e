"""Advisory locks on lock files (``flock``), shared by the tools that keep two processes apart.

The annotator and ``tools/infer.py`` lock an output folder (:mod:`.annotate`); the crawler locks
a label's crawl and its record of refused posts (:mod:`.crawl`). Each opens its lock file the
same guarded way (never through a link, never waiting on a FIFO, readable and writable for all
so that another user's process locks it too), takes the lock without waiting long for another
holder, and names that holder by its process id when it refuses. Where there is no ``flock``
(Windows) or the file system's fails (NFS without a lock daemon) the callers go on unlocked.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Iterator

#: A lock file's mode, whatever the umask: another user's process must be able to open it (a
#: file it cannot open could not keep the two apart) and to write its process id there.
LOCK_FILE_MODE = 0o666

#: Seconds between two tries of a lock another process holds.
LOCK_POLL_S = 0.05


class NotRegularLockFileError(OSError):
    """The lock file is a FIFO, a device or a folder: nothing to lock, and a FIFO opened for
    writing would wait for a reader for good."""


class LockHeldError(OSError):
    """Another process held the lock for as long as the caller would wait.

    Attributes:
        path: the lock file.
        holder: the holder's process id, or ``unknown`` (:func:`lock_holder`, asked while the
            lock file was still open: its id cannot be read once it is closed).
    """

    def __init__(self, path: str | os.PathLike, holder: str) -> None:
        super().__init__(errno.EWOULDBLOCK, f'{path} is locked by process {holder}')
        self.path = path
        self.holder = holder


def has_flock() -> bool:
    """Whether this system locks files with ``flock`` (not Windows)."""
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return False
    return True


def open_lock_file(path: str | os.PathLike, create: bool = True) -> tuple[int, bool]:
    """Open the lock file ``path``, read-write where this process may, else read-only (another
    user's file, a read-only file system: ``flock`` locks through a read-only descriptor too).

    A file made here or open for writing is given :data:`LOCK_FILE_MODE` (a file of another
    owner's is theirs to change). Never through a link (``O_NOFOLLOW``: the holder's id would
    be written to another file) and without waiting (``O_NONBLOCK``: a FIFO would wait for a
    writer).

    Args:
        path: the lock file.
        create: make it if there is none, and open it for writing; False (a peek) opens only a
            lock file that exists, read-only, and makes nothing.

    Returns:
        The descriptor (close-on-exec; the caller closes it) and whether it is open for writing.

    Raises:
        NotRegularLockFileError: it is a FIFO, a device or a folder.
        OSError: it cannot be opened, not even read-only (``ELOOP``: a link); where there is
            none and it cannot be made, the reason it cannot be made (``EACCES``, ``EROFS``).
    """
    flags = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    refused_making = None
    fd, writable = None, False
    if create:
        try:
            fd, writable = os.open(path, os.O_RDWR | os.O_CREAT | flags, LOCK_FILE_MODE), True
        except IsADirectoryError:  # (O_CREAT on a folder: EISDIR, before any fstat)
            raise NotRegularLockFileError(f'{path} is not a regular file') from None
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            refused_making = error
    if fd is None:
        try:
            fd = os.open(path, os.O_RDONLY | flags)
        except FileNotFoundError:
            if refused_making is not None:  # none there, and none could be made: say why
                raise refused_making from None
            raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularLockFileError(f'{path} is not a regular file')
        if writable and stat.S_IMODE(st.st_mode) != LOCK_FILE_MODE:
            # made under this umask (or by an earlier version): another user could not open it
            with contextlib.suppress(OSError):
                os.fchmod(fd, LOCK_FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd, writable


def lock_exclusive(fd: int, wait_s: float = 0.0) -> None:
    """Take an exclusive ``flock`` on ``fd``, trying again every :data:`LOCK_POLL_S` for at
    most ``wait_s`` seconds while another process holds it.

    Raises:
        BlockingIOError: another process still holds it after ``wait_s``.
        OSError: this file system cannot lock (``ENOLCK``: NFS without a lock daemon;
            ``EBADF``: some read-only descriptors): the callers go on unlocked.
    """
    import fcntl
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            time.sleep(min(LOCK_POLL_S, left))


def write_holder(fd: int) -> None:
    """Write this process's id in the lock file ``fd`` (it holds the lock), for the message
    another process's refusal gives where the system keeps no list of locks; nothing where the
    file is read-only (another user's)."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)


def clear_holder(fd: int) -> None:
    """Clear the process id from the lock file ``fd`` before letting the lock go: a later
    holder that can only read the file (another user's) leaves it as it is, and must not seem
    to be this process."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)


def lock_holder(fd: int) -> str:
    """The process id of whoever holds the lock on the lock file ``fd``, or ``unknown``.

    The system's own list of locks (``/proc/locks``, Linux) says who holds it; the id in the
    file may be an earlier holder's: a holder that can only read the file (another user's)
    cannot write its own there. Where the system keeps no such list, the id in the file is
    taken if that process lives (a holder clears it when it releases the lock, so an id left
    there is the holder's, or a killed process's: gone, unless its id was given again).
    """
    try:
        written = os.pread(fd, 32, 0).decode('ascii', 'replace').strip()
        st = os.fstat(fd)
    except OSError:  # (an I/O error: the refusal goes on, naming no one)
        return 'unknown'
    written = written if written.isdigit() else None
    try:
        with open('/proc/locks', encoding='ascii', errors='replace') as locks:
            table = locks.read()
    except OSError:  # no such list (macOS, BSD): the file's word, if its process lives
        if written is None:
            return 'unknown'
        try:
            os.kill(int(written), 0)
        except ProcessLookupError:  # a killed holder's id
            return 'unknown'
        except (PermissionError, OverflowError):  # another user's process lives
            pass
        return written
    # '1: FLOCK  ADVISORY  WRITE 4753 fe:00:2146396 0 EOF' (device numbers in hex); a
    # waiter's line ('1: -> FLOCK ...') holds nothing, and pid 0 is one in another namespace
    held = [(fields[4], fields[5]) for fields in map(str.split, table.splitlines())
            if len(fields) > 5 and fields[1] == 'FLOCK' and fields[4].isdigit()
            and fields[4] != '0']
    inode = f'{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}'
    for pid, where in held:
        if where == inode:
            return pid
    # a file system whose files show other device numbers than its locks (a btrfs subvolume):
    # the file's id, if that process holds a lock on a file of this inode number
    if written is not None and (written, str(st.st_ino)) in {
            (pid, where.rsplit(':', 1)[-1]) for pid, where in held}:
        return written
    return 'unknown'


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, wait_s: float = 0.0,
                   name_holder: bool = False) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the lock file ``path`` (made if need be,
    :func:`open_lock_file`) for the ``with`` block, waiting at most ``wait_s`` for another
    holder. Where there is no ``flock`` (Windows) or the file system's fails (``ENOLCK``: NFS
    without a lock daemon), nothing is locked and the block runs.

    Args:
        path: the lock file.
        wait_s: seconds to wait for another holder (0: refuse at once).
        name_holder: write this process's id in the file while it holds the lock (for a
            refusal's message where the system keeps no list of locks) and clear it after.

    Raises:
        LockHeldError: another process held it for ``wait_s`` (naming it).
        NotRegularLockFileError: the lock file is a FIFO, a device or a folder.
        OSError: the lock file cannot be made or opened (:func:`open_lock_file`).
    """
    if not has_flock():  # Windows
        yield
        return
    fd, writable = open_lock_file(path)
    locked = False
    try:
        try:
            lock_exclusive(fd, wait_s)
            locked = True
        except BlockingIOError:
            raise LockHeldError(path, lock_holder(fd)) from None
        except OSError:  # ENOLCK: this file system cannot lock
            pass
        if locked and writable and name_holder:
            write_holder(fd)
        yield
    finally:
        if locked and writable and name_holder:  # (a later holder that only reads it)
            clear_holder(fd)
        os.close(fd)  # (and the lock with it)
