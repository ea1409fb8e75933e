"""Collect character images from image boards with gallery-dl, driven as a library.

Supported sources: Safebooru and Gelbooru (Gelbooru 0.2 software) and Danbooru. A gallery-dl
download job (:class:`CrawlJob`) runs in-process; this module adds what a landmark dataset needs
on top of it:

- filters before download (:func:`keep_post`): rating (default general/safe only), minimum size,
  excluded tags (ignoring case), image files only (no videos, zips or GIFs), http(s) file URLs only
  (gallery-dl's downloaders of other schemes are not bounded); a post whose fields are not what
  the site's API gives (a file URL gallery-dl cannot complete or without a host, an id too long
  to name a file after) is skipped and counted (:func:`post_problem`), and a post without a file
  of its own is never followed to another site (:meth:`CrawlJob.handle_queue`);
- ``limit`` counts *new* images; gallery-dl's download archive makes a rerun skip what is there;
- every file is checked before it gets its final name (:func:`check_image`): its extension
  (which gallery-dl sets from the file's first bytes) is one of :data:`IMAGE_EXTENSIONS`, it
  decodes as an image of the format its extension names (opened with those formats' PIL
  plugins only: PIL runs Ghostscript for an EPS file), and its md5 is the post's; a file that
  fails is deleted, reported in
  :attr:`CrawlResult.failed` with the reason, and kept out of the download archive, so that a
  rerun fetches it again; a post whose file was refused for good (the file itself: not an
  image, over the size cap, gone, a URL requests cannot fetch; see :class:`RefusedPosts`) is
  recorded in the output folder,
  and once two runs have refused it so, reruns skip it until ``retry_failed`` says otherwise;
- every download is bounded (:class:`DownloadGuard`): a read timeout, a size cap and a deadline
  per file, its status line and headers included (:class:`BoundedAdapter`), so that no server
  can hold the crawl; so is the search: each answer has a size cap and a deadline, and the
  pages it walks are bounded (the posts it looks at, :data:`SEARCH_POSTS_PER_IMAGE`; its
  requests, :data:`SEARCH_POSTS_PER_REQUEST`; pages in a row without a new post,
  :data:`SEARCH_IDLE_PAGES`), the reason in :attr:`CrawlResult.stopped`;
- secrets never leave the crawler: API keys and ``user:password@`` are redacted (:func:`redact`)
  from errors, results, sidecars and gallery-dl's log records; the environment's credentials and
  the user's gallery-dl config's go to the source's own site only, and the API's credentials
  never go to another host (the files' CDN or any other);
- gallery-dl's warnings are lines of the crawl's own on stderr, above the progress bar
  (:class:`GalleryDlLogLines`);
- ``--sleep`` seconds pass before each search request and each file download; a request or file
  that failed in a way worth retrying is tried again after ``retry_sleep`` x the try's number
  seconds (searches and files alike: :class:`BoundedHttpDownloader`);
- the same file (md5) is stored once across sources and tag queries, and across crawls running
  in one folder at once (:class:`KnownFiles`);
- one metadata sidecar per image, ``<image file>.json`` (see :data:`SIDECAR_FORMAT`), written
  *before* the image gets its final name: an image without its sidecar is an unfinished
  download, which the next run moves to ``.unfinished/`` (never over a file there) and fetches
  again (:func:`remove_unfinished`);
- HTTP errors (after the retries with back-off) and search answers that are not the site's JSON
  or XML arrive as :class:`CrawlError`, one line that names the URL or says which flag fixes it
  (:func:`explain_error`), with what the crawl did until then (:attr:`CrawlError.result`); a
  download archive that cannot be read or updated is one too, before any request
  (:func:`check_archive`) or when it refuses an entry, and so is an output folder whose path
  gallery-dl would change (:func:`output_dir_problem`); partial downloads stay
  in ``.parts/`` (gallery-dl resumes them), never under the final name; file names are sanitised
  by gallery-dl's path rules.

Mirrors and self-hosted instances (``base_url``) use gallery-dl's own prefix for other
instances of a supported software (``danbooru:URL``, ``gelbooru_v02:URL``), not a patch; their
images are named ``<source>-<host>_<id>`` (:func:`file_label`), since two instances number their
posts alike. gallery-dl knows such an instance by its root alone, so ``base_url`` must not have a
path, query or fragment.
"""
from __future__ import annotations

import collections
import errno
import functools
import hashlib
import json
import logging
import math
import os
import re
import socket
import sqlite3
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests
from gallery_dl import config as gdl_config
from gallery_dl import exception, job, util
from gallery_dl import extractor as gdl_extractor
from gallery_dl import text as gdl_text
from gallery_dl.downloader.http import HttpDownloader
from gallery_dl.extractor.common import RequestsAdapter
from PIL import Image, ImageSequence, UnidentifiedImageError
from tqdm import tqdm

from .annotation import (
    IMAGE_SUFFIXES,
    SIDECAR_FORMAT,
    AnnotationError,
    bomb_warning_hushed,
    image_formats,
    image_size,
    is_utf8_name,
    json_bytes,
    read_regular_file,
    read_sidecar,
    remove_stale_temporaries,
    too_many_pixels,
    write_json_atomic,
)
from .errors import (
    REDACTED,
    AnimalLandmarksError,
    first_line,
    printable,
    redact_userinfo,
    shown_value,
)
from .file_lock import LockHeldError, exclusive_lock

SOURCES = {
    'safebooru': dict(kind='gelbooru_v02', root='https://safebooru.org'),
    'gelbooru': dict(kind='gelbooru', root='https://gelbooru.com'),
    'danbooru': dict(kind='danbooru', root='https://danbooru.donmai.us'),
}
RATINGS = ('general', 'sensitive', 'questionable', 'explicit')
#: the post's fields a sidecar keeps, besides the crawl's own (see :meth:`CrawlJob._sidecar`)
SIDECAR_POST_FIELDS = ('post_id', 'page_url', 'tags', 'rating', 'rating_raw', 'md5', 'width',
                       'height')
#: environment variables read for credentials, per source: (user, api key)
CREDENTIAL_ENV = {
    'danbooru': ('DANBOORU_LOGIN', 'DANBOORU_API_KEY'),
    'gelbooru': ('GELBOORU_USER_ID', 'GELBOORU_API_KEY'),
    'safebooru': ('SAFEBOORU_USER_ID', 'SAFEBOORU_API_KEY'),
}
#: the software each kind (:func:`kind_of`) is, and what its search answers are, for messages
SOFTWARE = {'danbooru': ("Danbooru's", 'JSON'), 'gelbooru': ("Gelbooru's", 'JSON'),
            'gelbooru_v02': ("Gelbooru 0.2's", 'XML')}
#: file extensions worth downloading: the images the annotator and the dataset take (a GIF,
#: which PIL opens, could never be annotated; Danbooru also hosts videos and zips)
IMAGE_EXTENSIONS = frozenset(suffix.lstrip('.') for suffix in IMAGE_SUFFIXES)
#: why a file of another extension is refused, before download or after (``{}``: its extension)
_NOT_AN_IMAGE_FILE = 'not a JPEG, PNG, WebP or BMP file ({})'
#: why a file is no image at all when it is empty (:func:`_not_an_image`)
_EMPTY_FILE = 'not an image (empty file)'
#: why a file of an image's extension whose first bytes are no format PIL knows is refused
_UNKNOWN_FORMAT = _NOT_AN_IMAGE_FILE.format('unknown format')
_BROKEN_IMAGE = 'broken image'
_MD5_MISMATCH = 'md5 mismatch'
#: how :func:`check_image`'s refusals of a file that a transfer cut short would meet too begin
#: (the others are about what the file is): a broken image or another md5, and a transfer cut
#: within its first bytes, an empty file or one too short to tell its format
_CUT_SHORT_PROBLEMS = (_BROKEN_IMAGE, _MD5_MISMATCH, _EMPTY_FILE, _UNKNOWN_FORMAT)
#: PIL's format of each extension of :data:`IMAGE_EXTENSIONS` (PIL's own table): a download is
#: opened with these PIL plugins only, never with one that runs a program (EPS: Ghostscript) or
#: reads what the dataset cannot take (TIFF, PCX ...), and must be the format its name says
IMAGE_FORMATS = {suffix.lstrip('.'): pil_format for suffix, pil_format in image_formats().items()}
#: the schemes of the file URLs downloaded (:class:`BoundedHttpDownloader`'s); gallery-dl has
#: downloaders for others (``text:``, ``ytdl:`` ...), which no :class:`DownloadGuard` bounds
FILE_URL_SCHEMES = ('http', 'https')
ARCHIVE_NAME = '.gallery-dl-archive.sqlite3'
#: the record of the posts whose file was refused for good, in the output folder
#: (:class:`RefusedPosts`)
REFUSED_POSTS_NAME = '.refused-posts.json'
REFUSED_POSTS_FORMAT = 'animal_landmarks_mm.refused_posts'
#: the version the record is written in; version 1 (no ``refused_runs``: each of its posts
#: refused by one run) is read too
REFUSED_POSTS_VERSION = 2
#: how many runs must refuse a post's file for good before reruns skip it: one refusal may be
#: the network's, not the file's (a captive portal's page in place of every file)
REFUSED_RUNS_TO_SKIP = 2
#: the lock file beside the record that crawls in one folder take to update it in turn (the
#: record itself is replaced whole, so a lock on it would not keep them apart)
REFUSED_POSTS_LOCK_NAME = '.refused-posts.lock'
#: seconds to wait for another crawl's lock on the record (held while it writes the record)
REFUSED_POSTS_LOCK_SECONDS = 5.0
#: the largest record of refused posts read or written (bytes): some 40,000 posts; a record
#: that would grow past it drops its oldest posts (tried again by the next run)
REFUSED_POSTS_MAX_BYTES = 16 << 20
#: characters of a refused file's URL and of its reason that the record keeps
REFUSED_TEXT_LIMIT = 300
#: HTTP statuses that say a file is gone for good (gallery-dl gives such a file up at once)
GONE_STATUSES = (404, 410)
#: the lock file a crawl holds in the output folder for its whole run, one per label
#: (:func:`file_label`): two crawls of one source and instance at once would each count one
#: incident (a captive portal's pages) as a run refusing a post, and would share the
#: half-written files of .parts/ (named by label and post id); crawls of other labels may run
CRAWL_LOCK_NAME = '.crawl-{label}.lock'
#: seconds to wait for another process's lock on the download archive (gallery-dl's own wait)
ARCHIVE_LOCK_SECONDS = 60.0
#: the table :func:`check_archive` makes in the archive, and undoes, to see that it can update it
ARCHIVE_WRITE_CHECK_TABLE = 'animal_landmarks_write_check'
#: the lock file that crawls in one folder take in turn to claim a file's md5
#: (:meth:`KnownFiles.claim`), held from the claim until the file has its final name and its
#: archive entry
MD5_LOCK_NAME = '.md5.lock'
#: seconds to wait for another crawl's claim: it may wait :data:`ARCHIVE_LOCK_SECONDS` for
#: the archive while it holds it
MD5_LOCK_SECONDS = 2 * ARCHIVE_LOCK_SECONDS
PARTS_DIR = '.parts'
#: the longest label (:func:`file_label`) and post id (:func:`post_problem`), in characters
#: (ASCII): with an extension and the longest suffix of a file named after them
#: (``.json``, ``.part``, ``.lock``, ``.999`` in .unfinished/), a name stays well under the
#: 255 bytes file systems take, and the crawl's lock file name under it too
LABEL_MAX_CHARS = 100
POST_ID_MAX_DIGITS = 64
#: hex digits of the digest that ends a label cut to :data:`LABEL_MAX_CHARS`
LABEL_DIGEST_CHARS = 12
#: what ``--max-file-size`` counts in
MB = 1_000_000
#: the longest duration a flag may give (a timer, a socket or a sleep refuses a huge one)
MAX_SECONDS = 86_400
# Danbooru's letters; Gelbooru 0.2 uses 's' for safe (= general) and newer sites full words.
_DANBOORU_RATINGS = {'g': 'general', 's': 'sensitive', 'q': 'questionable', 'e': 'explicit'}
_GELBOORU_RATINGS = {'s': 'general', 'safe': 'general', 'q': 'questionable',
                     'e': 'explicit'}
# Content types a server may give an image file; anything else (an HTML error page) is refused.
_GENERIC_CONTENT_TYPES = ('application/octet-stream', 'binary/octet-stream')
_MD5 = re.compile(r'[0-9a-f]{32}')
#: A search looks at no more than this many posts per image ``limit`` asks for (posts it had
#: saved before do not count: a rerun walks past them), and never fewer than
#: :data:`SEARCH_POSTS_MIN` or more than :data:`SEARCH_POSTS_CAP`; then it stops, saying why.
SEARCH_POSTS_PER_IMAGE = 100
SEARCH_POSTS_MIN = 1_000
SEARCH_POSTS_CAP = 100_000
#: search pages in a row that bring no post not seen before (a server repeating a page, or
#: claiming more posts than it gives: gallery-dl's Gelbooru 0.2 paginator asks again forever)
SEARCH_IDLE_PAGES = 10
#: A search makes no more than one request per this many posts it may look at (the posts bound
#: of :data:`SEARCH_POSTS_PER_IMAGE`, plus the posts saved before that it walked past), and
#: never fewer than :data:`SEARCH_REQUESTS_MIN`: a server whose every page brings one new post
#: would otherwise be asked a thousand times at ``--limit 5``. The sites' pages have 100 or 200.
SEARCH_POSTS_PER_REQUEST = 10
SEARCH_REQUESTS_MIN = 100
#: bytes a search answer may have: a page of 200 Danbooru posts is well under 1 MB
SEARCH_ANSWER_MAX_BYTES = 20_000_000
#: characters of a post's text that its sidecar keeps (its tags, file URL, rating and md5):
#: a post of 1,000 tags has about 20,000. Even escaped (12 bytes a character at worst) its
#: sidecar stays under the 1 MiB a sidecar may have to be read back (``SIDECAR_MAX_BYTES``):
#: a post of 800 KB of tags wrote one no tool could read, and its md5 was no longer known
POST_TEXT_MAX_CHARS = 65_536
#: scans a JPEG may have: a progressive JPEG has about 10 (encoders' scripts up to a few
#: tens), and each one decodes the whole picture again: 1,000 empty scans (120 bytes each)
#: held the check of one file 11 s, and every decode by training after it
JPEG_MAX_SCANS = 100
#: an XML document's internal DTD subset, or a declaration of one (which only a subset holds)
_XML_DECLARATIONS = re.compile(r'<!DOCTYPE[^>\[]*\[|<!(?:ENTITY|ATTLIST|ELEMENT|NOTATION)\b')
#: query parameters that carry credentials (Gelbooru's ``api_key``/``user_id``, Danbooru's
#: ``login``/``api_key``, Moebooru's ``password_hash``): :func:`redact` hides their values
SECRET_QUERY_PARAMS = ('api_key', 'user_id', 'login', 'password_hash')
_SECRET_NAMES = '|'.join(SECRET_QUERY_PARAMS)
# name=value in a URL's query (or a bare "with url: /path?..." of urllib3's messages) ...
_SECRET_PARAM = re.compile(rf'''(?i)(?<=[?&;])({_SECRET_NAMES})=[^&;#\s'"<>]*''')
# ... and 'name': 'value' in a printed dict of parameters
_SECRET_ITEM = re.compile(rf'''(?i)(['"](?:{_SECRET_NAMES})['"]\s*:\s*)(['"])[^'"]*\2''')


def redact(text: str) -> str:
    """``text`` with the secrets of the URLs in it replaced by ``***``: the user info of
    ``scheme://user:password@host`` and the values of :data:`SECRET_QUERY_PARAMS`."""
    text = _SECRET_PARAM.sub(rf'\1={REDACTED}', redact_userinfo(text))
    return _SECRET_ITEM.sub(rf'\1\2{REDACTED}\2', text)


class CrawlError(AnimalLandmarksError, RuntimeError):
    """A crawl that cannot start or went wrong; the message is one line, its secrets redacted
    (:func:`redact`): it may name a URL that carried an API key.

    Args:
        message: what went wrong.
        result: what the crawl did before the error, if it had started.
    """

    def __init__(self, message: str, result: CrawlResult | None = None):
        super().__init__(redact(message))
        #: what the crawl did before the error (None if it had not started)
        self.result = result


@dataclass
class CrawlOptions:
    """What to crawl (the command's flags).

    Attributes:
        source: ``safebooru``, ``danbooru`` or ``gelbooru``.
        tags: the search, e.g. ``"animal_ears solo 1girl"``.
        limit: how many new images to save.
        output_dir: images and sidecars go here.
        base_url: root of a mirror / self-hosted instance of the same software (scheme, host
            and port; no path).
        ratings: ratings to keep (of :data:`RATINGS`).
        min_size: ``(width, height)`` an image must reach.
        exclude_tags: drop posts carrying any of these (ignoring case).
        user: account name (Danbooru) or user id (Gelbooru).
        api_key: API key.
        user_agent: HTTP User-Agent instead of gallery-dl's (some sites refuse gallery-dl's).
        sleep: seconds before each search request and each file download.
        retries: HTTP retries per request or file (with back-off) before giving up.
        retry_sleep: seconds of back-off: the n-th retry of a request or file waits n times
            this (at most an hour: :func:`retry_waits`).
        timeout: seconds a request may wait for the next bytes before it is retried.
        file_deadline: seconds one file's download may take, retries included, and each
            try of a search request.
        max_file_size: bytes a file may have; a larger one is not downloaded.
        retry_failed: try again the posts that earlier runs refused for good
            (:class:`RefusedPosts`), which a rerun skips otherwise.
        progress: show a progress bar.
    """

    source: str
    tags: str
    limit: int
    output_dir: Path
    base_url: str | None = None
    ratings: tuple[str, ...] = ('general',)
    min_size: tuple[int, int] | None = None
    exclude_tags: tuple[str, ...] = ()
    user: str | None = None
    api_key: str | None = None
    user_agent: str | None = None
    sleep: float = 1.0
    retries: int = 4
    retry_sleep: float = 2.0
    timeout: float = 15.0
    file_deadline: float = 300.0
    max_file_size: int = 50_000_000
    retry_failed: bool = False
    progress: bool = True

    def validate(self) -> None:
        """Raises CrawlError for a bad value, naming it; writes ``base_url``'s scheme and host
        in lowercase (gallery-dl finds another instance by them, case-sensitively)."""
        if self.source not in SOURCES:
            raise CrawlError(f'unknown source {self.source!r}; choose from '
                             f'{", ".join(SOURCES)}')
        if not self.tags or not self.tags.strip():
            raise CrawlError('--tags is empty: give at least one tag')
        # a command line's undecodable bytes arrive as lone surrogates, which no URL, header
        # or sidecar can carry
        for flag, value in (('--tags', self.tags), ('--exclude-tags', ' '.join(self.exclude_tags)),
                            ('--base-url', self.base_url), ('--user', self.user),
                            ('--user-agent', self.user_agent), ('--api-key', self.api_key)):
            if value is not None and not is_utf8_name(value):
                shown = '' if flag == '--api-key' else \
                    f', got {printable(repr(value), one_line=True, limit=80)}'
                raise CrawlError(f'{flag} must be UTF-8 text{shown}')
        if self.limit <= 0:
            raise CrawlError(f'--limit must be positive, got {self.limit}')
        bad = [r for r in self.ratings if r not in RATINGS]
        if bad:
            raise CrawlError(f'unknown rating {bad[0]!r}; choose from {", ".join(RATINGS)}')
        if self.base_url is not None:
            parsed = urllib.parse.urlsplit(self.base_url)
            try:
                parsed.port  # noqa: B018 (raises ValueError for a bad port)
            except ValueError:
                parsed = None
            if parsed is None or parsed.scheme not in ('http', 'https') or not parsed.hostname:
                raise CrawlError(f'--base-url must be an http(s) URL, got {self.base_url!r}')
            # gallery-dl's prefix for another instance (danbooru:URL) takes its root only
            if parsed.path.strip('/') or parsed.query or parsed.fragment or \
                    self.base_url.rstrip('/').endswith(('?', '#')):
                raise CrawlError(f"--base-url must be a site's root (scheme, host and port), "
                                 f"without a path, query or fragment, got {self.base_url!r}")
            # (urlsplit gives the scheme in lowercase; a password keeps its case)
            userinfo, at, host = parsed.netloc.rpartition('@')
            self.base_url = f'{parsed.scheme}://{userinfo}{at}{host.lower()}{parsed.path}'
        if self.min_size is not None and min(self.min_size) < 0:
            raise CrawlError(f'--min-size must not be negative, got {self.min_size}')
        for flag, value, unit in (('--timeout', self.timeout, 's'),
                                  ('--file-deadline', self.file_deadline, 's'),
                                  ('--max-file-size', self.max_file_size / MB, 'MB')):
            if not math.isfinite(value):  # a timer or a socket refuses inf with a traceback
                raise CrawlError(f'{flag} must be a finite number, got {value:g}')
            if not value > 0:
                raise CrawlError(f'{flag} must be positive, got {value:g} {unit}')
        for flag, value in (('--sleep', self.sleep), ('--retry-sleep', self.retry_sleep)):
            if not (math.isfinite(value) and value >= 0):
                raise CrawlError(f'{flag} must be a finite number of seconds, not negative, '
                                 f'got {value:g}')
        for flag, value in (('--timeout', self.timeout), ('--file-deadline', self.file_deadline),
                            ('--sleep', self.sleep), ('--retry-sleep', self.retry_sleep)):
            if value > MAX_SECONDS:
                raise CrawlError(f'{flag} must be at most {MAX_SECONDS} s (one day), '
                                 f'got {value:g}')
        if self.retries < 0:
            raise CrawlError(f'--retries must not be negative, got {self.retries}')
        problem = output_dir_problem(self.output_dir)
        if problem is not None:
            raise CrawlError(f'{printable(str(self.output_dir), one_line=True)}: {problem}: '
                             f'use another --output-dir')


def output_dir_problem(output_dir: Path) -> str | None:
    """Why gallery-dl would save elsewhere than in ``output_dir``, or None: it expands
    environment variables (``$NAME``, ``${NAME}``) in the folders it is given (its
    ``base-directory``, ``part-directory`` and ``archive``), and drops the control characters
    from its base directory (``path-remove``, :data:`PINNED_SETTINGS`), while the crawler's own
    files (the lock, the record of refused posts) go where the path says. The folder's absolute
    path is checked, as gallery-dl is given it (a ``~`` within it stays as it is: gallery-dl
    expands one at the start only)."""
    path = os.path.realpath(output_dir)  # (Path.resolve raises on a loop of links: said later)
    if '$' in path:
        return 'its path holds "$", which gallery-dl would read as an environment variable'
    control = next((c for c in path if c < ' ' or c == '\x7f'), None)
    if control is not None:
        return (f'its path holds the control character {control!r}, which gallery-dl would '
                f'drop from it')
    return None


@dataclass
class CrawlResult:
    """What a crawl did.

    Attributes:
        saved: the images saved by this run.
        seen: posts the search returned.
        already_downloaded: posts whose image an earlier run saved.
        duplicates: posts whose file is already here, from another post or source.
        filtered: posts the filters (:func:`keep_post`) dropped, and posts without an http(s)
            file of their own.
        malformed: posts skipped because a field is not what the site's API gives
            (:func:`post_problem`).
        failed: ``"<file URL>: <reason>"`` for each download that failed or was refused; a
            rerun tries them again, but those of :attr:`refused` (:attr:`to_retry`). Two
            posts may fail with the same text (one file URL, a mirror's placeholder, say).
        refused_indices: the indices in :attr:`failed` of the downloads whose file was refused
            for good (for what it is, as the server has it: :class:`RefusedPosts`) by this run
            and at least one earlier run, recorded so: reruns skip them from now on, unless
            told to retry them (``retry_failed``), and they do not fail this run. A post
            refused for good by this run only is one of :attr:`to_retry`, recorded (the next
            run to refuse it makes it one of these). Kept per failure, not by its text: of
            two posts failing with the same text, one may be refused again, the other first.
        refused_before: posts skipped because earlier runs refused their file for good
            (:data:`REFUSED_RUNS_TO_SKIP` of them).
        unfinished: images of an earlier run found without their sidecar, moved to
            ``.unfinished/`` to be fetched again.
        stopped: why the search was stopped before ``limit`` new images were saved, when a
            bound of the search (:data:`SEARCH_POSTS_PER_IMAGE`,
            :data:`SEARCH_POSTS_PER_REQUEST`, :data:`SEARCH_IDLE_PAGES`) stopped it; None when
            the search ended by itself or reached ``limit``.
    """

    saved: list[Path] = field(default_factory=list)
    seen: int = 0
    already_downloaded: int = 0
    duplicates: int = 0
    filtered: int = 0
    malformed: int = 0
    failed: list[str] = field(default_factory=list)
    refused_indices: set[int] = field(default_factory=set)
    refused_before: int = 0
    unfinished: int = 0
    stopped: str | None = None

    @property
    def refused(self) -> list[str]:
        """The failures of :attr:`failed` refused for good again (:attr:`refused_indices`):
        reruns skip them."""
        return [failure for index, failure in enumerate(self.failed)
                if index in self.refused_indices]

    @property
    def to_retry(self) -> list[str]:
        """The failures of :attr:`failed` that a rerun tries again (all but :attr:`refused`):
        the run failed if it has any."""
        return [failure for index, failure in enumerate(self.failed)
                if index not in self.refused_indices]

    def format(self) -> str:
        """The one-line summary the command prints, escaped (:func:`~.errors.printable`): the
        failures' reasons are the servers' words (a reason phrase may hold terminal escapes)."""
        text = (f'posts seen {self.seen}, images saved {len(self.saved)}, already downloaded '
                f'{self.already_downloaded}, duplicates {self.duplicates}, filtered out '
                f'{self.filtered}')
        if self.malformed:
            text += f', malformed posts skipped {self.malformed}'
        if self.unfinished:
            text += f', unfinished downloads redone {self.unfinished}'
        if self.refused_before:
            text += (f', refused before {self.refused_before} (--retry-failed tries them '
                     f'again)')
        if self.failed:
            text += f', failed {len(self.failed)}: ' + '; '.join(
                f'{failure}, refused for good, skipped from now on (--retry-failed tries it '
                f'again)' if index in self.refused_indices else failure
                for index, failure in enumerate(self.failed))
        if self.stopped:
            text += f'; {self.stopped}'
        return printable(text, one_line=True)


def _is_other_instance(source: str, base_url: str | None) -> bool:
    """Whether ``base_url`` names another site than ``source``'s own (a mirror, a self-hosted
    instance); the source's own root, given as ``--base-url``, is the source itself."""
    if not base_url:
        return False
    own = urllib.parse.urlsplit(SOURCES[source]['root'])
    try:
        given = urllib.parse.urlsplit(base_url)
        port = given.port
    except ValueError:
        return True
    return (given.scheme.lower(), given.hostname, port or 443, given.path.strip('/')) != \
        ('https', own.hostname, 443, '')


def is_other_instance(options: CrawlOptions) -> bool:
    """Whether the crawl goes to a mirror or a self-hosted instance (``--base-url``), not to
    the source's own site."""
    return _is_other_instance(options.source, options.base_url)


def _file_label(source: str, base_url: str | None) -> str:
    if not _is_other_instance(source, base_url):
        return source
    parts = urllib.parse.urlsplit(base_url)
    try:
        port = parts.port
    except ValueError:
        port = None
    where = '-'.join(str(part) for part in (parts.hostname, port) if part)
    # only what every file system takes in a name: no ':' (Windows), no '/'
    label = f'{source}-{re.sub(r"[^a-z0-9.]+", "-", where.lower()).strip("-.")}'
    if len(label) <= LABEL_MAX_CHARS:
        return label
    # a host name may have 253 characters: cut, and told from other cut ones by a digest
    digest = hashlib.sha256(label.encode()).hexdigest()[:LABEL_DIGEST_CHARS]
    return f'{label[:LABEL_MAX_CHARS - LABEL_DIGEST_CHARS - 1].rstrip("-.")}-{digest}'


def file_label(options: CrawlOptions) -> str:
    """What the crawl's image names start with, before ``_<post id>``: the source, and for
    another instance (``--base-url``) its host and port, since two instances of the same
    software number their posts alike (``danbooru_123.jpg``,
    ``danbooru-booru.example.org_123.jpg``); at most :data:`LABEL_MAX_CHARS` characters (a
    longer one is cut, and ends in a digest of the whole)."""
    return _file_label(options.source, options.base_url)


def archive_prefix(options: CrawlOptions) -> str:
    """What the download-archive keys of the crawl start with, before the post id: the source
    (the keys of the sites themselves are unchanged), or the label of another instance and
    ``_`` (a label may end in digits, a port)."""
    label = file_label(options)
    return label if label == options.source else f'{label}_'


def kind_of(options: CrawlOptions) -> str:
    """gallery-dl's base category: a mirror of Gelbooru runs Gelbooru 0.2."""
    kind = SOURCES[options.source]['kind']
    return 'gelbooru_v02' if kind == 'gelbooru' and is_other_instance(options) else kind


def root_of(options: CrawlOptions) -> str:
    """The site's root URL, without a trailing slash."""
    if is_other_instance(options):
        return options.base_url.rstrip('/')
    return SOURCES[options.source]['root']


def search_url(options: CrawlOptions) -> str:
    """The gallery-dl URL of the tag search."""
    tags = urllib.parse.quote_plus(' '.join(options.tags.split()))
    root = root_of(options)
    kind = kind_of(options)
    path = f'/posts?tags={tags}' if kind == 'danbooru' else \
        f'/index.php?page=post&s=list&tags={tags}'
    if not is_other_instance(options):
        return f'{root}{path}'
    # gallery-dl's prefix for another instance of a supported software: its base category
    if kind == 'danbooru':
        from gallery_dl.extractor.danbooru import DanbooruExtractor as Extractor
    else:
        from gallery_dl.extractor.gelbooru_v02 import GelbooruV02Extractor as Extractor
    return f'{Extractor.basecategory}:{root}{path}'


def normalise_rating(kind: str, value) -> str:
    """A post's rating as one of :data:`RATINGS` (``unknown`` if the site says nothing)."""
    value = str(value or '').lower()
    if value in RATINGS:
        return value
    table = _DANBOORU_RATINGS if kind == 'danbooru' else _GELBOORU_RATINGS
    return table.get(value, 'unknown')


def post_info(kind: str, root: str, kwdict: dict) -> dict:
    """What we need of a post, from gallery-dl's metadata.

    Args:
        kind: gallery-dl's base category (:func:`kind_of`).
        root: the site's root URL.
        kwdict: gallery-dl's metadata of the post's file.

    Returns:
        The fields of :data:`SIDECAR_POST_FIELDS`, plus ``file_ext``, the file's extension as
        the site names it.
    """
    tags = kwdict.get('tags') or ''
    tags = tags.split() if isinstance(tags, str) else list(tags)
    if kind == 'danbooru':
        width, height = kwdict.get('image_width'), kwdict.get('image_height')
        page = f'{root}/posts/{kwdict.get("id")}'
    else:
        width, height = kwdict.get('width'), kwdict.get('height')
        page = f'{root}/index.php?page=post&s=view&id={kwdict.get("id")}'
    post_id = kwdict.get('id')
    post_id = int(post_id) if str(post_id).isdigit() else post_id  # XML APIs give strings
    return dict(post_id=post_id, page_url=page, tags=tags,
                rating=normalise_rating(kind, kwdict.get('rating')),
                rating_raw=kwdict.get('rating'), md5=kwdict.get('md5'),
                width=int(width) if width else None, height=int(height) if height else None,
                file_ext=str(kwdict.get('extension') or '').lower())


def keep_post(info: dict, options: CrawlOptions) -> str | None:
    """Why a post is filtered out before download, or None to download it.

    Args:
        info: the post, as :func:`post_info` gives it.
        options: the crawl's filters (``ratings``, ``exclude_tags``, ``min_size``).

    Returns:
        A short reason (``'rating sensitive'``, ``'tag monochrome'``, ``'smaller than 60x60'``,
        ``'not a JPEG, PNG, WebP or BMP file (gif)'``), or None when the post passes every
        filter.
    """
    if info['rating'] not in options.ratings:
        return f'rating {info["rating"]}'
    # booru tags are lowercase; a tag typed otherwise still means it
    excluded = sorted({tag.lower() for tag in options.exclude_tags}
                      & {tag.lower() for tag in info['tags']})
    if excluded:
        return f'tag {excluded[0]}'
    if (options.min_size and info['width'] is not None and info['height'] is not None
            and (info['width'] < options.min_size[0] or info['height'] < options.min_size[1])):
        return f'smaller than {options.min_size[0]}x{options.min_size[1]}'
    # a file the dataset cannot use, and one check_image would refuse on every rerun
    if info.get('file_ext') and info['file_ext'] not in IMAGE_EXTENSIONS:
        return _NOT_AN_IMAGE_FILE.format(info['file_ext'])
    return None


def _is_id(value) -> bool:
    """Whether a value can be a post id: a number, or its digits (the XML APIs give text)."""
    return (isinstance(value, int) and not isinstance(value, bool) and value >= 0) or \
        (isinstance(value, str) and value.isascii() and value.isdigit())


def _is_size(value) -> bool:
    """Whether a value can be a width or height: an id-like number, or nothing."""
    return value is None or value == '' or _is_id(value)


def _is_text(value) -> bool:
    """Whether a value is text, or nothing."""
    return value is None or isinstance(value, str)


#: the key of a JSON search answer that holds its page of posts (Danbooru's answer is mostly
#: the list itself)
_PAGE_POSTS_KEY = {'danbooru': 'posts', 'gelbooru': 'post'}
#: Danbooru's tag fields, each a string of tags (gallery-dl splits each of them)
_DANBOORU_TAG_FIELDS = ('tag_string', 'tag_string_artist', 'tag_string_character',
                        'tag_string_copyright', 'tag_string_general', 'tag_string_meta')


def post_problem(kind: str, post) -> str | None:
    """Why a post of a search answer cannot be used, or None.

    gallery-dl reads a post's fields as the site's API gives them (``post["tag_string"]
    .split()``), and so does :func:`post_info`; a field that is missing or of another type would
    end the whole search with an exception, and so would text that UTF-8 cannot hold (a lone
    surrogate, which JSON can escape), when the sidecar is written. Such a post is skipped
    instead (:attr:`CrawlResult.malformed`).

    Args:
        kind: gallery-dl's base category (:func:`kind_of`).
        post: one post of the search answer, as gallery-dl's extractor yields it.

    Returns:
        What is wrong: the field and its value (``"image_width 'wide'"``), or ``'no <field>'``;
        None for a post that can be used.
    """
    if not isinstance(post, dict):
        return f'not an object ({type(post).__name__})'
    if kind == 'danbooru':
        width, height, tag_fields = 'image_width', 'image_height', _DANBOORU_TAG_FIELDS
    else:
        width, height, tag_fields = 'width', 'height', ('tags',)
    required = {'id': _is_id, 'created_at': lambda value: True,  # parsed leniently, but read
                **dict.fromkeys(tag_fields, _is_text)}
    if kind == 'danbooru' and 'file_url' not in post:
        required['source'] = _is_text  # what gallery-dl's "external" option reads instead
    optional = {width: _is_size, height: _is_size, 'rating': _is_text, 'md5': _is_text,
                'file_url': _is_file_url}
    shown = functools.partial(shown_value, limit=40)
    problem = _fields_problem(post, required, optional, shown)
    if problem is None and len(str(post['id'])) > POST_ID_MAX_DIGITS:
        # the file would be named after it (<label>_<id>.png): no file system takes the name
        problem = (f'id {shown(post["id"])} ({len(str(post["id"]))} digits, more than '
                   f'{POST_ID_MAX_DIGITS})')
    if problem is None:
        # what the sidecar keeps: the tags (Danbooru's tag_string, which gallery-dl splits),
        # the file URL, the rating and the md5
        kept = (tag_fields[0], 'file_url', 'rating', 'md5')
        chars = sum(len(post[name]) for name in kept if isinstance(post.get(name), str))
        if chars > POST_TEXT_MAX_CHARS:
            problem = (f'{chars:,} characters of tags, file URL, rating and md5, more than the '
                       f'{POST_TEXT_MAX_CHARS:,} a sidecar keeps')
    return problem


def _is_file_url(value) -> bool:
    """Whether a post's ``file_url`` is one gallery-dl can complete and requests can fetch:
    text, not empty nor ``/`` (Danbooru's extractor reads the second character of a URL
    starting with ``/``: an IndexError that ended the search), and, once gallery-dl has
    completed it (``//host/x`` with ``https:``; a path ``/x`` with the site's root), an
    http(s) URL with a host (requests refuses ``http://``). Other schemes pass:
    :meth:`CrawlJob.handle_url` filters them out, saying so."""
    if not isinstance(value, str) or value in ('', '/'):
        return False
    if value.startswith('/') and not value.startswith('//'):
        return True  # a path of the site's own
    try:
        parts = urllib.parse.urlsplit(f'https:{value}' if value.startswith('//') else value)
        return parts.scheme.lower() not in FILE_URL_SCHEMES or bool(parts.hostname)
    except ValueError:  # urllib cannot split it ('http://[::1')
        return False


def _fields_problem(record: dict, required: dict[str, Callable[[object], bool]],
                    optional: dict[str, Callable[[object], bool]],
                    shown: Callable[[object], str]) -> str | None:
    """Why an object read from JSON (a post of a search answer, an entry of the record of
    refused posts) cannot be used, or None: a required field missing, a field whose value its
    check refuses, or text that UTF-8 cannot hold (JSON may escape a lone surrogate,
    ``"\\udcff"``, which no file written again, a sidecar or the record, can hold).

    Args:
        record: the object.
        required: the fields it must have, each with its check.
        optional: the fields it may have, each with its check.
        shown: how a value is shown in the reason.

    Returns:
        ``'no <field>'``, ``'<field> <value>'`` or ``'<field> <value> (not UTF-8 text)'``.
    """
    missing = next((name for name in required if name not in record), None)
    if missing is not None:
        return f'no {missing}'
    for name, is_valid in {**required, **optional}.items():
        if name in record and not is_valid(record[name]):
            return f'{name} {shown(record[name])}'
    for name, value in record.items():
        if isinstance(value, str) and not is_utf8_name(value):
            return (f'{printable(str(name), one_line=True, limit=40)} {shown(value)} '
                    f'(not UTF-8 text)')
    return None


def file_md5(path: Path) -> str:
    """The md5 of a file, as the boards give it (hex)."""
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'md5').hexdigest()


def check_image(path: Path, expected_md5: str | None = None, *,
                extension: str | None = None) -> tuple[str | None, str]:
    """Whether a downloaded file is a whole image of a format the dataset takes, and the post's
    own file.

    The file is opened with the PIL plugins of :data:`IMAGE_FORMATS` only: another plugin may
    run a program (PIL hands an EPS file to Ghostscript) on what a server sent.

    Args:
        path: the downloaded file.
        expected_md5: the md5 the site gives for the post; not compared unless it is 32 hex
            digits (a site may give none, or something else).
        extension: the extension the file will have (gallery-dl's, set from its first bytes
            where it knows them); by default the path's. The file must be the format it names.

    Returns:
        ``(problem, md5)``: why the file is refused (``'not an image (an HTML page)'``,
        ``'not a JPEG, PNG, WebP or BMP file (tif)'``, ``'a JPEG image named .png'``,
        ``'broken image (...)'``, ``'md5 mismatch (...)'``, a header the other tools refuse
        (:func:`~.annotation.image_size`: more PNG chunks than they walk), a JPEG of more than
        :data:`JPEG_MAX_SCANS` scans), or None for a good file; and the file's md5.
    """
    md5 = file_md5(path)
    extension = (path.suffix.lstrip('.') if extension is None else extension).lower()
    expected_format = IMAGE_FORMATS.get(extension)
    if expected_format is None:  # (gallery-dl names an HTML page .html)
        return _not_an_image(path) or _NOT_AN_IMAGE_FILE.format(extension), md5
    formats = tuple(set(IMAGE_FORMATS.values()))
    try:
        # open() reads the header (is it an image at all?); a picture of too many pixels is
        # refused as every tool refuses it (PIL itself refuses only twice its limit)
        with bomb_warning_hushed(), Image.open(path, formats=formats) as image:
            # (PIL's JPEG reader calls a JPEG holding more pictures, a camera's, MPO)
            actual = 'JPEG' if image.format == 'MPO' else image.format
            if actual != expected_format:  # (gallery-dl knows no TIFF, say, by its bytes)
                return f'a {actual} image named .{extension}', md5
            problem = too_many_pixels(image.width, image.height)
            if problem is not None:
                return problem, md5
            # the header as the annotator and the converter read it (a PNG of more chunks than
            # they walk, which they refuse, before verify() walks them all)
            image_size(path)
            image.verify()  # PNG chunk checksums
        # a JPEG's scans, each a decode of the whole picture by every tool
        scans = jpeg_scans(path) if expected_format == 'JPEG' else 0
        if scans > JPEG_MAX_SCANS:
            return (f'a JPEG of {scans:,} scans, more than {JPEG_MAX_SCANS} (each one decodes '
                    'the whole picture again, for every tool)'), md5
        with bomb_warning_hushed(), Image.open(path, formats=(expected_format,)) as image:
            problem = decode_all_frames(image)  # (verify() spent the first image)
            if problem is not None:
                return problem, md5
    except UnidentifiedImageError:
        return _not_an_image(path) or _UNKNOWN_FORMAT, md5
    except Image.DecompressionBombError as error:  # PIL's own: twice its limit, or more
        return f'too many pixels ({error})', md5
    except AnnotationError as error:  # the tools' refusal names the file: the reason only
        return str(error).removeprefix(f'{path}: '), md5
    except Exception as error:  # PIL raises many kinds for a broken file
        detail = ' '.join(str(error).split()) or error.__class__.__name__
        return f'{_BROKEN_IMAGE} ({detail})', md5
    expected = str(expected_md5 or '').lower()
    if _MD5.fullmatch(expected) and md5 != expected:
        return f'{_MD5_MISMATCH} (file {md5}, post {expected})', md5
    return None, md5


def jpeg_scans(path: Path) -> int:
    """The scans of a JPEG file: its start-of-scan segments, walked as a decoder walks them
    (each segment skipped by its length, each scan's coded data to the next marker that is
    neither a stuffed ``FF 00`` nor a restart), up to the end of the image. Bytes after it (a
    phone's motion-photo video) and inside other segments (a thumbnail, metadata) are no
    scans of it. A file broken on the way ends the count there (the decode says what is
    wrong)."""
    with open(path, 'rb') as f:
        data = f.read()
    scans, position, end = 0, 2, len(data)  # after the start of image
    while position + 4 <= end and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte
            position += 1
            continue
        if marker == 0xD9:  # the end of the image
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length
            position += 2
            continue
        position += 2 + int.from_bytes(data[position + 2:position + 4], 'big')
        if marker != 0xDA:
            continue
        scans += 1
        while True:  # the scan's coded data
            position = data.find(b'\xff', position)
            if position < 0 or position + 1 >= end:
                return scans
            following = data[position + 1]
            if following == 0x00 or 0xD0 <= following <= 0xD7:
                position += 2
            elif following == 0xFF:
                position += 1
            else:
                break
    return scans


def _not_an_image(path: Path) -> str | None:
    """Why a file is no image at all (an HTML page, an empty file), or None."""
    with open(path, 'rb') as f:
        head = f.read(256).lstrip().lower()
    if not head:
        return _EMPTY_FILE
    if head.startswith((b'<!doctype', b'<html', b'<head', b'<body')):
        return 'not an image (an HTML page)'
    return None


#: how many times PIL's pixel limit (``Image.MAX_IMAGE_PIXELS``) the frames of an animation
#: may hold together, decoded by :func:`decode_all_frames` to find a file cut short. Every
#: other tool reads the first frame only, held to that limit (:func:`too_many_pixels`), so an
#: animation of more pixels in all is no bomb to them; the crawler alone decodes every frame,
#: and bounds that work: 4 times the limit (358 million pixels by default) takes 98 frames
#: of 1280x720 (90 million pixels, over the limit once), and stops a file of thousands of them
ANIMATION_DECODE_LIMITS = 4


def decode_all_frames(image: Image.Image) -> str | None:
    """Decode every frame of an image, so that a file cut short is found in any format.

    verify() reads no pixel data of most formats (a BMP, JPEG or WebP cut in half passes
    it): only a decode finds the missing end when the site gives no md5. A JPEG decodes at 1/8
    scale (draft mode: the whole entropy-coded stream is still read, at a fraction of the work).
    Each frame is held to PIL's pixel limit, as every tool holds a picture
    (:func:`~.annotation.too_many_pixels`); the frames together to
    :data:`ANIMATION_DECODE_LIMITS` times that limit, this check's own budget.

    Returns:
        Why the image is refused (a frame of too many pixels, or an animation of too many in
        all to check), or None once every frame is decoded.

    Raises:
        OSError: a truncated or broken file (``image file is truncated``, ...).
    """
    limit = Image.MAX_IMAGE_PIXELS or None
    budget = None if limit is None else ANIMATION_DECODE_LIMITS * limit
    if image.format == 'JPEG':
        image.draft('RGB', (max(1, image.width // 8), max(1, image.height // 8)))
    pixels = 0
    for count, frame in enumerate(ImageSequence.Iterator(image), 1):
        problem = too_many_pixels(frame.width, frame.height)
        if problem is not None:
            return problem
        pixels += frame.width * frame.height
        if budget is not None and pixels > budget:
            return (f'an animation too long to check ({count} frames of '
                    f'{frame.width}x{frame.height} are more than {budget:,} pixels, '
                    f'{ANIMATION_DECODE_LIMITS} times PIL\'s limit: the crawler decodes every '
                    f'frame to find a file cut short)')
        frame.load()
    return None


def _is_scalar(value) -> bool:
    """Whether a value is a plain one (text, a number or nothing), not a list or an object."""
    return value is None or isinstance(value, (str, int, float))


def known_md5(output_dir: Path) -> dict[str, tuple[str, object]]:
    """md5 -> (label, post id) of the images in ``output_dir``, from their sidecars; the label
    is the source's, or another instance's (:func:`file_label`).

    A sidecar whose image is missing does not count: the sidecar is written before the image
    gets its final name, so such a pair is a download that did not finish. Nor does a file that
    is not one of the crawler's sidecars (:func:`~.annotation.read_sidecar`), nor one whose md5
    is not 32 hex digits or whose source or post id is not a plain value.
    """
    return KnownFiles(output_dir).md5


def _sidecar_md5(sidecar: Path) -> tuple[str, tuple[str, object]] | None:
    """(md5, (label, post id)) of one of the crawler's sidecars, or None for a file that is
    not one (:func:`known_md5`)."""
    data = read_sidecar(sidecar)
    if data is None:
        return None
    md5, source, base_url = data.get('md5'), data.get('source'), data.get('base_url')
    post_id = data.get('post_id')
    if not (isinstance(md5, str) and _MD5.fullmatch(md5) and isinstance(source, str)
            and _is_scalar(post_id)):
        return None
    try:
        label = _file_label(source, base_url) if source in SOURCES and \
            isinstance(base_url, str) else source
    except ValueError:  # a base_url urllib cannot split ('http://[::1')
        return None
    return md5, (label, post_id)


class KnownFiles:
    """The images of an output folder by md5 (:func:`known_md5`), kept up to date with what
    other crawls in the folder save meanwhile: a crawl claims a file's md5 under the folder's
    lock (:data:`MD5_LOCK_NAME`, :meth:`claim`), having read the sidecars written since it last
    looked, and holds the lock until the file has its final name, so that two crawls at once
    never both store one file. A crawl killed while it holds the lock loses it with its process
    (``flock``), and its sidecar without an image is no claim: nothing stays blocked.

    Args:
        output_dir: the folder.

    Attributes:
        md5: md5 -> (label, post id) of the images there.
    """

    def __init__(self, output_dir: Path):
        self.output_dir = output_dir
        self.md5: dict[str, tuple[str, object]] = {}
        #: the sidecars read once for good: their image was there, or they are not the
        #: crawler's (one whose image is missing is read again, once the image is there)
        self._read: set[str] = set()
        self._folder_stamp: int | None = None  # the folder's modification time, last read
        self.refresh()

    def refresh(self, *, if_folder_changed: bool = False) -> None:
        """Read the sidecars whose image is there that have not been read yet (those of the
        images saved since, by this crawl or another); the md5 of an image read first keeps
        its post.

        Args:
            if_folder_changed: only if the folder's modification time changed since the last
                read (a file named or renamed there changes it): a quick look, before each
                download, in a folder of many images. Its clock may be coarse (a second), so
                :meth:`claim` reads the folder whatever its time says.
        """
        stamp = os.stat(self.output_dir).st_mtime_ns
        if if_folder_changed and stamp == self._folder_stamp:
            return
        self._folder_stamp = stamp
        # names, no Path for each: a claim lists the folder whole, once a stored file (22 ms
        # for 20,000 sidecars against 45 through Path.glob, loaded 2-core machine)
        with os.scandir(self.output_dir) as entries:
            new = [entry.name for entry in entries
                   if entry.name.endswith('.json') and entry.name not in self._read]
        for name in new:
            sidecar = self.output_dir / name
            if not sidecar.with_suffix('').is_file():
                continue
            self._read.add(name)
            entry = _sidecar_md5(sidecar)
            if entry is not None:
                self.md5.setdefault(*entry)

    @contextmanager
    def claim(self) -> Iterator[None]:
        """Hold the folder's lock on its md5s (waiting at most :data:`MD5_LOCK_SECONDS` for
        another crawl's), up to date (:meth:`refresh`): a file whose md5 is not here yet may be
        stored while it is held.

        Raises:
            OSError: the lock file cannot be made or opened (:class:`TimeoutError`: another
                crawl held it).
        """
        with _locked(self.output_dir / MD5_LOCK_NAME, MD5_LOCK_SECONDS):
            self.refresh()
            yield


#: where images of an interrupted run are moved before they are fetched again
UNFINISHED_DIR = '.unfinished'
#: names tried in .unfinished/ for one image (``name.png``, ``name.1.png`` ...), then it stops
UNFINISHED_NAMES = 1000


def _archive_error(archive: Path, problem: sqlite3.Error | str, what: str,
                   result: CrawlResult | None = None) -> CrawlError:
    """The error for a download archive that cannot be used: its path, the problem (sqlite's
    error) and what to do; ``result``: what the crawl did before (:attr:`CrawlError.result`)."""
    detail = ' '.join(str(problem).split()) or problem.__class__.__name__
    hint = 'remove it (the sidecars still say which images are here) or move it away'
    if 'locked' in detail:
        hint = 'another crawl may be writing to it: wait for it to finish'
    elif 'readonly' in detail:
        hint = f'make it writable, {hint}'
    return CrawlError(f'{archive}: cannot {what} the download archive ({detail}): {hint}',
                      result)


def check_archive(output_dir: Path) -> None:
    """Check that the download archive, if the folder has one, is an SQLite database sqlite
    opens and can update, before anything is fetched: gallery-dl would crawl on without one
    it cannot open (a warning only), fetching again every image it holds, and one it cannot
    update (read-only) ended the crawl at the first file saved.

    Raises:
        CrawlError: the archive is not a regular file, or not a database, or cannot be read or
            updated.
    """
    archive = output_dir / ARCHIVE_NAME
    if not os.path.lexists(archive):
        return
    if not archive.is_file():  # a folder, a FIFO (sqlite would block on it), a dead link
        raise _archive_error(archive, 'not a regular file', 'read')
    what = 'read'
    try:
        with closing(sqlite3.connect(archive, timeout=ARCHIVE_LOCK_SECONDS,
                                     isolation_level=None)) as db:
            db.execute('SELECT name FROM sqlite_master').fetchall()  # reads the header
            what = 'update'
            # a write, undone: sqlite takes a write lock on a file it opened read-only, and
            # refuses only the write itself
            db.execute('BEGIN IMMEDIATE')
            try:
                db.execute(f'CREATE TABLE "{ARCHIVE_WRITE_CHECK_TABLE}" (entry TEXT)')
            finally:
                if db.in_transaction:
                    db.execute('ROLLBACK')
    except sqlite3.Error as error:
        raise _archive_error(archive, error, what) from None


def _post_md5(info: dict) -> str | None:
    """The md5 a post claims for its file (:func:`post_info`), if it is one (32 hex digits)."""
    md5 = str(info.get('md5') or '').lower()
    return md5 if _MD5.fullmatch(md5) else None


def _refused_posts_error(path: Path, problem: str) -> CrawlError:
    """The error for a record of refused posts that cannot be used: its path, the problem and
    what to do."""
    return CrawlError(f'{path}: not a record of refused posts the crawler can read ({problem}): '
                      f'remove it or move it away (the posts it names are then tried again)')


#: the fields of an entry of the record of refused posts (:meth:`RefusedPosts.add`), and what
#: each may be; ``max_file_size`` only for a file refused for its size
_REFUSED_ENTRY_FIELDS = {
    'label': lambda value: isinstance(value, str) and value != '',
    'post_id': lambda value: isinstance(value, int) and _is_id(value),
    'md5': lambda value: value is None or (isinstance(value, str)
                                           and _MD5.fullmatch(value) is not None),
    'url': lambda value: isinstance(value, str),
    'reason': lambda value: isinstance(value, str),
    'refused_at': lambda value: isinstance(value, str),
    'refused_runs': lambda value: isinstance(value, int) and _is_id(value) and value > 0,
}
_REFUSED_ENTRY_OPTIONAL = {
    'max_file_size': lambda value: isinstance(value, int) and _is_id(value) and value > 0,
}


def _refused_entry_problem(entry) -> str | None:
    """Why an entry of a record of refused posts is not one :meth:`RefusedPosts.add` writes, or
    None."""
    if not isinstance(entry, dict):
        return f'not an object ({type(entry).__name__})'
    return _fields_problem(entry, _REFUSED_ENTRY_FIELDS, _REFUSED_ENTRY_OPTIONAL, shown_value)


def _read_refused_posts(path: Path) -> dict[tuple[str, int], dict]:
    """The entries of the record of refused posts at ``path`` (none if it has none), keyed by
    (label, post id), oldest first; a version 1 record's posts are counted as refused by one
    run each.

    Raises:
        CrawlError: the record is not a regular file, larger than
            :data:`REFUSED_POSTS_MAX_BYTES`, not UTF-8 JSON, or not a record of refused posts
            (its format, or an entry, is not what :meth:`RefusedPosts.save` writes); one line
            naming it.
    """
    if not os.path.lexists(path):
        return {}
    try:
        data = json.loads(read_regular_file(path, REFUSED_POSTS_MAX_BYTES).decode('utf-8'))
    except RecursionError:
        raise _refused_posts_error(path, 'JSON nested too deeply') from None
    except (OSError, ValueError) as error:  # ValueError: too large, not regular (named)
        what = {json.JSONDecodeError: 'broken JSON: ',
                UnicodeDecodeError: 'not UTF-8: '}.get(type(error), '')
        detail = ' '.join(str(error).removeprefix(f'{path}: ').split())
        raise _refused_posts_error(
            path, what + printable(detail, one_line=True, limit=200)) from None
    version = data.get('version') if isinstance(data, dict) else None
    if not (isinstance(data, dict) and data.get('format') == REFUSED_POSTS_FORMAT
            and type(version) is int and version in (1, REFUSED_POSTS_VERSION)
            and isinstance(data.get('posts'), list)):
        raise _refused_posts_error(path, f'not an object with "format": '
                                         f'"{REFUSED_POSTS_FORMAT}", "version": '
                                         f'{REFUSED_POSTS_VERSION} (or 1) and "posts": [...]')
    entries = {}
    for number, entry in enumerate(data['posts'], 1):
        if version == 1 and isinstance(entry, dict):  # written when one refusal was enough
            entry = {**entry, 'refused_runs': 1}
        problem = _refused_entry_problem(entry)
        if problem is not None:
            raise _refused_posts_error(path, f'post {number}: {problem}')
        entries[entry['label'], entry['post_id']] = {
            name: entry[name] for name in (*_REFUSED_ENTRY_FIELDS, *_REFUSED_ENTRY_OPTIONAL)
            if name in entry}
    return entries


def _runs_refusing(earlier: dict | None, md5: str | None) -> int:
    """How many runs have refused a post's file for good, counting the one that refused it
    now: one more than its earlier entry's, if that was of the same md5 (another md5 is
    another file)."""
    return 1 + (earlier['refused_runs'] if earlier is not None and earlier['md5'] == md5 else 0)


@contextmanager
def _crawl_locked(output_dir: Path, label: str) -> Iterator[None]:
    """Hold the crawl's lock (:data:`CRAWL_LOCK_NAME`, of its label) in the output folder,
    without waiting for another process's, with this process's id in it
    (:func:`.file_lock.exclusive_lock`: nothing is locked where the system cannot lock).

    Raises:
        CrawlError: another process crawls the label into the folder (named by its id,
            :func:`.file_lock.lock_holder`), or the lock file cannot be made or opened, or is
            not a regular file; one line.
    """
    path = output_dir / CRAWL_LOCK_NAME.format(label=label)
    with ExitStack() as held:
        try:  # (only taking the lock is said so: the crawl's own errors pass as they are)
            held.enter_context(exclusive_lock(path, name_holder=True))
        except LockHeldError as error:
            raise CrawlError(f'{output_dir}: {label} is being crawled by another process (id '
                             f'{error.holder}): wait for it, or use another --output-dir'
                             ) from None
        except OSError as error:
            detail = ' '.join(str(error.strerror or error).split())
            if not os.path.lexists(path):  # none there, and none can be made
                hint = ': the output folder must be writable' if error.errno in \
                    (errno.EACCES, errno.EPERM, errno.EROFS) else ''
                raise CrawlError(f'{path}: cannot make the crawl\'s lock file ({detail}){hint}'
                                 ) from None
            raise CrawlError(f'{path}: cannot open the crawl\'s lock file ({detail}): move it '
                             f'away (with no crawl of {label} running there)') from None
        yield


@contextmanager
def _locked(path: Path, seconds: float) -> Iterator[None]:
    """Hold the lock file ``path`` (made if need be), waiting at most ``seconds`` for another
    process's (:func:`.file_lock.exclusive_lock`: nothing is locked where the system cannot
    lock).

    Raises:
        OSError: the lock file cannot be made or opened, or is not a regular file.
        TimeoutError: another process held it for ``seconds``.
    """
    with ExitStack() as held:
        try:
            held.enter_context(exclusive_lock(path, seconds))
        except LockHeldError:
            raise TimeoutError(f'another crawl held {path} for {seconds:g} s') from None
        yield


class RefusedPosts:
    """The posts whose file a crawl refused for good, recorded in the output folder
    (:data:`REFUSED_POSTS_NAME`) with how many runs refused them so. A post that
    :data:`REFUSED_RUNS_TO_SKIP` (2) runs refused is skipped by reruns (counted in
    :attr:`CrawlResult.refused_before`) instead of failing on them again, run after run; the
    crawl's ``retry_failed`` tries it again. A post whose file is saved, by any run, leaves the
    record.

    A failure is for good when it is about the file itself, which a rerun would fetch again as
    it is: the guard refused its content type (``not an image (text/html)``) or its size
    (``larger than --max-file-size``); :func:`check_image` found it is not an image of a format
    the dataset takes, or not the format its name says; the server answered 404 or 410
    (:data:`GONE_STATUSES`); requests refused its URL as one it cannot fetch (a host it cannot
    parse: :class:`GuardedSession`); or the file came whole (its response declared its length,
    which gallery-dl holds the body to) and :func:`check_image` found it broken, not the post's
    md5, empty or of no format it knows. Timeouts, broken connections, 5xx and 429 answers, the
    deadline, a 206 without Content-Range, and a file without a declared length that is one of
    those four (a transfer cut short, even within its first bytes, looks like that:
    :data:`_CUT_SHORT_PROBLEMS`) are not recorded: a rerun tries them again.

    One run's refusal is not enough to skip a post, since it may still be the network's, not
    the file's: a captive portal or a proxy may answer every file of one run with its own page
    (200 text/html). The first run to refuse a post fails on it as on any failure, and the next
    run tries it again; the runs need not refuse it for the same reason.

    A post's refusals count, and it is skipped, while it is the same: its md5 (as the site
    gives it) unchanged (another md5 counts afresh), and, for one refused for its size,
    ``--max-file-size`` no larger than at its last refusal. The record is keyed by the crawl's
    label (:func:`file_label`) and the post id, as :func:`known_md5` keys the posts saved; it
    holds at most :data:`REFUSED_POSTS_MAX_BYTES` (its oldest posts go first), each URL and
    reason cut to :data:`REFUSED_TEXT_LIMIT` characters. It is read when the crawl starts, and
    crawls in one folder at once (two sources, say) keep each other's changes: :meth:`save`
    applies this run's to the record as it is then, under a lock.

    Args:
        path: the record's file.
        entries: (label, post id) -> what the record says of the post, oldest first.
    """

    def __init__(self, path: Path, entries: dict[tuple[str, int], dict] | None = None):
        self.path = path
        self.entries = dict(entries or {})
        #: this run's refusals and removals, which :meth:`save` applies to the record
        self._added: dict[tuple[str, int], dict] = {}
        self._removed: set[tuple[str, int]] = set()

    @property
    def changed(self) -> bool:
        """Whether this run refused or removed a post, which :meth:`save` has not written."""
        return bool(self._added or self._removed)

    @classmethod
    def load(cls, output_dir: Path) -> RefusedPosts:
        """The output folder's record (an empty one if it has none).

        A record that cannot be used stops the crawl before any request, rather than being
        ignored: the record is the crawler's, and one that is not what the crawler wrote (a
        hand edit gone wrong, another program's file) would be replaced at the end, its posts
        lost without a word; the error says what to do.

        Raises:
            CrawlError: the record cannot be used (:func:`_read_refused_posts`); one line
                naming it.
        """
        path = output_dir / REFUSED_POSTS_NAME
        return cls(path, _read_refused_posts(path))

    def skips(self, label: str, info: dict, max_file_size: int) -> bool:
        """Whether a post (:func:`post_info`) of the crawl labelled ``label`` was refused for
        good by :data:`REFUSED_RUNS_TO_SKIP` runs and is still the same: its md5 unchanged,
        and, if it was refused for its size, ``max_file_size`` (bytes) no larger than then."""
        entry = self.entries.get((label, info['post_id']))
        return entry is not None and entry['refused_runs'] >= REFUSED_RUNS_TO_SKIP and \
            entry['md5'] == _post_md5(info) and \
            max_file_size <= entry.get('max_file_size', max_file_size)

    def add(self, label: str, info: dict, *, url: str, reason: str,
            max_file_size: int | None = None) -> int:
        """Record a post whose file this run refused for good (its URL redacted, and cut short
        with its reason to :data:`REFUSED_TEXT_LIMIT` characters), as the newest entry.

        Args:
            label: the crawl's label (:func:`file_label`).
            info: the post (:func:`post_info`).
            url: its file URL.
            reason: why it was refused.
            max_file_size: the size cap (bytes), for a file refused for its size.

        Returns:
            How many runs have refused it for good, this one included
            (:data:`REFUSED_RUNS_TO_SKIP` or more: reruns skip it).
        """
        key = (label, info['post_id'])
        md5 = _post_md5(info)
        entry = dict(label=label, post_id=info['post_id'], md5=md5,
                     url=printable(redact(url), one_line=True, limit=REFUSED_TEXT_LIMIT),
                     reason=printable(redact(reason), one_line=True, limit=REFUSED_TEXT_LIMIT),
                     refused_at=datetime.now(UTC).isoformat(timespec='seconds'),
                     refused_runs=_runs_refusing(self.entries.pop(key, None), md5))
        if max_file_size is not None:
            entry['max_file_size'] = max_file_size
        self.entries[key] = entry  # the newest now
        self._added[key] = entry
        self._removed.discard(key)
        return entry['refused_runs']

    def discard(self, label: str, post_id) -> None:
        """Forget a post (its file is saved, or here already), if the record has it, or has it
        by the time :meth:`save` reads it again: another crawl in the folder may have recorded
        it since this one read the record."""
        key = (label, post_id)
        self.entries.pop(key, None)
        self._removed.add(key)
        self._added.pop(key, None)

    def save(self) -> int:
        """Apply this run's refusals and removals to the record, if it has any, and write it
        (atomically), dropping its oldest entries where it would be larger than
        :data:`REFUSED_POSTS_MAX_BYTES`.

        The record is read again under the lock :data:`REFUSED_POSTS_LOCK_NAME` (waited for
        :data:`REFUSED_POSTS_LOCK_SECONDS` at most) and written before it is released: another
        crawl in the folder may have written it since this one read it, and its refusals are
        kept (each run's count as one run, counted again on the record as it is now).

        Returns:
            How many entries were dropped.

        Raises:
            OSError: the record cannot be written, or its lock cannot be had
                (:class:`TimeoutError`: another crawl held it).
            CrawlError: the record, as it is now, cannot be used (:func:`_read_refused_posts`):
                it is left as it is.
        """
        if not self.changed:
            return 0
        if not self._added and not os.path.lexists(self.path):  # nothing to remove from
            self._removed = set()
            return 0
        with _locked(self.path.with_name(REFUSED_POSTS_LOCK_NAME), REFUSED_POSTS_LOCK_SECONDS):
            current = _read_refused_posts(self.path)
            removed = [key for key in self._removed if current.pop(key, None) is not None]
            if not self._added and not removed:  # (a saved post the record does not name)
                self.entries, self._removed = current, set()
                return 0
            for key, added in self._added.items():
                earlier = current.pop(key, None)  # (the newest now)
                current[key] = {**added, 'refused_runs': _runs_refusing(earlier, added['md5'])}
            entries = list(current.values())
            dropped = 0
            while True:
                record = dict(format=REFUSED_POSTS_FORMAT, version=REFUSED_POSTS_VERSION,
                              posts=entries)
                excess = len(json_bytes(record)) - REFUSED_POSTS_MAX_BYTES
                if excess <= 0 or not entries:
                    break
                freed = count = 0  # (an entry takes a little more room in the record: indented)
                while freed < excess and count < len(entries):
                    freed += len(json_bytes(entries[count]))
                    count += 1
                entries, dropped = entries[count:], dropped + count
            write_json_atomic(self.path, record)
        self.entries = {(entry['label'], entry['post_id']): entry for entry in entries}
        self._added, self._removed = {}, set()
        return dropped


def _set_aside(path: Path, folder: Path) -> Path:
    """Move a file into ``folder`` under a name no file there has (``name.png``, then
    ``name.1.png`` ...): never over a file set aside earlier, which someone may have annotated.

    Raises:
        CrawlError: :data:`UNFINISHED_NAMES` names are taken.
    """
    stem, suffix = path.stem, path.suffix
    for number in range(UNFINISHED_NAMES):
        target = folder / (path.name if number == 0 else f'{stem}.{number}{suffix}')
        if not os.path.lexists(target):
            os.rename(path, target)  # (one crawl per folder: nothing takes the name meanwhile)
            return target
    raise CrawlError(f'{folder}: {UNFINISHED_NAMES} files named like {path.name} already: move '
                     f'them away to let the crawl set {path.name} aside')


def remove_unfinished(output_dir: Path, options: CrawlOptions) -> int:
    """Set aside this crawl's images (of its source, or its other instance) that have no
    sidecar, and drop their download-archive entries, so that they are fetched again.

    Such an image comes from a run killed between the image and its sidecar (or by a version
    that wrote the sidecar second); without provenance it must not count as downloaded. It is
    moved to ``.unfinished/`` rather than deleted, and never over a file there (``name.1.png``
    instead): a person may have annotated it. Only image files of the crawler's own naming are
    considered (an annotation file ``safebooru_1.json`` kept beside the images is not an image).
    The archive entries go first: if they cannot be dropped, nothing is moved (an image set
    aside while its entry stays would never be fetched again).

    Args:
        output_dir: the crawl's output folder.
        options: the crawl; its images are named ``<label>_<post id>.<ext>``
            (:func:`file_label`).

    Returns:
        How many images were set aside.

    Raises:
        CrawlError: the download archive cannot be updated (locked by another crawl, read-only,
            not a database), or ``.unfinished`` is not a folder.
    """
    # ASCII digits: a person's own safebooru_١٢.png (Arabic-Indic digits) is no post of ours
    name = re.compile(rf'{re.escape(file_label(options))}_([0-9]+)\.([A-Za-z0-9]+)')
    unfinished = [(path, match.group(1)) for path in output_dir.iterdir()
                  if (match := name.fullmatch(path.name))
                  and match.group(2).lower() in IMAGE_EXTENSIONS and path.is_file()
                  and not path.with_name(path.name + '.json').exists()]
    if not unfinished:
        return 0
    aside = output_dir / UNFINISHED_DIR
    if os.path.lexists(aside) and not aside.is_dir():
        raise CrawlError(f'{aside} is not a folder: move it away to let the crawl set aside '
                         f'{len(unfinished)} images without a sidecar')
    archive = output_dir / ARCHIVE_NAME
    if archive.is_file():
        # entries are archive-prefix + archive-format, set in configure_gallery_dl
        prefix = archive_prefix(options)
        try:
            with closing(sqlite3.connect(archive, timeout=ARCHIVE_LOCK_SECONDS)) as db:
                db.executemany('DELETE FROM archive WHERE entry = ?',
                               [(f'{prefix}{post_id}',) for _, post_id in unfinished])
                db.commit()
        except sqlite3.Error as error:
            if 'no such table' not in str(error):  # no table yet: nothing was archived
                raise _archive_error(archive, error, 'update') from None
    aside.mkdir(exist_ok=True)
    for path, _ in unfinished:
        _set_aside(path, aside)
    return len(unfinished)


def _account_page(options: CrawlOptions) -> str:
    """Where the site's users find their API key."""
    if kind_of(options) == 'danbooru':
        return f'{root_of(options)}/profile'
    return f'{root_of(options)}/index.php?page=account&s=options'


def resolve_credentials(options: CrawlOptions) -> tuple[str | None, str | None]:
    """(user, API key) from the flags, else the environment (:data:`CREDENTIAL_ENV`).

    The environment's credentials are the user's account on the source's own site: they are
    never sent to another instance (``--base-url``), which gets the flags' only.

    Raises:
        CrawlError: one of the two without the other; gallery-dl would otherwise ask for the
            missing one on the terminal, or fail with "User input required".
    """
    env_user, env_key = CREDENTIAL_ENV[options.source]
    if is_other_instance(options):
        env_user = env_key = None
    user = options.user or (env_user and os.environ.get(env_user)) or None
    api_key = options.api_key or (env_key and os.environ.get(env_key)) or None
    if bool(user) != bool(api_key):
        user_flag = f'--user/{env_user}' if env_user else '--user'
        key_flag = f'--api-key/{env_key}' if env_key else '--api-key'
        given, missing = (user_flag, key_flag) if user else (key_flag, user_flag)
        who = 'your login' if kind_of(options) == 'danbooru' else 'your user id'
        raise CrawlError(f'{options.source}: {given} is set but {missing} is not: give both '
                         f'({who} and the API key from {_account_page(options)})')
    return user, api_key


#: The longest wait before one retry (seconds), as gallery-dl caps its own back-off.
MAX_RETRY_WAIT = 3600


def retry_waits(retry_sleep: float) -> str:
    """gallery-dl's duration for ``--retry-sleep``: the n-th retry waits n times it, at most
    :data:`MAX_RETRY_WAIT` (its ``linear:START:MAX=SECONDS`` form; the bare ``linear=`` has no
    cap). The seconds are written in fixed point: ``1e-05`` would read as a range, 1e to 05."""
    return f'linear:0:{MAX_RETRY_WAIT}={retry_sleep:.6f}'


#: gallery-dl settings a user's config must not change, set at the top level (where they win);
#: None is gallery-dl's default, or "none"
PINNED_SETTINGS = {
    # postprocessors accumulate over every level of the config: only "postprocess" stops them
    'postprocess': False,
    # gallery-dl's size filters count a refused file as downloaded (archived, never failed);
    # --max-file-size is the crawler's (DownloadGuard)
    'filesize-min': None,
    'filesize-max': None,
    # gallery-dl refuses an HTML page (the guard checks the content type too)
    'validate-html': True,
    # a file is named after its first bytes, which check_image holds it to
    'adjust-extensions': True,
    'download': True,
    # names: file_label's characters and the extension kept as they are
    'path-restrict': 'auto',
    'path-replace': '_',
    'path-remove': '\x00-\x1f\x7f',
    'path-strip': 'auto',
    'path-sub': None,
    'path-convert': None,
    'extension-map': None,
    # the post's own fields (id, md5, extension ...), not the user's keywords, make its name
    'keywords': None,
    'keywords-global': None,
    # remove_unfinished edits the archive's table; an entry is written for each saved file
    'archive-table': None,
    'archive-mode': None,
    'archive-event': None,
    'archive-pragma': None,
    # the crawl runs the search and the downloads in one thread, as its bookkeeping expects,
    # and logs warnings (a retry) without ending itself
    'async': None,
    'actions': None,
}


#: The largest gallery-dl config file the crawler lets gallery-dl read (bytes): a config of
#: many sites' options is kilobytes.
GALLERY_DL_CONFIG_MAX_BYTES = 16 << 20
#: How deep gallery-dl's ``subconfigs`` (files a config names, each read after it) may go.
GALLERY_DL_SUBCONFIG_DEPTH = 8
#: How many config files gallery-dl may read in all, a file named twice counting twice (it
#: reads it twice): three files naming the next 300 times each were 27 million reads.
GALLERY_DL_CONFIG_MAX_READS = 64


def check_gallery_dl_config_files() -> None:
    """Refuse, before gallery-dl reads them, the user's gallery-dl config files (its default
    ones and the ``subconfigs`` they name) that it would wait on or hold whole: gallery-dl
    opens and reads each without a check, so a FIFO there waited for a writer for good, a
    sparse file of gigabytes was held in memory, and a config naming itself as a subconfig
    recursed until Python's limit (a traceback), and files naming others by the hundred were
    read millions of times. Missing files and broken JSON are left to gallery-dl, which skips
    them with a log line; what it reads and would stop on with a traceback, or read stdin for,
    is refused: a JSON config that is no object, or whose ``subconfigs`` is other than a file
    name or a list of them (``[0]`` opened stdin, ``true`` or ``[3]`` raised TypeError, a
    dict's keys were read unchecked).

    Raises:
        CrawlError: one line naming the file.
    """
    pending = [(path, 0) for path in reversed(getattr(gdl_config, '_default_configs', ()))]
    reads = 0
    while pending:
        pathfmt, depth = pending.pop()
        path = util.expand_path(pathfmt)
        if not isinstance(path, str) or not os.path.lexists(path):
            continue
        if depth > GALLERY_DL_SUBCONFIG_DEPTH:
            raise CrawlError(f'gallery-dl config {path}: named by "subconfigs" more than '
                             f'{GALLERY_DL_SUBCONFIG_DEPTH} deep (does a config name itself?)')
        reads += 1
        if reads > GALLERY_DL_CONFIG_MAX_READS:
            raise CrawlError(f'gallery-dl config {path}: more than '
                             f'{GALLERY_DL_CONFIG_MAX_READS} config files to read through '
                             '"subconfigs" (a file named twice is read twice)')
        try:
            data = read_regular_file(path, GALLERY_DL_CONFIG_MAX_BYTES)
        except AnnotationError as e:  # no regular file, too large: the message names it
            raise CrawlError(f'gallery-dl config {first_line(e)}') from None
        except OSError:
            continue  # unreadable: gallery-dl skips it too
        if getattr(gdl_config, '_type', 'json') != 'json':
            continue  # YAML, TOML: their subconfigs are not followed here
        try:  # as gallery-dl reads it: UTF-8 text (a BOM or UTF-16 is broken JSON to it)
            config = json.loads(data.decode('utf-8'))
        except (ValueError, RecursionError):
            continue  # gallery-dl logs it and goes on
        pending += [(sub, depth + 1) for sub in reversed(_subconfigs(path, config))]


def _subconfigs(path: str, config: object) -> list[str]:
    """The files a gallery-dl JSON config names in ``subconfigs``, in the order gallery-dl
    reads them (each straight after the one naming it).

    Raises:
        CrawlError: a config gallery-dl would stop on with a traceback, or read stdin for.
    """
    if not isinstance(config, dict):  # gallery-dl merges it into a dict: a traceback
        raise CrawlError(f'gallery-dl config {path}: not a JSON object, which gallery-dl '
                         'cannot read')
    subconfigs = config.get('subconfigs')
    if not subconfigs:  # gallery-dl ignores an empty or false one
        return []
    if isinstance(subconfigs, str):
        return [subconfigs]
    if not (isinstance(subconfigs, list) and all(isinstance(sub, str) for sub in subconfigs)):
        raise CrawlError(f'gallery-dl config {path}: "subconfigs" is a file name or a list of '
                         f'file names, not {shown_value(subconfigs)}')
    return subconfigs


def configure_gallery_dl(options: CrawlOptions) -> None:
    """gallery-dl's configuration for one crawl: the user's own config files, then ours on top.

    Our options go at the top level of gallery-dl's config, where its own command line puts
    them, so that they win over the user's files (gallery-dl reads a key at the top level before
    any extractor's section). Credentials come from the options, else the environment, else the
    user's gallery-dl config; another instance (``--base-url``) gets the options' only: gallery-dl
    reads its options under its software's base category too (``Danbooru``, ``gelbooru_v02``),
    where the user's account on the sites themselves may be, so every credential key (and the
    cookies and headers) is set at the top level for it, None where the options give none.

    What the crawler's own bookkeeping rests on is pinned too (:data:`PINNED_SETTINGS`), whatever
    the user's files say: no postprocessor (a ``metadata`` one wrote its own ``<image>.json``
    over each sidecar), no size filter of gallery-dl's (``filesize-max`` dropped a file and
    archived it as downloaded), the names, the archive and the checks as the crawler expects
    them.

    Raises:
        CrawlError: half a credential (:func:`resolve_credentials`).
    """
    user, api_key = resolve_credentials(options)
    gdl_config.clear()
    check_gallery_dl_config_files()
    gdl_config.load()  # ~/.config/gallery-dl/config.json etc., if the user has one
    out = options.output_dir.resolve()
    settings = {
        'base-directory': str(out),
        'directory': [],
        'filename': '{_aln_label}_{id}.{extension}',  # file_label
        # partial downloads live apart and resume from there; never under the final name
        'part': True,
        'part-directory': str(out / PARTS_DIR),
        'archive': str(out / ARCHIVE_NAME),
        'archive-prefix': archive_prefix(options),
        'archive-format': '{id}',
        'sleep-request': options.sleep,  # before each search request
        'sleep': options.sleep,  # before each file download
        # of the searches, and of the files (BoundedHttpDownloader reads them too)
        'retries': options.retries,
        'sleep-retries': retry_waits(options.retry_sleep),
        'sleep-429': retry_waits(options.retry_sleep),
        # besides 5xx: gallery-dl's downloader gives up a file at a 429 (its searches retry it)
        'retry-codes': [429],
        # read timeout of every request, the searches' and the files'
        'timeout': options.timeout,
        'skip': True,
        'mtime': False,
        # never prompt for a password: a missing credential must fail, not wait on stdin
        'input': False,
        'output': {'mode': 'null'},  # no progress lines of gallery-dl's own
        **PINNED_SETTINGS,
    }
    # what each extractor reads: Danbooru's _get_auth_info takes 'username' and 'password'
    # (the API key, sent as HTTP basic auth); Gelbooru 0.2 takes 'user-id' and 'api-key'
    # (sent as the user_id / api_key query parameters)
    if is_other_instance(options):
        # a login session travels in cookies and headers as much as in the credentials
        settings.update(dict.fromkeys(('username', 'password', 'user-id', 'api-key', 'cookies',
                                       'headers')))
    if user:
        if kind_of(options) == 'danbooru':
            settings.update({'username': user, 'password': api_key})
        else:
            settings.update({'user-id': user, 'api-key': api_key})
    if options.user_agent:
        settings['user-agent'] = options.user_agent
    for key, value in settings.items():
        gdl_config.set((), key, value)


class MalformedAnswer(Exception):
    """A search answer that is not the site's JSON or XML (or lacks what gallery-dl reads in
    it); the message is one line that names the answer's URL."""


def explain_error(error: BaseException, options: CrawlOptions, url: str) -> str:
    """One line for an error that ended the crawl: what the site wants, and which flag gives it.

    Args:
        error: what gallery-dl raised.
        options: the crawl.
        url: the search URL.
    """
    return redact(_explain_error(error, options, url))


def _explain_error(error: BaseException, options: CrawlOptions, url: str) -> str:
    source = options.source
    if isinstance(error, MalformedAnswer):
        return f'{source}: {error}'
    message = ' '.join(str(error).split()) or error.__class__.__name__
    status = getattr(error, 'status', None)
    danbooru = kind_of(options) == 'danbooru'
    env_user, env_key = CREDENTIAL_ENV[source]
    own_site = not is_other_instance(options)  # the only site the environment's key goes to
    has_credentials = options.user or options.api_key or (own_site and os.environ.get(env_user))
    if own_site:
        env_hint = f' or set {env_user}/{env_key}'
    elif os.environ.get(env_user) or os.environ.get(env_key):
        env_hint = f' ({env_user}/{env_key} go to {SOURCES[source]["root"]} only)'
    else:
        env_hint = ''
    if not danbooru and (status == 401 or isinstance(error, exception.AuthRequired)):
        fix = f'pass --user USER_ID --api-key KEY (from {_account_page(options)}){env_hint}'
        if has_credentials:
            return f'{source}: 401 Unauthorized: the user id or API key was refused: {fix}'
        if source == 'gelbooru' and own_site:
            return f'gelbooru: 401 Unauthorized: Gelbooru requires an API key since 2025: {fix}'
        return f'{source}: 401 Unauthorized: the site requires an API key: {fix}'
    if status == 401:
        env_hint = env_hint.replace(' or set ', ' or ')
        return (f'{source}: 401 Unauthorized: the login or API key was refused: check --user '
                f'LOGIN --api-key KEY (from {_account_page(options)}){env_hint}')
    if status == 403:
        challenge = ' by a Cloudflare check' if isinstance(error, exception.ChallengeError) \
            else ''
        also = ', and/or log in with --user LOGIN --api-key KEY' if danbooru else ''
        return (f'{source}: 403 Forbidden{challenge}: the site refuses this client: set a '
                f'browser-like user agent with --user-agent "Mozilla/5.0 ..." (or gallery-dl\'s '
                f'"user-agent" setting){also}')
    if message.startswith('User input required'):
        # gallery-dl found a username without a password, in the user's gallery-dl config; an
        # "api-key" next to it (what this crawler used to set) is not read for Danbooru
        where = ' (gallery-dl reads the API key from "password")' if danbooru else ''
        return (f'{source}: a login without its API key in your gallery-dl config{where}: '
                f'pass --user and --api-key, or set {env_user} and {env_key}')
    return f'{source}: {message} (searching {url})'


class DeadlinePassed(requests.exceptions.RequestException):
    """A request still unfinished at its deadline. A plain ``RequestException`` (not a timeout
    or a connection error): gallery-dl does not retry it, so the search ends at once."""


class AnswerTooLarge(requests.exceptions.RequestException):
    """A search answer over :data:`SEARCH_ANSWER_MAX_BYTES`; not retried either."""


def declared_size(response) -> int | None:
    """A response's Content-Length, or None if it gives none (or nonsense)."""
    size = response.headers.get('Content-Length', '').strip()
    return int(size) if size.isdigit() else None


def capped(chunks: Iterable[bytes], max_bytes: int, too_large: Callable[[], BaseException],
           received: int = 0) -> Iterator[bytes]:
    """Pass a body's chunks on, counting them; past ``max_bytes`` raise ``too_large()``.

    The one size cap of a file download (:meth:`DownloadGuard.count`) and of a search answer
    (:class:`DeadlineSession`): Content-Length alone bounds nothing (an endless body has none).

    Args:
        chunks: the body, as it is read.
        max_bytes: the cap.
        too_large: makes the exception to raise.
        received: bytes already counted (a resumed download).
    """
    for chunk in chunks:
        received += len(chunk)
        if received > max_bytes:
            raise too_large()
        yield chunk


class ResponseDeadline:
    """A wall-clock deadline over one request or one file: its connection, its status line and
    headers, its body.

    gallery-dl's read timeout ends a read whose server goes silent, but not one that sends a
    byte now and then, be it of the headers or of the body. While the deadline is armed it is
    the one of its thread, and each socket a request of that thread reads from is noted
    (:meth:`watch_socket`, through :class:`BoundedAdapter`); at the deadline that socket is
    shut down, which wakes a read blocked on a dripping server, before or after a response
    exists. :meth:`watch` refuses any later response until the deadline is armed again.

    Args:
        seconds: the deadline.
        flag: the command-line flag that sets it, for the messages.
    """

    _of_thread = threading.local()  # .deadline: the one armed in the thread, if any

    def __init__(self, *, seconds: float, flag: str = '--file-deadline'):
        self.seconds = seconds
        self.flag = flag
        #: why the deadline stopped the current request or download, if it did
        self.problem: str | None = None
        self.expired = False
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._armed = 0  # which arming the running timer belongs to
        self._socket: socket.socket | None = None  # the one the request reads from now
        self._expired_event = threading.Event()  # set with expired, for wait()

    @classmethod
    def of_thread(cls) -> ResponseDeadline | None:
        """The deadline armed in the calling thread (the request it makes is under it)."""
        return getattr(cls._of_thread, 'deadline', None)

    @property
    def armed(self) -> bool:
        """Whether the deadline runs (started, not stopped)."""
        with self._lock:
            return self._timer is not None

    def reset(self) -> None:
        """Disarm the deadline and forget what it stopped: a new file begins."""
        self.stop()
        with self._lock:
            self.problem, self.expired = None, False
            self._expired_event.clear()

    def start(self) -> None:
        """Arm the deadline for a new request or file, made in the calling thread."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._armed += 1
            self.problem, self.expired, self._socket = None, False, None
            self._expired_event.clear()
            # a timer of an earlier arming that fires late finds another number: no effect
            self._timer = threading.Timer(self.seconds, self._expire, args=(self._armed,))
            self._timer.daemon = True
            self._timer.start()
        ResponseDeadline._of_thread.deadline = self

    def stop(self) -> None:
        """Disarm the deadline: from now on its timer sets nothing (a socket it was already
        shutting may still be shut)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._socket = None
        if self.of_thread() is self:
            ResponseDeadline._of_thread.deadline = None

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds``, or until the deadline passes, whichever comes first."""
        self._expired_event.wait(seconds)

    def expire_hook(self) -> None:
        """Called (under the lock) when the deadline passes, before the socket is shut."""

    def _expire(self, armed: int) -> None:
        with self._lock:
            if self._timer is None or armed != self._armed:  # stopped or re-armed since
                return
            self.expired = True
            self._expired_event.set()
            self.problem = f'not finished within {self.flag} {self.seconds:g} s'
            self.expire_hook()
            sock = self._socket
        _shut_down(sock)

    def watch_socket(self, sock: socket.socket) -> None:
        """Note the socket the request reads from now (a new connection's, or a pooled one's
        for its next response): the one shut at the deadline; shut at once past it."""
        with self._lock:
            self._socket = sock
            expired = self.expired
        if expired:
            _shut_down(sock)

    def watch(self, response, *args, **kwargs):
        """A requests ``response`` hook (called before the body is read).

        Raises:
            DeadlinePassed: the deadline has passed already (a redirect after it).
        """
        if self.expired:
            response.close()
            raise DeadlinePassed(self.problem)
        return response


def _shut_down(sock: socket.socket | None) -> None:
    """Shut a socket down (urllib3's way to end a read in another thread), if it is open."""
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except (OSError, ValueError):
            pass  # closed already: nothing reads from it


class _DeadlineConnection:
    """A urllib3 connection (a mixin, before the pool's own class) whose socket the deadline
    armed in its thread (:meth:`ResponseDeadline.of_thread`) shuts at the deadline: noted when
    it connects (a TLS handshake may drip too), and for each response it reads (a pooled
    connection serves many requests)."""

    def _new_conn(self):
        sock = super()._new_conn()
        if (deadline := ResponseDeadline.of_thread()) is not None:
            deadline.watch_socket(sock)
        return sock

    def getresponse(self, *args, **kwargs):
        if (deadline := ResponseDeadline.of_thread()) is not None and self.sock is not None:
            deadline.watch_socket(self.sock)
        return super().getresponse(*args, **kwargs)


@functools.cache
def _deadline_connection_class(connection_class: type) -> type:
    """``connection_class`` (a pool's: plain, TLS, SOCKS ...) with :class:`_DeadlineConnection`
    before it."""
    return type(f'Deadline{connection_class.__name__}', (_DeadlineConnection, connection_class),
                {})


class BoundedAdapter(RequestsAdapter):
    """gallery-dl's requests adapter (its TLS context and source address kept), whose
    connections a :class:`ResponseDeadline` can shut before a response exists (the status line
    and headers of a server that drips them are bounded as its body is), and which drops a
    redirect's body unread: requests would read it whole to follow the redirect, and keep it
    in the response's history (up to 30 of them), whatever its size.

    Args:
        like: the adapter gallery-dl mounted on the session.
    """

    def __init__(self, like):
        super().__init__(getattr(like, 'ssl_context', None), getattr(like, 'source_address', None))

    def get_connection_with_tls_context(self, *args, **kwargs):
        pool = super().get_connection_with_tls_context(*args, **kwargs)
        if not issubclass(pool.ConnectionCls, _DeadlineConnection):
            pool.ConnectionCls = _deadline_connection_class(pool.ConnectionCls)
        return pool

    def send(self, *args, **kwargs):
        response = super().send(*args, **kwargs)
        if response.is_redirect:
            response.raw.close()  # its connection too, with the rest of the body
            response._content, response._content_consumed = b'', True  # (what .content reads)
        return response


class DeadlineSession:
    """A requests session whose every request, headers and body, must finish within
    ``deadline`` (armed anew for each try, so that gallery-dl's own waits between tries do not
    count); a request cut at the deadline raises :class:`DeadlinePassed`, whatever the cut
    looked like (a broken read, or a body that ended early). A body is read whole only up to
    ``max_bytes`` (:func:`capped`); past it :class:`AnswerTooLarge` is raised.

    Args:
        session: gallery-dl's session.
        deadline: the deadline of each try.
        max_bytes: the size cap of an answer.
    """

    def __init__(self, session, deadline: ResponseDeadline, *,
                 max_bytes: int = SEARCH_ANSWER_MAX_BYTES):
        self.session = session
        self.deadline = deadline
        self.max_bytes = max_bytes

    def _read_capped(self, response, *args, **kwargs):
        """A requests ``response`` hook: reads the body now, at most ``max_bytes`` of it
        (requests would read it whole, after the hooks; so would its redirects).

        Raises:
            AnswerTooLarge: the body (or its Content-Length) is over the cap.
        """
        if response.is_redirect:  # its body is dropped (BoundedAdapter)
            return response
        size = declared_size(response)
        if size is not None and size > self.max_bytes:
            response.close()
            raise AnswerTooLarge(f'search answer larger than {self.max_bytes} bytes '
                                 f'(Content-Length {size})')

        def too_large() -> AnswerTooLarge:
            response.close()
            return AnswerTooLarge(f'search answer larger than {self.max_bytes} bytes')

        # what requests' Response.content does, capped; .content and .text then return it
        response._content = b''.join(capped(response.iter_content(65536), self.max_bytes,
                                            too_large))
        response._content_consumed = True  # a later iter_content() replays _content
        return response

    def request(self, method, url, **kwargs):
        hooks = dict(kwargs.pop('hooks', None) or {})
        response_hooks = hooks.get('response') or []
        if callable(response_hooks):
            response_hooks = [response_hooks]
        hooks['response'] = [*response_hooks, self.deadline.watch]
        if not kwargs.get('stream'):  # a caller streaming the body reads it its own way
            hooks['response'].append(self._read_capped)
        self.deadline.start()
        try:
            response = self.session.request(method, url, hooks=hooks, **kwargs)
        except requests.exceptions.RequestException:
            if self.deadline.expired:
                raise DeadlinePassed(self.deadline.problem) from None
            raise
        finally:
            self.deadline.stop()
        if self.deadline.expired:
            response.close()
            raise DeadlinePassed(self.deadline.problem)
        return response

    def __getattr__(self, name):
        return getattr(self.session, name)


class DownloadGuard(ResponseDeadline):
    """Bounds one file's download: its content type, its size and its wall-clock time.

    gallery-dl's read timeout ends a download whose server goes silent, but not one that sends
    a byte now and then, nor an endless body without Content-Length. The guard checks each
    response before gallery-dl reads it (:meth:`check_response`, through
    :class:`GuardedSession`), counts the body (:meth:`count`) and, at the deadline, sets
    gallery-dl's download flag (the download stops at its next check) and shuts the connection
    (:class:`ResponseDeadline`). It also notes what says whether a failure is the file's own
    (:class:`RefusedPosts`): the file's last status, whether its last response declared the
    file's whole length, and whether the guard refused the file for its type or size.

    Args:
        seconds: the deadline of one file, retries included.
        max_bytes: the size cap.
    """

    def __init__(self, *, seconds: float, max_bytes: int):
        super().__init__(seconds=seconds)
        self.max_bytes = max_bytes
        self._forget_file()

    def _forget_file(self) -> None:
        #: the HTTP status of the file's last response
        self.status: int | None = None
        #: whether that response declared the file's whole length (a 200's Content-Length, a
        #: 206's Content-Range), which gallery-dl holds the body to: the file that came is then
        #: the server's whole file, not a transfer cut short
        self.whole_length_declared = False
        #: whether :attr:`problem` is the file's own, which a rerun would meet again: its type
        #: or its size
        self.refused_for_good = False
        #: whether the file was refused for being larger than ``max_bytes``
        self.over_max_bytes = False

    def reset(self) -> None:
        super().reset()
        self._forget_file()

    def expire_hook(self) -> None:
        util.FLAGS.DOWNLOAD = False  # gallery-dl's "skip this download" flag

    def refuse(self, problem: str) -> None:
        """Refuse the file for good, for ``problem`` (what it is, or its URL)."""
        self.problem = problem
        self.refused_for_good = True

    def check_response(self, response) -> bool:
        """Whether a response may be the file: False refuses it (:attr:`problem` says why),
        before gallery-dl reads its headers or its body. Any other status than 200 and 206 is
        gallery-dl's to handle (it retries a 5xx, gives up a 404)."""
        if self.expired:
            return False
        self.status = response.status_code
        if response.status_code not in (200, 206):
            return True
        # gallery-dl reads the file's size and offset from it: a KeyError ended the crawl
        if response.status_code == 206 and 'Content-Range' not in response.headers:
            self.problem = '206 Partial Content without Content-Range'
            return False
        size = declared_size(response)
        # (gallery-dl reads the whole length of a 206 after the '/' of its Content-Range)
        self.whole_length_declared = size is not None if response.status_code == 200 else \
            response.headers['Content-Range'].rpartition('/')[2].strip().isdigit()
        content_type = response.headers.get('Content-Type', '').partition(';')[0]
        content_type = content_type.strip().lower()
        if content_type and not content_type.startswith('image/') \
                and content_type not in _GENERIC_CONTENT_TYPES:
            self.refuse(f'not an image ({content_type})')
            return False
        if size is not None and size > self.max_bytes:
            self.problem = f'{self._too_large} (Content-Length {size})'
            self.refused_for_good = self.over_max_bytes = True
            return False
        return True

    @property
    def _too_large(self) -> str:
        """The problem of a file over the cap, named as the flag gives it (MB)."""
        return f'larger than --max-file-size {self.max_bytes / MB:g} MB'

    def count(self, chunks: Iterable[bytes], received: int) -> Iterator[bytes]:
        """Pass a body's chunks on, stopping the download past the size cap (:func:`capped`).

        Args:
            chunks: the body, as gallery-dl reads it.
            received: bytes already on disk (a resumed download).

        Raises:
            gallery_dl.exception.StopDownload: past the cap (gallery-dl cancels the file).
        """
        def too_large() -> exception.StopDownload:
            self.problem = self._too_large
            self.refused_for_good = self.over_max_bytes = True
            return exception.StopDownload()

        return capped(chunks, self.max_bytes, too_large, received)


class RefusedResponse(requests.exceptions.RequestException):
    """A response of a file that the guard refused (:meth:`DownloadGuard.check_response`); a
    plain ``RequestException``, which gallery-dl's downloader does not retry."""


#: what requests raises for a URL it cannot fetch at all (no host, a host it cannot parse)
_UNFETCHABLE_URL = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema)


class GuardedSession:
    """The HTTP downloader's session: each response of a file passes
    :meth:`DownloadGuard.check_response` before gallery-dl reads anything of it (its
    ``_http_validate`` hook comes after gallery-dl has read a 206's Content-Range).

    Args:
        session: gallery-dl's session.
        guard: the current file's guard.
    """

    def __init__(self, session, guard: DownloadGuard):
        self.session = session
        self.guard = guard

    def request(self, method, url, **kwargs):
        """The session's request; the response if the guard takes it.

        Raises:
            RefusedResponse: the guard refused it, or requests refused the URL (the post's, or
                a redirect's) as no URL it can fetch: gallery-dl fails the file, not retried;
                refused for good (:class:`RefusedPosts`), as every rerun would be.
        """
        try:
            response = self.session.request(method, url, **kwargs)
        except _UNFETCHABLE_URL as error:
            if isinstance(error, requests.exceptions.InvalidProxyURL):  # the user's config
                raise
            detail = ' '.join(str(error).split()) or error.__class__.__name__
            self.guard.refuse(f'a URL requests cannot fetch ({detail})')
            raise RefusedResponse(self.guard.problem) from None
        if not self.guard.check_response(response):
            response.close()
            raise RefusedResponse(self.guard.problem)
        return response

    def __getattr__(self, name):
        return getattr(self.session, name)


#: the format of gallery-dl's HTTP downloader's warning that a try of a file failed in a way it
#: tries again (a 5xx or 429, a connection error, a timeout, a body cut short): "reason (2/5)"
_RETRY_WARNING = '%s (%s/%s)'


class BoundedHttpDownloader(HttpDownloader):
    """gallery-dl's HTTP downloader, whose body is counted against the guard's size cap, and
    whose retries wait as the searches' do.

    gallery-dl's own ``filesize-max`` reads only the Content-Length header (an endless body has
    none) and counts a refused file as skipped, not failed. Its own retries wait ``try`` seconds
    whatever ``sleep-retries`` says (that setting is the extractor's): here it tries once per
    call, and :meth:`download` tries again, as often (``retries``) and after the same waits
    (``sleep-retries``) as a search request, when gallery-dl's warning (:data:`_RETRY_WARNING`)
    says that it would have. Each response passes the guard first (:class:`GuardedSession`);
    whatever else gallery-dl's download raises (but its own control exceptions and an
    ``OSError``, which the job handles) fails that file, not the crawl.

    Args:
        download_job: the job it downloads for.
        guard: the current file's guard.
    """

    def __init__(self, download_job: job.DownloadJob, *, guard: DownloadGuard):
        super().__init__(download_job)
        self.guard = guard
        self.session = GuardedSession(self.session, guard)
        self.file_retries = self.retries  # gallery-dl's 'retries', as the searches have it
        self.retries = 0  # gallery-dl's own: one try per call of its download()
        #: seconds before the n-th retry: gallery-dl's function of the searches' setting
        self.retry_wait = util.build_duration_func_ex(self.config('sleep-retries'))
        self.retry_number = 0  # of the try running: 0 for the first, n for the n-th retry
        self.retryable = False  # whether the try failed in a way worth trying again
        self.log = _RetryTap(self.log, self)
        # gallery-dl picks receive or _receive_rate in __init__; wrap whichever it picked
        self._receive_unbounded = self.receive
        self.receive = self._receive_bounded

    def _receive_bounded(self, fp, content, bytes_total, bytes_start):
        return self._receive_unbounded(fp, self.guard.count(content, bytes_start), bytes_total,
                                       bytes_start)

    def download(self, url, pathfmt):
        # armed here, not before gallery-dl's --sleep wait; a fallback URL of the same file
        # finds it running: one deadline per file, retries and their waits included
        if not self.guard.armed:
            self.guard.start()
        for retry_number in range(self.file_retries + 1):
            if retry_number and self.retry_wait is not None:
                self.guard.wait(self.retry_wait(retry_number))
            self.retry_number, self.retryable = retry_number, False
            try:
                if super().download(url, pathfmt):  # (past the deadline: StopDownload)
                    return True
            except (exception.GalleryDLException, OSError):
                raise
            except Exception as error:  # a server's answer gallery-dl did not expect
                detail = ' '.join(f'{error.__class__.__name__}: {error}'.split())
                self.log.warning('download failed (%s)', printable(detail, limit=200))
                return False
            finally:
                # a cancelled download leaves it set, and the next one would misreport
                self.downloading = False
            if not self.retryable:
                return False
        return False


class _RetryTap:
    """The logger of a :class:`BoundedHttpDownloader`: gallery-dl's warning that a try failed
    in a way it retries (:data:`_RETRY_WARNING`) marks the try as worth retrying, and counts the
    tries as the downloader makes them (gallery-dl's count is always "1/1").

    Args:
        log: gallery-dl's logger of the downloader.
        downloader: the downloader.
    """

    def __init__(self, log, downloader: BoundedHttpDownloader):
        self._log = log
        self._downloader = downloader

    def __getattr__(self, name):
        return getattr(self._log, name)

    def warning(self, msg, *args, **kwargs):
        if msg == _RETRY_WARNING and len(args) == 3:
            downloader = self._downloader
            downloader.retryable = True
            args = (args[0], downloader.retry_number + 1, downloader.file_retries + 1)
        self._log.warning(msg, *args, **kwargs)


class _RedactingFilter(logging.Filter):
    """Redacts (:func:`redact`) the secrets of each record of a logger it is on, its message,
    traceback and logger name (gallery-dl names another instance's logger after its host,
    ``user:password@host`` included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format: a handler would print msg and args as they are
            message = f'{record.msg} {record.args}'
        record.msg, record.args = redact(message), None
        if record.exc_info:  # formatted now, redacted, instead of by the handler
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if '@' in record.name:
            record.name = f'{REDACTED}@{record.name.rpartition("@")[2]}'
        return True


#: gallery-dl's loggers (besides the extractor's, named after its category)
_GALLERY_DL_LOGGERS = ('gallery-dl', 'config', 'cache', 'archive', 'cookies', 'formatter',
                       'download', 'downloader.http', 'postprocessor')
#: urllib3's logger, whose debug lines name each request's path and query: redacted, but its
#: records stay the application's to handle
_URLLIB3_LOGGER = 'urllib3.connectionpool'


def note(line: str) -> None:
    """Print a line of the crawl's on stderr, above the progress bar (``tqdm.write``), its
    secrets redacted (:func:`redact`) and its control characters escaped (a server's text may
    hold some)."""
    tqdm.write(printable(redact(line), one_line=True), file=sys.stderr)


class GalleryDlLogLines(logging.Handler):
    """gallery-dl's warnings (and errors) as lines of the crawl's own (:func:`note`).

    Without a handler of their own, gallery-dl's records reach Python's last-resort handler,
    which prints them bare on stderr, amid the progress bar. Left out is what the crawl reports
    itself: a file that failed (in the summary, with its reason; so is gallery-dl's warning
    that names the :class:`RefusedResponse` of a file the :class:`DownloadGuard` refused), and
    the error that ended the
    search (raised as :class:`CrawlError`, where gallery-dl would advise to report it as a bug
    of gallery-dl's).

    Attributes:
        job: the crawl's job, once it is made.
    """

    def __init__(self):
        super().__init__(logging.WARNING)
        self.job: CrawlJob | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if not self._reported_elsewhere(record):
            note(f'warning: gallery-dl: {record.getMessage()}')

    def _reported_elsewhere(self, record: logging.LogRecord) -> bool:
        job = self.job
        if job is None:
            return False
        if job.current is not None:  # a file's failure: the summary gives it with its reason
            return record.levelno >= logging.ERROR or job.guard.problem is not None
        return record.levelno >= logging.ERROR and job.error is not None  # the CrawlError's


@contextmanager
def gallery_dl_logging(*names: str, handler: logging.Handler) -> Iterator[None]:
    """While the block runs, the records of gallery-dl's loggers and of ``names`` have their
    secrets redacted (:class:`_RedactingFilter`) and go to ``handler`` alone (not propagated to
    the application's handlers); urllib3's are redacted. Afterwards all is as before."""
    loggers = [logging.getLogger(name) for name in dict.fromkeys((*_GALLERY_DL_LOGGERS,
                                                                   *names))]
    urllib3_logger = logging.getLogger(_URLLIB3_LOGGER)
    redacting = _RedactingFilter()
    propagate = {logger: logger.propagate for logger in loggers}
    for logger in loggers:
        logger.addFilter(redacting)
        logger.addHandler(handler)
        logger.propagate = False
    urllib3_logger.addFilter(redacting)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(redacting)
            logger.removeHandler(handler)
            logger.propagate = propagate[logger]
        urllib3_logger.removeFilter(redacting)


def _origin(url: str) -> tuple[str, str | None, int | None]:
    """(scheme, host, port) of a URL, the port filled in."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, parts.hostname, port or {'http': 80, 'https': 443}.get(scheme)


class HostScopedAuth(requests.auth.AuthBase):
    """A requests auth that logs in to one host only (scheme, host and port).

    gallery-dl puts Danbooru's login on the session, which its downloader shares: without the
    scope every file download, from a CDN or any host a post's file URL names, would carry the
    API key.

    Args:
        auth: the auth to apply (a callable taking and returning the request).
        url: a URL of the host that gets it, the API's root.
    """

    def __init__(self, auth, url: str):
        self.auth = auth
        self.origin = _origin(url)

    def __call__(self, request):
        return self.auth(request) if _origin(request.url) == self.origin else request


def scope_cookies_to_host(cookies, url: str) -> None:
    """Make the cookies of no domain (gallery-dl sets a config's ``cookies`` so) the cookies
    of ``url``'s host alone: requests sent them to every host, the file servers and any host a
    post's ``file_url`` or a redirect names (a session cookie leaked to another host). The
    host as the cookie jar names it (``booru.local`` for a host of no dot), and the jar's
    policy strict for cookies of no ``Domain`` (as RFC 6265 has them): sent to that host, not
    to its subdomains."""
    import http.cookiejar
    host = http.cookiejar.eff_request_host(urllib.request.Request(url))[1]
    policy = cookies.get_policy() if hasattr(cookies, 'get_policy') else None
    if isinstance(policy, http.cookiejar.DefaultCookiePolicy):
        policy.strict_ns_domain |= policy.DomainStrictNonDomain
    for cookie in [cookie for cookie in cookies if not cookie.domain]:
        cookies.clear('', cookie.path, cookie.name)
        cookie.domain, cookie.domain_specified, cookie.domain_initial_dot = host, False, False
        cookies.set_cookie(cookie)


class _WarningTap:
    """A gallery-dl logger that also hands each warning to ``sink``.

    gallery-dl says why a download failed ("file size mismatch", a timeout, an HTTP status)
    only in its log.
    """

    def __init__(self, log, sink: Callable[[str], None]):
        self._log = log
        self._sink = sink

    def __getattr__(self, name):
        return getattr(self._log, name)

    def warning(self, msg, *args, **kwargs):
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = str(msg)
        self._sink(text)
        self._log.warning(msg, *args, **kwargs)


@dataclass
class _FileState:
    """The file being downloaded: its post and what happened to it."""

    url: str
    info: dict
    outcome: str = 'failed'  # 'verified', 'saved', 'duplicate', 'skipped', 'rejected', 'failed'
    problem: str | None = None  # why it was rejected
    refused_for_good: bool = False  # rejected for what the file is (RefusedPosts)
    warning: str | None = None  # gallery-dl's last warning
    md5: str | None = None
    path: Path | None = None


def _describe_warning(text: str, options: CrawlOptions) -> str:
    """gallery-dl's warning about a failed download, as a short reason."""
    text = re.sub(r'\s*\(\d+/\d+\)$', '', ' '.join(text.split()))  # its "(try/tries)"
    if 'timed out' in text.lower():
        return f'no data for {options.timeout:g} s (--timeout)'
    if match := re.fullmatch(r'file size mismatch \((\d+) < (\d+)\)', text):
        return f'body shorter than its Content-Length ({match[1]} of {match[2]} bytes)'
    if match := re.search(r'IncompleteRead\((\d+) bytes read, (\d+) more expected\)', text):
        received, missing = int(match[1]), int(match[2])  # urllib3 checks Content-Length too
        return (f'body shorter than its Content-Length ({received} of {received + missing} '
                f'bytes)')
    if match := re.fullmatch(r"'(\d{3} [^']*)' for '.*'", text):
        return match[1]  # "404 Not Found": the URL is listed already
    if text == 'HTML response':
        return 'not an image (text/html)'
    return text


class CrawlJob(job.DownloadJob):
    """gallery-dl's download job, with the crawler's filters, checks and bookkeeping.

    gallery-dl's extractor yields the posts of the search (:meth:`_well_formed_posts` skips
    malformed ones first), and the job runs each file through ``handle_url``; the crawler filters
    the post first (an http(s) file URL, :func:`keep_post`, then md5 dedupe), arms a
    :class:`DownloadGuard`, and hooks into
    gallery-dl's file events: ``file`` (downloaded, not yet under its final name:
    :meth:`_check_file` verifies it and writes its sidecar, or makes gallery-dl fail it, which
    also keeps it out of the download archive), ``after`` (under its final name, archived) and
    ``skip`` (archived or present already); a file none of them marks has failed. A post that
    earlier runs refused for good (:data:`REFUSED_RUNS_TO_SKIP`) is skipped
    (:class:`RefusedPosts`), unless ``retry_failed``.

    The search is bounded: each request (:meth:`_bounded_request`) by a deadline and a size cap,
    and the walk over its pages by the posts it looks at, the requests it makes and the pages
    that bring no new post (:data:`SEARCH_POSTS_PER_IMAGE`, :data:`SEARCH_POSTS_PER_REQUEST`,
    :data:`SEARCH_IDLE_PAGES`); a post a page repeats is handled once. An answer gallery-dl
    cannot read ends it with :class:`MalformedAnswer` (:meth:`dispatch`). A URL the extractor
    hands on to another extractor (``handle_queue``) is never followed.

    Args:
        url: gallery-dl URL of the tag search, or gallery-dl's extractor for it.
        options: the crawl.
        result: filled in as the crawl goes.
        known: the images in the output folder by md5 (:class:`KnownFiles`); kept up to date,
            with what other crawls in the folder save too.
        progress: advanced for each saved image.
        refused: the output folder's record of the posts refused for good
            (:meth:`RefusedPosts.load`); kept up to date, for the caller to save.
    """

    def __init__(self, url, *, options: CrawlOptions, result: CrawlResult,
                 known: KnownFiles, progress: tqdm,
                 refused: RefusedPosts):
        self.options = options
        self.result = result
        self.known = known
        self.refused = refused
        self.progress = progress
        self.kind = kind_of(options)
        self.root = root_of(options)
        self.label = file_label(options)
        #: posts (not saved before) the search may look at before it stops
        self.max_new_posts = min(max(options.limit * SEARCH_POSTS_PER_IMAGE, SEARCH_POSTS_MIN),
                                 SEARCH_POSTS_CAP)
        self.post_ids: set = set()  # the posts handled, to handle each once
        # the malformed posts counted, to count each once (a page asked for after one without
        # an id holds it again): by digest of what the site sent
        self.malformed_posts: set[str] = set()
        self.search_pages = 0  # search requests made
        self.reading_xml = False  # within _posts_xml: an answer with a DTD subset is refused
        self.last_new_post_page = 0  # the last of them that brought a post not seen before
        self.guard = DownloadGuard(seconds=options.file_deadline,
                                   max_bytes=options.max_file_size)
        self.current: _FileState | None = None  # set before super() builds the loggers
        #: the claim of the current file's md5 (KnownFiles.claim), held until it is stored
        self.md5_claim = ExitStack()
        #: the error that ended the job (gallery-dl only logs it)
        self.error: BaseException | None = None
        self.search_answer_url: str | None = None  # of the last search answer, for messages
        super().__init__(url)
        # The extractor's own requests (search pages, API calls) get the same wall-clock
        # bound as a file: a server dripping its answer would otherwise hold the crawl.
        self.search_deadline = ResponseDeadline(seconds=options.file_deadline)
        self._request_unbounded = self.extractor.request
        self.extractor.request = self._bounded_request
        # every post of the search's pages passes _well_formed_posts before gallery-dl reads it
        self._posts_unchecked = self.extractor.posts
        self.extractor.posts = self._well_formed_posts
        if self.kind == 'gelbooru_v02':
            self._request_xml_unchecked = self.extractor.request_xml
            self.extractor.request_xml = self._posts_xml
        else:
            self._request_json_unchecked = self.extractor.request_json
            self.extractor.request_json = self._page_json

    def _bounded_request(self, url, *args, **kwargs):
        """The extractor's ``request``, each try bounded by :attr:`search_deadline` and
        :data:`SEARCH_ANSWER_MAX_BYTES`; no request after :data:`SEARCH_IDLE_PAGES` in a row
        that brought no new post, nor beyond :meth:`_max_search_requests`."""
        if self.search_pages - self.last_new_post_page >= SEARCH_IDLE_PAGES:
            self._stop_search(f'search stopped: {SEARCH_IDLE_PAGES} search pages in a row '
                              f'brought no post not seen before (the site repeats a page, or '
                              f'claims more posts than it gives)')
        if self.search_pages >= self._max_search_requests():
            self._stop_search(
                f'search stopped after {self.search_pages} search requests, the most for '
                f'--limit {self.options.limit} (one per {SEARCH_POSTS_PER_REQUEST} posts it may '
                f'look at, at least {SEARCH_REQUESTS_MIN}): the site gives few posts not seen '
                f'before per page')
        self.search_pages += 1
        # the posts seen so far: a search whose posts are all filtered out saves nothing, and
        # the bar would stand still (set_postfix per post does not redraw it)
        self.progress.refresh()
        session = kwargs.pop('session', None) or self.extractor.session
        response = self._request_unbounded(
            url, *args, session=DeadlineSession(session, self.search_deadline), **kwargs)
        self.search_answer_url = getattr(response, 'url', None) or url
        # the text gallery-dl parses (requests' decoding): what a DTD's internal subset
        # declares expands in the parser (entities: 80 times a 300 KB answer, 1.1 GB more
        # memory and an 87 MB sidecar; an attribute's default: copied into every element),
        # and Gelbooru 0.2 sends none
        if self.reading_xml and _XML_DECLARATIONS.search(response.text):
            raise ValueError('it declares a DTD of its own (<!DOCTYPE ... [...]>), whose '
                             'entities and defaults the parser would expand: refused unread')
        return response

    def _max_search_requests(self) -> int:
        """The search requests the search may make: one per :data:`SEARCH_POSTS_PER_REQUEST`
        posts it may look at (:attr:`max_new_posts`, plus the posts saved before it has walked
        past: a rerun pages past them), at least :data:`SEARCH_REQUESTS_MIN`."""
        posts = self.max_new_posts + self.result.already_downloaded
        return max(SEARCH_REQUESTS_MIN, -(-posts // SEARCH_POSTS_PER_REQUEST))

    def _posts_xml(self, *args, **kwargs):
        """The extractor's ``request_xml`` (Gelbooru 0.2's API answers ``<posts>``), refusing
        another root element: an HTML page (a challenge, an error page) may be well-formed XML,
        whose elements gallery-dl would take for posts.

        Raises:
            ValueError: another root element (:meth:`_read` names the answer).
        """
        self.reading_xml = True
        try:
            root = self._request_xml_unchecked(*args, **kwargs)
        finally:
            self.reading_xml = False
        if root.tag not in ('posts', 'error'):  # (gallery-dl reads an <error> itself)
            raise ValueError(f'its root element is <{printable(str(root.tag), limit=40)}>, not '
                             f'<posts>')
        return root

    def _page_json(self, *args, **kwargs):
        """The extractor's ``request_json`` (Danbooru's and Gelbooru's API), whose page of
        posts ends, as gallery-dl reads it, with a post that has an id: gallery-dl's paginator
        asks for the next page by the last post's id (Danbooru's ``page=b<id>`` and
        ``page=a<id>``, Gelbooru's ``id:<<id>``), and a last post without one ended the search
        with an exception. The posts at that end of a page that have none are taken off it and
        skipped (:meth:`_skip_malformed`); the next page starts after the last post that has
        one. That end is the answer's last, but for the pages of an ``order:id`` search after
        the first (asked for by ``page=a<id>``): Danbooru gives them newest first, gallery-dl
        reverses them, and reads the answer's first post as the last. Only those posts go, not
        every post without an id (:meth:`_well_formed_posts` skips the others): a page shorter
        than gallery-dl's ``threshold`` ends the search."""
        answer = self._request_json_unchecked(*args, **kwargs)
        posts = answer.get(_PAGE_POSTS_KEY[self.kind]) if isinstance(answer, dict) else answer
        if isinstance(posts, list):
            page = (kwargs.get('params') or {}).get('page')
            reversed_page = self.kind == 'danbooru' and str(page).startswith('a')
            last = 0 if reversed_page else -1
            while posts and not (isinstance(posts[last], dict) and _is_id(posts[last].get('id'))):
                post = posts.pop(last)
                self._skip_malformed(post, post_problem(self.kind, post))
        return answer

    def _well_formed_posts(self):
        """The extractor's posts, less those it could not read (:func:`post_problem`, then
        :meth:`_skip_malformed`) and Danbooru's zip files (an animation's frames, filtered out
        here: gallery-dl would download the post's ``large_file_url`` instead, a video, which
        the post may lack)."""
        for post in self._posts_unchecked():
            problem = post_problem(self.kind, post)
            if problem is not None:
                self._skip_malformed(post, problem)
            elif self.kind == 'danbooru' and 'file_url' in post and \
                    gdl_text.nameext_from_url(post['file_url'])['extension'] == 'zip':
                if self._see(post) is not None:
                    self.result.filtered += 1
            else:
                yield post

    def _skip_malformed(self, post, problem: str) -> None:
        """Count a post that cannot be used in :attr:`CrawlResult.malformed`, once however
        many pages hold it; note the first."""
        try:  # (ASCII: lone surrogates escaped)
            sent = hashlib.sha256(json.dumps(post, sort_keys=True, default=repr).encode()
                                  ).hexdigest()
        except (RecursionError, ValueError, TypeError):  # nested as deep as the parser went
            sent = None
        if sent is not None:
            if sent in self.malformed_posts:
                return
            self.malformed_posts.add(sent)
        self.result.malformed += 1
        if self.result.malformed == 1:
            post_id = post.get('id') if isinstance(post, dict) else None
            note(f'warning: {self.options.source}: post {printable(repr(post_id), limit=40)} '
                 f'of {self.search_answer_url} skipped: {problem} (the next such posts are '
                 f'counted only)')

    def _stop_search(self, reason: str):
        """End the search (gallery-dl's way: the job ends without an error), saying why."""
        self.result.stopped = reason
        raise exception.StopExtraction()

    def _init(self):
        super()._init()  # gallery-dl's: initialises the extractor, which logs in
        session = self.extractor.session
        if session.auth is not None and not isinstance(session.auth, HostScopedAuth):
            session.auth = HostScopedAuth(session.auth, self.root)
        scope_cookies_to_host(session.cookies, self.root)
        # the searches' and the files' requests alike (the downloader shares the session)
        adapter = BoundedAdapter(session.get_adapter('https://'))
        for prefix in ('https://', 'http://'):
            session.mount(prefix, adapter)

    def get_logger(self, name):
        return _WarningTap(super().get_logger(name), self._note_warning)

    def _note_warning(self, text: str) -> None:
        if self.current is not None:
            self.current.warning = text

    def get_downloader(self, scheme):
        if scheme.lower() not in FILE_URL_SCHEMES:  # (handle_url filters them out before)
            self.log.warning("'%s:' URLs are not downloaded (http and https only)", scheme)
            return None
        if 'http' not in self.downloaders:
            self.downloaders['http'] = BoundedHttpDownloader(self, guard=self.guard)
        return self.downloaders['http']

    def initialize(self, kwdict=None):
        super().initialize(kwdict)
        if not isinstance(self.hooks, dict):  # gallery-dl makes it a dict for postprocessors
            self.hooks = collections.defaultdict(list)
        self.hooks['file'].insert(0, self._check_file)  # before any postprocessor of the user
        self.hooks['after'].append(self._file_saved)
        self.hooks['skip'].append(self._file_skipped)

    def dispatch(self, messages):
        try:
            return super().dispatch(self._read(messages))
        except exception.StopExtraction:
            raise
        except BaseException as e:  # gallery-dl logs it; we keep it to raise it
            self.error = e
            raise

    def _read(self, messages):
        """The extractor's messages; what it raises on reading a search answer that is not the
        site's JSON or XML (a parse error, a missing key, a value of another type) as one
        :class:`MalformedAnswer` naming the answer. (What the job's handlers raise does not pass
        here.)"""
        iterator = iter(messages)
        while True:
            try:
                message = next(iterator)
            except StopIteration:
                return
            except (ValueError, LookupError, TypeError, AttributeError, SyntaxError) as error:
                software, answer_format = SOFTWARE[self.kind]
                detail = printable(f'{error.__class__.__name__}: {" ".join(str(error).split())}',
                                   one_line=True, limit=200)
                answer_url = self.search_answer_url or self.extractor.url
                raise MalformedAnswer(f'the search answer from {answer_url} is not {software} '
                                      f'{answer_format} ({detail})') from error
            yield message

    def _see(self, kwdict: dict) -> dict | None:
        """Count a post of the search as seen, once, within the search's bound.

        Returns:
            The post (:func:`post_info`), or None for a post handled already (a page the site
            gave again).

        Raises:
            StopExtraction: the search looked at as many posts as it may.
        """
        result = self.result
        info = post_info(self.kind, self.root, kwdict)
        if info['post_id'] in self.post_ids:
            return None
        if result.seen - result.already_downloaded >= self.max_new_posts:
            self._stop_search(
                f'search stopped after {self.max_new_posts} posts not saved before, for '
                f'--limit {self.options.limit} ({SEARCH_POSTS_PER_IMAGE} per image, at least '
                f'{SEARCH_POSTS_MIN}, at most {SEARCH_POSTS_CAP}): loosen the filters or the '
                f'tags to find more')
        self.post_ids.add(info['post_id'])
        self.last_new_post_page = self.search_pages
        result.seen += 1
        self.progress.set_postfix(seen=result.seen, refresh=False)
        return info

    def handle_queue(self, url, kwdict):
        """gallery-dl's handler of a URL for another extractor (Danbooru's ``external``
        option queues the source of a post without a file of its own; ``follow`` queues URLs of
        the metadata): never followed, whatever the user's gallery-dl config says; the post is
        filtered out, having no file of its own."""
        if self._see(kwdict) is not None:
            self.result.filtered += 1

    def handle_url(self, url, kwdict):
        result = self.result
        info = self._see(kwdict)
        if info is None:
            return  # a page the site gave again: this post is handled
        if url.partition(':')[0].lower() not in FILE_URL_SCHEMES:  # as gallery-dl reads it
            result.filtered += 1
            note(f'warning: {self.options.source}: post {info["post_id"]}: its file URL is not '
                 f'http(s), not downloaded: {printable(url, limit=100)}')
            return
        if keep_post(info, self.options) is not None:
            result.filtered += 1
            return
        # another crawl in the folder may have saved it meanwhile
        self.known.refresh(if_folder_changed=True)
        if info['md5'] in self.known.md5:
            if self.known.md5[info['md5']] == (self.label, info['post_id']):
                result.already_downloaded += 1  # this very post, from an earlier run
                self.refused.discard(self.label, info['post_id'])
            else:
                result.duplicates += 1  # the same file from another post or source
            return
        if not self.options.retry_failed and \
                self.refused.skips(self.label, info, self.options.max_file_size):
            result.refused_before += 1
            return
        kwdict['_aln_label'] = self.label
        self.current = state = _FileState(url=url, info=info)
        self.guard.reset()  # armed by the downloader (BoundedHttpDownloader.download)
        try:
            super().handle_url(url, kwdict)
        except sqlite3.Error:  # the download archive refused the file's entry: the crawl ends
            if state.outcome == 'verified' and os.path.isfile(self.pathfmt.realpath):
                # under its final name, its sidecar beside it (a rerun finds it by that)
                state.outcome, state.path = 'saved', Path(self.pathfmt.realpath)
                self._count_saved(state)
            raise
        finally:
            self.md5_claim.close()  # the file is stored, or not
            self.guard.stop()
            if self.guard.expired:  # the flag, if gallery-dl did not take it, is ours
                util.FLAGS.DOWNLOAD = None
            self.current = None
        self._count(state)

    def _count(self, state: _FileState) -> None:
        result = self.result
        guard = self.guard
        if state.outcome in ('duplicate', 'skipped'):  # the post's file is here
            self.refused.discard(self.label, state.info['post_id'])
        if state.outcome == 'saved':
            self._count_saved(state)
            if len(result.saved) >= self.options.limit:
                raise exception.StopExtraction()
        elif state.outcome == 'duplicate':
            result.duplicates += 1
        elif state.outcome == 'skipped':
            result.already_downloaded += 1
        else:
            reason = (state.problem or guard.problem
                      or (state.warning and _describe_warning(state.warning, self.options))
                      or 'download failed')
            if guard.problem or state.refused_for_good or guard.refused_for_good or \
                    guard.status in GONE_STATUSES:  # nothing worth resuming
                self._remove_part()
            failure = redact(f'{state.url}: {reason}')
            result.failed.append(failure)
            if state.refused_for_good or guard.refused_for_good or \
                    guard.status in GONE_STATUSES:
                runs = self.refused.add(
                    self.label, state.info, url=state.url, reason=reason,
                    max_file_size=guard.max_bytes if guard.over_max_bytes else None)
                if runs >= REFUSED_RUNS_TO_SKIP:  # (a first refusal fails as any failure)
                    result.refused_indices.add(len(result.failed) - 1)

    def _count_saved(self, state: _FileState) -> None:
        """Count a file saved (under its final name, its sidecar beside it)."""
        self.refused.discard(self.label, state.info['post_id'])
        self.known.md5[state.md5] = (self.label, state.info['post_id'])
        self.result.saved.append(state.path)
        self.progress.update(1)

    def _remove_part(self) -> None:
        pathfmt = self.pathfmt
        if pathfmt is not None and pathfmt.temppath and pathfmt.temppath != pathfmt.realpath:
            Path(pathfmt.temppath).unlink(missing_ok=True)

    def _check_file(self, pathfmt) -> None:
        """gallery-dl's ``file`` hook: the file is downloaded, not yet under its final name."""
        state = self.current
        if state is None:  # not one of ours (a child job's file)
            return
        self.guard.stop()  # the download is over; verifying is not bounded by its deadline
        if self.guard.expired:
            state.outcome = 'rejected'
            state.problem = self.guard.problem
            Path(pathfmt.temppath).unlink(missing_ok=True)
            return  # the flag it set makes gallery-dl fail the file
        # gallery-dl names a file after its first bytes (an ICO under a .png URL becomes .ico)
        problem, md5 = check_image(Path(pathfmt.temppath), state.info['md5'],
                                   extension=pathfmt.extension or '')
        state.md5 = md5
        if problem is not None:
            # what the file is, or what the server's whole file is (not a transfer cut short)
            self._reject(pathfmt, problem, for_good=not problem.startswith(_CUT_SHORT_PROBLEMS)
                         or self.guard.whole_length_declared)
            return
        # its size as the tools see it (the site's claim may be missing or wrong): filtered by
        # it, and recorded in the sidecar
        width, height = image_size(Path(pathfmt.temppath))
        state.info.update(width=width, height=height)
        min_size = self.options.min_size
        if min_size and (width < min_size[0] or height < min_size[1]):
            self._reject(pathfmt, f'smaller than {min_size[0]}x{min_size[1]} (its file is '
                         f'{width}x{height})', for_good=True)
            return
        try:  # held until the file is stored (handle_url): another crawl may store it too
            self.md5_claim.enter_context(self.known.claim())
        except OSError as error:  # (TimeoutError: another crawl held it; a rerun tries again)
            self._reject(pathfmt, f'its md5 cannot be claimed ({" ".join(str(error).split())})',
                         for_good=False)
            return
        # the site had no md5, or a wrong one, or another crawl stored the file meanwhile
        if md5 in self.known.md5:
            state.outcome = 'duplicate'
            pathfmt.delete = True  # gallery-dl deletes it instead of renaming it, and archives
            return
        state.outcome = 'verified'
        path = Path(pathfmt.realpath)
        # the sidecar first: an image never has its final name without its provenance
        write_json_atomic(path.with_name(path.name + '.json'), self._sidecar(state))

    def _reject(self, pathfmt, problem: str, *, for_good: bool) -> None:
        """Fail the current file, downloaded, for ``problem`` (``for_good``: what the file is,
        :class:`RefusedPosts`), deleting it."""
        state = self.current
        state.outcome, state.problem, state.refused_for_good = 'rejected', problem, for_good
        Path(pathfmt.temppath).unlink(missing_ok=True)
        # gallery-dl's way to fail a file from a hook: no final name, no archive entry
        util.FLAGS.DOWNLOAD = False

    def _sidecar(self, state: _FileState) -> dict:
        options = self.options
        post = {name: state.info[name] for name in SIDECAR_POST_FIELDS}
        post['page_url'] = redact(post['page_url'])
        base_url = None if options.base_url is None else redact(options.base_url)
        return dict(format=SIDECAR_FORMAT, version=1, source=options.source,
                    base_url=base_url, search_tags=options.tags, file_url=redact(state.url),
                    **{**post, 'md5': state.md5},
                    downloaded_at=datetime.now(UTC).isoformat(timespec='seconds'))

    def _file_saved(self, pathfmt) -> None:
        """gallery-dl's ``after`` hook: under its final name, and archived."""
        state = self.current
        if state is not None and state.outcome == 'verified':
            state.outcome, state.path = 'saved', Path(pathfmt.realpath)

    def _file_skipped(self, pathfmt) -> None:
        """gallery-dl's ``skip`` hook: in the download archive, or the file exists."""
        if self.current is not None:
            self.current.outcome = 'skipped'


def _save_refused(refused: RefusedPosts) -> bool:
    """Save the record of refused posts; say so if that drops its oldest posts, or fails (its
    posts of this run are then tried again by the next, their refusals by this run uncounted:
    nothing worse).

    Returns:
        Whether the record was saved (False: this run's refusals are not recorded).
    """
    try:
        dropped = refused.save()
    except (OSError, ValueError) as error:
        note(f'warning: {refused.path}: cannot write the record of refused posts '
             f'({" ".join(str(error).split())}): the next run tries them again')
        return False
    except CrawlError as error:  # written meanwhile, by something else than a crawl
        note(f'warning: {error}; this run\'s refused posts are not recorded in it: the next '
             f'run tries them again')
        return False
    if dropped:
        note(f'warning: {refused.path}: the {dropped} oldest refused posts dropped from the '
             f'record (at most {REFUSED_POSTS_MAX_BYTES} bytes): the next run tries them again')
    return True


def crawl(options: CrawlOptions) -> CrawlResult:
    """Run one crawl (see the module docstring).

    Args:
        options: what to crawl.

    Returns:
        What the crawl did; failed downloads are in :attr:`CrawlResult.failed` (those refused
        for good by this run and an earlier one, which reruns skip, in
        :attr:`CrawlResult.refused` too), and why a bound stopped the search in
        :attr:`CrawlResult.stopped`.

    Raises:
        CrawlError: bad options, another crawl of the same label (:func:`file_label`) running
            in the output folder (:data:`CRAWL_LOCK_NAME`), a download archive or a record of
            refused posts (:class:`RefusedPosts`) that cannot be used, or an error that ended
            the search (an HTTP error that outlived the retries, with its URL; a refused login,
            with the flag that fixes it; an answer that is not the site's JSON or XML).
            Its message, and the message of the error it chains, have their secrets redacted;
            its :attr:`CrawlError.result` is what the search did until then.
    """
    options.validate()
    options.output_dir.mkdir(parents=True, exist_ok=True)
    with _crawl_locked(options.output_dir, file_label(options)):  # one crawl of a label at once
        return _crawl(options)


def _crawl(options: CrawlOptions) -> CrawlResult:
    """:func:`crawl`'s work, under the crawl's lock, in an output folder that exists."""
    remove_stale_temporaries(options.output_dir)  # sidecars of a killed run, half-written
    check_archive(options.output_dir)
    refused = RefusedPosts.load(options.output_dir)
    configure_gallery_dl(options)
    result = CrawlResult(unfinished=remove_unfinished(options.output_dir, options))
    url = search_url(options)
    extractor = gdl_extractor.find(url)
    if extractor is None:
        raise CrawlError(f'gallery-dl has no extractor for {url}', result)
    log_lines = GalleryDlLogLines()
    with gallery_dl_logging(extractor.category, handler=log_lines), \
            tqdm(total=options.limit, desc=f'{options.source} "{options.tags}"', unit='img',
                 disable=not options.progress) as progress:
        crawl_job = CrawlJob(extractor, options=options, result=result,
                             known=KnownFiles(options.output_dir), progress=progress,
                             refused=refused)
        log_lines.job = crawl_job
        try:
            crawl_job.run()
        except exception.GalleryDLException as e:  # raised before gallery-dl's own handling
            crawl_job.error = crawl_job.error or e
        finally:  # (an interrupted crawl keeps what it refused, too)
            if not _save_refused(refused):  # reruns will not skip them: they fail this run
                result.refused_indices.clear()
    error = crawl_job.error
    if isinstance(error, sqlite3.Error):  # gallery-dl's download archive, refusing an entry
        raise _archive_error(options.output_dir / ARCHIVE_NAME, error, 'update', result) \
            from error
    if error is not None:
        # the chained error's message names the URL too (a traceback prints it)
        # (gallery-dl's HttpError may hold the requests error itself, its URL in its text)
        error.args = tuple(redact(str(arg)) if isinstance(arg, (str, BaseException)) else arg
                           for arg in error.args)
        raise CrawlError(explain_error(error, options, url), result) from error
    return result
