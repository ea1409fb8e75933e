"""Collect character images from image boards with gallery-dl, driven as a library.

Supported sources: Safebooru and Gelbooru (Gelbooru 0.2 software) and Danbooru. A gallery-dl
``DownloadJob`` runs in-process; this module adds what a landmark dataset needs on top of it:

- filters before download: rating (default general/safe only), minimum size, excluded tags;
- ``limit`` counts *new* images; gallery-dl's download archive makes a rerun skip what is there;
- the same file (md5) is stored once across sources and tag queries;
- one metadata sidecar per image, ``<image file>.json`` (see :data:`SIDECAR_FORMAT`);
- HTTP errors (after gallery-dl's retries with back-off) arrive as :class:`CrawlError` naming
  the URL; partial downloads stay in ``.parts/`` (gallery-dl resumes them), never under the
  final name; file names are sanitised by gallery-dl's path rules.

Mirrors and self-hosted instances (``base_url``) use gallery-dl's own prefix for other
instances of a supported software (``danbooru:URL``, ``gelbooru_v02:URL``), not a patch.
"""
from __future__ import annotations

import hashlib
import json
import os
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from .annotation import write_json_atomic

SOURCES = {
    'safebooru': dict(kind='gelbooru_v02', root='https://safebooru.org'),
    'gelbooru': dict(kind='gelbooru', root='https://gelbooru.com'),
    'danbooru': dict(kind='danbooru', root='https://danbooru.donmai.us'),
}
RATINGS = ('general', 'sensitive', 'questionable', 'explicit')
SIDECAR_FORMAT = 'animal_landmarks_mm.source'
#: environment variables read for credentials, per source: (user, api key)
CREDENTIAL_ENV = {
    'danbooru': ('DANBOORU_LOGIN', 'DANBOORU_API_KEY'),
    'gelbooru': ('GELBOORU_USER_ID', 'GELBOORU_API_KEY'),
    'safebooru': ('SAFEBOORU_USER_ID', 'SAFEBOORU_API_KEY'),
}
# Danbooru's letters; Gelbooru 0.2 uses 's' for safe (= general) and newer sites full words.
_DANBOORU_RATINGS = {'g': 'general', 's': 'sensitive', 'q': 'questionable', 'e': 'explicit'}
_GELBOORU_RATINGS = {'s': 'general', 'safe': 'general', 'q': 'questionable',
                     'e': 'explicit'}


class CrawlError(RuntimeError):
    """A crawl that cannot start or went wrong; the message is one line."""


@dataclass
class CrawlOptions:
    """What to crawl (the command's flags).

    Attributes:
        source: ``safebooru``, ``danbooru`` or ``gelbooru``.
        tags: the search, e.g. ``"animal_ears solo 1girl"``.
        limit: how many new images to save.
        output_dir: images and sidecars go here.
        base_url: root of a mirror / self-hosted instance of the same software.
        ratings: ratings to keep (of :data:`RATINGS`).
        min_size: ``(width, height)`` an image must reach.
        exclude_tags: drop posts carrying any of these.
        user: account name (Danbooru) or user id (Gelbooru).
        api_key: API key.
        sleep: seconds between requests.
        retries: HTTP retries per request (with back-off) before giving up.
        retry_sleep: base back-off in seconds (grows linearly with the try number).
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
    sleep: float = 1.0
    retries: int = 4
    retry_sleep: float = 2.0
    progress: bool = True

    def validate(self) -> None:
        """Raises CrawlError for a bad value, naming it."""
        if self.source not in SOURCES:
            raise CrawlError(f'unknown source {self.source!r}; choose from '
                             f'{", ".join(SOURCES)}')
        if not self.tags or not self.tags.strip():
            raise CrawlError('--tags is empty: give at least one tag')
        if self.limit <= 0:
            raise CrawlError(f'--limit must be positive, got {self.limit}')
        bad = [r for r in self.ratings if r not in RATINGS]
        if bad:
            raise CrawlError(f'unknown rating {bad[0]!r}; choose from {", ".join(RATINGS)}')
        if self.base_url is not None:
            parsed = urllib.parse.urlparse(self.base_url)
            if parsed.scheme not in ('http', 'https') or not parsed.netloc:
                raise CrawlError(f'--base-url must be an http(s) URL, got {self.base_url!r}')
        if self.min_size is not None and min(self.min_size) < 0:
            raise CrawlError(f'--min-size must not be negative, got {self.min_size}')


@dataclass
class CrawlResult:
    """What a crawl did."""

    saved: list[Path] = field(default_factory=list)
    seen: int = 0
    already_downloaded: int = 0
    duplicates: int = 0
    filtered: int = 0
    failed: list[str] = field(default_factory=list)

    def format(self) -> str:
        text = (f'posts seen {self.seen}, images saved {len(self.saved)}, already downloaded '
                f'{self.already_downloaded}, duplicates {self.duplicates}, filtered out '
                f'{self.filtered}')
        if self.failed:
            text += f', failed {len(self.failed)}: ' + ', '.join(self.failed)
        return text


def kind_of(options: CrawlOptions) -> str:
    """gallery-dl's base category: a mirror of Gelbooru runs Gelbooru 0.2."""
    kind = SOURCES[options.source]['kind']
    return 'gelbooru_v02' if kind == 'gelbooru' and options.base_url else kind


def search_url(options: CrawlOptions) -> str:
    """The gallery-dl URL of the tag search."""
    tags = urllib.parse.quote_plus(' '.join(options.tags.split()))
    root = (options.base_url or SOURCES[options.source]['root']).rstrip('/')
    kind = kind_of(options)
    path = f'/posts?tags={tags}' if kind == 'danbooru' else \
        f'/index.php?page=post&s=list&tags={tags}'
    if not options.base_url:
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
    """The provenance we keep of a post, from gallery-dl's metadata."""
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
                width=int(width) if width else None, height=int(height) if height else None)


def _known_md5(output_dir: Path) -> dict[str, tuple[str, object]]:
    """md5 -> (source, post id) of the images already in ``output_dir`` (from their sidecars)."""
    known = {}
    for sidecar in output_dir.glob('*.json'):
        try:
            data = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and data.get('format') == SIDECAR_FORMAT and data.get('md5'):
            known[data['md5']] = (data.get('source'), data.get('post_id'))
    return known


def _file_md5(path: Path) -> str:
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'md5').hexdigest()


def configure_gallery_dl(options: CrawlOptions) -> None:
    """gallery-dl's configuration for one crawl: the user's own config files, then ours on top.

    Our options go at the top level of gallery-dl's config, where its own command line puts
    them, so that they win over the user's files; credentials come from the options, else the
    environment, else the user's gallery-dl config.
    """
    from gallery_dl import config
    config.clear()
    config.load()  # ~/.config/gallery-dl/config.json etc., if the user has one
    out = options.output_dir.resolve()
    settings = {
        'base-directory': str(out),
        'directory': [],
        'filename': '{_aln_source}_{id}.{extension}',
        # partial downloads live apart and resume from there; never under the final name
        'part-directory': str(out / '.parts'),
        'archive': str(out / '.gallery-dl-archive.sqlite3'),
        'archive-prefix': options.source,
        'archive-format': '{id}',
        'sleep-request': options.sleep,
        'retries': options.retries,
        'sleep-retries': f'linear={options.retry_sleep}',
        'sleep-429': f'linear={options.retry_sleep}',
        'timeout': 30,
        'skip': True,
        'mtime': False,
        'output': {'mode': 'null', 'log': '%(levelname)s: %(message)s'},
    }
    env_user, env_key = CREDENTIAL_ENV[options.source]
    user = options.user or os.environ.get(env_user)
    api_key = options.api_key or os.environ.get(env_key)
    if user:
        settings['username' if kind_of(options) == 'danbooru' else 'user-id'] = user
    if api_key:
        settings['api-key'] = api_key
    for key, value in settings.items():
        config.set((), key, value)


def crawl(options: CrawlOptions) -> CrawlResult:
    """Run one crawl (see the module docstring).

    Raises:
        CrawlError: bad options, or an HTTP error that outlived the retries (with its URL).
    """
    options.validate()
    from gallery_dl import exception, job, output
    options.output_dir.mkdir(parents=True, exist_ok=True)
    configure_gallery_dl(options)
    kind = kind_of(options)
    root = (options.base_url or SOURCES[options.source]['root']).rstrip('/')
    result = CrawlResult()
    known = _known_md5(options.output_dir)
    exclude = set(options.exclude_tags)
    bar = tqdm(total=options.limit, desc=f'{options.source} "{options.tags}"', unit='img',
               disable=not options.progress)

    class Recorder(output.NullOutput):
        """gallery-dl's output channel, told of each finished or skipped file."""

        def __init__(self):
            self.finished: Path | None = None
            self.skipped = False

        def success(self, path):
            self.finished = Path(path)

        def skip(self, path):
            self.skipped = True

    class CrawlJob(job.DownloadJob):
        def __init__(self, url):
            super().__init__(url)
            self.out = self.recorder = Recorder()
            self.error: BaseException | None = None

        def dispatch(self, messages):
            try:
                return super().dispatch(messages)
            except exception.StopExtraction:
                raise
            except BaseException as e:  # gallery-dl logs it; we keep it to raise it
                self.error = e
                raise

        def handle_url(self, url, kwdict):
            result.seen += 1
            info = post_info(kind, root, kwdict)
            bar.set_postfix(seen=result.seen, refresh=False)
            if (info['rating'] not in options.ratings
                    or exclude.intersection(info['tags'])
                    or (options.min_size and info['width'] is not None
                        and (info['width'] < options.min_size[0]
                             or info['height'] < options.min_size[1]))):
                result.filtered += 1
                return
            if info['md5'] in known:
                if known[info['md5']] == (options.source, info['post_id']):
                    result.already_downloaded += 1  # this very post, from an earlier run
                else:
                    result.duplicates += 1  # the same file from another post or source
                return
            kwdict['_aln_source'] = options.source
            self.recorder.finished, self.recorder.skipped = None, False
            super().handle_url(url, kwdict)
            if self.recorder.finished is not None:
                self._saved(self.recorder.finished, url, info)
            elif self.recorder.skipped:
                result.already_downloaded += 1
            else:
                result.failed.append(url)

        def _saved(self, path: Path, url: str, info: dict) -> None:
            md5 = _file_md5(path)
            if md5 in known:  # the site had no md5, or a wrong one
                path.unlink()
                result.duplicates += 1
                return
            known[md5] = (options.source, info['post_id'])
            write_json_atomic(path.with_name(path.name + '.json'), dict(
                format=SIDECAR_FORMAT, version=1, source=options.source,
                base_url=options.base_url, search_tags=options.tags, file_url=url,
                **{**info, 'md5': md5},
                downloaded_at=datetime.now(UTC).isoformat(timespec='seconds')))
            result.saved.append(path)
            bar.update(1)
            if len(result.saved) >= options.limit:
                raise exception.StopExtraction()

    url = search_url(options)
    try:
        crawl_job = CrawlJob(url)
    except exception.NoExtractorError:
        raise CrawlError(f'gallery-dl has no extractor for {url}') from None
    try:
        crawl_job.run()
    finally:
        bar.close()
    if crawl_job.error is not None:
        error = crawl_job.error
        message = ' '.join(str(error).split()) or error.__class__.__name__
        raise CrawlError(f'{options.source}: {message} (searching {url})') from error
    return result
