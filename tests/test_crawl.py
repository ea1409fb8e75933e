"""The crawler: real gallery-dl against a fake Danbooru / Gelbooru 0.2 server on 127.0.0.1."""
import base64
import fcntl
import hashlib
import importlib.util
import io
import json
import logging
import os
import re
import sqlite3
import stat
import struct
import subprocess
import sys
import time
import warnings
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
from booru_server import (
    EPS_FILE,
    HTML_PAGE,
    REDIRECT_BODY_BYTES,
    FakeBooru,
    make_posts,
    other_format,
)
from gallery_dl import archive as gdl_archive
from gallery_dl import config as gdl_config
from gallery_dl import exception as gdl_exception
from gallery_dl import job as gdl_job
from gallery_dl import output as gdl_output
from gallery_dl import path as gdl_path
from gallery_dl.downloader import http as gdl_http
from PIL import Image

from animal_landmarks_mm.annotation import SIDECAR_FORMAT
from animal_landmarks_mm.crawl import (
    ARCHIVE_NAME,
    CRAWL_LOCK_NAME,
    CREDENTIAL_ENV,
    MD5_LOCK_NAME,
    PARTS_DIR,
    REFUSED_POSTS_LOCK_NAME,
    REFUSED_POSTS_NAME,
    SEARCH_ANSWER_MAX_BYTES,
    SEARCH_IDLE_PAGES,
    SEARCH_POSTS_PER_REQUEST,
    SEARCH_REQUESTS_MIN,
    CrawlError,
    CrawlOptions,
    RefusedPosts,
    archive_prefix,
    check_gallery_dl_config_files,
    check_image,
    configure_gallery_dl,
    crawl,
    explain_error,
    file_label,
    keep_post,
    known_md5,
    redact,
    resolve_credentials,
    search_url,
)
from animal_landmarks_mm.errors import AnimalLandmarksError
from conftest import REPO, run_tool

SOURCES = ['safebooru', 'danbooru', 'gelbooru']
EVERY_RATING = ('general', 'sensitive', 'questionable')
BROWSER_UA = 'Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0'


@pytest.fixture(autouse=True)
def _no_user_settings(monkeypatch, tmp_path):
    """Neither the developer's credentials nor their gallery-dl config reach the tests."""
    for names in CREDENTIAL_ENV.values():
        for name in names:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(gdl_config, '_default_configs', [str(tmp_path / 'gallery-dl.json')])
    yield
    gdl_config.clear()


def _options(booru, out, source='safebooru', **kwargs):
    kwargs.setdefault('limit', 5)
    kwargs.setdefault('retries', 2)
    kwargs.setdefault('retry_sleep', 0.01)
    kwargs.setdefault('base_url', booru.url)
    return CrawlOptions(source=source, tags=kwargs.pop('tags', 'animal_ears solo'),
                        output_dir=out, sleep=0.0, progress=False, **kwargs)


def _images(out):
    return sorted(p for p in out.iterdir() if p.suffix == '.png')


def _archived(out):
    with sqlite3.connect(out / ARCHIVE_NAME) as db:
        return {entry for entry, in db.execute('SELECT entry FROM archive')}


def _file_requests(booru, since=0):
    return [r for r in booru.state.requests[since:] if r.startswith('/images/')]


def _search_requests(booru):
    return [r for r in booru.state.requests if not r.startswith('/images/')]


def _refused_record(out):
    """The posts of the output folder's record of refused posts ([] without one)."""
    path = out / REFUSED_POSTS_NAME
    return json.loads(path.read_text())['posts'] if path.exists() else []


def _label(booru, source):
    """What the images of ``source`` served by ``booru`` (another instance: ``--base-url``) are
    named after: the source and the instance's host and port."""
    return f'{source}-127.0.0.1-{booru.url.rsplit(":", 1)[1]}'


# --- filters and checks, alone ------------------------------------------------------------

def _post(**fields):
    info = dict(post_id=1, page_url='', tags=['solo', 'cat_ears'], rating='general',
                rating_raw='g', md5=None, width=100, height=80, file_ext='png')
    return {**info, **fields}


@pytest.mark.parametrize('fields, options, reason', [
    ({}, {}, None),
    ({'rating': 'sensitive'}, {}, 'rating sensitive'),
    ({'rating': 'sensitive'}, {'ratings': ('general', 'sensitive')}, None),
    ({'tags': ['solo', 'monochrome', 'comic']}, {'exclude_tags': ('comic', 'monochrome')},
     'tag comic'),
    # booru tags are lowercase; a tag typed otherwise still excludes
    ({'tags': ['solo', 'monochrome']}, {'exclude_tags': ('Monochrome',)}, 'tag monochrome'),
    ({'tags': ['solo', 'Monochrome']}, {'exclude_tags': ('monochrome',)}, 'tag monochrome'),
    ({}, {'min_size': (100, 81)}, 'smaller than 100x81'),
    ({}, {'min_size': (100, 80)}, None),
    ({'width': None, 'height': None}, {'min_size': (100, 80)}, None),  # size unknown: kept
    ({'file_ext': 'webm'}, {}, 'not a JPEG, PNG, WebP or BMP file (webm)'),
    ({'file_ext': 'zip'}, {}, 'not a JPEG, PNG, WebP or BMP file (zip)'),
    # an image, but not one the annotator and the dataset take (annotation.IMAGE_SUFFIXES)
    ({'file_ext': 'gif'}, {}, 'not a JPEG, PNG, WebP or BMP file (gif)'),
    ({'file_ext': 'jpeg'}, {}, None),
])
def test_keep_post_says_why_a_post_is_filtered(tmp_path, fields, options, reason):
    crawl_options = CrawlOptions(source='danbooru', tags='solo', limit=1, output_dir=tmp_path,
                                 **options)
    assert keep_post(_post(**fields), crawl_options) == reason


def test_check_image_decodes_and_compares_the_md5(tmp_path):
    post = make_posts(1)[0]
    good = tmp_path / 'good.png'
    good.write_bytes(post.png)
    assert check_image(good, post.md5) == (None, post.md5)
    assert check_image(good, None) == (None, post.md5)
    assert check_image(good, '../../not-an-md5') == (None, post.md5)  # nothing to compare
    problem, _ = check_image(good, 'f' * 32)
    assert problem == f'md5 mismatch (file {post.md5}, post {"f" * 32})'
    html = tmp_path / 'page.png'
    html.write_bytes(HTML_PAGE)
    assert check_image(html)[0] == 'not an image (an HTML page)'
    cut = tmp_path / 'cut.png'
    cut.write_bytes(post.png[:len(post.png) // 2])
    assert check_image(cut)[0].startswith('broken image (')
    empty = tmp_path / 'empty.png'
    empty.write_bytes(b'')
    assert check_image(empty)[0] == 'not an image (empty file)'


def _encoded(fmt, frames=1, size=(120, 90)):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8))
              for _ in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, fmt, save_all=frames > 1, append_images=images[1:])
    return buffer.getvalue()


@pytest.mark.parametrize('fmt, frames', [('PNG', 1), ('JPEG', 1), ('WEBP', 1), ('BMP', 1),
                                         ('PNG', 5), ('WEBP', 5)])
def test_check_image_decodes_every_format_and_frame(tmp_path, fmt, frames):
    """A file cut in half, without an md5 to compare: only a decode finds it (verify() passes
    a BMP cut in half; a cut in an animation's last frame is past its first frame)."""
    data = _encoded(fmt, frames)
    whole, half = tmp_path / f'whole.{fmt.lower()}', tmp_path / f'half.{fmt.lower()}'
    whole.write_bytes(data)
    half.write_bytes(data[:len(data) // 2] if frames == 1 else data[:len(data) * 9 // 10])
    assert check_image(whole)[0] is None
    problem, _ = check_image(half)
    assert problem is not None and problem.startswith('broken image ('), problem


def _progressive_jpeg(extra_scans: int) -> bytes:
    """A 64x64 grey progressive JPEG with ``extra_scans`` more AC scans, each one end-of-band
    run over its 64 blocks: 10 bytes a scan, each decoding the whole picture again."""
    buffer = io.BytesIO()
    Image.new('L', (64, 64), 128).save(buffer, 'JPEG', progressive=True)
    data = buffer.getvalue()
    # an AC table (class 1, id 1) of one symbol, 0x60: an end-of-band run of 2**6 blocks
    table = b'\xff\xc4' + struct.pack('>H', 20) + b'\x11' + bytes([1] + [0] * 15) + b'\x60'
    # component 1, AC table 1, coefficients 1 to 63; its data: the symbol's code 0, 6 bits 0
    scan = b'\xff\xda' + struct.pack('>H', 8) + b'\x01\x01\x01' + bytes([1, 63, 0]) + b'\x01'
    return data[:-2] + table + scan * extra_scans + b'\xff\xd9'


def test_check_image_refuses_a_jpeg_of_too_many_scans(tmp_path):
    """Each scan of a JPEG decodes the whole picture again: 1,000 empty scans (120 bytes each
    at 9000x9000) held the check of one file 11 s, and a 50 MB file would hold it over an hour
    (and every decode by training after it). A JPEG of more than JPEG_MAX_SCANS is refused."""
    from animal_landmarks_mm.crawl import JPEG_MAX_SCANS, jpeg_scans
    usual, endless = tmp_path / 'usual.jpg', tmp_path / 'endless.jpg'
    usual.write_bytes(_progressive_jpeg(5))
    endless.write_bytes(_progressive_jpeg(JPEG_MAX_SCANS))
    assert check_image(usual)[0] is None
    scans = jpeg_scans(endless)
    assert scans > JPEG_MAX_SCANS
    assert check_image(endless)[0] == (f'a JPEG of {scans:,} scans, more than {JPEG_MAX_SCANS} '
                                       '(each one decodes the whole picture again, for every '
                                       'tool)')
    # the scan markers of a phone's motion-photo video after the image, or of a thumbnail in
    # its metadata, are not its scans (a review: such a file was refused for good)
    data = usual.read_bytes()
    comment = b'\xff\xda' * 200
    trailer = tmp_path / 'trailer.jpg'
    trailer.write_bytes(data[:2] + b'\xff\xfe' + struct.pack('>H', len(comment) + 2) + comment
                        + data[2:] + b'\xff\xda' * 300)
    assert jpeg_scans(trailer) == jpeg_scans(usual) and check_image(trailer)[0] is None


def test_check_image_refuses_what_the_tools_refuse_to_read(tmp_path):
    """A PNG of more chunks than the annotator and the converter walk passed the crawler's
    check, and every tool after it refused the picture (a hunt's repro)."""
    from animal_landmarks_mm.annotation import PNG_MAX_CHUNKS
    data = _encoded('PNG')
    empty_chunk = struct.pack('>I', 0) + b'teSt' + struct.pack('>I', zlib.crc32(b'teSt'))
    path = tmp_path / 'chunks.png'
    path.write_bytes(data[:-12] + empty_chunk * (PNG_MAX_CHUNKS + 1) + data[-12:])
    problem, _ = check_image(path)
    assert problem is not None and f'more than {PNG_MAX_CHUNKS:,}' in problem, problem
    assert str(path) not in problem


def test_check_image_keeps_pils_decompression_bomb_limit(tmp_path, monkeypatch):
    """An image over MAX_IMAGE_PIXELS is refused, as every other tool refuses it (PIL itself
    refuses only twice that and warns above it: such a download was saved, decoded whole, with
    PIL's raw warning, and the annotator then refused it). An animation, whose first frame
    alone the other tools read, is taken with more pixels than that in all (frames of 900
    pixels, 10,800 in all), and refused only past ANIMATION_DECODE_LIMITS times the limit, with
    a reason of its own. No PIL warning is let through."""
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 4000)
    big, between = tmp_path / 'big.png', tmp_path / 'between.png'
    big.write_bytes(_encoded('PNG', size=(100, 100)))  # 10000 > 2 x 4000
    between.write_bytes(_encoded('PNG', size=(70, 70)))  # 4900: PIL only warns
    animation = tmp_path / 'animation.png'
    animation.write_bytes(_encoded('PNG', frames=24, size=(30, 30)))  # 900 each, 21600 in all
    small = tmp_path / 'small.png'
    small.write_bytes(_encoded('PNG', frames=12, size=(30, 30)))  # 10800 in all
    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter('always')
        assert check_image(big)[0] == ("too many pixels (Image size (10000 pixels) exceeds "
                                       "limit of 8000 pixels, could be decompression bomb DOS "
                                       "attack.)")
        assert check_image(between)[0] == ("too many pixels (70x70 = 4,900, more than PIL's "
                                           "limit of 4,000: could be a decompression bomb)")
        assert check_image(animation)[0] == (
            "an animation too long to check (18 frames of 30x30 are more than 16,000 pixels, "
            "4 times PIL's limit: the crawler decodes every frame to find a file cut short)")
        assert check_image(small)[0] is None
    assert caught_warnings == []


@pytest.mark.parametrize('fmt, problem', [
    # PIL reads them all, the dataset takes none; gallery-dl knows none by its first bytes
    *[(fmt, 'not a JPEG, PNG, WebP or BMP file (unknown format)')
      for fmt in ('TIFF', 'PCX', 'SGI', 'PPM', 'GIF', 'TGA')],
    # PIL hands an EPS file to Ghostscript (a program, on what a server sent)
    ('EPS', 'not a JPEG, PNG, WebP or BMP file (unknown format)'),
    ('JPEG', 'a JPEG image named .png'),
])
def test_check_image_opens_the_four_formats_only_each_under_its_name(tmp_path, monkeypatch,
                                                                     fmt, problem):
    ran = _stub_ghostscript(tmp_path, monkeypatch)
    path = tmp_path / 'file.png'
    path.write_bytes(EPS_FILE if fmt == 'EPS' else _encoded(fmt))
    assert check_image(path)[0] == problem
    assert not ran.exists()


def test_check_image_takes_a_jpeg_holding_more_pictures(tmp_path):
    """A camera's JPEG may hold more pictures (MPO, as PIL's JPEG reader names it): a JPEG."""
    path = tmp_path / 'camera.jpg'
    path.write_bytes(_encoded('MPO', frames=2))
    assert check_image(path)[0] is None


def _stub_ghostscript(tmp_path, monkeypatch):
    """A ``gs`` first on PATH that notes each run in the file returned, found afresh by PIL
    (which keeps the one it found)."""
    from PIL import EpsImagePlugin
    ran = tmp_path / 'gs-ran.txt'
    stub = tmp_path / 'bin' / 'gs'
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\necho "$@" >> {ran}\nexit 1\n')
    stub.chmod(0o755)
    monkeypatch.setenv('PATH', f'{stub.parent}{os.pathsep}{os.environ["PATH"]}')
    monkeypatch.setattr(EpsImagePlugin, 'gs_binary', None)
    return ran


# --- crawling -----------------------------------------------------------------------------

@pytest.mark.parametrize('source', SOURCES)
def test_limit_metadata_and_rating_filter(tmp_path, source):
    posts = make_posts(30)
    with FakeBooru(posts) as booru:
        result = crawl(_options(booru, tmp_path, source, limit=6))
    images = _images(tmp_path)
    assert len(images) == len(result.saved) == 6
    by_id = {p.id: p for p in posts}
    for image in images:
        meta = json.loads((image.parent / f'{image.name}.json').read_text())
        post = by_id[meta['post_id']]
        assert meta['source'] == source and meta['rating'] == 'general'
        assert post.rating == 'g'  # 'sensitive' posts were filtered out by default
        assert meta['md5'] == post.md5 and (meta['width'], meta['height']) == (post.width,
                                                                             post.height)
        assert meta['tags'] == post.tags and meta['file_url'].endswith(f'/images/{post.id}.png')
        assert str(post.id) in meta['page_url'] and meta['downloaded_at']
        assert 'file_ext' not in meta  # the sidecar format is unchanged
        assert image.read_bytes() == post.png
    assert result.filtered >= 1


def test_size_and_tag_filters_and_other_ratings(tmp_path):
    posts = make_posts(30)
    with FakeBooru(posts) as booru:
        crawl(_options(booru, tmp_path, 'danbooru', limit=50, min_size=(60, 60),
                       exclude_tags=('monochrome',), ratings=('general', 'sensitive')))
    by_id = {p.id: p for p in posts}
    kept = [by_id[json.loads((i.parent / f'{i.name}.json').read_text())['post_id']]
            for i in _images(tmp_path)]
    expected = [p for p in posts if p.width >= 60 and p.height >= 60
                and 'monochrome' not in p.tags]
    assert sorted(p.id for p in kept) == sorted(p.id for p in expected)
    assert {p.rating for p in kept} == {'g', 's'}


@pytest.mark.parametrize('source', ['safebooru', 'danbooru'])
def test_resume_downloads_nothing_already_present_and_limit_counts_new(tmp_path, source):
    with FakeBooru(make_posts(30)) as booru:
        crawl(_options(booru, tmp_path, source, limit=4))
        first = _images(tmp_path)
        files_before = len(booru.state.requests)
        again = crawl(_options(booru, tmp_path, source, limit=4))
        file_requests = _file_requests(booru, files_before)
    assert again.already_downloaded == 4 and len(again.saved) == 4  # 4 new ones
    assert len(file_requests) == 4  # nothing fetched twice
    assert set(first) < set(_images(tmp_path)) and len(_images(tmp_path)) == 8


def test_same_file_across_sources_and_posts_is_stored_once(tmp_path):
    posts = make_posts(12, same_file_as={1011: 1009})  # post 1011 re-uploads 1009's file
    with FakeBooru(posts) as booru:
        crawl(_options(booru, tmp_path, 'safebooru', limit=50, ratings=EVERY_RATING))
        safebooru = _images(tmp_path)
        result = crawl(_options(booru, tmp_path, 'danbooru', limit=50, ratings=EVERY_RATING))
    assert len(safebooru) == 11  # 12 posts, one file twice
    assert len(result.saved) == 0 and result.duplicates == 12
    assert len(_images(tmp_path)) == 11


def test_same_file_without_the_sites_md5_is_found_after_download(tmp_path):
    posts = make_posts(12, same_file_as={1011: 1009})
    with FakeBooru(posts) as booru:
        booru.state.md5_override = {1009: ''}  # 1011 (newer) is saved first; 1009 says nothing
        result = crawl(_options(booru, tmp_path, 'safebooru', limit=50, ratings=EVERY_RATING))
        assert '/images/1009.png' in _file_requests(booru)
    assert len(result.saved) == 11 and result.duplicates == 1
    assert not (tmp_path / f'{_label(booru, "safebooru")}_1009.png').exists()
    assert not (tmp_path / f'{_label(booru, "safebooru")}_1009.png.json').exists()
    assert list((tmp_path / PARTS_DIR).iterdir()) == []


@pytest.mark.timeout(120)
def test_two_crawls_at_once_never_store_one_file_twice(tmp_path):
    """Two crawls into one folder at once, of two instances serving the same file: while one
    downloads it, the other (a process of its own) saves it; the first then finds it there, a
    duplicate, instead of storing it a second time."""
    out = tmp_path / 'out'
    with FakeBooru(make_posts(1)) as first, FakeBooru(make_posts(1)) as second:
        other = []

        def crawl_second_meanwhile(post_id):
            first.state.before_file = None
            other.append(run_tool(
                'crawl_images.py', '--source', 'danbooru', '--tags', 'animal_ears solo',
                '--output-dir', out, '--base-url', second.url, '--rating', *EVERY_RATING,
                '--sleep', '0', '--retries', '0', '--no-progress', check=False, timeout=90,
                env={'XDG_CONFIG_HOME': str(tmp_path / 'config')}))

        first.state.before_file = crawl_second_meanwhile
        # (the first crawl's request waits for the other crawl: a read timeout to match)
        result = crawl(_options(first, out, 'danbooru', ratings=EVERY_RATING, timeout=90.0))
    assert other[0].returncode == 0 and 'images saved 1,' in other[0].stdout, other[0].stderr
    assert result.saved == [] and result.duplicates == 1 and result.failed == []
    assert [p.name for p in _images(out)] == [f'{_label(second, "danbooru")}_1000.png']
    assert list((out / PARTS_DIR).iterdir()) == []


def test_429_then_success(tmp_path):
    with FakeBooru(make_posts(10)) as booru:
        booru.state.fail_search_with_429 = 2
        result = crawl(_options(booru, tmp_path, 'danbooru', limit=3))
    assert len(result.saved) == 3
    assert sum(r.startswith('/posts.json') for r in booru.state.requests) >= 3


@pytest.mark.parametrize('source', ['safebooru', 'danbooru'])
def test_500_forever_is_a_clear_bounded_error(tmp_path, source):
    with FakeBooru(make_posts(10)) as booru:
        booru.state.fail_search_forever = 500
        start = time.monotonic()
        with pytest.raises(CrawlError, match=r"500 Internal Server Error.*127\.0\.0\.1") as info:
            crawl(_options(booru, tmp_path, source, retries=2))
        searches = [r for r in booru.state.requests if not r.startswith('/images/')]
    assert len(searches) == 3  # the first try and 2 retries, then it stops
    assert time.monotonic() - start < 120  # bounded, however slow the machine
    assert '\n' not in str(info.value)
    assert isinstance(info.value, AnimalLandmarksError) and isinstance(info.value, RuntimeError)


def test_the_search_deadline_counts_each_try_not_gallery_dls_waits(tmp_path):
    """--sleep and the back-off between tries are gallery-dl's own waits: a deadline shorter
    than them still lets every answer that comes in time through (here: two 429s, then the
    posts)."""
    with FakeBooru(make_posts(6)) as booru:
        booru.state.fail_search_with_429 = 2
        result = crawl(CrawlOptions(
            source='danbooru', tags='animal_ears solo', output_dir=tmp_path, limit=3,
            base_url=booru.url, ratings=EVERY_RATING, retries=3, retry_sleep=1.0, sleep=0.6,
            file_deadline=0.9, progress=False))
    assert len(result.saved) == 3 and result.failed == []


@pytest.mark.timeout(60)  # a search the deadline fails to bound would hang
@pytest.mark.parametrize('source', ['safebooru', 'danbooru'])
@pytest.mark.parametrize('what', ['body', 'headers'])
def test_a_dripping_search_answer_is_bounded_by_the_deadline(tmp_path, source, what):
    """One byte every 0.2 s never trips the read timeout; the deadline ends the try (before a
    response exists, for the headers), gallery-dl does not retry it, and the crawl stops with
    one line naming the search."""
    with FakeBooru(make_posts(10)) as booru:
        booru.state.drip_search = what == 'body'
        booru.state.search_fault = 'drip_headers' if what == 'headers' else None
        booru.state.drip_interval = 0.2
        start = time.monotonic()
        with pytest.raises(CrawlError, match=r'not finished within --file-deadline 1\.5 s'
                           ) as info:
            crawl(_options(booru, tmp_path, source, retries=1, timeout=1.0,
                           file_deadline=1.5))
        took = time.monotonic() - start
        searches = [r for r in booru.state.requests if not r.startswith('/images/')]
    assert took < 30  # one try of 1.5 s, not the minutes a drip takes
    assert len(searches) == 1 and '\n' not in str(info.value)
    assert 'searching' in str(info.value) and _images(tmp_path) == []


# Each fault: the file is not kept, the failure is reported with its reason, the post is not
# archived, and a rerun on the healed server downloads it; a file refused for good (what it is,
# as the server has it: REFUSED_FOR_GOOD) is recorded, fails that run as any failure does, and
# is refused again by the next run (the fault goes on), which does not count it as failed but
# skipped from now on: the rerun on the healed server skips it, one with retry_failed downloads
# it. Timeouts, deadline and size cap are small so that each case takes seconds.
BOUNDS = dict(retries=1, timeout=1.0, file_deadline=20.0, max_file_size=200_000)
REFUSED_FOR_GOOD = {'html', 'html_as_png', 'wrong_bytes', 'endless', 'huge', 'cut_jpeg', '404',
                    '410', 'head'}
SKIPPED_FROM_NOW_ON = 'refused for good, skipped from now on (--retry-failed tries it again)'


@pytest.mark.timeout(60)  # a download the guard fails to bound would hang
@pytest.mark.parametrize('source, fault, bounds, reason, leaves_part', [
    ('danbooru', 'short', {}, 'body shorter than its Content-Length (', True),
    ('danbooru', 'html', {}, 'not an image (text/html)', False),
    ('safebooru', 'html_as_png', {}, 'not an image (an HTML page)', False),
    ('danbooru', 'wrong_bytes', {}, 'md5 mismatch (file ', False),
    ('safebooru', 'wrong_bytes', {}, 'md5 mismatch (file ', False),
    ('danbooru', 'endless', {}, 'larger than --max-file-size 0.2 MB', False),
    ('danbooru', 'huge', {}, 'larger than --max-file-size 0.2 MB (Content-Length 10000000000)',
     False),
    # a whole-looking body without md5: only decoding the JPEG finds the missing half
    ('danbooru', 'cut_jpeg', {}, 'broken image (image file is truncated', False),
    ('safebooru', 'cut_jpeg', {}, 'broken image (image file is truncated', False),
    # without Content-Length, a broken file may be a transfer cut short: not for good
    ('danbooru', 'cut_jpeg_unsized', {}, 'broken image (image file is truncated', False),
    # ... and so may an empty file, or one whose first bytes do not say its format
    ('danbooru', 'empty_unsized', {}, 'not an image (empty file)', False),
    ('safebooru', 'head_unsized', {}, 'not a JPEG, PNG, WebP or BMP file (unknown format)',
     False),
    # (the same bytes as the server's whole file are for good)
    ('danbooru', 'head', {}, 'not a JPEG, PNG, WebP or BMP file (unknown format)', False),
    ('danbooru', '404', {}, '404 Not Found', False),
    ('safebooru', '410', {}, '410 Gone', False),
    ('danbooru', '503', {}, '503 Service Unavailable', False),
    # one byte every 2 s: the read timeout (1 s) ends each try
    ('danbooru', 'drip', {'drip_interval': 2.0}, 'no data for 1 s (--timeout)', None),
    # one byte every 0.2 s never trips the timeout: the deadline ends it
    ('danbooru', 'drip', {'drip_interval': 0.2, 'file_deadline': 1.5},
     'not finished within --file-deadline 1.5 s', False),
    # gallery-dl reads a 206's Content-Range before any check of the crawler's: a KeyError
    # ended the crawl
    ('danbooru', '206_no_range', {}, '206 Partial Content without Content-Range', False),
    # so it does when the headers drip, before any response exists
    ('danbooru', 'drip_headers', {'drip_interval': 0.2, 'file_deadline': 1.5},
     'not finished within --file-deadline 1.5 s', False),
    ('safebooru', 'drip_headers', {'drip_interval': 0.2, 'file_deadline': 1.5},
     'not finished within --file-deadline 1.5 s', False),
])
def test_bad_download_is_not_kept_is_reported_and_retried(tmp_path, source, fault, bounds,
                                                          reason, leaves_part):
    posts = make_posts(4)
    bad = posts[1]
    bounds = {**BOUNDS, **bounds}
    drip_interval = bounds.pop('drip_interval', 2.0)
    with FakeBooru(posts) as booru:
        booru.state.file_faults = {bad.id: fault}
        booru.state.drip_interval = drip_interval
        options = _options(booru, tmp_path, source, limit=10, ratings=EVERY_RATING, **bounds)
        start = time.monotonic()
        result = crawl(options)
        took = time.monotonic() - start
        stem = f'{_label(booru, source)}_{bad.id}'
        assert len(result.failed) == 1, result.format()
        assert f'/images/{bad.id}.png: {reason}' in result.failed[0], result.failed[0]
        assert [p.name for p in tmp_path.glob(f'{stem}*')] == []  # nor a sidecar
        assert len(_images(tmp_path)) == 3
        assert stem not in _archived(tmp_path)
        assert f'{_label(booru, source)}_{posts[0].id}' in _archived(tmp_path)
        if leaves_part is not None:  # a cut transfer resumes; a refused file is gone
            parts = list((tmp_path / PARTS_DIR).glob(f'{stem}*'))
            assert bool(parts) == leaves_part
        assert took < 60  # bounded: without the deadline a drip holds the crawl for minutes
        for_good = fault in REFUSED_FOR_GOOD
        assert result.refused == [] and 'refused for good' not in result.format()
        record = _refused_record(tmp_path)
        assert [(entry['label'], entry['post_id'], entry['refused_runs']) for entry in record] \
            == ([(_label(booru, source), bad.id, 1)] if for_good else [])
        if for_good:
            assert f'{record[0]["url"]}: {record[0]["reason"]}' == result.failed[0]
            since = len(booru.state.requests)
            second = crawl(options)  # the fault goes on: refused by a second run
            assert _file_requests(booru, since)[:1] == [f'/images/{bad.id}.png']
            assert second.failed == result.failed and second.refused == second.failed
            assert f'{second.failed[0]}, {SKIPPED_FROM_NOW_ON}' in second.format()
            assert [entry['refused_runs'] for entry in _refused_record(tmp_path)] == [2]

        booru.state.file_faults = {}  # the server heals; a rerun fetches the file
        if fault == 'cut_jpeg':  # the post unchanged, still without md5 (a new one: retried)
            booru.state.md5_override = {bad.id: ''}
        since = len(booru.state.requests)
        again = crawl(options)
        if for_good:  # ... but one refused for good only when told to
            assert again.saved == [] and again.failed == [] and again.refused_before == 1
            assert 'refused before 1 (--retry-failed tries them again)' in again.format()
            assert _file_requests(booru, since) == []
            options.retry_failed = True
            again = crawl(options)
    assert [p.name for p in again.saved] == [f'{stem}.png']
    assert again.failed == [] and again.already_downloaded == 3
    assert (tmp_path / f'{stem}.png').read_bytes() == bad.png
    meta = json.loads((tmp_path / f'{stem}.png.json').read_text())
    assert meta['md5'] == bad.md5
    assert list((tmp_path / PARTS_DIR).iterdir()) == []
    assert _refused_record(tmp_path) == []  # saved: no longer refused


def test_a_redirects_body_is_never_read(tmp_path):
    """requests reads a redirect's body whole to follow it (and keeps it in the history, up
    to 30): a file's redirect with a body of 100 MB is followed without it."""
    posts = make_posts(3)
    with FakeBooru(posts) as booru:
        booru.state.file_faults = {posts[1].id: 'big_redirect'}
        result = crawl(_options(booru, tmp_path, 'danbooru', ratings=EVERY_RATING))
        sent = booru.state.redirect_bytes
    assert len(result.saved) == 3 and result.failed == []
    assert (tmp_path / f'{_label(booru, "danbooru")}_{posts[1].id}.png').read_bytes() == \
        posts[1].png
    assert sent < REDIRECT_BODY_BYTES // 10  # what the sockets' buffers took, at most


def test_an_error_gallery_dls_download_did_not_expect_fails_that_file_only(tmp_path,
                                                                          monkeypatch):
    """Whatever else a server's answer makes gallery-dl's downloader raise fails that file,
    with the error as its reason; the crawl goes on, and a rerun fetches the file."""
    posts = make_posts(3)
    bad = posts[1]
    original = gdl_http.HttpDownloader._download_impl

    def unexpected(self, url, pathfmt):
        if url.endswith(f'/{bad.id}.png'):
            raise KeyError('content-range')
        return original(self, url, pathfmt)

    with FakeBooru(posts) as booru:
        monkeypatch.setattr(gdl_http.HttpDownloader, '_download_impl', unexpected)
        options = _options(booru, tmp_path, 'danbooru', ratings=EVERY_RATING)
        result = crawl(options)
        monkeypatch.setattr(gdl_http.HttpDownloader, '_download_impl', original)
        again = crawl(options)
    assert len(result.saved) == 2
    assert result.failed == [f"{booru.url}/images/{bad.id}.png: download failed (KeyError: "
                             f"'content-range')"]
    assert [p.name for p in again.saved] == [f'{_label(booru, "danbooru")}_{bad.id}.png']


def _crawl_command(crawl_images, capsys, booru, out):
    """Run the command as a script would, against ``booru``: ``run(*flags)`` gives its exit
    message (None: exit 0), its output, and the files it asked for."""
    def run(*flags):
        since = len(booru.state.requests)
        try:
            crawl_images.main(['--source', 'danbooru', '--tags', 'animal_ears', '--output-dir',
                               str(out), '--base-url', booru.url, '--sleep', '0',
                               '--retries', '0', '--no-progress', '--rating', *EVERY_RATING,
                               *flags])
            code = None
        except SystemExit as exit_:
            code = exit_.code
        return code, capsys.readouterr().out, _file_requests(booru, since)
    return run


def test_a_post_refused_for_good_by_two_runs_lets_reruns_exit_0(tmp_path, crawl_images, capsys):
    """A file that fails for good (not the post's md5) fails the first run it is met in, as
    one that fails for now (a 503) does; the second run to refuse it says it is skipped from
    now on and does not fail for it (exit 1 for the 503 only, then exit 0 once the 503 is
    over); reruns skip it ("refused before"); --retry-failed tries it again (refused once more:
    exit 0 still), and saves it once the server has it right."""
    posts = make_posts(3)
    refused, unavailable = posts[1], posts[2]
    refused_file = f'/images/{refused.id}.png'
    skipped = '1 more refused for good, skipped from now on (--retry-failed tries them again)'

    with FakeBooru(posts) as booru:
        run = _crawl_command(crawl_images, capsys, booru, tmp_path)
        booru.state.file_faults = {refused.id: 'wrong_bytes', unavailable.id: '503'}
        code, out, _ = run()
        assert code == 'error: 2 downloads failed (rerun to try them again)'
        assert f'{refused_file}: md5 mismatch (file ' in out and 'refused for good' not in out
        assert f'; {booru.url}/images/{unavailable.id}.png: 503 ' in out, out

        code, out, files = run()  # both again
        assert code == f'error: 1 downloads failed (rerun to try them again); {skipped}'
        assert f', {SKIPPED_FROM_NOW_ON}; {booru.url}/images/{unavailable.id}.png: 503 ' in out
        assert sorted(files) == sorted([refused_file, f'/images/{unavailable.id}.png'])

        booru.state.file_faults = {refused.id: 'wrong_bytes'}
        code, out, files = run()
        assert code is None and 'images saved 1' in out and 'refused before 1' in out
        assert files == [f'/images/{unavailable.id}.png']

        code, out, files = run('--retry-failed')  # tried, refused again: no failure of the run
        assert code is None and files == [refused_file]
        assert f'{refused_file}: md5 mismatch (file ' in out and SKIPPED_FROM_NOW_ON in out

        booru.state.file_faults = {}
        code, out, files = run('--retry-failed')
    assert code is None and 'images saved 1' in out and files == [refused_file]
    assert (tmp_path / f'{_label(booru, "danbooru")}_{refused.id}.png').read_bytes() == \
        refused.png
    assert _refused_record(tmp_path) == []


def test_a_second_refusal_that_cannot_be_recorded_fails_the_run(tmp_path, crawl_images, capsys,
                                                                  monkeypatch):
    """A run that refuses a post for good a second time, but cannot write the record (its lock
    held by another process past REFUSED_POSTS_LOCK_SECONDS), does not say the post is skipped
    from now on, since reruns will not skip it: it fails on it (exit 1) as on a first refusal;
    the next run, the lock free, records the second refusal and exits 0."""
    monkeypatch.setattr('animal_landmarks_mm.crawl.REFUSED_POSTS_LOCK_SECONDS', 0.2)
    posts = make_posts(2)
    with FakeBooru(posts) as booru:
        run = _crawl_command(crawl_images, capsys, booru, tmp_path)
        booru.state.file_faults = {posts[0].id: '404'}
        assert run()[0] == 'error: 1 downloads failed (rerun to try them again)'
        holder = os.open(tmp_path / REFUSED_POSTS_LOCK_NAME, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(holder, fcntl.LOCK_EX)
            code, out, _ = run()
        finally:
            os.close(holder)
        assert [entry['refused_runs'] for entry in _refused_record(tmp_path)] == [1]
        again, again_out, _ = run()
    assert code == 'error: 1 downloads failed (rerun to try them again)', code
    assert f'/images/{posts[0].id}.png: 404 Not Found' in out and 'refused for good' not in out
    assert again is None and SKIPPED_FROM_NOW_ON in again_out
    assert [entry['refused_runs'] for entry in _refused_record(tmp_path)] == [2]


def test_two_posts_failing_alike_keep_each_its_own_refusals(tmp_path, crawl_images, capsys):
    """Two posts whose file is one URL (a mirror's placeholder) fail with the same text: the
    one refused for good by an earlier run too is skipped from now on, the other, refused for
    the first time, still fails the run."""
    posts = make_posts(2)
    with FakeBooru(posts) as booru:
        refused = RefusedPosts.load(tmp_path)  # as the run that refused posts[0] once left it
        refused.add(_label(booru, 'danbooru'), {'post_id': posts[0].id, 'md5': posts[0].md5},
                    url='u', reason='404 Not Found')
        refused.save()
        placeholder = f'{booru.url}/images/{posts[0].id}.png'
        booru.state.file_urls = {posts[1].id: placeholder}
        booru.state.file_faults = {posts[0].id: '404'}
        code, out, files = _crawl_command(crawl_images, capsys, booru, tmp_path)()
    assert files == [f'/images/{posts[0].id}.png'] * 2
    assert code == 'error: 1 downloads failed (rerun to try them again); 1 more refused for ' \
                   'good, skipped from now on (--retry-failed tries them again)', code
    assert out.count(f'{placeholder}: 404 Not Found, {SKIPPED_FROM_NOW_ON}') == 1, out
    assert out.count(f'{placeholder}: 404 Not Found') == 2, out
    assert {entry['post_id']: entry['refused_runs'] for entry in _refused_record(tmp_path)} == \
        {posts[0].id: 2, posts[1].id: 1}


def test_a_post_refused_for_good_by_one_run_only_is_tried_again(tmp_path, crawl_images,
                                                                 capsys):
    """One run's refusals are not enough to skip a post: a page (200 text/html: a captive
    portal, a proxy's error page) in place of every file of one run, and a transfer cut before
    its first byte (no Content-Length: an empty file), fail that run; the next run on the
    healed network fetches them all, exits 0 and leaves no record."""
    posts = make_posts(4)
    with FakeBooru(posts) as booru:
        run = _crawl_command(crawl_images, capsys, booru, tmp_path)
        booru.state.file_faults = {post.id: 'html' for post in posts[1:]}
        booru.state.file_faults[posts[0].id] = 'empty_unsized'
        code, out, _ = run()
        assert code == 'error: 4 downloads failed (rerun to try them again)'
        assert out.count('not an image (text/html)') == 3 and 'not an image (empty file)' in out
        assert len(_refused_record(tmp_path)) == 3  # the pages: once each

        booru.state.file_faults = {}
        code, out, files = run()
    assert code is None and 'images saved 4' in out and 'refused before' not in out
    assert sorted(files) == sorted(f'/images/{post.id}.png' for post in posts)
    assert _refused_record(tmp_path) == []


def test_a_post_is_tried_again_when_what_refused_it_changed(tmp_path):
    """A post refused for its size (by two runs) is tried again by a run that takes larger
    files, one whose file was not the post's md5 when the site gives another md5 (the post's
    file replaced: its refusals count afresh, the next run tries it again); otherwise they
    stay skipped, whatever else changed."""
    posts = make_posts(3)
    huge, wrong = posts[0], posts[1]
    with FakeBooru(posts) as booru:
        booru.state.file_faults = {huge.id: 'huge', wrong.id: 'wrong_bytes'}
        options = _options(booru, tmp_path, 'danbooru', ratings=EVERY_RATING, limit=10,
                           max_file_size=200_000)
        first = crawl(options)
        second = crawl(options)
        options.timeout = 7.0
        since = len(booru.state.requests)
        same = crawl(options)
        assert same.refused_before == 2 and _file_requests(booru, since) == []

        options.max_file_size = 300_000
        booru.state.md5_override = {wrong.id: 'f' * 32}
        since = len(booru.state.requests)
        changed = crawl(options)
        assert sorted(_file_requests(booru, since)) == [f'/images/{wrong.id}.png',
                                                        f'/images/{huge.id}.png']
        record = {entry['post_id']: entry for entry in _refused_record(tmp_path)}

        options.max_file_size = 250_000  # smaller than the last try's: still too large
        since = len(booru.state.requests)
        again = crawl(options)
        assert again.refused_before == 1  # the other refused once since its md5 changed
        assert _file_requests(booru, since) == [f'/images/{wrong.id}.png']
    assert first.refused == [] and len(second.refused) == 2 and len(first.saved) == 1
    assert changed.refused_before == 0 and len(changed.failed) == 2
    assert changed.refused == [f'{booru.url}/images/{huge.id}.png: {record[huge.id]["reason"]}']
    assert record[huge.id]['max_file_size'] == 300_000 and record[huge.id]['md5'] == huge.md5
    assert record[wrong.id]['md5'] == 'f' * 32 and 'max_file_size' not in record[wrong.id]
    assert (record[huge.id]['refused_runs'], record[wrong.id]['refused_runs']) == (3, 1)
    assert record[huge.id]['reason'] == \
        'larger than --max-file-size 0.3 MB (Content-Length 10000000000)'


GOOD_REFUSAL = {'label': 'danbooru', 'post_id': 1000, 'md5': None, 'url': 'http://x/1.png',
                'reason': '404 Not Found', 'refused_at': '2026-01-02T03:04:05+00:00',
                'refused_runs': 2}


@pytest.mark.timeout(60)  # a FIFO read would block forever
@pytest.mark.parametrize('what, problem', [
    ('broken JSON', '(broken JSON: Unterminated string starting at: line 1 column 2'),
    ('not UTF-8', "(not UTF-8: 'utf-8' codec can't decode byte 0xff"),
    ('deep JSON', 'JSON nested too deeply'),
    ('a folder', 'not a regular file'),
    ('a FIFO', 'not a regular file'),
    ('too large', 'more than 64 bytes, too large to read'),
    ('another format', 'not an object with "format": "animal_landmarks_mm.refused_posts", '
                       '"version": 2 (or 1) and "posts": [...]'),
    ('a later version', '"version": 2 (or 1) and "posts": [...]'),
    ('a post id in text', "post 2: post_id '1001'"),
    ('a post without its reason', 'post 1: no reason'),
    ('a size cap of zero', 'post 1: max_file_size 0'),
    ('a post without its runs', 'post 1: no refused_runs'),
    ('a post of no runs', 'post 1: refused_runs 0'),
    # JSON may escape a lone surrogate, which loads, but no UTF-8 file can hold: the record
    # could never be written again (each run's refusals lost)
    ('a lone surrogate', "post 1: url 'http://x/\\ud800' (not UTF-8 text)"),
])
def test_a_record_of_refused_posts_that_cannot_be_used_stops_the_crawl_first(
        tmp_path, monkeypatch, what, problem):
    """One line naming the record and what to do, before any request, and the record left as
    it is: it is the crawler's, and one it cannot read would be written over at the end."""
    path = tmp_path / REFUSED_POSTS_NAME

    def record(*posts, version=2):
        return json.dumps({'format': 'animal_landmarks_mm.refused_posts', 'version': version,
                           'posts': list(posts)}).encode()

    content = {'broken JSON': b'{"format', 'not UTF-8': b'\xff{}', 'deep JSON': b'[' * 100_000,
               'too large': record(GOOD_REFUSAL),
               'another format': json.dumps({'format': 'other', 'posts': []}).encode(),
               'a post id in text': record(GOOD_REFUSAL, {**GOOD_REFUSAL, 'post_id': '1001'}),
               'a post without its reason': record({
                   name: value for name, value in GOOD_REFUSAL.items() if name != 'reason'}),
               'a size cap of zero': record({**GOOD_REFUSAL, 'max_file_size': 0}),
               'a later version': record(GOOD_REFUSAL, version=3),
               'a post without its runs': record({
                   name: value for name, value in GOOD_REFUSAL.items() if name != 'refused_runs'}),
               'a post of no runs': record({**GOOD_REFUSAL, 'refused_runs': 0}),
               'a lone surrogate': record({**GOOD_REFUSAL, 'url': 'http://x/\ud800'})}.get(what)
    if what == 'a folder':
        path.mkdir()
    elif what == 'a FIFO':
        os.mkfifo(path)
    else:
        path.write_bytes(content)
    if what == 'too large':
        monkeypatch.setattr('animal_landmarks_mm.crawl.REFUSED_POSTS_MAX_BYTES', 64)
    with FakeBooru(make_posts(3)) as booru:
        with pytest.raises(CrawlError) as info:
            crawl(_options(booru, tmp_path, 'danbooru'))
        requests = booru.state.requests
    message = str(info.value)
    assert message.startswith(f'{path}: not a record of refused posts the crawler can read (')
    assert problem in message, message
    assert message.endswith('remove it or move it away (the posts it names are then tried '
                            'again)')
    assert '\n' not in message and requests == []
    if content is not None:
        assert path.read_bytes() == content
    assert path.is_dir() if what == 'a folder' else True
    assert stat.S_ISFIFO(path.stat().st_mode) if what == 'a FIFO' else True


def test_the_record_of_refused_posts_is_bounded(tmp_path, monkeypatch, capfd):
    """The record keeps its newest posts within REFUSED_POSTS_MAX_BYTES (however many posts a
    folder's searches refuse, the file stays that small); the posts it dropped are as good as
    never refused (the second run's refusal is their first), and the third run tries them
    again, skipping the others."""
    monkeypatch.setattr('animal_landmarks_mm.crawl.REFUSED_POSTS_MAX_BYTES', 2000)
    posts = make_posts(8)  # the search gives them newest first: refused in this order
    with FakeBooru(posts) as booru:
        booru.state.file_faults = {post.id: 'wrong_bytes' for post in posts}
        options = _options(booru, tmp_path, 'danbooru', ratings=EVERY_RATING, limit=10)
        first = crawl(options)
        kept_first = [entry['post_id'] for entry in _refused_record(tmp_path)]
        second = crawl(options)
        record = _refused_record(tmp_path)
        size = (tmp_path / REFUSED_POSTS_NAME).stat().st_size
        err = capfd.readouterr().err
        since = len(booru.state.requests)
        again = crawl(options)
        retried = _file_requests(booru, since)
    kept = [entry['post_id'] for entry in record]
    dropped = len(posts) - len(kept)
    assert len(first.failed) == len(posts) and first.refused == []
    assert 1 <= len(kept) < len(posts) and kept == kept_first
    assert kept == [post.id for post in posts[dropped:]] and size <= 2000
    assert [entry['refused_runs'] for entry in record] == [2] * len(kept)
    assert len(second.failed) == len(posts) and len(second.refused) == len(kept)
    assert f'the {dropped} oldest refused posts dropped from the record (at most 2000 bytes)' \
        in err, err
    assert again.refused_before == len(kept)
    assert retried == [f'/images/{post.id}.png' for post in posts[:dropped]]


def test_a_version_1_record_counts_each_post_as_refused_by_one_run(tmp_path):
    """A record written when one refusal was enough to skip a post (version 1) is read with
    each post refused by one run: tried again, a post saved leaves it, a post refused again is
    skipped from now on; the record is written again as version 2."""
    posts = make_posts(3)
    healed, gone = posts[0], posts[1]
    with FakeBooru(posts) as booru:
        label = _label(booru, 'danbooru')
        (tmp_path / REFUSED_POSTS_NAME).write_text(json.dumps({
            'format': 'animal_landmarks_mm.refused_posts', 'version': 1,
            'posts': [{'label': label, 'post_id': post.id, 'md5': post.md5,
                       'url': f'{booru.url}/images/{post.id}.png', 'reason': '404 Not Found',
                       'refused_at': '2026-01-02T03:04:05+00:00'} for post in (healed, gone)]}))
        booru.state.file_faults = {gone.id: '404'}
        result = crawl(_options(booru, tmp_path, 'danbooru', ratings=EVERY_RATING))
        requests = _file_requests(booru)
    assert f'/images/{healed.id}.png' in requests and f'/images/{gone.id}.png' in requests
    assert len(result.saved) == 2 and result.refused_before == 0
    assert result.refused == result.failed == [f'{booru.url}/images/{gone.id}.png: 404 Not Found']
    record = json.loads((tmp_path / REFUSED_POSTS_NAME).read_text())
    assert record['version'] == 2
    assert [(entry['post_id'], entry['refused_runs']) for entry in record['posts']] == \
        [(gone.id, 2)]


@pytest.mark.timeout(120)
def test_two_crawls_in_one_folder_keep_each_others_refused_posts(tmp_path, monkeypatch):
    """Two crawls at once in one folder (two sources of one board): the other crawl runs whole
    between this one's start, when it reads the record, and its end, when it writes it. What
    the other recorded is kept, and only this one's changes are applied: a post it saved
    leaves the record, one it refused counts one run more."""
    posts = make_posts(4)
    gone, healed = posts[0], posts[1]
    others = []
    save = RefusedPosts.save

    def save_after_the_other_crawl(refused):
        if not others:
            others.append(run_tool(
                'crawl_images.py', '--source', 'safebooru', '--tags', 'animal_ears',
                '--output-dir', tmp_path, '--base-url', booru.url, '--sleep', '0',
                '--retries', '0', '--no-progress', '--rating', *EVERY_RATING, check=False))
        return save(refused)

    with FakeBooru(posts) as booru:
        booru.state.file_faults = {gone.id: '404', healed.id: '404'}
        options = _options(booru, tmp_path, 'danbooru', ratings=EVERY_RATING, limit=10)
        crawl(options)  # both refused once
        booru.state.file_faults = {gone.id: '404'}
        monkeypatch.setattr(RefusedPosts, 'save', save_after_the_other_crawl)
        result = crawl(options)
    other = others[0]
    assert other.returncode == 1 and 'error: 1 downloads failed' in other.stderr, other.stderr
    assert [p.name for p in result.saved] == [f'{_label(booru, "danbooru")}_{healed.id}.png']
    assert len(result.refused) == 1
    assert {(entry['label'], entry['post_id']): entry['refused_runs']
            for entry in _refused_record(tmp_path)} == {
        (_label(booru, 'safebooru'), gone.id): 1, (_label(booru, 'danbooru'), gone.id): 2}


def test_a_post_saved_leaves_the_record_even_when_another_crawl_recorded_it_meanwhile(tmp_path):
    """A post this crawl saved, or found here already, leaves the record whoever recorded it:
    also when another crawl recorded it after this one read the record (at start), and when
    this run found its file already downloaded by an earlier run."""
    info = {'post_id': 7, 'md5': 'a' * 32}
    this_crawl = RefusedPosts.load(tmp_path)
    other_crawl = RefusedPosts.load(tmp_path)
    other_crawl.add('danbooru', info, url='http://x/7.png', reason='not an image (an HTML page)')
    other_crawl.save()
    this_crawl.discard('danbooru', 7)  # its file saved by this crawl meanwhile
    this_crawl.save()
    assert _refused_record(tmp_path) == []

    posts = make_posts(3)
    out = tmp_path / 'images'
    with FakeBooru(posts) as booru:
        options = _options(booru, out, 'danbooru', ratings=EVERY_RATING)
        assert len(crawl(options).saved) == 3
        refused = RefusedPosts.load(out)  # as a crawl that refused the post once would
        refused.add(_label(booru, 'danbooru'), {'post_id': posts[0].id, 'md5': posts[0].md5},
                    url='u', reason='404 Not Found')
        refused.save()
        assert len(_refused_record(out)) == 1
        again = crawl(options)
    assert again.already_downloaded == 3 and _refused_record(out) == []


@pytest.mark.timeout(60)  # a FIFO opened to wait for a writer would block forever
@pytest.mark.parametrize('lock', ['held', 'a link', 'a FIFO'])
def test_one_crawl_of_a_label_at_once_in_a_folder(tmp_path, crawl_images, capsys, lock):
    """While another process crawls a label (source and instance) into the folder, holding its
    lock (CRAWL_LOCK_NAME, its process id in it), a crawl of that label is refused in one line
    naming the process, before any request (two would count one incident as two runs refusing
    a post, and share their half-written files); a crawl of another label runs meanwhile, and
    the label's crawl runs once the lock is free. A lock file that is a link or no regular file
    is refused in one line, never followed."""
    posts = make_posts(3)
    with FakeBooru(posts) as booru:
        path = tmp_path / CRAWL_LOCK_NAME.format(label=_label(booru, 'danbooru'))
        holder = None
        if lock == 'held':  # (another open file's flock excludes this process's own too)
            holder = os.open(path, os.O_RDWR | os.O_CREAT)
            fcntl.flock(holder, fcntl.LOCK_EX)
            os.write(holder, b'4242\n')
        elif lock == 'a link':
            (tmp_path / 'elsewhere').write_text('4242\n')
            path.symlink_to(tmp_path / 'elsewhere')
        else:
            os.mkfifo(path)
        run = _crawl_command(crawl_images, capsys, booru, tmp_path)
        try:
            code, out, files = run()
            if lock == 'held':  # the refused run leaves the holder's id as it is
                assert path.read_text() == '4242\n'
            other = crawl(_options(booru, tmp_path, 'safebooru', ratings=EVERY_RATING))
        finally:
            if holder is not None:
                os.close(holder)
            else:
                path.unlink()
        assert _file_requests(booru) == [f'/images/{post.id}.png' for post in posts]  # other's
        free, _, _ = run()
    expected = {
        # the holder as the system's list of locks names it (this process), not the file's id
        'held': f'{tmp_path}: {_label(booru, "danbooru")} is being crawled by another process '
                f'(id {os.getpid()}): wait for it, or use another --output-dir',
        'a link': f'{path}: cannot open the crawl\'s lock file (Too many levels of symbolic '
                  f'links): move it away (with no crawl of {_label(booru, "danbooru")} running '
                  f'there)',
        'a FIFO': f'{path}: cannot open the crawl\'s lock file ({path} is not a regular file): '
                  f'move it away (with no crawl of {_label(booru, "danbooru")} running there)'}
    assert code == f'error: {expected[lock]}', code
    assert out == '' and files == [] and len(other.saved) == 3 and free is None
    assert (tmp_path / 'elsewhere').read_text() == '4242\n' if lock == 'a link' else True
    if lock == 'held':  # the free run wrote its id there and cleared it when it ended
        assert path.read_text() == ''


def test_a_folder_where_the_crawl_lock_cannot_be_made_is_refused_in_one_line(tmp_path):
    """An output folder where no file can be made (immutable here: refused even to root, as a
    read-only folder is to a user) and no lock file is: one line before any request, saying
    so, not advice to move away a lock file that is not there."""
    posts = make_posts(1)
    with FakeBooru(posts) as booru:
        made = subprocess.run(['chattr', '+i', str(tmp_path)], capture_output=True)
        if made.returncode != 0:
            pytest.skip(f'chattr +i refused here: {made.stderr.decode().strip()}')
        try:
            with pytest.raises(CrawlError) as caught:
                crawl(_options(booru, tmp_path, 'danbooru', ratings=EVERY_RATING))
        finally:
            subprocess.run(['chattr', '-i', str(tmp_path)], check=True)
        requests = list(booru.state.requests)
    path = tmp_path / CRAWL_LOCK_NAME.format(label=_label(booru, 'danbooru'))
    assert str(caught.value) == (f'{path}: cannot make the crawl\'s lock file (Operation not '
                                 'permitted): the output folder must be writable')
    assert requests == [] and list(tmp_path.iterdir()) == []


def test_a_long_host_name_makes_names_every_file_system_takes(tmp_path):
    """A host name may have 253 characters: the label made of it is cut (and ends in a digest
    of the whole, so that two such hosts keep apart), and the crawl's lock file and the longest
    names of its images (an id of 64 digits) are names the file system takes."""
    hosts = ['.'.join(['a' * 63] * 3 + [last * 60]) for last in 'bc']
    labels = [file_label(CrawlOptions(source='danbooru', tags='cat', limit=1,
                                      output_dir=tmp_path, base_url=f'http://{host}:8080'))
              for host in hosts]
    assert labels[0] != labels[1] and all(label.startswith('danbooru-aaa') for label in labels)
    longest = f'{labels[0]}_{"9" * 64}'
    for name in (CRAWL_LOCK_NAME.format(label=labels[0]), f'{longest}.jpeg.json',
                 f'{longest}.jpeg.part', f'{longest}.999.jpeg'):
        (tmp_path / name).touch()


def test_a_lock_file_name_too_long_is_not_blamed_on_permissions(tmp_path, monkeypatch):
    """Only a folder that refuses the lock file for its permissions is said to need them."""
    monkeypatch.setattr('animal_landmarks_mm.crawl.CRAWL_LOCK_NAME',
                        '.crawl-{label}' + 'x' * 300 + '.lock')
    with FakeBooru(make_posts(1)) as booru:
        with pytest.raises(CrawlError) as caught:
            crawl(_options(booru, tmp_path, 'danbooru', ratings=EVERY_RATING))
        requests = list(booru.state.requests)
    path = tmp_path / f'.crawl-{_label(booru, "danbooru")}{"x" * 300}.lock'
    assert str(caught.value) == f'{path}: cannot make the crawl\'s lock file (File name too long)'
    assert requests == []


@pytest.mark.timeout(60)  # a FIFO opened to wait for a writer would block forever
@pytest.mark.parametrize('lock', ['held', 'a FIFO'])
def test_a_record_whose_lock_cannot_be_had_is_left_with_a_warning(tmp_path, monkeypatch, capfd,
                                                                  lock):
    """The record is written under its lock (REFUSED_POSTS_LOCK_NAME): where another process
    holds it past REFUSED_POSTS_LOCK_SECONDS, or the lock is no regular file, the crawl leaves
    the record as it is, with one warning line, and its result whole; the next run with the
    lock free records its refusals."""
    monkeypatch.setattr('animal_landmarks_mm.crawl.REFUSED_POSTS_LOCK_SECONDS', 0.2)
    path = tmp_path / REFUSED_POSTS_LOCK_NAME
    posts = make_posts(3)
    with FakeBooru(posts) as booru:
        booru.state.file_faults = {posts[1].id: '404'}
        options = _options(booru, tmp_path, 'danbooru', ratings=EVERY_RATING)
        if lock == 'a FIFO':
            os.mkfifo(path)
            blocked = crawl(options)
            path.unlink()
        else:  # (another open file's flock excludes this process's own too)
            holder = os.open(path, os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(holder, fcntl.LOCK_EX)
                blocked = crawl(options)
            finally:
                os.close(holder)
        err = capfd.readouterr().err
        free = crawl(options)
    problem = {'held': f'another crawl held {path} for 0.2 s',
               'a FIFO': f'{path} is not a regular file'}[lock]
    assert f'warning: {tmp_path / REFUSED_POSTS_NAME}: cannot write the record of refused ' \
           f'posts ({problem}): the next run tries them again' in err, err
    assert len(blocked.saved) == 2 and blocked.failed == free.failed and len(free.failed) == 1
    assert [(entry['post_id'], entry['refused_runs']) for entry in _refused_record(tmp_path)] \
        == [(posts[1].id, 1)]


def test_the_part_of_a_post_gone_or_refused_for_good_is_removed(tmp_path):
    """A part of a file cut short stayed in .parts/ for good once its post was gone (404) or
    refused for good: reruns never resume it, and a crawl's failures could leave a part each,
    up to --max-file-size (a hunt's repro: 8 parts left after four runs)."""
    posts = make_posts(3)
    out = tmp_path / 'out'
    options = dict(limit=10, ratings=EVERY_RATING, retries=0)
    with FakeBooru(posts) as booru:
        booru.state.file_faults = {p.id: 'short' for p in posts}
        first = crawl(_options(booru, out, 'danbooru', **options))
        assert len(first.failed) == 3 and len(list((out / PARTS_DIR).iterdir())) == 3
        booru.state.file_faults = {posts[0].id: '404', posts[1].id: '410',
                                   posts[2].id: 'wrong_bytes'}
        second = crawl(_options(booru, out, 'danbooru', **options))
    assert len(second.failed) == 3
    assert list((out / PARTS_DIR).iterdir()) == []


def test_image_without_sidecar_is_fetched_again(tmp_path):
    """What a kill between an image and its sidecar left (or an older version's crawl)."""
    posts = make_posts(6)
    with FakeBooru(posts) as booru:
        crawl(_options(booru, tmp_path, 'danbooru', limit=50, ratings=EVERY_RATING))
        lost = tmp_path / f'{_label(booru, "danbooru")}_{posts[2].id}.png'
        (tmp_path / f'{lost.name}.json').unlink()
        # a person's picture of such a name, with digits of another script: no post's
        own = tmp_path / f'{_label(booru, "danbooru")}_\u0661\u0662.png'
        own.write_bytes(posts[0].png)
        before = len(booru.state.requests)
        again = crawl(_options(booru, tmp_path, 'danbooru', limit=50, ratings=EVERY_RATING))
        fetched = _file_requests(booru, before)
    assert again.unfinished == 1 and again.saved == [lost] and again.already_downloaded == 5
    assert fetched == [f'/images/{posts[2].id}.png']
    assert json.loads((tmp_path / f'{lost.name}.json').read_text())['post_id'] == posts[2].id
    assert 'unfinished downloads redone 1' in again.format()
    assert (tmp_path / '.unfinished' / lost.name).is_file()  # set aside, never deleted
    assert own.read_bytes() == posts[0].png and not (tmp_path / '.unfinished' / own.name).exists()


def test_an_annotation_file_beside_the_images_is_not_taken_for_an_image(tmp_path):
    """The annotator may write danbooru_1000.json into the image folder: not an image without
    a sidecar, never touched."""
    posts = make_posts(3)
    with FakeBooru(posts) as booru:
        annotation = tmp_path / f'{_label(booru, "danbooru")}_{posts[0].id}.json'
        annotation.write_text('{"format": "animal_landmarks_mm.annotation"}')
        result = crawl(_options(booru, tmp_path, 'danbooru', limit=50, ratings=EVERY_RATING))
    assert result.unfinished == 0 and annotation.read_text().startswith('{"format"')


class Killed(BaseException):
    """The process dies here (a BaseException: nothing on the way catches it)."""


@pytest.mark.parametrize('where', ['before the image gets its name', 'before the archive'])
def test_kill_between_sidecar_image_and_archive_is_repaired_by_a_rerun(tmp_path, monkeypatch,
                                                                       where):
    posts = make_posts(6)
    first = posts[0]
    target, method = ((gdl_path.PathFormat, 'finalize') if where.endswith('name')
                      else (gdl_archive.DownloadArchive, 'add'))
    original = getattr(target, method)

    def die_once(self, *args):
        monkeypatch.setattr(target, method, original)
        raise Killed()

    with FakeBooru(posts) as booru:
        monkeypatch.setattr(target, method, die_once)
        with pytest.raises(Killed):
            crawl(_options(booru, tmp_path, 'danbooru', limit=50, ratings=EVERY_RATING))
        image = tmp_path / f'{_label(booru, "danbooru")}_{first.id}.png'
        assert (tmp_path / f'{image.name}.json').exists()  # the sidecar is written first
        assert image.exists() == where.endswith('archive')
        before = len(booru.state.requests)
        again = crawl(_options(booru, tmp_path, 'danbooru', limit=50, ratings=EVERY_RATING))
        fetched = _file_requests(booru, before)
    assert len(_images(tmp_path)) == 6 and again.failed == []
    assert image.read_bytes() == first.png
    if where.endswith('name'):  # the sidecar alone does not make it downloaded
        assert again.saved[0] == image and fetched[0] == f'/images/{first.id}.png'
    else:  # image and sidecar complete: downloaded, though not archived
        assert f'/images/{first.id}.png' not in fetched and again.already_downloaded == 1


def test_names_from_the_server_cannot_escape_the_output_dir(tmp_path):
    """A post's id, md5 and file URL are the server's: a hostile one never names a file (the id
    must be digits: post_problem; the extension, from the URL's last segment, one of
    IMAGE_EXTENSIONS: keep_post), and nothing is written outside the output folder."""
    posts = make_posts(5)
    out = tmp_path / 'out'
    with FakeBooru(posts) as booru:
        booru.state.md5_override = {posts[0].id: '../../escaped'}
        booru.state.post_fields = {posts[1].id: {'id': '../../x'}}
        booru.state.file_urls = {  # their last segments: '../../x.png', 'x.png/../../y'
            posts[2].id: f'{booru.url}/images/{posts[2].id}/..%2F..%2Fx.png',
            posts[3].id: f'{booru.url}/images/{posts[3].id}/x.png%2F..%2F..%2Fy'}
        result = crawl(_options(booru, out, 'danbooru', limit=10, ratings=EVERY_RATING))
        label = _label(booru, 'danbooru')
    outside = [p for p in tmp_path.rglob('*') if out not in p.parents and p != out]
    assert outside == []
    assert result.malformed == 1 and result.filtered == 1 and result.failed == []
    saved = {f'{label}_{p.id}.png' for p in (posts[0], posts[2], posts[4])}
    assert {p.name for p in result.saved} == saved
    assert {p.name for p in out.iterdir()} == {*saved, *(f'{name}.json' for name in saved),
                                               ARCHIVE_NAME, PARTS_DIR, MD5_LOCK_NAME,
                                               CRAWL_LOCK_NAME.format(label=label)}
    assert list((out / PARTS_DIR).iterdir()) == []


# --- credentials and what the site wants --------------------------------------------------

USERS = {'danbooru': 'alice', 'gelbooru': '12345', 'safebooru': '678'}


#: the user's gallery-dl config with an account on every site: gallery-dl reads a site's
#: options under its category and under its software's (every instance's) base category
USER_CONFIG_CREDENTIALS = {'extractor': {
    **{category: {'username': USERS['danbooru'], 'password': 'secret-key'}
       for category in ('danbooru', 'Danbooru')},
    **{category: {'user-id': USERS[source], 'api-key': 'secret-key'}
       for category, source in (('safebooru', 'safebooru'), ('gelbooru', 'gelbooru'),
                                ('gelbooru_v02', 'safebooru'))}}}


@pytest.mark.parametrize('source', SOURCES)
def test_credentials_reach_each_site_as_it_expects(tmp_path, source):
    user, api_key = USERS[source], 'secret-key'
    with FakeBooru(make_posts(6)) as booru:
        if source == 'danbooru':
            booru.state.danbooru_login = (user, api_key)
        else:
            booru.state.gelbooru_api_key = (user, api_key)
        result = crawl(_options(booru, tmp_path, source, limit=3, user=user, api_key=api_key))
    assert len(result.saved) == 3 and result.failed == []


@pytest.mark.parametrize('how', ['flags', 'environment'])
def test_credentials_never_go_to_another_host(tmp_path, monkeypatch, how):
    """Host A answers the API, its posts' files are on host B: the login goes to A alone (not
    on gallery-dl's session for every request), and the environment's login (the user's
    account on danbooru.donmai.us) goes to neither, A being a --base-url."""
    posts = make_posts(6)
    with FakeBooru(posts) as api, FakeBooru(posts) as files:
        api.state.file_root = files.url
        if how == 'flags':
            api.state.danbooru_login = ('alice', 'secret-key')
            options = _options(api, tmp_path, 'danbooru', limit=3, user='alice',
                               api_key='secret-key')
        else:
            monkeypatch.setenv('DANBOORU_LOGIN', 'alice')
            monkeypatch.setenv('DANBOORU_API_KEY', 'secret-key')
            options = _options(api, tmp_path, 'danbooru', limit=3)
        result = crawl(options)
    assert len(result.saved) == 3 and result.failed == []
    assert len(files.state.log) == 3 and api.state.log
    assert {r.authorization for r in files.state.log} == {None}
    expected = 'Basic ' + base64.b64encode(b'alice:secret-key').decode()
    assert {r.authorization for r in api.state.log} == ({expected} if how == 'flags'
                                                        else {None})


@pytest.mark.parametrize('source', ['danbooru', 'safebooru'])
def test_the_gallery_dl_configs_credentials_never_go_to_another_instance(tmp_path, source):
    """gallery-dl reads an instance's options under its software's base category too
    (``Danbooru``, ``gelbooru_v02``): the user's account on the sites themselves must not reach
    a --base-url, which gets the flags' credentials only."""
    config = json.loads(json.dumps(USER_CONFIG_CREDENTIALS))
    for section in config['extractor'].values():
        section.update(cookies={'session': 'secret-cookie'},
                       headers={'X-Session': 'secret-header'})
    (tmp_path / 'gallery-dl.json').write_text(json.dumps(config))
    with FakeBooru(make_posts(6)) as booru:
        result = crawl(_options(booru, tmp_path / 'out', source, limit=3,
                                ratings=EVERY_RATING))
        first_run = list(booru.state.log)
        with_flags = crawl(_options(booru, tmp_path / 'out', source, limit=3,
                                    ratings=EVERY_RATING, user='bob', api_key='flag-key'))
        second_run = booru.state.log[len(first_run):]
    assert len(result.saved) == 3 and len(with_flags.saved) == 3
    assert {r.authorization for r in first_run} == {None}
    assert not any('key=' in r.path or 'user_id=' in r.path for r in first_run)
    assert not any('secret-key' in r.path for r in second_run)
    # nor its cookies and headers for the sites (a login session travels there too)
    assert not any('secret-' in r.headers for r in first_run + second_run)
    searches = [r for r in second_run if not r.path.startswith('/images/')]
    if source == 'danbooru':  # the flags' login, as HTTP basic auth, on the searches
        expected = 'Basic ' + base64.b64encode(b'bob:flag-key').decode()
        assert {r.authorization for r in searches} == {expected}
    else:  # the flags' user id and key, as query parameters
        assert all('api_key=flag-key' in r.path and 'user_id=bob' in r.path for r in searches)


def test_the_gallery_dl_configs_cookies_go_to_the_sites_own_host_only(tmp_path, monkeypatch):
    """gallery-dl sets a config's cookies with no domain, which requests sends to every host:
    the user's session cookie for the site itself went to the host of any post's file URL (a
    hunt's repro). They go to the site's host alone now. (The site is simulated: its root
    pointed at a local server, as for https://danbooru.donmai.us.)"""
    from animal_landmarks_mm import crawl as crawl_module
    posts = make_posts(2)
    with FakeBooru(posts) as site, FakeBooru(posts) as files:
        monkeypatch.setitem(crawl_module.SOURCES, 'danbooru',
                            dict(kind='danbooru', root=site.url))
        monkeypatch.setattr(crawl_module, 'search_url',
                            lambda options: f'Danbooru:{site.url}/posts?tags=animal_ears')
        # another host name for the same address: cookies tell hosts by name, not by port
        files_root = files.url.replace('127.0.0.1', 'localhost')
        site.state.file_root = files_root
        cookies = {'cookies': {'_danbooru2_session': 'secret-session'}}
        (tmp_path / 'gallery-dl.json').write_text(json.dumps(
            {'extractor': {'Danbooru': cookies, '127.0.0.1': cookies}}))
        options = CrawlOptions(source='danbooru', tags='animal_ears', output_dir=tmp_path / 'out',
                               limit=2, sleep=0.0, progress=False, retries=0,
                               ratings=EVERY_RATING)
        assert crawl_module.root_of(options) == site.url
        result = crawl(options)
    assert len(result.saved) == 2 and len(files.state.log) == 2
    assert all('secret-session' in r.headers for r in site.state.log)  # the site's own
    assert not any('secret-session' in r.headers for r in files.state.log)
    # the host alone, not its subdomains; a host of no dot (a review: no cookie went there)
    import urllib.request

    import requests

    from animal_landmarks_mm.crawl import scope_cookies_to_host
    for root, sent, not_sent in (
            ('https://danbooru.donmai.us', 'https://danbooru.donmai.us/posts',
             ('https://cdn.danbooru.donmai.us/a.png', 'https://donmai.us/a.png')),
            ('http://booru:8080', 'http://booru:8080/posts', ('http://cdn.booru:8080/a.png',))):
        session = requests.Session()
        session.cookies.set('_session', 'secret', domain='')
        scope_cookies_to_host(session.cookies, root)
        headers = {}
        for url in (sent, *not_sent):
            request = urllib.request.Request(url)
            session.cookies.add_cookie_header(request)
            headers[url] = request.get_header('Cookie')
        assert headers == {sent: '_session=secret', **dict.fromkeys(not_sent)}, headers


#: a user's gallery-dl config whose settings the crawler's bookkeeping cannot live with
USER_CONFIG_HAZARDS = {
    'extractor': {
        'postprocessors': [{'name': 'metadata'}],  # <image>.json, over each sidecar
        'path-restrict': 'ascii',  # the '-' of a label replaced
        'extension-map': {'png': 'gif'},
        'keywords': {'id': 'kw'},  # over each post's id
        'archive-table': 'other',  # not the table remove_unfinished edits
        'async': True,  # the search in a thread of its own
    },
    # gallery-dl drops a file over it, and archives it as downloaded
    'downloader': {'filesize-max': '1k', 'validate': False},
}


@pytest.mark.parametrize('source', ['danbooru', 'safebooru'])
def test_the_users_gallery_dl_config_cannot_change_the_crawlers_bookkeeping(tmp_path, source):
    """The user's gallery-dl config is read (credentials, proxies ...), but neither its
    postprocessors (a metadata one wrote its own sidecars, the base URL's password in them) nor
    its size filters, names, archive or threads reach the crawl."""
    (tmp_path / 'gallery-dl.json').write_text(json.dumps(USER_CONFIG_HAZARDS))
    out = tmp_path / 'out'
    posts = make_posts(3)
    with FakeBooru(posts) as booru:
        options = _options(booru, out, source, limit=10, ratings=EVERY_RATING,
                           base_url=booru.url.replace('http://', 'http://someone:hunter2@'))
        result = crawl(options)
        again = crawl(options)
        label = _label(booru, source)
    names = {f'{label}_{p.id}.png' for p in posts}
    assert {p.name for p in result.saved} == names and result.failed == []
    assert again.saved == [] and again.already_downloaded == 3
    assert {p.name for p in out.iterdir()} == {
        *names, *(f'{name}.json' for name in names), ARCHIVE_NAME, PARTS_DIR, MD5_LOCK_NAME,
        CRAWL_LOCK_NAME.format(label=label)}
    for name in names:
        sidecar = json.loads((out / f'{name}.json').read_text())
        assert sidecar['format'] == SIDECAR_FORMAT and 'hunter2' not in json.dumps(sidecar)
    assert _archived(out) == {name.removesuffix('.png') for name in names}


@pytest.mark.parametrize('source, given, message', [
    ('gelbooru', None,
     'gelbooru: 401 Unauthorized: the site requires an API key: pass --user USER_ID --api-key '
     'KEY (from {url}/index.php?page=account&s=options)'),
    ('gelbooru', ('12345', 'wrong'),
     'gelbooru: 401 Unauthorized: the user id or API key was refused: pass --user USER_ID '
     '--api-key KEY (from {url}/index.php?page=account&s=options)'),
    ('gelbooru', 'environment',
     'gelbooru: 401 Unauthorized: the site requires an API key: pass --user USER_ID --api-key '
     'KEY (from {url}/index.php?page=account&s=options) (GELBOORU_USER_ID/GELBOORU_API_KEY go '
     'to https://gelbooru.com only)'),
    ('danbooru', ('alice', 'wrong'),
     'danbooru: 401 Unauthorized: the login or API key was refused: check --user LOGIN '
     '--api-key KEY (from {url}/profile)'),
    ('danbooru', 'environment',
     'danbooru: 401 Unauthorized: the login or API key was refused: check --user LOGIN '
     '--api-key KEY (from {url}/profile) (DANBOORU_LOGIN/DANBOORU_API_KEY go to '
     'https://danbooru.donmai.us only)'),
])
def test_refused_credentials_say_which_flags_fix_it(tmp_path, monkeypatch, source, given,
                                                    message):
    """The fake server is another instance (--base-url): the environment's credentials, the
    user's account on the source's own site, are not sent to it, and the message says so."""
    if given == 'environment':
        env_user, env_key = CREDENTIAL_ENV[source]
        monkeypatch.setenv(env_user, USERS[source])
        monkeypatch.setenv(env_key, 'secret-key')
        given = None
    with FakeBooru(make_posts(6)) as booru:
        booru.state.danbooru_login = ('alice', 'secret-key')
        booru.state.gelbooru_api_key = ('12345', 'secret-key')
        user, api_key = given or (None, None)
        with pytest.raises(CrawlError) as info:
            crawl(_options(booru, tmp_path, source, user=user, api_key=api_key))
    assert str(info.value) == message.format(url=booru.url)
    assert len(booru.state.requests) == 1  # a 401 is not retried


@pytest.mark.parametrize('source', SOURCES)
def test_half_a_credential_fails_before_any_request(tmp_path, monkeypatch, source):
    env_user, env_key = CREDENTIAL_ENV[source]
    monkeypatch.setenv(env_key, 'secret-key')  # the key from the environment, no user
    own_site = CrawlOptions(source=source, tags='solo', limit=1, output_dir=tmp_path)
    with pytest.raises(CrawlError, match=rf'^{source}: --api-key/{env_key} is set but '
                                         rf'--user/{env_user} is not: give both \('):
        resolve_credentials(own_site)  # no request: the site itself
    with FakeBooru(make_posts(3)) as booru:
        # another instance gets the flags' credentials only
        assert resolve_credentials(_options(booru, tmp_path, source)) == (None, None)
        with pytest.raises(CrawlError, match=rf'^{source}: --api-key is set but --user is not: '
                                             rf'give both \('):
            crawl(_options(booru, tmp_path, source, api_key='secret-key'))
    assert booru.state.requests == []


def test_a_terminal_never_gets_a_password_prompt(tmp_path, monkeypatch):
    """A username in the user's gallery-dl config, no password: gallery-dl would prompt, for the
    site itself (the one site the config's credentials go to), before any request."""
    config_file = tmp_path / 'gallery-dl.json'  # the file the autouse fixture points at
    config_file.write_text(json.dumps({'extractor': {'danbooru': {'username': 'alice'}}}))

    def prompt(*args, **kwargs):
        raise AssertionError('the crawler asked for input')

    monkeypatch.setattr(gdl_output, 'TTY_STDIN', True)
    monkeypatch.setattr('getpass.getpass', prompt)
    monkeypatch.setattr('builtins.input', prompt)
    with pytest.raises(CrawlError) as info:
        crawl(CrawlOptions(source='danbooru', tags='solo', limit=1, output_dir=tmp_path / 'out',
                           retries=0, progress=False))
    assert str(info.value) == (
        'danbooru: a login without its API key in your gallery-dl config (gallery-dl reads the '
        'API key from "password"): pass --user and --api-key, or set DANBOORU_LOGIN and '
        'DANBOORU_API_KEY')


def test_the_real_gelbooru_asking_for_a_key_names_the_flags(tmp_path):
    """gelbooru.com's extractor turns the 401 into AuthRequired (no request here)."""
    options = CrawlOptions(source='gelbooru', tags='solo', limit=1, output_dir=tmp_path)
    error = gdl_exception.AuthRequired("'api-key' & 'user-id'", 'the API')
    assert explain_error(error, options, search_url(options)) == (
        'gelbooru: 401 Unauthorized: Gelbooru requires an API key since 2025: pass --user '
        'USER_ID --api-key KEY (from https://gelbooru.com/index.php?page=account&s=options) or '
        'set GELBOORU_USER_ID/GELBOORU_API_KEY')


@pytest.mark.parametrize('how', ['flags', 'environment', 'gallery-dl config'])
@pytest.mark.parametrize('source', SOURCES)
def test_the_real_sites_get_the_credentials_their_extractor_reads(tmp_path, monkeypatch,
                                                                  source, how):
    """No request: gallery-dl's extractor for the real site, initialised, holds the key."""
    user = USERS[source]
    given = {}
    if how == 'flags':
        given = dict(user=user, api_key='secret-key')
    elif how == 'environment':
        env_user, env_key = CREDENTIAL_ENV[source]
        monkeypatch.setenv(env_user, user)
        monkeypatch.setenv(env_key, 'secret-key')
    else:  # the file the autouse fixture points at
        (tmp_path / 'gallery-dl.json').write_text(json.dumps(USER_CONFIG_CREDENTIALS))
    configure_gallery_dl(CrawlOptions(source=source, tags='solo', limit=1, output_dir=tmp_path,
                                      **given))
    extractor = gdl_job.Job(search_url(CrawlOptions(source=source, tags='solo', limit=1,
                                                    output_dir=tmp_path))).extractor
    extractor.initialize()
    if source == 'danbooru':  # HTTP basic auth login:api_key
        request = extractor.session.auth(SimpleNamespace(headers={}))
        expected = base64.b64encode(f'{user}:secret-key'.encode()).decode()
        assert request.headers['Authorization'] == f'Basic {expected}'.encode()
    else:  # the user_id and api_key query parameters
        assert (extractor.user_id, extractor.api_key) == (user, 'secret-key')


def test_403_for_gallery_dls_user_agent_names_the_flag_and_the_flag_works(tmp_path):
    with FakeBooru(make_posts(6)) as booru:
        booru.state.forbidden_user_agent = 'gallery-dl'
        with pytest.raises(CrawlError) as info:
            crawl(_options(booru, tmp_path, 'danbooru'))
        assert str(info.value) == (
            'danbooru: 403 Forbidden by a Cloudflare check: the site refuses this client: set a '
            'browser-like user agent with --user-agent "Mozilla/5.0 ..." (or gallery-dl\'s '
            '"user-agent" setting), and/or log in with --user LOGIN --api-key KEY')
        before = len(booru.state.requests)
        result = crawl(_options(booru, tmp_path, 'danbooru', limit=2, user_agent=BROWSER_UA))
        agents = set(booru.state.user_agents[before:])
    assert len(result.saved) == 2 and agents == {BROWSER_UA}


# --- secrets, bounds, --sleep and other instances -----------------------------------------

@pytest.mark.parametrize('text, expected', [
    ('http://h/index.php?page=dapi&api_key=K1&user_id=42&tags=a',
     'http://h/index.php?page=dapi&api_key=***&user_id=***&tags=a'),
    ("'500 Internal Server Error' for 'https://x.org/posts.json?login=bob&API_KEY=K1'",
     "'500 Internal Server Error' for 'https://x.org/posts.json?login=***&API_KEY=***'"),
    ('Max retries exceeded with url: /index.php?q=index&password_hash=H (Caused by ...)',
     'Max retries exceeded with url: /index.php?q=index&password_hash=*** (Caused by ...)'),
    ('gelbooru_v02:http://someone:hunter2@booru.example/index.php?tags=a@b',
     'gelbooru_v02:http://***@booru.example/index.php?tags=a@b'),
    ("{'api_key': 'K1', 'tags': 'solo'}", "{'api_key': '***', 'tags': 'solo'}"),
    ('https://danbooru.donmai.us/posts?tags=cat_ears&page=2',
     'https://danbooru.donmai.us/posts?tags=cat_ears&page=2'),
])
def test_redact_hides_credentials_in_urls(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize('source', ['safebooru', 'gelbooru'])
def test_a_failed_search_never_shows_the_api_key(tmp_path, caplog, capfd, source):
    """Gelbooru's API takes the key as a query parameter: the failing URL carries it, into
    gallery-dl's HttpError, its log lines and urllib3's."""
    caplog.set_level(logging.DEBUG)
    with FakeBooru(make_posts(3)) as booru:
        booru.state.gelbooru_api_key = ('12345', 'SECRETKEY')
        booru.state.fail_search_forever = 500
        with pytest.raises(CrawlError) as info:
            crawl(_options(booru, tmp_path, source, retries=1, user='12345',
                           api_key='SECRETKEY'))
    assert 'api_key=SECRETKEY' in booru.state.requests[0]  # it was sent, to the API
    assert 'api_key=***' in str(info.value) and '500 Internal Server Error' in str(info.value)
    assert 'SECRETKEY' not in str(info.value) and 'SECRETKEY' not in str(info.value.__cause__)
    assert any('api_key=***' in record.getMessage() for record in caplog.records)
    assert 'SECRETKEY' not in caplog.text
    assert not any('SECRETKEY' in record.getMessage() for record in caplog.records)
    out, err = capfd.readouterr()
    assert 'SECRETKEY' not in out + err
    # the filter is on gallery-dl's loggers while a crawl runs only
    assert not logging.getLogger('download').filters


def test_the_command_never_prints_the_api_key(tmp_path):
    """gallery-dl's error lines reach the terminal (Python's last-resort handler)."""
    with FakeBooru(make_posts(3)) as booru:
        booru.state.gelbooru_api_key = ('12345', 'SECRETKEY')
        booru.state.fail_search_forever = 500
        proc = run_tool('crawl_images.py', '--source', 'safebooru', '--tags', 'cat_ears',
                        '--output-dir', tmp_path, '--base-url', booru.url, '--sleep', '0',
                        '--retries', '0', '--no-progress', '--user', '12345', '--api-key',
                        'SECRETKEY', check=False,
                        env={'XDG_CONFIG_HOME': str(tmp_path / 'config')})  # no user config
    assert proc.returncode == 1 and 'api_key=***' in proc.stderr
    assert 'SECRETKEY' not in proc.stdout + proc.stderr


def test_sidecars_and_results_never_keep_secrets(tmp_path, caplog):
    """A --base-url with user:password@ (HTTP basic auth of a self-hosted instance) and an API
    key: the images come, and no sidecar, result or log record keeps either secret."""
    caplog.set_level(logging.DEBUG)
    with FakeBooru(make_posts(6)) as booru:
        booru.state.gelbooru_api_key = ('12345', 'SECRETKEY')
        base_url = booru.url.replace('http://', 'http://someone:hunter2@')
        options = _options(booru, tmp_path, 'safebooru', limit=3, user='12345',
                           api_key='SECRETKEY')
        options.base_url = base_url
        result = crawl(options)
        label = _label(booru, 'safebooru')
    assert len(result.saved) == 3 and all(p.name.startswith(f'{label}_') for p in result.saved)
    sidecars = [json.loads(p.with_name(p.name + '.json').read_text()) for p in result.saved]
    redacted_root = booru.url.replace('http://', 'http://***@')
    assert {meta['base_url'] for meta in sidecars} == {redacted_root}
    assert all(meta['page_url'].startswith(f'{redacted_root}/index.php') for meta in sidecars)
    for text in (*(json.dumps(meta) for meta in sidecars), result.format(), caplog.text):
        assert 'hunter2' not in text and 'SECRETKEY' not in text


@pytest.mark.timeout(60)  # an unbounded search would page forever
@pytest.mark.parametrize('source, fault, searches, why', [
    # gallery-dl's Gelbooru 0.2 paginator asks again for a page the count says is not empty
    ('safebooru', 'empty_pages', SEARCH_IDLE_PAGES, 'brought no post not seen before'),
    ('safebooru', 'same_page', SEARCH_IDLE_PAGES + 1, 'brought no post not seen before'),
    ('danbooru', 'same_page', SEARCH_IDLE_PAGES + 1, 'brought no post not seen before'),
    # new posts forever, none of them kept: 1000 posts (limit 5 x 100, at least 1000) are
    # 10 pages of Gelbooru's 100, 5 of Danbooru's 200, and one more to see the bound
    ('safebooru', 'new_posts_forever', 11, 'search stopped after 1000 posts not saved before'),
    ('danbooru', 'new_posts_forever', 6, 'search stopped after 1000 posts not saved before'),
])
def test_a_search_that_pages_forever_is_bounded(tmp_path, source, fault, searches, why):
    with FakeBooru(make_posts(3)) as booru:
        booru.state.search_fault = fault
        start = time.monotonic()
        result = crawl(_options(booru, tmp_path, source, limit=5))
        took = time.monotonic() - start
    assert why in result.stopped and result.stopped in result.format()
    assert '\n' not in result.format() and result.saved == [] and result.failed == []
    assert len(_search_requests(booru)) == searches and _file_requests(booru) == []
    assert took < 60


@pytest.mark.timeout(120)  # a search bounded by its posts alone made 800 to 1000 requests
@pytest.mark.parametrize('source, seen', [('safebooru', 100), ('danbooru', 200 + 99)])
def test_a_search_whose_pages_bring_one_new_post_each_is_bounded_by_its_requests(
        tmp_path, source, seen):
    """Every page brings one post not seen before (Danbooru's: after a full first page, a full
    page of posts seen before and one new): neither the idle pages nor the posts bound (1000 at
    --limit 5) stop it soon; the search stops after one request per 10 posts it may look at."""
    with FakeBooru(make_posts(3)) as booru:
        booru.state.search_fault = 'one_new_post_per_page'
        result = crawl(_options(booru, tmp_path, source, limit=5))
    requests = max(SEARCH_REQUESTS_MIN, 1000 // SEARCH_POSTS_PER_REQUEST)
    assert len(_search_requests(booru)) == requests == 100
    assert result.stopped.startswith('search stopped after 100 search requests, the most for '
                                     '--limit 5'), result.stopped
    assert result.stopped in result.format() and '\n' not in result.format()
    assert result.seen == seen and result.saved == [] and result.failed == []
    assert _file_requests(booru) == []


def test_a_rerun_walks_past_what_it_saved_before(tmp_path, monkeypatch):
    """The posts bound counts posts not saved before: a rerun reaches new ones."""
    monkeypatch.setattr('animal_landmarks_mm.crawl.SEARCH_POSTS_MIN', 4)
    monkeypatch.setattr('animal_landmarks_mm.crawl.SEARCH_POSTS_PER_IMAGE', 2)
    with FakeBooru(make_posts(20)) as booru:
        options = _options(booru, tmp_path, 'danbooru', limit=2, ratings=EVERY_RATING)
        for _ in range(5):  # 10 images; each run walks past all the earlier ones
            result = crawl(options)
            assert len(result.saved) == 2 and result.stopped is None, result.format()
        options.ratings = ('questionable',)  # none: the bound stops the search
        result = crawl(options)
    assert result.already_downloaded == 0 and result.filtered == 4
    assert result.stopped.startswith('search stopped after 4 posts not saved before')


@pytest.mark.timeout(60)
@pytest.mark.parametrize('source, fault, message', [
    ('danbooru', 'huge_answer', f'search answer larger than {SEARCH_ANSWER_MAX_BYTES} bytes '
                                f'(Content-Length 10000000000)'),
    ('danbooru', 'endless_answer', f'search answer larger than {SEARCH_ANSWER_MAX_BYTES} bytes '
                                   f'(searching'),
    ('safebooru', 'endless_answer', f'search answer larger than {SEARCH_ANSWER_MAX_BYTES} '
                                    f'bytes (searching'),
])
def test_a_huge_search_answer_is_not_read_whole(tmp_path, source, fault, message):
    with FakeBooru(make_posts(3)) as booru:
        booru.state.search_fault = fault
        with pytest.raises(CrawlError) as info:
            crawl(_options(booru, tmp_path, source, retries=2))
    assert message in str(info.value) and '\n' not in str(info.value)
    assert len(_search_requests(booru)) == 1  # not retried


def test_sleep_applies_before_each_download(tmp_path):
    """--sleep also spaces the file downloads (gallery-dl's "sleep"), not only the searches:
    seen in the server's log, loosely (at least half the sleep between two requests)."""
    sleep = 0.4
    with FakeBooru(make_posts(8)) as booru:
        crawl(CrawlOptions(source='danbooru', tags='animal_ears solo', output_dir=tmp_path,
                           limit=4, base_url=booru.url, ratings=EVERY_RATING, sleep=sleep,
                           progress=False))
        times = [r.time for r in booru.state.log]
    assert len(times) == 5  # one search, four files
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    assert min(gaps) >= sleep / 2, gaps


def test_two_instances_of_one_software_share_a_folder(tmp_path):
    """The same post ids, other images: each instance's images are named after it, its
    archive keys too; a rerun of either finds its own."""
    with FakeBooru(make_posts(3, seed=0)) as first, FakeBooru(make_posts(3, seed=1)) as second:
        results = [crawl(_options(booru, tmp_path, 'danbooru', ratings=EVERY_RATING))
                   for booru in (first, second)]
        again = [crawl(_options(booru, tmp_path, 'danbooru', ratings=EVERY_RATING))
                 for booru in (first, second)]
        labels = [_label(booru, 'danbooru') for booru in (first, second)]
        files = [_file_requests(booru) for booru in (first, second)]
    assert [len(r.saved) for r in results] == [3, 3]
    assert [a.already_downloaded for a in again] == [3, 3] and again[0].saved == []
    assert [len(f) for f in files] == [3, 3]  # nothing fetched twice
    assert {p.name for p in _images(tmp_path)} == {f'{label}_{post_id}.png' for label in labels
                                                   for post_id in (1000, 1001, 1002)}
    assert _archived(tmp_path) == {f'{label}_{post_id}' for label in labels
                                   for post_id in (1000, 1001, 1002)}


@pytest.mark.parametrize('base_url', [None, 'https://danbooru.donmai.us',
                                      'https://danbooru.donmai.us/'])
def test_the_sites_own_names_are_unchanged(tmp_path, base_url):
    """The names (and archive keys) of the sites themselves stay what they were, so that
    folders crawled before stay valid; naming the site's own root is the site."""
    options = CrawlOptions(source='danbooru', tags='solo', limit=1, output_dir=tmp_path,
                           base_url=base_url)
    assert file_label(options) == archive_prefix(options) == 'danbooru'
    assert search_url(options) == 'https://danbooru.donmai.us/posts?tags=solo'
    mirror = CrawlOptions(source='safebooru', tags='solo', limit=1, output_dir=tmp_path,
                          base_url='https://booru.example.org:8443/')
    assert file_label(mirror) == 'safebooru-booru.example.org-8443'
    assert archive_prefix(mirror) == 'safebooru-booru.example.org-8443_'


# --- the command --------------------------------------------------------------------------

@pytest.fixture(scope='module')
def crawl_images():
    """tools/crawl_images.py, imported: its messages without a new interpreter each."""
    spec = importlib.util.spec_from_file_location('crawl_images', REPO / 'tools' /
                                                  'crawl_images.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NOWHERE = ['--base-url', 'http://127.0.0.1:9', '--retries', '0']


@pytest.mark.parametrize('args, message', [
    (['--source', 'pixiv', '--tags', 'cat'], "error: unknown source 'pixiv'"),
    (['--source', 'safebooru', '--tags', '  '], 'error: --tags is empty'),
    (['--source', 'safebooru', '--tags', 'cat', '--limit', '0'],
     'error: --limit must be positive, got 0'),
    (['--source', 'safebooru', '--tags', 'cat', '--base-url', 'ftp://x'],
     "error: --base-url must be an http(s) URL, got 'ftp://x'"),
    (['--source', 'safebooru', '--tags', 'cat', '--timeout', '0'],
     'error: --timeout must be positive, got 0 s'),
    (['--source', 'safebooru', '--tags', 'cat', '--file-deadline', '-1'],
     'error: --file-deadline must be positive, got -1 s'),
    (['--source', 'safebooru', '--tags', 'cat', '--max-file-size', '0'],
     'error: --max-file-size must be positive, got 0 MB'),
    (['--source', 'safebooru', '--tags', 'cat', '--max-file-size', '-1'],
     'error: --max-file-size must be positive, got -1 MB'),
    (['--source', 'safebooru', '--tags', 'cat', '--max-file-size', '1e-9'],
     'error: --max-file-size must be at least one byte (1e-06 MB), got 1e-09 MB'),
    # (a closed local port: a value that slipped through must not reach the real site)
    (['--source', 'safebooru', '--tags', 'cat', '--max-file-size', 'inf', *NOWHERE],
     'error: --max-file-size must be a finite number of MB, got inf'),
    (['--source', 'safebooru', '--tags', 'cat', '--max-file-size', 'nan', *NOWHERE],
     'error: --max-file-size must be a finite number of MB, got nan'),
    (['--source', 'safebooru', '--tags', 'cat', '--timeout', 'inf', *NOWHERE],
     'error: --timeout must be a finite number, got inf'),
    (['--source', 'safebooru', '--tags', 'cat', '--sleep', '-1', *NOWHERE],
     'error: --sleep must be a finite number of seconds, not negative, got -1'),
    # a timer, a socket or a sleep refuses a huge number with an OverflowError
    *[(['--source', 'safebooru', '--tags', 'cat', flag, '1e300', *NOWHERE],
       f'error: {flag} must be at most 86400 s (one day), got 1e+300')
      for flag in ('--timeout', '--file-deadline', '--sleep', '--retry-sleep')],
    (['--source', 'danbooru', '--tags', 'cat', '--user', 'alice'],
     'error: danbooru: --user/DANBOORU_LOGIN is set but --api-key/DANBOORU_API_KEY is not: '
     'give both (your login and the API key from https://danbooru.donmai.us/profile)'),
])
def test_cli_refuses_bad_input_in_one_line(tmp_path, crawl_images, args, message):
    with pytest.raises(SystemExit) as info:
        crawl_images.main([*args, '--output-dir', str(tmp_path), '--no-progress'])
    assert str(info.value.code).startswith(message) and '\n' not in str(info.value.code)


def test_cli_takes_a_max_file_size_of_more_bytes_than_a_float_holds(tmp_path, crawl_images):
    """1e303 MB is a finite number, whose bytes overflow a float (an OverflowError traceback):
    counted exactly, the crawl goes on (to a closed local port)."""
    assert crawl_images.megabytes_to_bytes(1e303) == int(1e303) * 10 ** 6
    with pytest.raises(SystemExit) as info:
        crawl_images.main(['--source', 'safebooru', '--tags', 'cat', '--max-file-size', '1e303',
                           *NOWHERE, '--output-dir', str(tmp_path), '--no-progress'])
    assert str(info.value.code).startswith('error: safebooru: ')
    assert 'Connection refused' in str(info.value.code)


@pytest.mark.timeout(90)
def test_cli_never_waits_for_a_password_on_a_terminal(tmp_path):
    """The real command, its stdin a terminal, a gallery-dl config with a username only, for
    the site itself: the error comes before any request."""
    config_dir = tmp_path / 'config' / 'gallery-dl'
    config_dir.mkdir(parents=True)
    (config_dir / 'config.json').write_text(
        json.dumps({'extractor': {'danbooru': {'username': 'alice'}}}))
    terminal, stdin = os.openpty()
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / 'config'), PYTHONWARNINGS='ignore')
    try:
        # a session of its own: no controlling terminal, so getpass would read stdin
        proc = subprocess.run(
            [sys.executable, str(REPO / 'tools' / 'crawl_images.py'), '--source',
             'danbooru', '--tags', 'cat_ears', '--output-dir', str(tmp_path / 'out'),
             '--sleep', '0', '--retries', '0', '--no-progress'],
            stdin=stdin, capture_output=True, text=True, timeout=60, env=env,
            start_new_session=True)
    finally:
        os.close(terminal)
        os.close(stdin)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(
        'error: danbooru: a login without its API key')



def test_a_gallery_dl_config_it_would_wait_on_or_hold_whole_is_refused_first(tmp_path,
                                                                             monkeypatch):
    """gallery-dl opens and reads its config files without a check: a FIFO there waited for a
    writer for good, a sparse file of gigabytes was held whole, a config naming itself as a
    subconfig recursed to a traceback. Each is one line naming it now, before gallery-dl
    reads; a missing file, broken JSON and a subconfig chain are left to gallery-dl."""
    configs = tmp_path / 'configs'
    configs.mkdir()
    fifo, sparse, looping = configs / 'fifo.json', configs / 'sparse.json', configs / 'loop.json'
    os.mkfifo(fifo)
    with open(sparse, 'wb') as f:
        f.truncate(2 << 30)
    looping.write_text(json.dumps({'subconfigs': str(looping)}))
    (configs / 'broken.json').write_text('{"extractor": ')
    (configs / 'last.json').write_text('{}')
    (configs / 'chain.json').write_text(json.dumps(
        {'subconfigs': [str(configs / 'missing.json'), str(configs / 'last.json')]}))
    for config, message in ((fifo, 'not a regular file'), (sparse, 'too large to read'),
                            (looping, 'more than 8 deep')):
        monkeypatch.setattr(gdl_config, '_default_configs',
                            [str(configs / 'chain.json'), str(config)])
        with pytest.raises(CrawlError, match=message) as info:
            check_gallery_dl_config_files()
        assert str(config) in str(info.value) and '\n' not in str(info.value)
    # named by a subconfig, as by the defaults
    (configs / 'outer.json').write_text(json.dumps({'subconfigs': str(fifo)}))
    monkeypatch.setattr(gdl_config, '_default_configs', [str(configs / 'outer.json')])
    with pytest.raises(CrawlError, match='fifo.json'):
        check_gallery_dl_config_files()
    monkeypatch.setattr(gdl_config, '_default_configs',
                        [str(configs / name) for name in ('broken.json', 'chain.json',
                                                          'missing.json')])
    check_gallery_dl_config_files()


@pytest.mark.parametrize('config, message', [
    # gallery-dl opened stdin for a false entry (expand_path passes it on: open(0)), read a
    # dict's keys as files, and raised TypeError outside its try for true or a number
    ({'subconfigs': [0]}, '"subconfigs" is a file name or a list of file names, not [0]'),
    ({'subconfigs': [False]}, 'not [False]'),
    ({'subconfigs': {'FIFO': 1}}, "not {'"),
    ({'subconfigs': True}, 'not True'),
    ({'subconfigs': ['LAST', 3]}, "not ['"),
    ({'subconfigs': [['LAST']]}, "not [['"),
    # merged into gallery-dl's dict of options: a traceback
    (['subconfigs'], 'not a JSON object, which gallery-dl cannot read'),
    (7, 'not a JSON object'),
])
def test_a_gallery_dl_config_it_would_stop_on_or_read_stdin_for_is_refused(
        tmp_path, monkeypatch, config, message):
    configs = tmp_path / 'configs'
    configs.mkdir()
    os.mkfifo(configs / 'fifo.json')
    (configs / 'last.json').write_text('{}')
    text = json.dumps(config).replace('FIFO', str(configs / 'fifo.json')).replace(
        'LAST', str(configs / 'last.json'))
    (configs / 'config.json').write_text(text)
    monkeypatch.setattr(gdl_config, '_default_configs', [str(configs / 'config.json')])
    with pytest.raises(CrawlError) as info:
        check_gallery_dl_config_files()
    assert str(info.value).startswith(f'gallery-dl config {configs / "config.json"}: ')
    assert message in str(info.value) and '\n' not in str(info.value)


@pytest.mark.timeout(60)  # unbounded, the check ran for about 1000 s
def test_gallery_dl_configs_naming_others_by_the_hundred_are_refused_at_a_count(
        tmp_path, monkeypatch):
    """Three files, each naming the next 300 times, were 27 million reads (gallery-dl reads a
    file each time it is named): the check counts every read and stops past 64. Empty or false
    subconfigs are none (gallery-dl ignores them), and a few files named twice are fine."""
    configs = tmp_path / 'configs'
    configs.mkdir()
    (configs / 'd.json').write_text('{"subconfigs": []}')
    for name, inner in (('c', 'd'), ('b', 'c'), ('a', 'b')):
        (configs / f'{name}.json').write_text(json.dumps(
            {'subconfigs': [str(configs / f'{inner}.json')] * 300}))
    monkeypatch.setattr(gdl_config, '_default_configs', [str(configs / 'a.json')])
    with pytest.raises(CrawlError) as info:
        check_gallery_dl_config_files()
    assert str(info.value) == (f'gallery-dl config {configs / "d.json"}: more than 64 config '
                               'files to read through "subconfigs" (a file named twice is read '
                               'twice)')
    for empty in ('""', 'false', 'null', '{}', '0'):
        (configs / 'e.json').write_text(f'{{"subconfigs": {empty}}}')
        (configs / 'twice.json').write_text(json.dumps(
            {'subconfigs': [str(configs / 'e.json')] * 2}))
        monkeypatch.setattr(gdl_config, '_default_configs', [str(configs / 'twice.json')])
        check_gallery_dl_config_files()


@pytest.mark.timeout(120)
def test_cli_refuses_a_gallery_dl_config_that_is_a_fifo(tmp_path):
    """The real command with the user's gallery-dl config a FIFO: one line, no wait."""
    config_dir = tmp_path / 'config' / 'gallery-dl'
    config_dir.mkdir(parents=True)
    os.mkfifo(config_dir / 'config.json')
    proc = run_tool('crawl_images.py', '--source', 'safebooru', '--tags', 'cat_ears',
                    '--output-dir', tmp_path / 'out', '--base-url', 'http://127.0.0.1:9',
                    '--sleep', '0', '--retries', '0', '--no-progress', check=False,
                    timeout=60, env={'XDG_CONFIG_HOME': str(tmp_path / 'config')})
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: gallery-dl config ') and 'config.json' in last, last

def test_cli_end_to_end(tmp_path):
    with FakeBooru(make_posts(10)) as booru:
        proc = run_tool('crawl_images.py', '--source', 'safebooru', '--tags', 'cat_ears',
                        '--limit', '2', '--output-dir', tmp_path, '--base-url', booru.url,
                        '--sleep', '0', '--no-progress', '--timeout', '5', '--file-deadline',
                        '60', '--max-file-size', '1', '--user-agent', BROWSER_UA)
    assert 'images saved 2' in proc.stdout
    assert len(_images(tmp_path)) == 2
    assert set(booru.state.user_agents) == {BROWSER_UA}


# --- files already in the output folder ---------------------------------------------------

@pytest.mark.parametrize('archive', ['not a database', 'a folder'])
def test_an_unusable_download_archive_stops_the_crawl_before_any_request(tmp_path, archive):
    """gallery-dl would crawl on without its archive (a warning), and the sqlite3 module raise
    a traceback: one line naming the archive instead, before anything is fetched or moved."""
    path = tmp_path / ARCHIVE_NAME
    if archive == 'a folder':
        path.mkdir()
    else:
        path.write_bytes(b'this is not an SQLite file, whatever its name says' * 100)
    with FakeBooru(make_posts(3)) as booru:
        unfinished = tmp_path / f'{_label(booru, "danbooru")}_1000.png'
        unfinished.write_bytes(make_posts(1)[0].png)  # no sidecar: would be set aside
        with pytest.raises(CrawlError) as info:
            crawl(_options(booru, tmp_path, 'danbooru'))
    message = str(info.value)
    assert message.startswith(f'{path}: ') and '\n' not in message
    assert ('(file is not a database)' if archive == 'not a database'
            else '(not a regular file)') in message
    assert booru.state.requests == [] and unfinished.is_file()


def test_a_locked_download_archive_moves_nothing(tmp_path, monkeypatch):
    """Another crawl writing to the archive: its entries of the images to fetch again cannot be
    dropped, so nothing is set aside (an image set aside while its entry stays would never be
    fetched again)."""
    monkeypatch.setattr('animal_landmarks_mm.crawl.ARCHIVE_LOCK_SECONDS', 0.2)
    posts = make_posts(3)
    with FakeBooru(posts) as booru:
        crawl(_options(booru, tmp_path, 'danbooru', ratings=EVERY_RATING))
        image = tmp_path / f'{_label(booru, "danbooru")}_{posts[0].id}.png'
        (tmp_path / f'{image.name}.json').unlink()
        other_crawl = sqlite3.connect(tmp_path / ARCHIVE_NAME)
        other_crawl.execute('BEGIN IMMEDIATE')  # a writer: readers pass, writers wait
        try:
            with pytest.raises(CrawlError) as info:
                crawl(_options(booru, tmp_path, 'danbooru', ratings=EVERY_RATING))
        finally:
            other_crawl.close()
    assert str(info.value).startswith(f'{tmp_path / ARCHIVE_NAME}: ')
    assert 'database is locked' in str(info.value) and '\n' not in str(info.value)
    assert image.is_file() and not (tmp_path / '.unfinished').exists()
    assert f'{_label(booru, "danbooru")}_{posts[0].id}' in _archived(tmp_path)


def _make_read_only(database):
    """Make an SQLite file one that sqlite reads but never writes, for root as for anyone: its
    header's file format write version above 2, its change counter bumped (a connection open
    on it then reads the header again)."""
    with open(database, 'r+b') as f:
        f.seek(18)
        f.write(b'\x03')
        f.seek(24)
        counter = int.from_bytes(f.read(4), 'big')
        f.seek(24)
        f.write((counter + 1).to_bytes(4, 'big'))


@pytest.mark.parametrize('when', ['before the crawl', 'during the crawl'])
def test_a_download_archive_that_cannot_be_updated_is_one_line_naming_it(tmp_path,
                                                                         monkeypatch, when):
    """An archive sqlite reads but cannot update (read-only) stops the crawl before any request;
    one that turns so during the crawl ends it with the same line, the file it saved counted."""
    posts = make_posts(4)
    archive = tmp_path / ARCHIVE_NAME
    with FakeBooru(posts) as booru:
        crawl(_options(booru, tmp_path, 'danbooru', limit=1, ratings=EVERY_RATING))
        before = len(booru.state.requests)
        if when == 'before the crawl':
            _make_read_only(archive)
        else:
            original = gdl_archive.DownloadArchive.add

            def read_only_from_now_on(self, kwdict):
                monkeypatch.setattr(gdl_archive.DownloadArchive, 'add', original)
                _make_read_only(archive)
                return original(self, kwdict)

            monkeypatch.setattr(gdl_archive.DownloadArchive, 'add', read_only_from_now_on)
        with pytest.raises(CrawlError) as info:
            crawl(_options(booru, tmp_path, 'danbooru', limit=10, ratings=EVERY_RATING))
        requests = booru.state.requests[before:]
    assert str(info.value) == (
        f'{archive}: cannot update the download archive (attempt to write a readonly '
        f'database): make it writable, remove it (the sidecars still say which images are '
        f'here) or move it away')
    if when == 'before the crawl':
        assert requests == [] and len(_images(tmp_path)) == 1
    else:  # saved, its sidecar beside it, though not archived: a rerun finds it by its sidecar
        saved = info.value.result.saved
        assert len(saved) == 1 and saved[0].is_file()
        assert saved[0].with_name(f'{saved[0].name}.json').is_file()
        assert saved[0] == tmp_path / f'{_label(booru, "danbooru")}_{posts[1].id}.png'
        assert len(_images(tmp_path)) == 2


def test_an_image_set_aside_never_replaces_an_earlier_one(tmp_path):
    """.unfinished/ may hold an image of the same name set aside by an earlier run (and maybe
    annotated since): the new one gets a free name beside it."""
    posts = make_posts(3)
    with FakeBooru(posts) as booru:
        options = _options(booru, tmp_path, 'danbooru', ratings=EVERY_RATING)
        crawl(options)
        name = f'{_label(booru, "danbooru")}_{posts[0].id}.png'
        aside = tmp_path / '.unfinished'
        aside.mkdir()
        (aside / name).write_bytes(b'set aside by an earlier run')
        stem = name.removesuffix('.png')
        (aside / f'{stem}.1.png').write_bytes(b'and another one')
        (tmp_path / f'{name}.json').unlink()
        result = crawl(options)
    assert result.unfinished == 1 and result.saved == [tmp_path / name]
    assert (aside / name).read_bytes() == b'set aside by an earlier run'
    assert (aside / f'{stem}.1.png').read_bytes() == b'and another one'
    assert (aside / f'{stem}.2.png').read_bytes() == posts[0].png


@pytest.mark.timeout(60)  # a FIFO read would block forever
def test_hostile_sidecars_are_skipped(tmp_path):
    """What known_md5 reads: regular files up to a size cap only, an md5 of 32 hex digits and
    scalar source and post id; anything else is not one of the crawler's sidecars."""
    good_md5 = 'a' * 32
    sidecar = dict(format='animal_landmarks_mm.source', source='danbooru', base_url=None,
                   post_id=1, md5=good_md5)
    hostile = {
        'fifo': None, 'zeros': None, 'huge': None,
        'md5_list': {**sidecar, 'md5': ['a']},
        'md5_dict': {**sidecar, 'md5': {'a': 1}},
        'md5_not_hex': {**sidecar, 'md5': '../../etc/passwd'},
        'source_list': {**sidecar, 'source': ['danbooru'], 'md5': 'b' * 32},
        'post_id_dict': {**sidecar, 'post_id': {'id': 1}, 'md5': 'c' * 32},
        'base_url_unsplittable': {**sidecar, 'base_url': 'http://[::1', 'md5': 'e' * 32},
    }
    for stem, data in hostile.items():
        (tmp_path / f'{stem}.png').write_bytes(b'image')
        path = tmp_path / f'{stem}.png.json'
        if stem == 'fifo':
            os.mkfifo(path)
        elif stem == 'zeros':
            path.symlink_to('/dev/zero')
        elif stem == 'huge':  # a valid sidecar, padded past the cap
            path.write_text(json.dumps({**sidecar, 'md5': 'd' * 32}) + ' ' * 2_000_000)
        else:
            path.write_text(json.dumps(data))
    (tmp_path / 'good.png').write_bytes(b'image')
    (tmp_path / 'good.png.json').write_text(json.dumps(sidecar))
    assert known_md5(tmp_path) == {good_md5: ('danbooru', 1)}


def test_posts_without_a_file_are_never_followed_elsewhere(tmp_path):
    """gallery-dl's Danbooru option "external" (in the user's config) hands the source URL of a
    post without a file of its own to another extractor: never followed, the post is filtered
    out (no file of its own)."""
    (tmp_path / 'gallery-dl.json').write_text(json.dumps(
        {'extractor': {'Danbooru': {'external': True}, 'danbooru': {'external': True}}}))
    posts = make_posts(4)
    with FakeBooru(posts) as booru:
        booru.state.no_file = {posts[1].id}
        result = crawl(_options(booru, tmp_path / 'out', 'danbooru', limit=10,
                                ratings=EVERY_RATING))
    assert len(result.saved) == 3 and result.failed == []
    assert result.seen == 4 and result.filtered == 1
    assert not any(r.startswith('/external/') for r in booru.state.requests)


# --- what a server may send ---------------------------------------------------------------

@pytest.mark.parametrize('fault, retry_sleep', [('500_once', 0.05), ('500_once', 1.5),
                                               ('429_once', 0.05)])
def test_retry_sleep_spaces_the_tries_of_a_file(tmp_path, fault, retry_sleep):
    """A file answered with a 500 (or a 429) is tried again after --retry-sleep x try
    seconds, as a search is (gallery-dl's downloader would wait 1 s, whatever the flag says, and
    not retry a 429)."""
    posts = make_posts(2)
    with FakeBooru(posts) as booru:
        booru.state.file_faults = {posts[0].id: fault}
        result = crawl(_options(booru, tmp_path, 'danbooru', ratings=EVERY_RATING,
                                retry_sleep=retry_sleep))
        tries = [r.time for r in booru.state.log if r.path == f'/images/{posts[0].id}.png']
    assert len(result.saved) == 2 and result.failed == []
    assert len(tries) == 2
    gap = tries[1] - tries[0]
    assert gap >= retry_sleep and (retry_sleep > 0.5 or gap < 0.8), gap


@pytest.mark.parametrize('fault, detail', [
    ('ico_as_png', 'not a JPEG, PNG, WebP or BMP file (ico)'),
    ('psd_as_png', 'not a JPEG, PNG, WebP or BMP file (psd)'),
    # gallery-dl knows neither by its bytes: the name stays .png, and PIL's plugins for them
    # are not used (PIL runs Ghostscript for an EPS file)
    ('tiff_as_png', 'not a JPEG, PNG, WebP or BMP file (unknown format)'),
    ('eps_as_png', 'not a JPEG, PNG, WebP or BMP file (unknown format)'),
])
def test_a_file_gallery_dl_would_rename_to_a_non_image_extension_is_refused(
        tmp_path, monkeypatch, fault, detail):
    """gallery-dl names a file after its first bytes (an ICO under a .png URL becomes .ico):
    the dataset takes IMAGE_EXTENSIONS only, so such a file is refused like a video; one whose
    bytes gallery-dl does not know keeps its name, and is refused unless it is what the name
    says, never opened with another PIL plugin."""
    ran = _stub_ghostscript(tmp_path, monkeypatch)
    out = tmp_path / 'out'
    posts = make_posts(3)
    bad = posts[1]
    with FakeBooru(posts) as booru:
        booru.state.file_faults = {bad.id: fault}
        result = crawl(_options(booru, out, 'danbooru', ratings=EVERY_RATING))
        stem = f'{_label(booru, "danbooru")}_{bad.id}'
    assert len(result.saved) == 2
    assert result.failed == [f'{booru.url}/images/{bad.id}.png: {detail}']
    assert [p.name for p in out.glob(f'{stem}*')] == []
    assert stem not in _archived(out)
    assert hashlib.md5(other_format(bad, fault)).hexdigest() not in known_md5(out)
    assert not ran.exists()


@pytest.mark.parametrize('source', ['danbooru', 'safebooru'])
def test_a_gif_post_is_filtered_out_before_download(tmp_path, source):
    """The annotator and the dataset take no GIF (annotation.IMAGE_SUFFIXES): a GIF post is
    filtered out, like a video, never requested, and does not count toward the limit."""
    posts = make_posts(4)
    gif = posts[0]  # the newest: the first one the search gives
    with FakeBooru(posts) as booru:
        booru.state.file_urls = {gif.id: f'{booru.url}/images/{gif.id}.gif'}
        booru.state.post_fields = {gif.id: {'file_ext': 'gif'}} if source == 'danbooru' else {}
        result = crawl(_options(booru, tmp_path, source, ratings=EVERY_RATING, limit=3))
    assert result.failed == [] and result.filtered == 1
    assert _file_requests(booru) == [f'/images/{p.id}.png' for p in posts[1:]]
    assert sorted(path.name for path in result.saved) == sorted(
        f'{_label(booru, source)}_{p.id}.png' for p in posts[1:])
    assert list(tmp_path.glob(f'*_{gif.id}*')) == []


@pytest.mark.parametrize('scheme_url', ['text:not an image', 'ytdl:{root}/images/{id}.png'])
def test_a_file_url_that_is_not_http_is_filtered_out(tmp_path, capfd, scheme_url):
    """gallery-dl has downloaders for other schemes (text:, ytdl: ...), which no guard bounds:
    only http(s) file URLs are downloaded; another is filtered out, with a note."""
    posts = make_posts(3)
    with FakeBooru(posts) as booru:
        booru.state.file_urls = {posts[1].id: scheme_url.format(root=booru.url, id=posts[1].id)}
        result = crawl(_options(booru, tmp_path, 'danbooru', ratings=EVERY_RATING))
    assert len(result.saved) == 2 and result.failed == [] and result.filtered == 1
    assert _file_requests(booru) == [f'/images/{p.id}.png' for p in (posts[0], posts[2])]
    assert list(tmp_path.glob(f'*_{posts[1].id}*')) == []
    assert list((tmp_path / PARTS_DIR).iterdir()) == []
    err = capfd.readouterr().err
    assert f'post {posts[1].id}: its file URL is not http(s)' in err


def test_a_file_url_requests_cannot_fetch_is_refused_for_good(tmp_path):
    """A file URL no rerun can fetch (a host requests cannot parse) fails like a file refused
    for good: the second run to refuse it does not fail for it, and later runs skip it."""
    posts = make_posts(3)
    url = f'http://bad host/images/{posts[0].id}.png'
    with FakeBooru(posts) as booru:
        booru.state.file_urls = {posts[0].id: url}
        runs = [crawl(_options(booru, tmp_path, 'danbooru', limit=10, ratings=EVERY_RATING))
                for _ in range(3)]
    assert len(runs[0].to_retry) == 1 and runs[1].to_retry == []
    assert runs[0].failed == runs[1].refused
    assert runs[0].failed[0].startswith(f'{url}: a URL requests cannot fetch (')
    assert runs[2].failed == [] and runs[2].refused_before == 1
    assert _file_requests(booru) == [f'/images/{p.id}.png' for p in posts[1:]]


@pytest.mark.parametrize('source, fault, message', [
    ('danbooru', 'not_json_or_xml', "is not Danbooru's JSON (JSONDecodeError: Expecting value"),
    ('danbooru', 'no_posts_key', "is not Danbooru's JSON (KeyError: 'posts')"),
    ('danbooru', 'null', "is not Danbooru's JSON (TypeError: "),
    ('danbooru', 'cut_answer', "is not Danbooru's JSON (JSONDecodeError: "),
    # an HTML page may be well-formed XML: its root element tells
    ('safebooru', 'not_json_or_xml',
     "is not Gelbooru 0.2's XML (ValueError: its root element is <html>, not <posts>)"),
    ('safebooru', 'cut_answer', "is not Gelbooru 0.2's XML (ParseError: "),
    # an entity of 100 KB used 100 times in each post: expanded by the parser, gigabytes from
    # a small answer (a hunt's repro: 300 KB took 1.1 GB and wrote an 87 MB sidecar); an
    # attribute's default of 100 KB, copied into each post (a review's: 3.8 GB from 480 KB)
    ('safebooru', 'entities', "is not Gelbooru 0.2's XML (ValueError: it declares a DTD of its "
     "own (<!DOCTYPE ... [...]>), whose entities and defaults the parser would expand: "
     'refused unread)'),
    ('safebooru', 'attribute_default', "is not Gelbooru 0.2's XML (ValueError: it declares a "
     "DTD of its own (<!DOCTYPE ... [...]>), whose entities and defaults the parser would "
     'expand: refused unread)'),
])
def test_a_search_answer_that_is_not_the_sites_names_the_answer(tmp_path, source, fault,
                                                                 message):
    with FakeBooru(make_posts(3)) as booru:
        booru.state.search_fault = fault
        with pytest.raises(CrawlError) as info:
            crawl(_options(booru, tmp_path, source))
    text = str(info.value)
    assert text.startswith(f'{source}: the search answer from {booru.url}/'), text
    assert message in text and '\n' not in text


@pytest.mark.parametrize('source, fields', [
    ('danbooru', {'image_width': 'wide'}),
    ('danbooru', {'tag_string': 5}),
    ('danbooru', {'tag_string_meta': None}),  # left out of the answer
    ('danbooru', {'id': [1001]}),
    ('danbooru', {'file_url': 7}),
    # gallery-dl reads url[1] of a URL starting with '/': an IndexError ended the search
    ('danbooru', {'file_url': '/'}),
    # no host (gallery-dl makes '//' https://): requests refuses them, run after run
    ('danbooru', {'file_url': 'http://'}),
    ('danbooru', {'file_url': '//'}),
    # the file would be named after the id: no file system takes a name that long
    ('danbooru', {'id': 10 ** 299}),
    ('safebooru', {'id': '9' * 300}),
    ('danbooru', {'rating': ['g']}),
    # valid JSON ("\udcff"), but no UTF-8 sidecar can hold it
    ('danbooru', {'tag_string': 'solo \udcff'}),
    ('safebooru', {'width': 'wide'}),
    ('safebooru', {'tags': None}),
    ('safebooru', {'id': 'x'}),
    # tags no sidecar a tool reads back can hold (1 MiB): its md5 was then unknown to reruns,
    # the file saved twice
    ('danbooru', {'tag_string': 'solo ' * 20_000}),
    ('safebooru', {'tags': ' solo' * 20_000}),
])
def test_a_malformed_post_is_skipped_and_counted(tmp_path, source, fields):
    posts = make_posts(4)
    with FakeBooru(posts) as booru:
        booru.state.post_fields = {posts[1].id: fields}
        result = crawl(_options(booru, tmp_path, source, limit=10, ratings=EVERY_RATING))
    assert len(result.saved) == 3 and result.failed == [] and result.malformed == 1
    assert 'malformed posts skipped 1' in result.format()
    assert list((tmp_path / PARTS_DIR).iterdir()) == []


@pytest.mark.parametrize('source', ['danbooru', 'safebooru'])
def test_min_size_and_the_sidecars_size_are_the_files_own(tmp_path, source):
    """--min-size filtered by the size the site claims only: a post claiming 5000x5000 saved
    a 60x50 file, its sidecar saying 5000x5000, and a post claiming no size saved whatever
    came (a hunt's repro). The file's own size filters and is recorded now; a post whose
    claim is already too small is not downloaded."""
    posts = make_posts(3)
    liar, silent, honest = posts
    width, height = ('image_width', 'image_height') if source == 'danbooru' else \
        ('width', 'height')
    claims = {liar.id: {width: 5000, height: 5000}, silent.id: {width: None, height: None}}
    with FakeBooru(posts) as booru:
        booru.state.post_fields = claims
        result = crawl(_options(booru, tmp_path / 'small', source, limit=10,
                                ratings=EVERY_RATING, min_size=(100, 100)))
        assert _file_requests(booru) == [f'/images/{p.id}.png' for p in (liar, silent)]
        kept = crawl(_options(booru, tmp_path / 'all', source, limit=10, ratings=EVERY_RATING))
    assert result.saved == [] and result.filtered == 1
    assert [failure.split(': ', 1)[1] for failure in result.failed] == [
        f'smaller than 100x100 (its file is {p.width}x{p.height})' for p in (liar, silent)]
    assert [p.id for p in posts] == [1002, 1001, 1000] and len(kept.saved) == 3
    for post in posts:
        sidecar = json.loads(next((tmp_path / 'all').glob(f'*_{post.id}.png.json')).read_text())
        assert (sidecar['width'], sidecar['height']) == (post.width, post.height)
    assert list((tmp_path / 'small' / PARTS_DIR).iterdir()) == []


@pytest.mark.parametrize('large_file_url', [None, '{root}/images/{id}.webm'])
def test_a_danbooru_zip_post_is_filtered_out_before_gallery_dl_reads_it(tmp_path,
                                                                        large_file_url):
    """A zip file is an animation's frames (ugoira): gallery-dl takes its large_file_url (a
    video) instead, and a post without one ended the search."""
    posts = make_posts(4)
    animation = posts[1]
    with FakeBooru(posts) as booru:
        booru.state.post_fields = {animation.id: {
            'file_url': f'{booru.url}/images/{animation.id}.zip', 'file_ext': 'zip',
            'large_file_url': large_file_url and large_file_url.format(root=booru.url,
                                                                       id=animation.id)}}
        result = crawl(_options(booru, tmp_path, 'danbooru', limit=10, ratings=EVERY_RATING))
    assert len(result.saved) == 3 and result.failed == [] and result.malformed == 0
    assert result.seen == 4 and result.filtered == 1
    assert _file_requests(booru) == [f'/images/{p.id}.png' for p in posts if p != animation]


def test_a_page_whose_last_post_has_no_id_does_not_end_the_search(tmp_path):
    """gallery-dl asks Danbooru for the next page by the id of the page's last post: without
    one, that post is skipped, and the next page starts after the one before it."""
    posts = make_posts(201)  # Danbooru's pages have 200 posts
    with FakeBooru(posts) as booru:
        booru.state.post_fields = {posts[199].id: {'id': None}}
        # questionable: none of them, no download
        result = crawl(_options(booru, tmp_path, 'danbooru', ratings=('questionable',)))
        searches = _search_requests(booru)
    # (counted once: the second page, asked for after posts[198], holds it again)
    assert result.seen == 200 and result.filtered == 200 and result.malformed == 1
    assert f'page=b{posts[198].id}' in searches[1] and len(searches) == 2


@pytest.mark.parametrize('order', ['order:id', 'order:id_asc'])
def test_an_order_id_page_whose_first_post_has_no_id_does_not_end_the_search(tmp_path, order):
    """An ``order:id`` search pages up with ``page=a<id>``, whose answer Danbooru gives newest
    first and gallery-dl reverses: the next page is asked for by the id of the answer's first
    post. Without one, that post is skipped (only it: a page shortened below gallery-dl's
    threshold would end the search), and the next page starts after the post before it."""
    posts = make_posts(400)  # ids 1000..1399; Danbooru's pages have 200 posts
    newest = posts[0]  # the first post of the second page's answer (ids 1200..1399)
    with FakeBooru(posts) as booru:
        booru.state.post_fields = {newest.id: {'id': None}}
        # questionable: none of them, no download
        result = crawl(_options(booru, tmp_path, 'danbooru', tags=f'animal_ears {order}',
                                ratings=('questionable',)))
        searches = _search_requests(booru)
    assert len(searches) == 3, searches
    assert 'page=a1199' in searches[1] and f'page=a{newest.id - 1}' in searches[2]
    assert result.seen == 399 and result.filtered == 399 and result.malformed == 1
    assert result.stopped is None and result.failed == []


def test_the_progress_bar_moves_while_the_search_filters_everything(tmp_path, capfd):
    """Pages of posts all filtered out save nothing: the bar still shows the posts seen."""
    with FakeBooru(make_posts(3)) as booru:
        booru.state.search_fault = 'new_posts_forever'  # explicit posts: all filtered out
        options = _options(booru, tmp_path, 'safebooru', limit=5)
        options.progress = True
        crawl(options)
    err = capfd.readouterr().err
    shown = {int(n) for n in re.findall(r'seen=(\d+)', err)}
    assert {100, 200, 500} <= shown, sorted(shown)


def test_gallery_dls_log_lines_are_the_crawlers(tmp_path, capfd):
    """gallery-dl's warnings come as whole lines of the crawler (above the progress bar), its
    errors about what the crawler reports itself not at all; the loggers are restored after."""
    posts = make_posts(3)
    with FakeBooru(posts) as booru:
        booru.state.file_faults = {posts[1].id: '500_once'}
        options = _options(booru, tmp_path, 'danbooru', retries=0, ratings=EVERY_RATING)
        options.progress = True
        result = crawl(options)
        booru.state.search_fault = 'no_posts_key'
        with pytest.raises(CrawlError):
            crawl(options)
    assert len(result.failed) == 1
    err = capfd.readouterr().err
    lines = [line.rpartition('\r')[2] for line in err.split('\n')]
    assert (f"warning: gallery-dl: '500 Internal Server Error' for "
            f"'{booru.url}/images/{posts[1].id}.png' (1/1)") in lines, err
    assert 'Failed to download' not in err and 'codeberg' not in err and "'posts'" not in err
    for name in ('gallery-dl', 'download', 'downloader.http'):
        logger = logging.getLogger(name)
        assert logger.propagate and not logger.handlers and not logger.filters


def test_the_summary_escapes_what_a_server_said(tmp_path, crawl_images, capsys):
    """A 404's reason phrase is the server's text, in the summary's failures: its terminal
    escapes (a window title set, the screen cleared) are shown escaped."""
    posts = make_posts(2)
    with FakeBooru(posts) as booru:
        booru.state.file_faults = {posts[0].id: 'escape_404'}
        with pytest.raises(SystemExit) as info:
            crawl_images.main(['--source', 'danbooru', '--tags', 'animal_ears', '--output-dir',
                               str(tmp_path), '--base-url', booru.url, '--sleep', '0',
                               '--retries', '0', '--no-progress', '--rating', *EVERY_RATING])
    out, err = capsys.readouterr()
    assert info.value.code == 'error: 1 downloads failed (rerun to try them again)'  # a 404
    assert 'images saved 1' in out
    assert f'{posts[0].id}.png: 404 \\x1b]0;owned\\x07\\x1b[2J\\x1b[31mNot Found' in out, out
    assert not {'\x1b', '\x07'} & set(out + err)


@pytest.mark.timeout(90)
def test_the_command_prints_the_summary_before_an_error(tmp_path):
    """The search fails after some images were saved: the summary says what was done."""
    with FakeBooru(make_posts(8)) as booru:
        booru.state.search_fault = 'fail_second_page'
        proc = run_tool('crawl_images.py', '--source', 'safebooru', '--tags', 'cat_ears',
                        '--limit', '50', '--output-dir', tmp_path, '--base-url', booru.url,
                        '--sleep', '0', '--retries', '0', '--no-progress', check=False,
                        env={'XDG_CONFIG_HOME': str(tmp_path / 'config')})
    assert proc.returncode == 1
    assert proc.stdout.strip() == ('posts seen 4, images saved 4, already downloaded 0, '
                                   'duplicates 0, filtered out 0')
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: safebooru: '500 Internal Server Error' for ")
    assert len(_images(tmp_path)) == 4


@pytest.mark.parametrize('flag, value, message', [
    ('--tags', 'cat_ears \udcff', "--tags must be UTF-8 text, got 'cat_ears \\udcff'"),
    ('--user-agent', 'Mozilla\udce9', "--user-agent must be UTF-8 text, got 'Mozilla\\udce9'"),
    ('--api-key', 'secret\udce9', '--api-key must be UTF-8 text'),
])
def test_text_that_is_not_utf8_is_refused_before_anything(tmp_path, crawl_images, flag, value,
                                                          message):
    """A command line's undecodable bytes (a Latin-1 terminal's 'é') arrive as lone
    surrogates, which no URL or header can carry: refused in one line, naming the flag, before
    the output folder is made (an API key is not shown)."""
    out = tmp_path / 'out'
    args = {'--tags': 'cat_ears', '--user': 'alice', '--api-key': 'key', flag: value}
    with pytest.raises(SystemExit) as info:
        crawl_images.main(['--source', 'danbooru', *[v for item in args.items() for v in item],
                           '--output-dir', str(out), '--no-progress', *NOWHERE])
    assert str(info.value.code) == f'error: {message}'
    assert not out.exists()


@pytest.mark.parametrize('name, why', [
    ('data_$ALN_ELSEWHERE', '"$", which gallery-dl would read as an environment variable'),
    ('data\tset', "the control character '\\t', which gallery-dl would drop from it"),
])
def test_an_output_folder_gallery_dl_would_save_elsewhere_than_is_refused_first(
        tmp_path, monkeypatch, name, why):
    """gallery-dl expands environment variables in the folders it is given and drops control
    characters from its base directory: the images would go elsewhere than the crawler's own
    files. One line naming the folder and why, before anything is made or asked for."""
    monkeypatch.setenv('ALN_ELSEWHERE', 'elsewhere')
    out = tmp_path / name
    with FakeBooru(make_posts(2)) as booru:
        with pytest.raises(CrawlError) as info:
            crawl(_options(booru, out, 'danbooru', ratings=EVERY_RATING))
        requests = list(booru.state.requests)
    shown = str(out).replace('\t', '\\t')
    assert str(info.value) == f'{shown}: its path holds {why}: use another --output-dir'
    assert requests == [] and list(tmp_path.iterdir()) == []


def test_an_output_folder_that_is_a_loop_of_links_is_one_line(tmp_path):
    """Checking the folder's path for what gallery-dl would change resolved it, which raises
    on a loop of links: a traceback where the crawl said it in one line before."""
    (tmp_path / 'a').symlink_to(tmp_path / 'b')
    (tmp_path / 'b').symlink_to(tmp_path / 'a')
    proc = subprocess.run([sys.executable, str(REPO / 'tools' / 'crawl_images.py'), '--source',
                           'danbooru', '--tags', 'cat', '--output-dir', str(tmp_path / 'a'),
                           '--no-progress'], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith('error: '), proc.stderr[-500:]


@pytest.mark.parametrize('base_url', ['http://booru.example/sub', 'http://booru.example/?a=1',
                                      'http://booru.example/#top'])
def test_a_base_url_with_a_path_is_refused_before_anything(tmp_path, crawl_images, base_url):
    """gallery-dl finds another instance by its host: a path, query or fragment never works."""
    out = tmp_path / 'out'
    with pytest.raises(SystemExit) as info:
        crawl_images.main(['--source', 'danbooru', '--tags', 'cat', '--base-url', base_url,
                           '--output-dir', str(out), '--no-progress'])
    assert str(info.value.code) == (
        f'error: --base-url must be a site\'s root (scheme, host and port), without a path, '
        f'query or fragment, got {base_url!r}')
    assert not out.exists()


def test_a_base_url_in_capitals_is_the_same_instance(tmp_path):
    """gallery-dl finds another instance by its URL's scheme and host, case-sensitively
    (HTTP:// found no extractor, after the output folder was made): they are lowercased."""
    posts = make_posts(3)
    with FakeBooru(posts) as booru:
        loud = booru.url.replace('http://', 'HTTP://')
        result = crawl(_options(booru, tmp_path, 'danbooru', base_url=loud, ratings=EVERY_RATING))
        again = crawl(_options(booru, tmp_path, 'danbooru', ratings=EVERY_RATING))
        names = {f'{_label(booru, "danbooru")}_{p.id}.png' for p in posts}
    assert {p.name for p in result.saved} == names and again.already_downloaded == 3
    options = CrawlOptions(source='danbooru', tags='cat', limit=1, output_dir=tmp_path,
                           base_url='HTTPS://User:PassWord@Booru.Example:8443/')
    options.validate()
    assert options.base_url == 'https://User:PassWord@booru.example:8443/'


def test_the_help_names_every_credential_variable(crawl_images, capsys):
    with pytest.raises(SystemExit):
        crawl_images.parse_args(['--help'])
    help_text = ' '.join(capsys.readouterr().out.split())
    for names in CREDENTIAL_ENV.values():
        for name in names:
            assert name in help_text
    # the deadline of a file counts its retries; a search request's is armed for each try
    # (test_the_search_deadline_counts_each_try_not_gallery_dls_waits)
    assert ('seconds one file may take, its retries included, before it counts as failed; and '
            'each try of a search request') in help_text


@pytest.mark.parametrize('retry_sleep, waits', [
    (2, [2, 4, 6]), (86400, [3600, 3600, 3600]), (0.00001, [0.00001, 0.00002, 0.00003]),
])
def test_retry_waits_are_capped_at_an_hour_and_read_in_fixed_point(retry_sleep, waits):
    """gallery-dl's bare 'linear=X' has no cap (a day's --retry-sleep waited n days), and
    'linear=1e-05' crashed its parser (read as a range)."""
    from gallery_dl import util

    from animal_landmarks_mm.crawl import retry_waits
    wait = util.build_duration_func_ex(retry_waits(retry_sleep))
    assert [wait(n) for n in (1, 2, 3)] == pytest.approx(waits)
