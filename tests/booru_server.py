"""A small fake image board on 127.0.0.1 for the crawler tests.

It speaks enough of the Danbooru JSON API (``/posts.json``, ``page=b<id>`` and ``page=a<id>``
cursors, ``order:id`` searches) and of the
Gelbooru 0.2 API that Safebooru runs (``/index.php?page=dapi&s=post&q=index``, XML, ``pid``
pages) for gallery-dl's extractors, and serves the posts' files (small generated PNGs) itself.

Credentials are checked the way each real site receives them: Danbooru takes ``login:api_key``
as HTTP basic auth (what gallery-dl sends) or as ``login`` / ``api_key`` query parameters and
answers 401 to wrong ones; Gelbooru's API takes ``user_id`` and ``api_key`` query parameters and
answers 401 without them (required since 2025).

Faults are switched on per test: a 429 before success, a 500 forever, a 403 (Cloudflare) for a
user agent, a search that pages forever (or brings one new post per page), answers too much,
drips its headers or answers what is not the site's JSON or XML
(:attr:`BooruState.search_fault`), posts with malformed fields
(:attr:`BooruState.post_fields`) or without a file of their own (:attr:`BooruState.no_file`),
and per file (:attr:`BooruState.file_faults`) a short body, an HTML page, other bytes than the
post's md5, an endless body, a huge Content-Length, a body or headers dripping one byte at a
time, a 500 or 429 before the file, a 404, 410 or 503, a 206 without Content-Range, a 404 whose
reason holds terminal escapes, a redirect with a huge body, a JPEG cut short (with or without
Content-Length), a PNG cut within its first bytes (none, or 5; with or without Content-Length),
an ICO, PSD, TIFF or EPS file under a .png URL. The posts' file URLs may name
another server (:attr:`BooruState.file_root`) or have another scheme or path
(:attr:`BooruState.file_urls`; the server finds the post by the first segment after
``/images/``), a test may act while a crawl waits for a file (:attr:`BooruState.before_file`),
and every request is logged with its time and Authorization header
(:attr:`BooruState.log`). The server stops when the test ends.
"""
from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import quoteattr

import cv2
import numpy as np
from PIL import Image

#: what :attr:`BooruState.file_faults` can ask for, per post id
FILE_FAULTS = {
    'short': 'promise the whole file (Content-Length), send half, hang up',
    'html': 'an HTML page, as text/html',
    'html_as_png': 'an HTML page that claims to be image/png',
    'wrong_bytes': 'a valid PNG, but not the post\'s (md5 mismatch)',
    'endless': 'a PNG header, then bytes forever, no Content-Length',
    'huge': 'a Content-Length of 10 GB',
    'drip': 'the file, one byte every drip_interval seconds',
    'drip_headers': 'a status line, then a header one byte every drip_interval seconds, forever',
    '206_no_range': 'a 206 Partial Content without Content-Range, though no range was asked',
    'escape_404': 'a 404 whose reason phrase holds terminal escape sequences (ESCAPE_REASON)',
    'big_redirect': 'a 302 to the file (its URL with a query), whose body is REDIRECT_BODY_BYTES '
                    'of spaces; the bytes sent of it are counted (BooruState.redirect_bytes)',
    'cut_jpeg': 'the first half of a JPEG, its Content-Length matching; the post claims no md5 '
                '(some sites give none), so only decoding can tell',
    'cut_jpeg_unsized': 'the first half of a JPEG without Content-Length, the connection then '
                        'closed (a transfer cut short looks so); the post claims no md5',
    'empty_unsized': 'the headers without Content-Length, then the connection closed: a '
                     'transfer cut before its first byte',
    'head_unsized': 'the first 5 bytes of the PNG (too few to tell its format) without '
                    'Content-Length, then the connection closed',
    'head': 'the first 5 bytes of the PNG as the whole file, its Content-Length matching',
    '404': 'a 404 Not Found',
    '410': 'a 410 Gone',
    '503': 'a 503 Service Unavailable, every time',
    '500_once': 'a 500 Internal Server Error the first time, the file the next',
    '429_once': 'a 429 Too Many Requests the first time, the file the next',
    'ico_as_png': 'an ICO file (the post\'s md5 is its own) as image/png, under its .png URL',
    'psd_as_png': 'a PSD file (the post\'s md5 is its own) as image/png, under its .png URL',
    'tiff_as_png': 'a TIFF file (the post\'s md5 is its own) as image/png, under its .png URL '
                   '(gallery-dl does not know a TIFF by its bytes: its name stays .png)',
    'eps_as_png': 'an EPS file (the post\'s md5 is its own) as image/png, under its .png URL '
                  '(PIL would hand it to Ghostscript)',
}
#: the file faults whose file is the post's own in another format (:func:`other_format`)
OTHER_FORMATS = ('ico_as_png', 'psd_as_png', 'tiff_as_png', 'eps_as_png')
#: an EPS file PIL identifies (and would render with Ghostscript)
EPS_FILE = b'%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 50 40\nshowpage\n'
#: what :attr:`BooruState.search_fault` can ask for
SEARCH_FAULTS = {
    'empty_pages': 'Gelbooru: claim a million posts, give none (gallery-dl asks again forever)',
    'same_page': 'every page is the first one again, the cursor ignored: 200 explicit posts',
    'new_posts_forever': 'every page brings new posts, forever, all of them explicit',
    'one_new_post_per_page': 'every page brings one new post, forever, explicit (Danbooru: '
                             'after a first page of 200, the first 199 again and one new at the '
                             'end, a full page; Gelbooru: one post, claiming a billion)',
    'huge_answer': 'a Content-Length of 10 GB',
    'endless_answer': 'a body without Content-Length that never ends',
    'not_json_or_xml': 'an HTML page, status 200',
    'cut_answer': 'the first half of the answer, its Content-Length matching',
    'no_posts_key': 'Danbooru: a JSON object without "posts"',
    'null': 'Danbooru: JSON null',
    'fail_second_page': 'Gelbooru: the first page, claiming a million posts; a 500 for the next',
    'drip_headers': 'a status line, then a header one byte every drip_interval seconds, forever',
    'entities': 'Gelbooru: a DTD declaring an entity of 100 KB that each post\'s tags use 100 '
                'times (each post 10 MB once expanded)',
    'attribute_default': 'Gelbooru: a DTD giving the posts an attribute whose default is 100 KB '
                         '(copied into each post)',
}
#: the size of a 'big_redirect' file's redirect body
REDIRECT_BODY_BYTES = 100_000_000
#: the reason phrase of an 'escape_404' file: a terminal's title set, its screen cleared
ESCAPE_REASON = '\x1b]0;owned\x07\x1b[2J\x1b[31mNot Found'
HTML_PAGE = (b'<!DOCTYPE html><html><head><title>Just a moment...</title></head>'
             b'<body>Checking your browser</body></html>')


@dataclass
class Post:
    id: int
    tags: list[str]
    rating: str  # Danbooru letters: g, s, q, e
    width: int
    height: int
    png: bytes = b''
    md5: str = ''


@dataclass
class Logged:
    """A request the server received."""

    time: float  # time.monotonic()
    path: str
    authorization: str | None  # its Authorization header
    headers: str = ''  # all its headers, as sent


@dataclass
class BooruState:
    """What the server holds, what it requires, and how it misbehaves."""

    posts: list[Post]
    requests: list[str] = field(default_factory=list)
    user_agents: list[str] = field(default_factory=list)
    fail_search_with_429: int = 0  # answer the next N searches with 429
    fail_search_forever: int | None = None  # status code for every search
    file_faults: dict[int, str] = field(default_factory=dict)  # post id -> FILE_FAULTS key
    drip_interval: float = 2.0  # seconds between the bytes of a 'drip' file
    drip_search: bool = False  # answer searches one byte every drip_interval seconds
    md5_override: dict[int, str] = field(default_factory=dict)  # post id -> claimed md5
    danbooru_login: tuple[str, str] | None = None  # (login, api key) /posts.json requires
    gelbooru_api_key: tuple[str, str] | None = None  # (user id, api key) the dapi requires
    forbidden_user_agent: str | None = None  # 403 (Cloudflare) to user agents containing it
    search_fault: str | None = None  # a SEARCH_FAULTS key
    file_root: str | None = None  # root of the posts' file URLs (another server); else this one
    file_urls: dict[int, str] = field(default_factory=dict)  # post id -> its file URL instead
    #: post id -> fields of its search answer to replace (None: left out of the answer)
    post_fields: dict[int, dict] = field(default_factory=dict)
    #: posts without a file of their own (Danbooru hides some): no file URL, their source a URL
    #: of this server (/external/<id>)
    no_file: set[int] = field(default_factory=set)
    file_tries: dict[int, int] = field(default_factory=dict)  # post id -> requests of its file
    #: called with a post's id before its file is served (in the server's thread): what the
    #: test does while a crawl waits for that file
    before_file: Callable[[int], None] | None = None
    redirect_bytes: int = 0  # of the redirect bodies of 'big_redirect' files, sent
    log: list[Logged] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)


def make_posts(count: int, seed: int = 0, same_file_as: dict[int, int] | None = None
               ) -> list[Post]:
    """``count`` posts, newest first by id; ``same_file_as`` maps a post id to another post
    whose file it shares (a cross-post)."""
    rng = np.random.default_rng(seed)
    posts = []
    for i in range(count):
        post_id = 1000 + i
        width, height = (int(v) for v in rng.integers(40, 90, size=2))
        rating = 'g' if i % 4 else 's'  # every 4th post 'sensitive'
        tags = ['animal_ears', 'solo', '1girl'] + (['cat_ears'] if i % 2 else ['dog_ears'])
        if i % 5 == 3:
            tags.append('monochrome')
        posts.append(Post(post_id, tags, rating, width, height, _png(rng, width, height)))
    by_id = {p.id: p for p in posts}
    for post_id, other in (same_file_as or {}).items():
        by_id[post_id].png = by_id[other].png
        by_id[post_id].width, by_id[post_id].height = by_id[other].width, by_id[other].height
    for post in posts:
        post.md5 = hashlib.md5(post.png).hexdigest()
    return sorted(posts, key=lambda p: -p.id)


def _png(rng: np.random.Generator, width: int, height: int) -> bytes:
    image = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    ok, png = cv2.imencode('.png', image)
    return png.tobytes()


def other_format(post: Post, fault: str) -> bytes:
    """The file of a post whose fault is one of :data:`OTHER_FORMATS`: its pixels as an ICO or
    a TIFF (PIL writes them), or as an uncompressed 8-bit RGB PSD (written here: PIL reads PSD
    only); an EPS file is :data:`EPS_FILE`."""
    if fault == 'eps_as_png':
        return EPS_FILE
    pixels = cv2.cvtColor(cv2.imdecode(np.frombuffer(post.png, np.uint8), cv2.IMREAD_COLOR),
                          cv2.COLOR_BGR2RGB)
    buffer = io.BytesIO()
    if fault == 'ico_as_png':
        Image.fromarray(pixels).save(buffer, 'ICO', sizes=[(32, 32)])
        return buffer.getvalue()
    if fault == 'tiff_as_png':
        Image.fromarray(pixels).save(buffer, 'TIFF')
        return buffer.getvalue()
    height, width = pixels.shape[:2]
    header = b'8BPS' + struct.pack('>H6xHIIHH', 1, 3, height, width, 8, 3)
    sections = struct.pack('>III', 0, 0, 0)  # no colour mode data, resources, layers
    return header + sections + struct.pack('>H', 0) + pixels.transpose(2, 0, 1).tobytes()


class _Handler(BaseHTTPRequestHandler):
    state: BooruState
    root: str

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, body: bytes, content_type: str, length: int | None = None,
              headers: dict | None = None):
        self.send_response(code)
        self.send_header('Content-Type', content_type)
        if length != -1:  # -1: no Content-Length, the body ends when the connection does
            self.send_header('Content-Length', str(len(body) if length is None else length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _search_fault(self) -> bool:
        state = self.state
        answer = {'not_json_or_xml': (HTML_PAGE, 'text/html'),
                  'no_posts_key': (b'{}', 'application/json'),
                  'null': (b'null', 'application/json')}.get(state.search_fault)
        if answer is not None:
            self._send(200, *answer)
            return True
        if state.search_fault == 'drip_headers':
            self._drip_headers('application/json')
            return True
        if state.search_fault in ('huge_answer', 'endless_answer'):
            self.close_connection = True
            if state.search_fault == 'huge_answer':
                self._send(200, b'[]', 'application/json', length=10 ** 10)
            else:
                self._send(200, b'[', 'application/json', length=-1)
                self._write_slowly(itertools.repeat(b' ' * 16384), interval=0)
            return True
        if state.fail_search_forever is not None:
            self._send(state.fail_search_forever, b'server error', 'text/plain')
            return True
        if state.fail_search_with_429 > 0:
            state.fail_search_with_429 -= 1
            self._send(429, b'slow down', 'text/plain', headers={'Retry-After': '0'})
            return True
        return False

    def _claimed_md5(self, post: Post) -> str:
        """The md5 the search answer gives for a post."""
        fault = self.state.file_faults.get(post.id)
        if fault in ('cut_jpeg', 'cut_jpeg_unsized'):
            return ''
        if fault in OTHER_FORMATS:
            return hashlib.md5(other_format(post, fault)).hexdigest()
        return self.state.md5_override.get(post.id, post.md5)

    def _matching(self, tags: str) -> list[Post]:
        wanted = [t for t in tags.split() if not t.startswith(('rating:', 'order:'))]
        return [p for p in self.state.posts if all(t in p.tags for t in wanted)]

    def _endless_page(self, first_id: int, limit: int) -> list[Post]:
        """``limit`` explicit posts (filtered out by default), ids down from ``first_id``, for
        the search faults that page forever; their files are never asked for. For
        'one_new_post_per_page', a page after the first (``first_id`` below 10**9) is the first
        page's first ``limit - 1`` posts again, then the post ``first_id``."""
        if self.state.search_fault == 'same_page':
            first_id = 10 ** 6
        if self.state.search_fault == 'one_new_post_per_page' and first_id < 10 ** 9:
            ids = [*range(10 ** 9, 10 ** 9 - limit + 1, -1), first_id]
        else:
            ids = range(first_id, first_id - limit, -1)
        return [Post(post_id, ['animal_ears', 'solo'], 'e', 50, 50) for post_id in ids]

    def _file_url(self, post: Post) -> str:
        return self.state.file_urls.get(post.id,
                                        f'{self.state.file_root or self.root}/images/{post.id}.png')

    def do_GET(self):  # noqa: N802 (http.server's name)
        state = self.state
        state.requests.append(self.path)
        state.log.append(Logged(time.monotonic(), self.path, self.headers.get('Authorization'),
                                str(self.headers)))
        user_agent = self.headers.get('User-Agent', '')
        state.user_agents.append(user_agent)
        if state.forbidden_user_agent and state.forbidden_user_agent in user_agent:
            # what Cloudflare in front of Danbooru answers some clients
            self.server_version, self.sys_version = 'cloudflare', ''  # the Server header
            return self._send(403, HTML_PAGE, 'text/html; charset=UTF-8',
                              headers={'cf-mitigated': 'challenge'})
        url = urllib.parse.urlparse(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path.startswith('/images/'):
            return self._file(int(url.path.split('/')[2].split('.')[0]), url.query)
        if url.path == '/posts.json':
            return self._danbooru(query)
        if url.path == '/index.php' and query.get('page') == 'dapi':
            return self._gelbooru(query)
        self._send(404, b'not found', 'text/plain')

    def _file(self, post_id: int, query: str = ''):
        post = next((p for p in self.state.posts if p.id == post_id), None)
        if post is None:
            return self._send(404, b'no such file', 'text/plain')
        if self.state.before_file is not None:
            self.state.before_file(post_id)
        fault = self.state.file_faults.get(post_id)
        tries = self.state.file_tries[post_id] = self.state.file_tries.get(post_id, 0) + 1
        if fault is None or fault in ('500_once', '429_once') and tries > 1 or \
                fault == 'big_redirect' and query:
            return self._send(200, post.png, 'image/png')
        self.close_connection = True
        if fault in ('500_once', '429_once', '404', '410', '503'):
            self._send(int(fault[:3]), b'not now', 'text/plain')
        elif fault in OTHER_FORMATS:
            self._send(200, other_format(post, fault), 'image/png')
        elif fault == 'short':  # promise all, send half, hang up
            self._send(200, post.png[:len(post.png) // 2], 'image/png', length=len(post.png))
        elif fault == 'html':
            self._send(200, HTML_PAGE, 'text/html; charset=UTF-8')
        elif fault == 'html_as_png':
            self._send(200, HTML_PAGE, 'image/png')
        elif fault == 'wrong_bytes':
            other = _png(np.random.default_rng(post_id), post.width, post.height)
            self._send(200, other, 'image/png')
        elif fault == 'huge':
            self._send(200, post.png, 'image/png', length=10 ** 10)
        elif fault == 'endless':
            self._send(200, post.png[:64], 'image/png', length=-1)
            self._write_slowly(itertools.repeat(b'\0' * 16384), interval=0)
        elif fault in ('cut_jpeg', 'cut_jpeg_unsized'):
            pixels = cv2.imdecode(np.frombuffer(post.png, np.uint8), cv2.IMREAD_COLOR)
            jpeg = cv2.imencode('.jpg', pixels)[1].tobytes()
            self._send(200, jpeg[:len(jpeg) // 2], 'image/jpeg',
                       length=-1 if fault == 'cut_jpeg_unsized' else None)
        elif fault in ('empty_unsized', 'head_unsized', 'head'):
            self._send(200, b'' if fault == 'empty_unsized' else post.png[:5], 'image/png',
                       length=None if fault == 'head' else -1)
        elif fault == 'drip':
            self._send(200, b'', 'image/png', length=len(post.png))
            self._write_slowly((bytes([b]) for b in post.png), interval=self.state.drip_interval)
        elif fault == 'drip_headers':
            self._drip_headers('image/png')
        elif fault == '206_no_range':
            self._send(206, post.png, 'image/png')
        elif fault == 'big_redirect':
            self.send_response(302)
            self.send_header('Location', f'/images/{post_id}.png?moved')
            self.send_header('Content-Length', str(REDIRECT_BODY_BYTES))
            self.end_headers()
            chunk = b' ' * 65536
            for _ in range(REDIRECT_BODY_BYTES // len(chunk)):
                try:
                    self.wfile.write(chunk)
                except OSError:  # the client dropped it: what the test wants
                    return
                self.state.redirect_bytes += len(chunk)
        elif fault == 'escape_404':
            self.send_response(404, ESCAPE_REASON)
            self.send_header('Content-Length', '0')
            self.end_headers()
        else:
            raise ValueError(f'unknown file fault {fault!r}; choose from {", ".join(FILE_FAULTS)}')

    def _drip_headers(self, content_type: str):
        """A status line and a header that never ends, one byte every ``drip_interval``
        seconds: no read waits long enough to time out, and no response ever exists."""
        self.close_connection = True
        self.wfile.write(f'HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nX-Slow: '.encode())
        self._write_slowly(itertools.repeat(b'a'), interval=self.state.drip_interval)

    def _write_slowly(self, chunks: Iterator[bytes], interval: float):
        """Write the chunks, ``interval`` seconds apart, until the client or the test ends."""
        try:
            for chunk in chunks:
                if self.state.stopping.is_set():
                    return
                self.wfile.write(chunk)
                if interval:
                    self.state.stopping.wait(interval)
        except OSError:  # the client gave up: what the test wants
            pass

    def _danbooru_login_ok(self, query: dict) -> bool:
        """Danbooru's ways to log in: basic auth ``login:api_key``, or the two parameters."""
        expected = self.state.danbooru_login
        if expected is None:
            return True
        scheme, _, encoded = self.headers.get('Authorization', '').partition(' ')
        if scheme == 'Basic':
            try:
                login, _, api_key = base64.b64decode(encoded).decode().partition(':')
            except ValueError:
                return False
            return (login, api_key) == expected
        return (query.get('login'), query.get('api_key')) == expected

    def _danbooru(self, query: dict):
        if not self._danbooru_login_ok(query):
            body = {'success': False, 'error': 'SessionLoader::AuthenticationFailure',
                    'message': 'Invalid API key'}
            return self._send(401, json.dumps(body).encode(), 'application/json')
        if self._search_fault():
            return
        tags = query.get('tags', '')
        posts = self._matching(tags)
        limit = int(query.get('limit', 20))
        page = query.get('page') or ''
        if self.state.search_fault in ('same_page', 'new_posts_forever',
                                       'one_new_post_per_page'):
            posts = self._endless_page(int(page[1:]) - 1 if page.startswith('b') else 10 ** 9,
                                       limit)
        elif page.startswith('b'):
            posts = [p for p in posts if p.id < int(page[1:])]
        elif page.startswith('a'):
            # Danbooru's answer: the `limit` posts right after the id, newest first
            after = sorted((p for p in posts if p.id > int(page[1:])), key=lambda p: p.id)
            posts = after[:limit][::-1]
        else:
            if {'order:id', 'order:id_asc'} & set(tags.split()):  # oldest first
                posts = sorted(posts, key=lambda p: p.id)
            if page.isdigit():
                posts = posts[(int(page) - 1) * limit:]
        body = [self._fields(p, dict(
            id=p.id, md5=self._claimed_md5(p), rating=p.rating,
            file_ext='png', file_url=self._file_url(p),
            large_file_url=self._file_url(p), image_width=p.width,
            image_height=p.height, tag_string=' '.join(p.tags), tag_string_artist='',
            tag_string_character='', tag_string_copyright='', tag_string_general=' '.join(p.tags),
            tag_string_meta='', created_at='2026-01-02T03:04:05.000+00:00', source=''))
            for p in posts[:limit]]
        self._search_answer(json.dumps(body).encode(), 'application/json')

    def _fields(self, post: Post, fields: dict) -> dict:
        """A post's fields in a search answer, with :attr:`BooruState.no_file` and
        :attr:`BooruState.post_fields` applied."""
        if post.id in self.state.no_file:
            fields.pop('file_url')
            fields.pop('large_file_url', None)
            fields['source'] = f'{self.root}/external/{post.id}'
        fields.update(self.state.post_fields.get(post.id, {}))
        return {key: value for key, value in fields.items() if value is not None}

    def _gelbooru(self, query: dict):
        expected = self.state.gelbooru_api_key
        if expected is not None and (query.get('user_id'), query.get('api_key')) != expected:
            return self._send(401, b'Unauthorized', 'text/html')
        if self._search_fault():
            return
        posts = self._matching(query.get('tags', ''))
        limit, pid = int(query.get('limit', 100)), int(query.get('pid', 0))
        page = posts[pid * limit:(pid + 1) * limit]
        count = len(posts)
        if self.state.search_fault == 'empty_pages':
            page, count = [], 10 ** 6
        elif self.state.search_fault in ('same_page', 'new_posts_forever'):
            page, count = self._endless_page(10 ** 9 - pid * limit, limit), 10 ** 9
        elif self.state.search_fault == 'one_new_post_per_page':
            page, count = self._endless_page(10 ** 9 - pid, 1), 10 ** 9
        elif self.state.search_fault == 'fail_second_page':
            if pid:
                return self._send(500, b'server error', 'text/plain')
            count = 10 ** 6
        gelbooru_rating = {'g': 's', 's': 'q', 'q': 'q', 'e': 'e'}
        posts = [self._fields(p, dict(
            id=p.id, md5=self._claimed_md5(p), rating=gelbooru_rating[p.rating], width=p.width,
            height=p.height, tags=' ' + ' '.join(p.tags) + ' ', file_url=self._file_url(p),
            created_at='Fri Jan 02 03:04:05 +0000 2026')) for p in page]
        items = ''.join('<post ' + ' '.join(f'{key}={quoteattr(str(value))}'
                                            for key, value in post.items()) + '/>'
                        for post in posts)
        dtd = ''
        if self.state.search_fault == 'entities':
            dtd = f'<!DOCTYPE posts [<!ENTITY t "{" tag" * 25_000}">]>'
            items = items.replace('tags=" ', 'tags=" ' + '&t;' * 100 + ' ')
        elif self.state.search_fault == 'attribute_default':
            dtd = f'<!DOCTYPE posts [<!ATTLIST post source CDATA "{"x" * 100_000}">]>'
        body = f'<?xml version="1.0" encoding="UTF-8"?>{dtd}<posts count="{count}" ' \
               f'offset="{pid * limit}">{items}</posts>'
        self._search_answer(body.encode(), 'text/xml')

    def _search_answer(self, body: bytes, content_type: str):
        if self.state.search_fault == 'cut_answer':
            body = body[:len(body) // 2]
        if not self.state.drip_search:
            return self._send(200, body, content_type)
        self.close_connection = True
        self._send(200, b'', content_type, length=len(body))
        self._write_slowly((bytes([b]) for b in body), interval=self.state.drip_interval)


class FakeBooru:
    """Start with ``with FakeBooru(posts) as booru:``; ``booru.url`` is its root."""

    def __init__(self, posts: list[Post]):
        self.state = BooruState(posts)

    def __enter__(self) -> FakeBooru:
        handler = type('Handler', (_Handler,), {'state': self.state})
        self.server = ThreadingHTTPServer(('127.0.0.1', 0), handler)
        self.server.daemon_threads = True
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}'
        handler.root = self.url
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.state.stopping.set()  # ends dripping and endless answers
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
