"""Pretrained weights by name, and the project's main config (the network they fit).

anime_face_detector publishes its models on the Hugging Face Hub; wherever a checkpoint is taken
(``--checkpoint`` of the tools, ``load_from`` in a config, ``--face-detector``) one of these names
works as well as a file:

- ``anime-face-detector``: the 28-point landmark model, ``model.safetensors`` of
  ``hysts/anime-face-detector-hrnetv2``;
- ``anime-face-detector-yolov3``, ``anime-face-detector-faster-rcnn``: its face detectors,
  ``model.safetensors`` of ``hysts/anime-face-detector-yolov3`` / ``-faster-rcnn``.

Names are resolved with ``huggingface_hub.hf_hub_download``, the way anime_face_detector itself
fetches them: the first use downloads into the Hub cache (with a progress bar), later ones read
the cache; ``HF_HOME``, ``HF_HUB_CACHE``, ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE=1`` are honoured.
Whatever stops a download (offline without a cached copy, no network, a proxy refusing, a
truncated transfer, an endpoint that is not a Hub) is one line saying which repository and file
are missing, why, and how to bring them, with the credentials of URLs in it redacted. A download
is bounded: a body past the size the endpoint declared for the file (or past any pretrained
file's), one that slows to a trickle, or a download not done within an hour is stopped, with
nothing of it left in the cache (``hf download`` has no such bounds).

No commit of these repositories is pinned (none is known to this project: a revision is set in
:data:`PRETRAINED` once one is), so a name means the repository's current ``main``; which commit
was used is recorded instead: :func:`describe_checkpoint` for logs, :func:`pretrained_model_id`
for the files a model writes.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import CheckpointError, missing_file_message
from .errors import REDACTED, first_line, printable, redact_userinfo

CONFIG_ROOT = Path(__file__).resolve().parent.parent / 'configs'
#: The project's main config: HRNetV2-W18 with the 270-270-28 head, the network of every
#: checkpoint trained here with the shipped configs and of anime_face_detector's landmark model;
#: the default config wherever a checkpoint is given without one.
MAIN_CONFIG = CONFIG_ROOT / 'td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256.py'


@dataclass(frozen=True)
class PretrainedWeights:
    """A published checkpoint.

    Attributes:
        name: what users type.
        repo_id: its Hugging Face model repository.
        filename: the file in that repository.
        description: what the model does, for messages.
        face_detector: anime_face_detector's detector name (``yolov3``, ``faster-rcnn``) when
            the weights are a face detector's.
        revision: the commit to download, or None for the repository's ``main`` (whichever
            commit that is then; the one used is recorded, see the module docstring).
    """

    name: str
    repo_id: str
    filename: str
    description: str
    face_detector: str | None = None
    revision: str | None = None


PRETRAINED: dict[str, PretrainedWeights] = {w.name: w for w in (
    PretrainedWeights('anime-face-detector', 'hysts/anime-face-detector-hrnetv2',
                      'model.safetensors', 'anime_face_detector\'s 28-point landmark model '
                      '(HRNetV2-W18, human anime faces)'),
    PretrainedWeights('anime-face-detector-yolov3', 'hysts/anime-face-detector-yolov3',
                      'model.safetensors', 'anime_face_detector\'s YOLOv3 face detector',
                      face_detector='yolov3'),
    PretrainedWeights('anime-face-detector-faster-rcnn', 'hysts/anime-face-detector-faster-rcnn',
                      'model.safetensors', 'anime_face_detector\'s Faster R-CNN face detector',
                      face_detector='faster-rcnn'),
)}

# a URL, from its scheme (at the start of a word: a scan from inside one would make long
# crafted text quadratic) to a space or quote
_URL = re.compile(r'''(?<!\w)\w+://[^\s'"<>]*''')
# the punctuation of the sentence around a URL (the ': ' after a URL in a message stays)
_SENTENCE_PUNCTUATION = '.,:;)]'
# a snapshot folder of the Hugging Face cache is named after its commit
_COMMIT = re.compile(r'[0-9a-f]{40}')


def face_detector_weights(detector: str) -> str:
    """The pretrained name of one of anime_face_detector's face detectors."""
    return next(w.name for w in PRETRAINED.values() if w.face_detector == detector)


def is_pretrained_name(value: str | os.PathLike) -> bool:
    return str(value) in PRETRAINED


def redact_urls(text: str) -> str:
    """``text`` with the user info (``user:password@``) and the query strings of the URLs in it
    replaced by ``***``: an ``HF_ENDPOINT`` or proxy URL may carry credentials, and
    huggingface_hub's errors quote the URL they requested."""
    return _URL.sub(_without_query, redact_userinfo(text))


def _without_query(url: re.Match) -> str:
    # the query (tokens travel there) runs from the first ? before any # to the # or the end
    address, question, rest = url.group().partition('?')
    if not question or '#' in address:
        return url.group()
    query, hash_, fragment = rest.partition('#')
    after = query[len(query.rstrip(_SENTENCE_PUNCTUATION)):]
    return f'{address}?{REDACTED}{after}{hash_}{fragment}'


@dataclass(frozen=True)
class HubSnapshot:
    """Where a file of the Hugging Face cache comes from.

    Attributes:
        repo_id: its repository.
        commit: the commit it was downloaded at.
        repo_folder: the repository's folder in the cache (``models--owner--name``): deleting it
            makes the next use download the file afresh.
    """

    repo_id: str
    commit: str
    repo_folder: Path


def hub_snapshot(path: str | os.PathLike) -> HubSnapshot | None:
    """The repository and commit of a file in the Hugging Face cache's layout
    (``<cache>/models--owner--name/snapshots/<commit>/<file>``, what :func:`resolve_checkpoint`
    returns for a name), or None for any other file.

    Read from the path alone, no network and no cache lookup: huggingface_hub names the snapshot
    folder after the commit the file was downloaded at.
    """
    parts = Path(path).parts
    for i in range(len(parts) - 3, 0, -1):  # the file may lie in a subfolder of the snapshot
        if (parts[i] == 'snapshots' and parts[i - 1].startswith('models--')
                and _COMMIT.fullmatch(parts[i + 1])):
            return HubSnapshot(parts[i - 1][len('models--'):].replace('--', '/'), parts[i + 1],
                               Path(*parts[:i]))
    return None


def download_hint(weights: PretrainedWeights) -> str:
    """How to bring a model to a machine that cannot download it."""
    # HF_HOME would need the copy under <HF_HOME>/hub; HF_HUB_CACHE names the hub folder itself
    return (f'on a machine with internet run `hf download {weights.repo_id} {weights.filename}` '
            'and copy its Hugging Face cache folder (~/.cache/huggingface/hub/models--'
            f'{weights.repo_id.replace("/", "--")}) into this machine\'s cache (or set '
            'HF_HUB_CACHE to a copied hub folder), or download the file and pass its path')


def fresh_copy_hint(path: str | os.PathLike) -> str:
    """For the message of a file that cannot be read: how to get a fresh copy when it is the
    Hugging Face cache's (a transfer broken in a way huggingface_hub did not notice, a disk
    error); '' for any other file.

    Deleting the repository's cache folder is the advice rather than the file: the snapshot
    file is a link to a blob, and huggingface_hub relinks a blob that is still there.
    """
    snapshot = hub_snapshot(path)
    if snapshot is None:
        return ''
    return (f'; it is the Hugging Face cache\'s copy of {snapshot.repo_id} (commit '
            f'{snapshot.commit}): delete {snapshot.repo_folder} and run again to download it '
            f'afresh, or run `hf download {snapshot.repo_id} {Path(path).name} --force-download`')


def resolve_checkpoint(value: str | os.PathLike) -> Path:
    """A checkpoint file from a path or a name of :data:`PRETRAINED`.

    An existing file wins over a name; a name is downloaded on first use (see the module
    docstring).

    Raises:
        CheckpointError: neither a regular file nor a name; or a name that is neither cached nor
            downloadable (offline, no network, a proxy or server refusing, a broken transfer,
            a transfer past its bounds, the repository gone, huggingface_hub not installed), or
            whose cached copy is no regular file (a link to a FIFO, to nothing), in one line
            saying what to do.
    """
    path = Path(value)
    if path.is_file():
        return path
    weights = PRETRAINED.get(str(value))
    if weights is None:
        if os.path.lexists(path):  # there, but a folder, a FIFO, a link to nothing
            raise CheckpointError(missing_file_message(path))
        names = ', '.join(PRETRAINED)
        raise CheckpointError(f'checkpoint not found: {value} (give a file, or one of the '
                              f'pretrained names: {names})')
    return _download(weights)


def _download(weights: PretrainedWeights) -> Path:
    """``hf_hub_download`` of a pretrained name, every failure one :class:`CheckpointError`."""
    try:
        from huggingface_hub import constants, hf_hub_download
    except ImportError as e:  # it comes with the 'tools' extra only
        raise CheckpointError(
            f'{weights.name}: pretrained names are downloaded with huggingface_hub, which cannot '
            f'be imported ({first_line(e)}): pip install huggingface_hub (or this project with '
            f'its tools extra), or download {weights.filename} of https://huggingface.co/'
            f'{weights.repo_id} and pass its path') from None
    try:
        with (_redacted_hub_logs(), _hash_etags_only(weights),
              _bounded_transfer(weights) as progress):
            path = Path(hf_hub_download(weights.repo_id, weights.filename,
                                        revision=weights.revision, tqdm_class=progress))
    except CheckpointError:  # _hash_etags_only's own: the reason, not "cannot be downloaded"
        raise
    except Exception as e:
        # Broad on purpose, around this one call: besides its own errors, huggingface_hub lets
        # its transport's escape (httpx2's RemoteProtocolError of a truncated body, ReadTimeout,
        # ProxyError, UnsupportedProtocol of an HF_ENDPOINT without a scheme; the transport
        # library differs between its versions), and each means the same here: no file.
        refused = _ours(e, _NoHashHeader)
        if refused is not None:
            raise CheckpointError(redact_urls(
                f'{weights.name}: {weights.filename} of the Hugging Face repository '
                f'{weights.repo_id}: {constants.ENDPOINT} answered {refused.value} as its '
                f'{refused.header}, which is no {refused.expected} but would name a file of '
                'the endpoint\'s choosing, in the cache or outside it: refused, nothing '
                'downloaded (is HF_ENDPOINT a Hugging Face Hub?)')) from None
        waited = _ours(e, _LockNotHad)
        if waited is not None:
            raise CheckpointError(
                f'{weights.name}: {weights.filename} of the Hugging Face repository '
                f'{weights.repo_id}: the cache\'s lock {printable(waited.lock_file, one_line=True)}'
                f' stayed held by another process for {waited.seconds:.0f} s (another download of '
                'it under way, or a lock left by one that was killed, on a file system without '
                'locks): nothing downloaded; run again once it is done, or delete that lock '
                'file if no download runs') from None
        stopped = _ours(e, _TransferStopped)
        if stopped is not None:
            raise CheckpointError(redact_urls(
                f'{weights.name}: {weights.filename} of the Hugging Face repository '
                f'{weights.repo_id}: the download from {constants.ENDPOINT} was stopped: '
                f'{stopped.why}; nothing of it is kept in the cache (is HF_ENDPOINT a '
                f'Hugging Face Hub?); {download_hint(weights)}')) from None
        why = _why_not_downloaded(e, constants)
        raise CheckpointError(redact_urls(
            f'{weights.name}: {weights.filename} of the Hugging Face repository '
            f'{weights.repo_id} is not in the cache {constants.HF_HUB_CACHE} and cannot be '
            f'downloaded ({why}); {download_hint(weights)}')) from None
    # the cache's snapshot entry is a link that huggingface_hub takes as there when anything is
    # at its end: a FIFO there would make the reader wait for a writer for good
    if not path.is_file():
        raise CheckpointError(f'{weights.name}: {missing_file_message(path)}'
                              f'{fresh_copy_hint(path)}')
    return path


#: what a Hub's ETag of a file is: its git blob's sha1 (40 hex digits) or, for an LFS file,
#: its sha256 (64); huggingface_hub names the cached copy after it
def _ours(error: BaseException, kind: type[Exception]) -> Exception | None:
    """``error`` where it is one of this module's ``kind`` raised inside huggingface_hub, as it
    is or as the cause huggingface_hub wrapped (as "cannot be located"); else None."""
    for candidate in (error, error.__cause__):
        if isinstance(candidate, kind):
            return candidate
    return None


_HUB_ETAG = re.compile(r'[0-9a-fA-F]{40}|[0-9a-fA-F]{64}')
#: what a Hub's ``X-Repo-Commit`` header holds: a git commit hash, which huggingface_hub makes
#: a folder name of (``snapshots/<commit>``, ``.no_exist/<commit>``) and writes into
#: ``refs/<revision>``, unchecked
_HUB_COMMIT = re.compile(r'[0-9a-f]{40}')
# one download at a time wraps huggingface_hub's module (see _hash_etags_only)
_ETAG_CHECK_LOCK = threading.Lock()


class _NoHashHeader(Exception):
    """An endpoint's header that is no hash where huggingface_hub makes a path of one (the
    ETag, ``X-Repo-Commit``); ``header`` names it, ``value`` is it (shown for a message) and
    ``expected`` says what it should be."""

    def __init__(self, header: str, value: str, expected: str):
        super().__init__(value)
        self.header, self.value, self.expected = header, value, expected


@contextlib.contextmanager
def _hash_etags_only(weights: PretrainedWeights) -> Iterator[None]:
    """While a download runs, huggingface_hub takes only an ETag that is a file hash.

    huggingface_hub (2.4) names the cache's copy of a file after the ETag the endpoint sends,
    unchecked (``blobs/<etag>``, ``.locks/.../<etag>.lock``): a hostile or hijacked
    ``HF_ENDPOINT`` answering ``"../../../x"`` would have it write a file of its choosing
    outside the cache. Every ETag of a server's answer passes through its normalisation,
    ``huggingface_hub.file_download._normalize_etag``, which is wrapped here to refuse
    (:class:`_NoHashHeader`) any other than :data:`_HUB_ETAG` before it becomes a path. A private
    name, because no public API sees the ETag of the request whose answer names the file:
    checking ``get_hf_file_metadata`` (public) first would ask the server once more, and a
    hostile one can answer that request with a hash and the download's with a path. Where
    the name is gone (another huggingface_hub), nothing is downloaded: the check must not
    silently fall away.

    Offline (``HF_HUB_OFFLINE``), no server answers: the cache's copy is taken as it is.

    Raises:
        CheckpointError: huggingface_hub has no such function (online).
    """
    from huggingface_hub import __version__, constants, file_download
    if constants.HF_HUB_OFFLINE:
        yield
        return
    normalize = getattr(file_download, '_normalize_etag', None)
    if normalize is None:
        raise CheckpointError(
            f'{weights.name}: huggingface_hub {__version__} has no _normalize_etag, through '
            'which this project checks that the ETag an endpoint gives (the name of the '
            'cache\'s copy) is a file hash, so it downloads nothing: download '
            f'{weights.filename} of https://huggingface.co/{weights.repo_id} and pass its path')

    def hash_only(etag: str | None) -> str | None:
        normalized = normalize(etag)
        if normalized is not None and not _HUB_ETAG.fullmatch(normalized):
            raise _NoHashHeader('ETag', printable(repr(normalized), one_line=True, limit=80),
                                'file hash (40 or 64 hex digits)')
        return normalized

    # the module's function is replaced for every thread: one download at a time, each
    # restoring the original
    with _ETAG_CHECK_LOCK:
        file_download._normalize_etag = hash_only
        try:
            yield
        finally:
            file_download._normalize_etag = normalize


#: a download's bounds (see _bounded_transfer): the bytes of one answer, more than the largest
#: published file (anime_face_detector's YOLOv3, about 250 MB) several times over
_MAX_DOWNLOAD_BYTES = 1 << 30
#: at least this many bytes in every window of _STALL_SECONDS (about 4 KB/s), or it is stopped
_STALL_BYTES = 256 << 10
_STALL_SECONDS = 60.0
#: the whole download, answers and retries together
_DOWNLOAD_DEADLINE_SECONDS = 3600.0


class _TransferStopped(Exception):
    """A download stopped by :func:`_bounded_transfer`; ``why`` says what it did, for a
    message."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


class _LockNotHad(Exception):
    """The cache's lock of the file, held by another process past the download's deadline;
    ``seconds``: how long it was waited for."""

    def __init__(self, lock_file: str, seconds: float):
        super().__init__(lock_file)
        self.lock_file, self.seconds = lock_file, seconds


class _Watch:
    """The bounds of one download: its deadline, and per answer its bytes and progress.

    The deadline holds while a request waits for an answer's status line and headers too, which
    no hook sees arrive (a server sending them a byte every few seconds kept a request going
    for hours, huggingface_hub's timeout being per read): every connection the download opens
    is recorded (:meth:`trace`, httpcore's ``trace`` extension) and, at the deadline, a timer
    shuts them down (:meth:`expire`), ending the read that waits.
    """

    def __init__(self, filename: str):
        self.filename = filename
        self.seconds = _DOWNLOAD_DEADLINE_SECONDS
        self.deadline = time.monotonic() + self.seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(self.seconds, self.expire)
        self._timer.daemon = True

    def stopped(self) -> _TransferStopped:
        return _TransferStopped(f'{self.filename} was not done within {self.seconds:g} s')

    def check_deadline(self) -> None:
        if self.expired or time.monotonic() > self.deadline:
            raise self.stopped()

    def trace(self, event: str, info: dict) -> None:
        """httpcore's trace callback of a request: records the socket of each connection the
        download opens (shut at once past the deadline), and of each TLS layer over one: TLS
        takes the socket's file descriptor over, the TCP socket object left closed."""
        # 'connection.', a SOCKS proxy's 'socks.'; start_tls of https, and of a proxy's tunnel
        if not event.endswith(('.connect_tcp.complete', '.start_tls.complete')):
            return
        stream = info.get('return_value')
        sock = stream.get_extra_info('socket') if stream is not None else None
        if isinstance(sock, socket.socket):
            with self._lock:
                self._sockets.append(sock)
                if self.expired:
                    self._shut(sock)

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()

    def expire(self) -> None:
        """At the deadline: every connection of the download shut, whatever read waits on it."""
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # closed already
            sock.shutdown(socket.SHUT_RDWR)

    def bounded(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """The chunks of an answer's body as they arrive, stopped past the bounds."""
        received = since_mark = 0
        mark = time.monotonic()
        for chunk in chunks:
            received += len(chunk)
            since_mark += len(chunk)
            if received > _MAX_DOWNLOAD_BYTES:
                raise _TransferStopped(f'an answer went past {_MAX_DOWNLOAD_BYTES} bytes, more '
                                       'than any of the pretrained files')
            now = time.monotonic()
            if since_mark >= _STALL_BYTES:
                since_mark, mark = 0, now
            elif now - mark > _STALL_SECONDS:
                raise _TransferStopped(f'less than {_STALL_BYTES} bytes arrived in '
                                       f'{_STALL_SECONDS:g} s')
            self.check_deadline()
            yield chunk


@contextlib.contextmanager
def _bounded_transfer(weights: PretrainedWeights) -> Iterator[type | None]:
    """While a download runs, an endpoint cannot keep it going without end; yields the
    ``tqdm_class`` to give ``hf_hub_download`` (None offline, where nothing is transferred).

    - huggingface_hub's telemetry is off (``HF_HUB_DISABLE_TELEMETRY``, its own setting): with
      it, building the user-agent of the first request fetches ``{HF_ENDPOINT}/api/agent-
      harnesses`` and reads the whole body (a server streaming it without end grew the memory
      without bound and the file was never asked for).
    - Xet storage is off (``HF_HUB_DISABLE_XET``, its own setting): an endpoint answering with
      Xet headers would have the file fetched by ``hf_xet``'s own client, outside the bounds
      below; plain HTTP fetches the same file (the pretrained files are small).
    - the file's body stops as soon as it passes the size the endpoint declared for it (the
      metadata's, which huggingface_hub compared only once the body had ended: a server
      streaming without end filled the disk): the progress bar huggingface_hub updates with
      each chunk before writing it (``tqdm_class``, public) counts them;
    - every answer's body (read in the thread of the download) is stopped past
      :data:`_MAX_DOWNLOAD_BYTES`, at less than :data:`_STALL_BYTES` in
      :data:`_STALL_SECONDS` (a trickle, which huggingface_hub's per-read timeout
      ``HF_HUB_DOWNLOAD_TIMEOUT`` lets through) and past :data:`_DOWNLOAD_DEADLINE_SECONDS`:
      a response event hook of huggingface_hub's HTTP client (``get_session``, public, and
      any client its factory makes meanwhile) wraps the body's stream; removed afterwards.
    - the deadline holds for the status line and headers too (:class:`_Watch`): a request
      hook gives each request a trace callback recording its connections, and the client is
      made afresh (``close_session``, public) so that no connection opened before the download
      goes unrecorded; at the deadline they are shut down. (Closing the process's shared client
      would fail another thread's huggingface_hub request under way: this project makes none
      beside a download, and its downloads run one at a time.)

    Stopping raises :class:`_TransferStopped` inside huggingface_hub, which removes its
    partial file (``blobs/<etag>.<id>.incomplete``): nothing of it is left in the cache. One
    download at a time: runs inside :func:`_hash_etags_only`'s lock (the telemetry setting is
    the process's).
    """
    from huggingface_hub import close_session, constants, file_download, get_session
    from huggingface_hub.utils import tqdm as hub_tqdm
    if constants.HF_HUB_OFFLINE:
        yield None
        return
    watch = _Watch(weights.filename)
    thread = threading.get_ident()
    weak_lock = getattr(file_download, 'WeakFileLock', None)

    @contextlib.contextmanager
    def bounded_lock(lock_file, *, timeout: float | None = None):
        # the cache's lock of the file waited for within the deadline (huggingface_hub waits
        # for good: another process's download, a stale soft lock on a network file system)
        import filelock
        wait = max(watch.deadline - time.monotonic(), 0.01)
        wait = wait if timeout is None else min(timeout, wait)
        try:
            with weak_lock(lock_file, timeout=wait) as lock:
                yield lock
        except filelock.Timeout:
            raise _LockNotHad(str(lock_file), wait) from None

    class BoundedProgress(hub_tqdm):
        """huggingface_hub's progress bar, counting the file's bytes against its declared
        size (``total``) before each chunk is written."""

        def __init__(self, *args, **kwargs):
            self.received = kwargs.get('initial') or 0
            self.declared = kwargs.get('total')
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            self.received += n  # negative when a resumed download starts over
            if self.declared is not None and self.declared > _MAX_DOWNLOAD_BYTES:
                raise _TransferStopped(f'it declared {self.declared} bytes for '
                                       f'{weights.filename}, more than any of the pretrained '
                                       'files')
            if self.declared is not None and self.received > self.declared:
                raise _TransferStopped(f'it sent more of {weights.filename} than the '
                                       f'{self.declared} bytes it declared')
            watch.check_deadline()
            return super().update(n)

    def traced(request) -> None:
        if threading.get_ident() != thread:  # another thread's request
            return
        watch.check_deadline()  # no new request (a retry) past it
        request.extensions = {**request.extensions, 'trace': watch.trace}

    def bound(response) -> None:
        if threading.get_ident() != thread:  # another thread's request
            return
        # every answer, before huggingface_hub reads it: a 404's commit too, which it makes
        # the folder of a note that the file does not exist (.no_exist/<commit>/<file>)
        commit = response.headers.get('X-Repo-Commit')
        if commit is not None and not _HUB_COMMIT.fullmatch(commit):
            raise _NoHashHeader('X-Repo-Commit', printable(repr(commit), one_line=True,
                                                             limit=80),
                                'commit hash (40 lowercase hex digits)')
        watch.check_deadline()
        stream = response.stream
        # the transport's own class of a sync stream (httpx2's or httpx's SyncByteStream),
        # which it checks the stream against
        base = next((c for c in type(stream).__mro__ if c.__name__ == 'SyncByteStream'), None)
        if base is not None:
            response.stream = _bounded_stream_class(base)(stream, watch)

    # huggingface_hub replaces its client after a connection error (close_session), and the
    # next request takes a new one from its factory: the clients made meanwhile get the hook
    # too (the factory's private name; where it is gone, the session's hook alone)
    from huggingface_hub.utils import _http as hub_http
    factory = getattr(hub_http, '_GLOBAL_CLIENT_FACTORY', None)
    # its pooled connections were opened before the download, unrecorded (see _Watch)
    close_session()
    clients = [get_session()]

    def hook(client) -> None:
        client.event_hooks['request'].append(traced)
        client.event_hooks['response'].append(bound)

    def bounded_factory():
        clients.append(factory())
        hook(clients[-1])
        return clients[-1]

    telemetry_off, xet_off = constants.HF_HUB_DISABLE_TELEMETRY, constants.HF_HUB_DISABLE_XET
    constants.HF_HUB_DISABLE_TELEMETRY = constants.HF_HUB_DISABLE_XET = True
    hook(clients[0])
    if factory is not None:
        hub_http._GLOBAL_CLIENT_FACTORY = bounded_factory
    if weak_lock is not None:
        file_download.WeakFileLock = bounded_lock
    watch.start()
    try:
        yield BoundedProgress
    except Exception as e:
        if watch.expired and _ours(e, _LockNotHad) is None:  # a read ended by the deadline's
            raise watch.stopped() from e  # shutdown: whatever it raised
        raise
    finally:
        watch.cancel()
        constants.HF_HUB_DISABLE_TELEMETRY, constants.HF_HUB_DISABLE_XET = telemetry_off, xet_off
        if weak_lock is not None:
            file_download.WeakFileLock = weak_lock
        if factory is not None:
            hub_http._GLOBAL_CLIENT_FACTORY = factory
        for client in clients:
            for event, function in (('request', traced), ('response', bound)):
                with contextlib.suppress(ValueError):
                    client.event_hooks[event].remove(function)


@functools.cache
def _bounded_stream_class(base: type) -> type:
    """A subclass of the transport's sync byte stream class ``base`` whose chunks pass through
    :meth:`_Watch.bounded`."""

    class BoundedStream(base):
        def __init__(self, stream, watch: _Watch):
            self._stream, self._watch = stream, watch

        def __iter__(self) -> Iterator[bytes]:
            yield from self._watch.bounded(iter(self._stream))

        def close(self) -> None:
            self._stream.close()

        @property
        def elapsed(self):  # what the response reads back once closed
            return getattr(self._stream, 'elapsed', None)

    return BoundedStream


class _RedactUrls(logging.Filter):
    """Redacts the URLs of a log record (:func:`redact_urls`), its message, arguments and
    traceback: huggingface_hub logs each retry of a failed request with the URL asked, an
    ``HF_ENDPOINT``'s user:password and query in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the message: logging reports it
            message = f'{record.msg} {record.args}'
        record.msg, record.args = redact_urls(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_urls(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_urls(record.stack_info)
        return True


@contextlib.contextmanager
def _redacted_hub_logs() -> Iterator[None]:
    """huggingface_hub's log records redacted while a download runs.

    A logger's filter sees the records made on that logger only (not those of its children,
    which propagate past it), so it is put on each of huggingface_hub's loggers, its retry
    logger's by name (it may not exist yet); the record, changed there, is what every handler
    then shows. Removed afterwards: the loggers are the process's.
    """
    names = {'huggingface_hub', 'huggingface_hub.utils._http', 'huggingface_hub.file_download'}
    names |= {name for name in list(logging.Logger.manager.loggerDict)
              if name.startswith('huggingface_hub.')}
    loggers = [logging.getLogger(name) for name in sorted(names)]
    redact = _RedactUrls()
    for logger in loggers:
        logger.addFilter(redact)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(redact)


def _why_not_downloaded(error: Exception, constants) -> str:
    """Why ``hf_hub_download`` failed, in a few words naming the endpoint it asked (a custom
    ``HF_ENDPOINT`` as much as huggingface.co)."""
    if constants.HF_HUB_OFFLINE:
        return 'HF_HUB_OFFLINE is set'
    from huggingface_hub.errors import LocalEntryNotFoundError
    # "not cached and cannot be located": what went wrong online (an HTTP 500, a reply that is
    # no Hub's, a refused connection) is its cause
    cause = error.__cause__ if isinstance(error, LocalEntryNotFoundError) else error
    if cause is None:
        return f'{constants.ENDPOINT} cannot be reached'
    # a server's own words may run long: enough to recognise them, not a page (cut after the
    # redaction: a cut inside user:password@ would leave the password unmatched)
    words = redact_urls(first_line(cause))[:300]
    return f'from {constants.ENDPOINT}: {type(cause).__name__}: {words}'


def _cached_file(weights: PretrainedWeights) -> Path | None:
    """The cached file of a pretrained name (None when there is none), without the network."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(weights.repo_id, weights.filename, revision=weights.revision)
    return Path(found) if isinstance(found, str) else None


def describe_checkpoint(value: str | os.PathLike) -> str:
    """A checkpoint for a log line: a file as given, and a pretrained name (or a file of the
    Hugging Face cache) with the repository and commit its weights came from, since a name
    follows the repository's ``main``. Reads no network: meant for after the checkpoint was
    resolved (loaded), when its file is in the cache."""
    snapshot = _snapshot_of(value)
    if snapshot is None:
        return str(value)
    return f'{value} ({snapshot.repo_id} at commit {snapshot.commit})'


def pretrained_model_id(name: str) -> str:
    """The id of a pretrained name's weights for the files a model writes: ``name@<commit>`` of
    its cached file (after :func:`resolve_checkpoint`), or the name alone when not cached."""
    snapshot = _snapshot_of(name)
    return f'{name}@{snapshot.commit}' if snapshot is not None else name


def _snapshot_of(value: str | os.PathLike) -> HubSnapshot | None:
    """Where a checkpoint's weights came from: a file of the Hugging Face cache, or the cached
    file of a pretrained name (not a file of that name); None otherwise or when not cached."""
    path = Path(value)
    if not path.is_file() and str(value) in PRETRAINED:
        path = _cached_file(PRETRAINED[str(value)])
    return hub_snapshot(path) if path is not None else None
