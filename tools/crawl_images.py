"""Download character images and their provenance from Safebooru, Danbooru or Gelbooru.

Example:
    python tools/crawl_images.py --source safebooru --tags "animal_ears solo 1girl" \
        --limit 100 --output-dir data/raw
"""
import argparse
import math
import sys
from fractions import Fraction
from pathlib import Path

from animal_landmarks_mm.errors import exit_on_error

try:
    from animal_landmarks_mm.crawl import (
        CREDENTIAL_ENV,
        MB,
        RATINGS,
        REFUSED_POSTS_NAME,
        SOURCES,
        CrawlError,
        CrawlOptions,
        CrawlResult,
        crawl,
    )
except ModuleNotFoundError as missing:  # gallery-dl is in the "tools" extra
    if missing.name != 'gallery_dl':
        raise
    sys.exit('error: gallery-dl is not installed: pip install -e ".[tools]"')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--source', required=True, help=f'one of {", ".join(SOURCES)}')
    parser.add_argument('--tags', required=True, help='the tag search, e.g. "cat_ears solo"')
    parser.add_argument('--limit', type=int, default=100, help='how many new images to save')
    parser.add_argument('--output-dir', required=True, help='images and their .json sidecars')
    parser.add_argument('--base-url', help='root of a mirror or self-hosted instance of the '
                        'same software, e.g. https://booru.example:8443 (no path)')
    parser.add_argument('--rating', nargs='+', default=['general'], metavar='RATING',
                        help=f'ratings to keep, of {", ".join(RATINGS)} (default: general)')
    parser.add_argument('--min-size', nargs=2, type=int, metavar=('W', 'H'),
                        help='skip images smaller than W x H pixels')
    parser.add_argument('--exclude-tags', default='',
                        help='skip posts with any of these tags, e.g. "monochrome comic" '
                        '(booru tags are lowercase; compared ignoring case)')
    user_env, key_env = (' / '.join(names) for names in zip(*CREDENTIAL_ENV.values()))
    parser.add_argument('--user', help='Danbooru login, or Gelbooru or Safebooru user id (else '
                        f'env {user_env}, else your gallery-dl config; for --base-url the flag '
                        'only)')
    parser.add_argument('--api-key', help=f'API key (else env {key_env}, else your gallery-dl '
                        'config; for --base-url the flag only)')
    parser.add_argument('--user-agent', help='HTTP User-Agent to send instead of gallery-dl\'s, '
                        'e.g. a browser\'s when a site answers 403 Forbidden')
    parser.add_argument('--sleep', type=float, default=1.0,
                        help='seconds before each search request and each file download '
                        '(default 1)')
    parser.add_argument('--retries', type=int, default=4,
                        help='HTTP retries of a search request or file (with back-off) before '
                        'giving up (default 4)')
    parser.add_argument('--retry-sleep', type=float, default=2.0,
                        help='back-off in seconds: the n-th retry of a search request or file '
                        'waits n times this, at most an hour (default 2)')
    parser.add_argument('--timeout', type=float, default=15.0,
                        help='seconds a request may wait for data before it is retried '
                        '(default 15)')
    parser.add_argument('--file-deadline', type=float, default=300.0,
                        help='seconds one file may take, its retries included, before it '
                        'counts as failed; and each try of a search request, before the crawl '
                        'ends (default 300)')
    parser.add_argument('--max-file-size', type=float, default=50.0, metavar='MB',
                        help='larger files are not downloaded and count as failed (default 50)')
    parser.add_argument('--retry-failed', action='store_true',
                        help='try again the posts that two earlier runs refused for good (their '
                        'file not an image the dataset takes, broken or not the post\'s md5 as '
                        'the server has it, over --max-file-size, or HTTP 404 or 410; recorded '
                        f'in OUTPUT_DIR/{REFUSED_POSTS_NAME}), which reruns skip otherwise; a '
                        'post refused by one run only is tried again by any rerun')
    parser.add_argument('--no-progress', action='store_true')
    return parser.parse_args(argv)


def megabytes_to_bytes(megabytes: float) -> int:
    """--max-file-size in bytes, checked as typed (the bytes of a huge finite number of MB
    overflow a float, and a tiny one rounds to no byte at all).

    Raises:
        CrawlError: not a finite number (argparse's float() takes "inf" and "nan"), not
            positive, or less than one byte.
    """
    if not math.isfinite(megabytes):
        raise CrawlError(f'--max-file-size must be a finite number of MB, got {megabytes:g}')
    if not megabytes > 0:
        raise CrawlError(f'--max-file-size must be positive, got {megabytes:g} MB')
    size = round(Fraction(megabytes) * MB)  # exact: 1e303 MB is more bytes than a float holds
    if size == 0:
        raise CrawlError(f'--max-file-size must be at least one byte ({1 / MB:g} MB), got '
                         f'{megabytes:g} MB')
    return size


def failure_message(result: CrawlResult) -> str:
    """The error line of a crawl with downloads a rerun tries again (CrawlResult.to_retry),
    and how many more were refused for good again, which reruns skip (not failures of the run).
    """
    text = f'error: {len(result.to_retry)} downloads failed (rerun to try them again)'
    if result.refused:
        text += (f'; {len(result.refused)} more refused for good, skipped from now on '
                 f'(--retry-failed tries them again)')
    return text


def main(argv=None):
    args = parse_args(argv)
    with exit_on_error(args.output_dir):
        options = CrawlOptions(
            source=args.source, tags=args.tags, limit=args.limit,
            output_dir=Path(args.output_dir), base_url=args.base_url,
            ratings=tuple(args.rating), min_size=tuple(args.min_size) if args.min_size else None,
            exclude_tags=tuple(args.exclude_tags.split()), user=args.user,
            api_key=args.api_key, user_agent=args.user_agent, sleep=args.sleep,
            retries=args.retries, retry_sleep=args.retry_sleep, timeout=args.timeout,
            file_deadline=args.file_deadline,
            max_file_size=megabytes_to_bytes(args.max_file_size),
            retry_failed=args.retry_failed, progress=not args.no_progress)
        try:
            result = crawl(options)
        except CrawlError as error:
            partial = error.result
            if partial is not None and (partial.seen or partial.unfinished):
                print(partial.format())  # what was done before the error
            raise
    print(result.format())
    if result.to_retry:  # (posts refused for good again fail no run: reruns skip them)
        sys.exit(failure_message(result))


if __name__ == '__main__':
    main()
