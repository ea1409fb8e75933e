"""The shared lock helper (:mod:`animal_landmarks_mm.file_lock`): what the crawler's two locks
are made of. The annotator's output-folder lock is tested in test_annotate.py, the crawler's
messages in test_crawl.py."""
import errno
import fcntl
import os

import pytest

from animal_landmarks_mm.crawl import CrawlError, _crawl_locked, _locked
from animal_landmarks_mm.file_lock import (
    LockHeldError,
    NotRegularLockFileError,
    exclusive_lock,
)


def _open_descriptors() -> set[int]:
    return {int(name) for name in os.listdir('/proc/self/fd')}


def test_a_held_lock_is_refused_naming_its_holder_and_leaving_its_file(tmp_path):
    """Another open file's flock (this process's, as the system's list of locks names it)
    held past the wait: LockHeldError with the holder, the holder's file as it was, the
    refused descriptor closed, the block never run."""
    path = tmp_path / 'x.lock'
    holder = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        os.write(holder, b'4242\n')
        before = _open_descriptors()
        ran = []
        with pytest.raises(LockHeldError) as caught:
            with exclusive_lock(path, wait_s=0.1, name_holder=True):
                ran.append(True)
        assert _open_descriptors() == before
    finally:
        os.close(holder)
    assert caught.value.holder == str(os.getpid()) and caught.value.path == path
    assert caught.value.errno == errno.EWOULDBLOCK and ran == []
    assert path.read_text() == '4242\n'


@pytest.mark.parametrize('name_holder', [True, False])
def test_the_holder_writes_its_id_only_when_asked_and_clears_it(tmp_path, name_holder):
    path = tmp_path / 'x.lock'
    with exclusive_lock(path, name_holder=name_holder):
        inside = path.read_text()
        other = os.open(path, os.O_RDONLY)  # another open file cannot take it meanwhile
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    assert inside == (f'{os.getpid()}\n' if name_holder else '')
    assert path.read_text() == '' and oct(path.stat().st_mode & 0o777) == '0o666'
    other = os.open(path, os.O_RDONLY)  # and takes it once the block is over
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(other)


def test_a_file_system_that_cannot_lock_runs_the_block_unlocked(tmp_path, monkeypatch):
    """NFS without a lock daemon (flock fails with ENOLCK; made to here): the block runs,
    no id is written, the descriptor is closed."""
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, 'flock', no_locks)
    path = tmp_path / 'x.lock'
    before = _open_descriptors()
    with exclusive_lock(path, name_holder=True):
        inside = path.read_text()
    assert inside == '' and _open_descriptors() == before


def test_a_lock_file_that_is_no_regular_file_is_refused(tmp_path):
    os.mkfifo(tmp_path / 'x.lock')
    with pytest.raises(NotRegularLockFileError):
        with exclusive_lock(tmp_path / 'x.lock'):
            pass


def test_the_blocks_own_errors_pass_the_crawlers_locks_as_they_are(tmp_path):
    """Only taking the lock is said as lock trouble: an OSError or a LockHeldError the crawl
    itself raises (a full disk; another folder's lock) reaches the caller unchanged, not as
    'cannot open the crawl's lock file' or 'another crawl held'; the lock is let go."""
    disk_full = OSError(errno.ENOSPC, 'No space left on device')
    for locked in (lambda: _crawl_locked(tmp_path, 'danbooru'),
                   lambda: _locked(tmp_path / 'record.lock', 0.1)):
        for raised in (disk_full, LockHeldError(tmp_path / 'other.lock', '1')):
            with pytest.raises(OSError) as caught:
                with locked():
                    raise raised
            assert caught.value is raised and not isinstance(caught.value, CrawlError)
    for path in tmp_path.iterdir():  # every lock let go
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
