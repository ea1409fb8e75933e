"""The crawler: real gallery-dl against a fake Danbooru / Gelbooru 0.2 server on 127.0.0.1."""
import json
import time

import pytest
from booru_server import FakeBooru, make_posts

from animal_landmarks_mm.crawl import CrawlError, CrawlOptions, crawl
from conftest import run_tool

SOURCES = ['safebooru', 'danbooru', 'gelbooru']


def _options(booru, out, source='safebooru', **kwargs):
    kwargs.setdefault('limit', 5)
    return CrawlOptions(source=source, tags=kwargs.pop('tags', 'animal_ears solo'),
                        output_dir=out, base_url=booru.url, sleep=0.0, retry_sleep=0.01,
                        retries=kwargs.pop('retries', 2), progress=False, **kwargs)


def _images(out):
    return sorted(p for p in out.iterdir() if p.suffix == '.png')


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
        file_requests = [r for r in booru.state.requests[files_before:]
                         if r.startswith('/images/')]
    assert again.already_downloaded == 4 and len(again.saved) == 4  # 4 new ones
    assert len(file_requests) == 4  # nothing fetched twice
    assert set(first) < set(_images(tmp_path)) and len(_images(tmp_path)) == 8


def test_same_file_across_sources_and_posts_is_stored_once(tmp_path):
    posts = make_posts(12, same_file_as={1011: 1009})  # post 1011 re-uploads 1009's file
    every_rating = ('general', 'sensitive', 'questionable')
    with FakeBooru(posts) as booru:
        crawl(_options(booru, tmp_path, 'safebooru', limit=50, ratings=every_rating))
        safebooru = _images(tmp_path)
        result = crawl(_options(booru, tmp_path, 'danbooru', limit=50, ratings=every_rating))
    assert len(safebooru) == 11  # 12 posts, one file twice
    assert len(result.saved) == 0 and result.duplicates == 12
    assert len(_images(tmp_path)) == 11


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
    assert time.monotonic() - start < 30
    assert '\n' not in str(info.value)


def test_truncated_file_leaves_nothing_under_its_name_and_resumes(tmp_path):
    posts = make_posts(6)
    with FakeBooru(posts) as booru:
        booru.state.truncate_files = {posts[0].id}
        result = crawl(_options(booru, tmp_path, 'danbooru', limit=10,
                                ratings=('general', 'sensitive')))
        assert len(result.failed) == 1 and f'/images/{posts[0].id}.png' in result.failed[0]
        assert not (tmp_path / f'danbooru_{posts[0].id}.png').exists()
        assert len(_images(tmp_path)) == 5
        booru.state.truncate_files = set()  # the server heals; a rerun completes it
        again = crawl(_options(booru, tmp_path, 'danbooru', limit=10,
                               ratings=('general', 'sensitive')))
    assert [p.name for p in again.saved] == [f'danbooru_{posts[0].id}.png']
    assert (tmp_path / f'danbooru_{posts[0].id}.png').read_bytes() == posts[0].png


def test_names_from_the_server_cannot_escape_the_output_dir(tmp_path):
    posts = make_posts(3)
    out = tmp_path / 'out'
    with FakeBooru(posts) as booru:
        booru.state.md5_override = {posts[0].id: '../../escaped'}
        crawl(_options(booru, out, 'danbooru', limit=10, ratings=('general', 'sensitive')))
    outside = [p for p in tmp_path.rglob('*') if out not in p.parents and p != out]
    assert outside == []
    assert len(_images(out)) == 3


@pytest.mark.parametrize('args, message', [
    (['--source', 'pixiv', '--tags', 'cat'], "error: unknown source 'pixiv'"),
    (['--source', 'safebooru', '--tags', '  '], 'error: --tags is empty'),
    (['--source', 'safebooru', '--tags', 'cat', '--limit', '0'],
     'error: --limit must be positive, got 0'),
    (['--source', 'safebooru', '--tags', 'cat', '--base-url', 'ftp://x'],
     "error: --base-url must be an http(s) URL, got 'ftp://x'"),
])
def test_cli_refuses_bad_input_in_one_line(tmp_path, args, message):
    proc = run_tool('crawl_images.py', *args, '--output-dir', tmp_path, check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [message] or \
        proc.stderr.strip().splitlines()[-1].startswith(message)


def test_cli_end_to_end(tmp_path):
    with FakeBooru(make_posts(10)) as booru:
        proc = run_tool('crawl_images.py', '--source', 'safebooru', '--tags', 'cat_ears',
                        '--limit', '2', '--output-dir', tmp_path, '--base-url', booru.url,
                        '--sleep', '0', '--no-progress')
    assert 'images saved 2' in proc.stdout
    assert len(_images(tmp_path)) == 2
