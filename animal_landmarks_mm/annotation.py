"""The per-image annotation file: its schema, validation, and atomic writing.

One JSON file per image, written by the annotator (and by the synthetic generator and inference).
Version 1 of the schema::

    {
      "format": "animal_landmarks_mm.annotation",
      "version": 1,
      "image": "cat_001.png",                      # file name, relative to the image folder
      "image_size": {"width": 640, "height": 480},
      "status": "annotated",                       # "predicted": a model's points, not yet
                                                    # reviewed (left out of training unless
                                                    # asked); "skipped": no usable face
      "status_reason": "",                         # why it was skipped, free text
      "faces": [
        {
          "landmarks": [[x, y], ... 28 points],     # image pixels, pixel centres at integers;
                                                    # null for a point marked absent
          "visibility": [2, 1, 0, ...],             # 2 visible, 1 occluded (placed by estimate),
                                                    # 0 absent; optional, default all 2
          "bbox": [x0, y0, x1, y1] or null,         # optional face box, corners in pixels
          "scores": [0.93, ...]                     # optional: a model's score per point
        }
      ],
      "meta": {"annotator": "...", "created": "ISO time", "modified": "ISO time",
               "image_sha256": "hex",               # the picture's bytes the points were
                                                    # placed on (IMAGE_SHA256_KEY)
               "source": {...}}                     # an object: free-form provenance
    }

Files and folders whose name starts with a dot are the tools' own (drafts, temporary files,
archives): no tool takes them for images or annotation files (:func:`is_hidden`).

The plain format of the original training tools is read too (a single face, all points visible)::

    {"image": "cat_001.png", "landmarks": [[x, y], ... 28], "image_size": {"width": W, "height": H}}
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import math
import os
import posixpath
import re
import stat
import struct
import tempfile
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import AnimalLandmarksError, printable, shown_value, some_names
from .schema import ABSENT, NUM_KEYPOINTS, VISIBILITY_FLAGS, VISIBLE

if TYPE_CHECKING:  # OpenCV and numpy are imported where images are read: the annotation
    import numpy as np  # format itself needs neither

FORMAT_NAME = 'animal_landmarks_mm.annotation'
#: The ``format`` of the crawler's metadata sidecars (``<image file>.json`` beside each image,
#: :mod:`.crawl`); defined here, where the annotator and the converter (which must not need
#: gallery-dl) read it too.
SIDECAR_FORMAT = 'animal_landmarks_mm.source'
FORMAT_VERSION = 1

#: the image files the tools pick up in a folder
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')

STATUS_ANNOTATED = 'annotated'
#: a model's points that nobody has reviewed yet (tools/infer.py, the annotator's Predict)
STATUS_PREDICTED = 'predicted'
STATUS_SKIPPED = 'skipped'
STATUSES = (STATUS_ANNOTATED, STATUS_PREDICTED, STATUS_SKIPPED)
#: ``meta.annotator`` of a model's prediction as the model wrote it (``tools/infer.py``); the
#: annotator writes its user's name there on every save, so a prediction a person corrected or
#: reviewed in the annotator no longer says so (:func:`is_models_prediction`).
MODEL_ANNOTATOR = 'model'


class AnnotationError(AnimalLandmarksError, ValueError):
    """An annotation or image file that cannot be used; the message is one line naming it."""


class NotRegularFileError(AnnotationError):
    """A FIFO, device, socket or folder where a file is read: never read (reading a FIFO waits
    for a writer for good), left alone."""


#: ``meta`` key: the SHA-256 (hex) of the picture's bytes the points were placed on, written by
#: the annotator's saves and by tools/infer.py. ``image_size`` tells a picture replaced by one
#: of another size; this, one of the same size (a new batch of ``IMG_0001.jpg``... copied over
#: the old). Files without it (older ones, other tools') are not compared.
IMAGE_SHA256_KEY = 'image_sha256'


def recorded_image_sha256(annotation: ImageAnnotation) -> str | None:
    """The picture digest a file records (:data:`IMAGE_SHA256_KEY`), or None where it records
    none or something else (``meta`` is free-form: a hand edit)."""
    digest = annotation.meta.get(IMAGE_SHA256_KEY)
    return digest if is_sha256_hex(digest) else None


#: The key :func:`parse_annotation` adds to ``meta`` of a file in the original tools' plain
#: format; a file written back is version 1, so writers drop it.
LEGACY_FORMAT_KEY = 'legacy_format'


def is_hidden(name: str) -> bool:
    """Whether a file or folder name is one of the tools' own (drafts, temporary files)."""
    return name.startswith('.')


def is_annotation_name(name: str) -> bool:
    """Whether a file name is an annotation file's: ``*.json`` in any case (``x.JSON``, as
    another tool or a case-blind file system may have it), not hidden (:func:`is_hidden`). One
    rule for the annotator, which counts such a file as done, and the converter and the label
    check, which read it (the converter ignored it)."""
    return name.lower().endswith('.json') and not is_hidden(name)


def is_utf8_name(name: str) -> bool:
    """Whether a name the file system gave (or any text: an argument, a server's JSON) is valid
    UTF-8: ``os`` hands other bytes over as lone surrogates, and JSON may escape one
    (``"\\udcff"``), which no JSON file, no listing and no page can hold."""
    try:
        name.encode('utf-8')
    except UnicodeEncodeError:
        return False
    return True


#: What no annotation file's ``"image"`` may hold: the split files and listings are a name a
#: line.
NAME_BREAKS = '\0\n\r'


def unholdable_name(name: str) -> str | None:
    """Why no annotation file can name an image of this name, or None: a name that is not
    valid UTF-8 (:func:`is_utf8_name`), or one holding a line break (:data:`NAME_BREAKS`)."""
    if not is_utf8_name(name):
        return 'the name is not valid UTF-8'
    if any(c in name for c in NAME_BREAKS):
        return 'the name holds a line break'
    return None


def misnamed_images_warning(folder: str | os.PathLike, names: list[str], to: str) -> str:
    """The one line said of the images :func:`scan_images` leaves out for their names (escaped),
    those who would ``to`` them told to rename them."""
    return (f'{len(names)} images of {folder} are left out: their names are not valid UTF-8 or '
            f'hold a line break ({some_names(names)}); rename them to {to} them')


def image_name_problem(name: str) -> str | None:
    """Why a file name is not one of an image the tools list, or None: :func:`scan_images`'s
    rules one by one, to say which (it applies them at once, naming apart the images whose
    name no annotation file can hold).
    """
    unholdable = unholdable_name(name)
    if unholdable is not None:
        return f'{unholdable}, which no annotation file can hold; rename the image'
    if is_hidden(name):
        return ('a hidden name (starting with "."), which the tools keep for their own files; '
                'rename the image')
    if not name.lower().endswith(IMAGE_SUFFIXES):
        return f'not an image of the kinds the tools read ({", ".join(IMAGE_SUFFIXES)})'
    return None


def scan_images(folder: str | os.PathLike) -> tuple[list[Path], list[str]]:
    """The images of a folder, and the names of images left out for names no annotation file
    can hold.

    Args:
        folder: the folder (not its subfolders).

    Returns:
        The image files (by suffix; no pixel is read; hidden names excluded), by name; and the
        names of image files no annotation file can name (:func:`unholdable_name`: not valid
        UTF-8, or holding a line break; to be renamed: an image named with a line break was
        listed, and 28 points on it could never be saved as done), by name, as ``os`` gives
        them (escape them before showing them).
    """
    images, unholdable = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if is_hidden(entry.name) or not entry.name.lower().endswith(IMAGE_SUFFIXES) or \
                    not _is_file(entry):
                continue
            if unholdable_name(entry.name) is None:
                images.append(Path(entry.path))
            else:
                unholdable.append(entry.name)
    return sorted(images), sorted(unholdable)


def _is_file(entry: os.DirEntry) -> bool:
    """Whether a folder's entry is a file or a link to one. A link that leads nowhere is none
    (``DirEntry.is_file`` says so), nor is one that cannot be followed: a loop of links or one
    through a folder that may not be read (``is_file`` raised, and one such name ended the
    listing of a whole folder: the annotator and the predictions refused it)."""
    try:
        return entry.is_file()
    except OSError:
        return False


def open_regular_file(path: str | os.PathLike) -> io.BufferedReader:
    """Open a file for reading in binary, only if it is a regular file (a link to one is).

    Raises:
        NotRegularFileError: a FIFO, device, socket or folder: opened without waiting and
            closed at once, never read.
        OSError: the file cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0))  # a FIFO: no waiting
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(f'{os.fsdecode(path)}: not a regular file (a FIFO, a '
                                      'device or a folder): left alone')
        return os.fdopen(fd, 'rb')
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | os.PathLike, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file (see :func:`open_regular_file`, whose errors it raises),
    of at most ``max_bytes`` if given (no more is read).

    Raises:
        AnnotationError: a file larger than ``max_bytes``; one line naming it.
    """
    with open_regular_file(path) as f:
        if max_bytes is None:
            return f.read()
        # its size first: a sparse file of gigabytes would else be read (and held) up to the
        # limit before it is refused; no more than the limit either, should it be growing
        size = os.fstat(f.fileno()).st_size
        fits = size <= max_bytes
        data = b''
        if fits:
            # the size it has, and one byte more to see it grow: read(max_bytes + 1) allocates
            # all of it at once (512 MiB for each ONNX graph of a few megabytes)
            data = f.read(size + 1)
            if len(data) > size:  # growing: on, up to one byte past the limit
                data += f.read(max_bytes + 1 - len(data))
    if not fits or len(data) > max_bytes:
        raise AnnotationError(f'{os.fsdecode(path)}: more than {max_bytes} bytes, too large to '
                              'read')
    return data


class RepeatedKeyError(ValueError):
    """One JSON object names a key twice; the message names the key."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """A JSON object's dict, refusing a repeated key: ``json.loads`` keeps the last value and
    drops the others unseen (``{"faces": [...], "faces": []}``, a pasted block of boxes), so
    a file edited by hand would lose what its writer meant without a word."""
    data = dict(pairs)
    if len(data) < len(pairs):
        seen = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        shown = printable(repeated, one_line=True, limit=80)
        raise RepeatedKeyError(f'the key "{shown}" twice in one object (which one is meant?)')
    return data


def loads_user_json(text: str | bytes) -> Any:
    """JSON written or edited by hand (annotation files, boxes files), decoded as
    ``json.loads`` does but refusing an object with a repeated key.

    Raises:
        RepeatedKeyError: a key twice in one object.
        json.JSONDecodeError, UnicodeDecodeError, RecursionError: as ``json.loads``.
    """
    return json.loads(text, object_pairs_hook=_unique_keys)


#: The largest crawler sidecar read (bytes): one is a few hundred; a larger file named like one
#: is not the crawler's.
SIDECAR_MAX_BYTES = 1 << 20


def read_sidecar(path: str | os.PathLike) -> dict | None:
    """The crawler's metadata sidecar of an image (``IMAGE.json``, see ``crawl.py``): a regular
    file of at most :data:`SIDECAR_MAX_BYTES`, UTF-8 JSON, an object marked ``"format":``
    :data:`SIDECAR_FORMAT`; None for anything else or what cannot be read (a FIFO, never
    opened for reading; a device, never read to its end; broken or deeply nested JSON)."""
    try:
        data = json.loads(read_regular_file(path, SIDECAR_MAX_BYTES))
    except (OSError, ValueError, RecursionError):  # ValueError: not UTF-8, not JSON, not
        return None  # regular, too large
    # kept in the annotation file's meta, written back with it: no deeper than meta may be
    # (the crawler's own nest a few levels)
    return data if isinstance(data, dict) and data.get('format') == SIDECAR_FORMAT and \
        not nested_deeper(data, MAX_JSON_DEPTH - 1) else None


_EXIF_ORIENTATION = 0x0112
#: EXIF orientations that turn the stored pixels by 90 degrees (transpose, rotate, transverse)
_EXIF_QUARTER_TURNS = (5, 6, 7, 8)
#: The first four bytes of a TIFF block (little-, big-endian): libpng keeps a PNG's ``eXIf``
#: chunk only if it starts so (PNG 3), so OpenCV and Chromium ignore one that starts with
#: JPEG's ``Exif\0\0`` (which PIL takes)
_TIFF_HEADERS = (b'II*\x00', b'MM\x00*')
#: The largest ``eXIf`` chunk data OpenCV's PNG reader keeps: 8,000,000 bytes with the chunk's
#: length, type and CRC ("user chunk data is too large" past it; libpng's
#: ``PNG_USER_CHUNK_MALLOC_MAX`` is the same 8 MB); a larger one is dropped (and never read here)
_PNG_CHUNK_MAX = 8_000_000 - 12
#: The most chunks of a PNG walked for its ``eXIf`` (about a microsecond each): OpenCV writes
#: its pixels in chunks of 8 KB (1,042 for an 8 MB 4000x3000 picture; PIL 552 for 34 MB), so a
#: picture within PIL's pixel limit has a few tens of thousands at most; 4 million empty ones
#: after the pixels (48 MB) held every open of the picture for 4.8 s.
PNG_MAX_CHUNKS = 100_000
#: OpenCV's ``warpAffine``, which crops each face for training (mmpose's ``TopdownAffine``) and
#: inference, refuses a picture with a side this long or longer (``SHRT_MAX``): a webtoon
#: strip of 800x40000 passed every check and failed the crop
WARP_MAX_SIDE = 32767


class _TooManyChunks(Exception):
    """More than :data:`PNG_MAX_CHUNKS` chunks before the end of a PNG."""


class Orientation(NamedTuple):
    """An image's EXIF orientation as training decodes it, and whether a browser shows it so.

    Attributes:
        value: the orientation OpenCV (hence mmcv and mmpose) applies, 1 to 8; 1 (upright)
            also for none, a broken block, or one OpenCV does not read.
        shown_alike: whether Chromium, shown the file itself, turns the picture the same way
            (it ignores a WebP's orientation, and reads a PNG's ``eXIf`` only before the
            pixels); when not, the annotator serves the picture already turned.
    """
    value: int
    shown_alike: bool


UPRIGHT = Orientation(1, True)


def _read_at(file, offset: int, size: int) -> bytes:
    """``size`` bytes (fewer at the end) at ``offset`` of an open file, its position left as it
    was (PIL reads on from there)."""
    try:
        return os.pread(file.fileno(), size, offset)
    except (AttributeError, OSError, io.UnsupportedOperation):  # no file descriptor: in memory
        position = file.tell()
        try:
            file.seek(offset)
            return file.read(size)
        finally:
            file.seek(position)


def _exif_block_orientation(block: bytes) -> tuple[int, int]:
    """The orientation OpenCV (training) takes from an EXIF block, and the one a reader of the
    standard (PIL, as browsers read it) takes, each 1 to 8 (1 for a broken or missing one).

    OpenCV is asked itself (:func:`_opencv_exif_orientation`): its reader differs from PIL's on
    blocks no camera writes (an orientation stored as a LONG, two orientation tags), and the
    annotator's size and points then were in another frame than training's.

    Args:
        block: a TIFF block, with or without JPEG's ``Exif\\0\\0`` before it.
    """
    from PIL import Image
    exif = Image.Exif()
    try:
        exif.load(block)
        value = exif.get(_EXIF_ORIENTATION)
    except (struct.error, ValueError, KeyError, IndexError, TypeError, SyntaxError):
        value = None  # a broken block: browsers ignore it
    standard = value if isinstance(value, int) and 1 <= value <= 8 else 1
    return _opencv_exif_orientation(block.removeprefix(b'Exif\x00\x00')), standard


def _opencv_exif_orientation(block: bytes) -> int:
    """The orientation OpenCV applies for a TIFF block, read by OpenCV: a 3x2 PNG of six
    distinct pixels carrying the block as its ``eXIf`` chunk is decoded (12-24 us), and
    the pixels' places say which of the 8 orientations it applied. A block too large for a
    PNG chunk (a WebP's may be larger) is read by OpenCV's rule instead
    (:func:`_first_orientation_entry`)."""
    if block[:4] not in _TIFF_HEADERS:
        return 1  # not a TIFF block: OpenCV's EXIF reader reads nothing of it
    if len(block) > _PNG_CHUNK_MAX or len(_probe_orientations()) < 8:
        # (an OpenCV that turns no PNG by its eXIf, as before 4.x's libpng 1.6.31, would
        # decode the 8 probes alike and read every block upright)
        return _first_orientation_entry(block)
    import cv2
    import numpy as np
    decoded = cv2.imdecode(np.frombuffer(_exif_probe(block), np.uint8), cv2.IMREAD_GRAYSCALE)
    return _probe_orientations().get(decoded.tobytes() if decoded is not None else b'', 1)


def _first_orientation_entry(block: bytes) -> int:
    """The orientation of a TIFF block as OpenCV's EXIF reader takes it, read here: the first
    orientation entry of the first directory, the 16 bits at its value in the block's byte
    order whatever its type; 1 for none, a value out of 1 to 8 or a directory past the end."""
    order = '<' if block[:2] == b'II' else '>'
    try:
        (start,) = struct.unpack_from(order + 'I', block, 4)
        (entries,) = struct.unpack_from(order + 'H', block, start)
        for entry in range(start + 2, start + 2 + 12 * entries, 12):
            tag, _, _, value = struct.unpack_from(order + 'HHIH', block, entry)
            if tag == _EXIF_ORIENTATION:
                return value if 1 <= value <= 8 else 1
    except struct.error:  # past the end
        return 1
    return 1


#: the probe's pixels: 2 rows of 3, each its own grey (PNG keeps them exactly)
_PROBE_PIXELS = bytes((0, 50, 100, 150, 200, 250))


def _exif_probe(block: bytes) -> bytes:
    """A 3x2 grey PNG of :data:`_PROBE_PIXELS` with ``block`` as its ``eXIf`` chunk, before its
    pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack(
            '>I', zlib.crc32(kind + data))
    rows = b''.join(b'\x00' + _PROBE_PIXELS[3 * row:3 * row + 3] for row in range(2))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 3, 2, 8, 0, 0, 0, 0))
            + chunk(b'eXIf', block) + chunk(b'IDAT', zlib.compress(rows))
            + chunk(b'IEND', b''))


def _learnt_orientations(probe: Callable[[bytes], bytes]) -> dict[bytes, int]:
    """A probe's pixels as OpenCV decodes them under each orientation, 1 to 8, learnt from
    OpenCV with plain blocks (one SHORT tag, little-endian) given to ``probe``, which makes
    the file to decode of a TIFF block."""
    import cv2
    import numpy as np
    decoded = {}
    for value in range(8, 0, -1):  # (an OpenCV that turns nothing: every one reads as 1)
        block = b'II*\x00' + struct.pack('<IHHHIHHI', 8, 1, _EXIF_ORIENTATION, 3, 1, value,
                                          0, 0)
        pixels = cv2.imdecode(np.frombuffer(probe(block), np.uint8), cv2.IMREAD_GRAYSCALE)
        decoded[pixels.tobytes()] = value
    return decoded


@functools.cache
def _probe_orientations() -> dict[bytes, int]:
    """The PNG probe's pixels under each orientation (:func:`_exif_probe`)."""
    return _learnt_orientations(_exif_probe)


def _several_blocks_orientation(blocks: list[bytes]) -> Orientation:
    """The orientation of a JPEG of several ``Exif`` APP1 segments as OpenCV decodes it.

    PIL reads the first segment; OpenCV the first in which it finds an orientation entry (one
    it cannot read, or of no orientation, passes to the next): the picture was annotated
    upright and trained turned. OpenCV itself is asked (:func:`_jpeg_probe`); which segment a
    browser applies is not known here, so the picture is served turned (never shown alike).
    Segments of more than :data:`_JPEG_PROBE_MAX` bytes in all, or an OpenCV that turns no
    probe, leave PIL's reading (the first segment)."""
    value = None
    if sum(map(len, blocks)) <= _JPEG_PROBE_MAX and len(_jpeg_probe_orientations()) == 8:
        import cv2
        import numpy as np
        decoded = cv2.imdecode(np.frombuffer(_jpeg_probe(blocks), np.uint8),
                               cv2.IMREAD_GRAYSCALE)
        value = _jpeg_probe_orientations().get(decoded.tobytes() if decoded is not None
                                               else b'')
    if value is None:
        value = _exif_block_orientation(blocks[0])[0]
    return Orientation(value, False)


#: the most bytes of APP1 segments copied into a probe (a JPEG's extended XMP may take a few
#: megabytes; a file of more is read as PIL reads it)
_JPEG_PROBE_MAX = 16 * 2**20


@functools.cache
def _jpeg_probe_body() -> bytes:
    """A 16x16 grey JPEG of four quadrants, each its own grey, without its SOI marker (the
    probe's segments go between)."""
    import cv2
    import numpy as np
    quadrants = np.kron(np.array([[0, 80], [160, 240]], np.uint8), np.ones((8, 8), np.uint8))
    return cv2.imencode('.jpg', quadrants, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()[2:]


def _jpeg_probe(blocks: list[bytes]) -> bytes:
    """The probe JPEG with ``blocks`` as its APP1 segments, in their order."""
    segments = b''.join(b'\xff\xe1' + struct.pack('>H', len(block) + 2) + block
                        for block in blocks)
    return b'\xff\xd8' + segments + _jpeg_probe_body()


@functools.cache
def _jpeg_probe_orientations() -> dict[bytes, int]:
    """The JPEG probe's pixels under each orientation (:func:`_jpeg_probe`)."""
    return _learnt_orientations(lambda block: _jpeg_probe([b'Exif\x00\x00' + block]))


def _png_orientation(file) -> Orientation:
    """The EXIF orientation of a PNG file as OpenCV decodes it, from its chunk headers.

    OpenCV takes the ``eXIf`` chunk libpng keeps: the first one whose CRC holds and that starts
    with a TIFF header (:data:`_TIFF_HEADERS`; a later one is a duplicate), before the pixels
    or after them (libpng's end info); none in an animated PNG (OpenCV's APNG decoder reads
    no EXIF). Chromium applies only the first ``eXIf`` chunk, and only before the pixels, so
    the picture is shown alike only when training's chunk is that one (or there is none).

    Raises:
        _TooManyChunks: more than :data:`PNG_MAX_CHUNKS` before the end or the ``eXIf`` kept.
    """
    offset, before_pixels, animated = 8, True, False
    first_exif, kept = None, None  # (offset, before the pixels) of each
    walked = 0
    while kept is None:
        if walked == PNG_MAX_CHUNKS:  # the eXIf libpng keeps may still follow: no answer
            raise _TooManyChunks  # rather than a wrong one
        walked += 1
        header = _read_at(file, offset, 8)
        if len(header) < 8:
            break
        length, kind = struct.unpack('>I4s', header)
        # the end, or no PNG chunk: at most 2^31-1 bytes, a type of four ASCII letters (libpng
        # stops the decoding at another: "invalid chunk type"). Stepping on over what is no
        # chunk took 12 bytes a step: a file's megabytes of zeros (a hole, a broken copy) held
        # each tool for seconds per picture.
        if kind == b'IEND' or length >= 1 << 31 or not kind.isalpha():
            break
        if kind == b'IDAT':
            before_pixels = False
        elif kind == b'acTL' and before_pixels and length == 8:
            animated = int.from_bytes(_read_at(file, offset + 8, 4), 'big') > 1
        elif kind == b'eXIf':
            if first_exif is None:
                first_exif = (offset, before_pixels)
            if 4 <= length <= _PNG_CHUNK_MAX:
                data = _read_at(file, offset + 8, length + 4)
                if len(data) == length + 4 and data[:4] in _TIFF_HEADERS and \
                        zlib.crc32(kind + data[:length]) == int.from_bytes(data[length:], 'big'):
                    kept = (offset, before_pixels, data[:length])
        offset += 12 + length
    if kept is None:  # no chunk OpenCV reads: Chromium's first one, if any, failed the checks
        return UPRIGHT  # libpng makes too (the prefix, the CRC)
    value, standard = _exif_block_orientation(kept[2])
    shown = standard if first_exif == kept[:2] and kept[1] else 1
    trained = 1 if animated else value
    return Orientation(trained, shown == trained)


def exif_orientation(im) -> Orientation:
    """The EXIF orientation of an image opened by PIL from a file (its ``fp``, read from its
    headers only) as training decodes it, and whether a browser shows the picture so.

    ``Image.getexif()`` of a PNG would load the whole image to look for an ``eXIf`` chunk after
    the pixel data, and takes chunks libpng drops (:func:`_png_orientation` reads its chunk
    headers instead).
    """
    try:
        if im.format == 'PNG':
            return _png_orientation(im.fp)
        if im.format in ('JPEG', 'MPO'):
            blocks = [data for marker, data in getattr(im, 'applist', ())
                      if marker == 'APP1' and data.startswith(b'Exif')]
            if len(blocks) > 1:
                return _several_blocks_orientation(blocks)
        raw = im.info.get('exif')  # JPEG's (in its header) and WebP's; BMP has none
        if not raw:
            return UPRIGHT
        value, standard = _exif_block_orientation(raw)
        if im.format in ('JPEG', 'MPO'):  # browsers apply a JPEG's as the standard reads it
            return Orientation(value, standard == value)
        return Orientation(value, value == 1)  # Chromium ignores a WebP's orientation
    except (struct.error, ValueError, KeyError, IndexError, TypeError, SyntaxError):
        # a broken EXIF block (SyntaxError: not a TIFF block at all): decoders ignore it too,
        # the pixels are fine
        return UPRIGHT


def image_formats() -> dict[str, str]:
    """PIL's format of each suffix of :data:`IMAGE_SUFFIXES` (``{'.jpg': 'JPEG', ...}``, PIL's
    own table): the only PIL plugins an image is opened with, here and by the crawler; another
    one may run a program (EPS: Ghostscript) or read what training cannot (TIFF, ICO, TGA)."""
    from PIL import Image
    return {suffix: Image.registered_extensions()[suffix] for suffix in IMAGE_SUFFIXES}


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image as mmcv and the annotator show it, from its header only.

    mmcv (hence mmpose, through OpenCV) applies the EXIF orientation of JPEG, PNG and WebP files
    when it decodes, so a picture stored sideways has its width and height swapped relative to
    the stored pixels (:func:`image_orientation`: the orientation as OpenCV reads it).

    Only the formats of :data:`IMAGE_SUFFIXES` are images here (their PIL plugins alone are
    tried; a JPEG holding more pictures, MPO, is a JPEG): a picture in another format PIL
    reads (ICO, TGA, PCX) passed every check and failed only when training decoded it
    (OpenCV), as a GIF or TIFF is no picture the annotator lists.

    The file is opened here (:func:`open_regular_file`), not by PIL: PIL opens a path with a
    plain ``open``, which waits for a writer for good on a FIFO (an image replaced by one).

    Raises:
        NotRegularFileError: a FIFO, device or folder (never read; one line naming it).
        AnnotationError: the file is missing, not an image of those formats, or so large that
            decoding it would be a decompression bomb (PIL's limit); one line naming the file.
    """
    (width, height), orientation = _image_header(path)
    if orientation.value in _EXIF_QUARTER_TURNS:
        width, height = height, width
    return width, height


def image_orientation(path: str | os.PathLike) -> Orientation:
    """The EXIF orientation of an image as training decodes it, and whether a browser shows
    the file turned alike (:func:`exif_orientation`), from its headers only.

    Raises:
        NotRegularFileError, AnnotationError: as :func:`image_size`.
    """
    return _image_header(path)[1]


def _image_header(path: str | os.PathLike) -> tuple[tuple[int, int], Orientation]:
    """The stored size of an image and its orientation (:func:`image_size`'s checks and
    errors)."""
    from PIL import Image, UnidentifiedImageError
    formats = pil_formats()
    try:
        with bomb_warning_hushed(), open_regular_file(path) as f, \
                Image.open(f, formats=formats) as im:
            (width, height), orientation = im.size, exif_orientation(im)  # headers only
    except NotRegularFileError:  # an AnnotationError naming the file already
        raise
    except Image.DecompressionBombError as e:
        raise AnnotationError(f'{path}: image refused, too many pixels ({e})') from None
    except _TooManyChunks:
        raise AnnotationError(f'{path}: image refused, more than {PNG_MAX_CHUNKS:,} PNG chunks '
                              '(a picture has a few thousand)') from None
    except UnidentifiedImageError:
        raise AnnotationError(f'{path}: {_unidentified(path, formats)}') from None
    except (OSError, ValueError, SyntaxError) as e:  # missing, truncated header, NUL in name
        raise AnnotationError(f'{path}: image unreadable ({e})') from None
    problem = too_many_pixels(width, height)
    if problem is not None:
        raise AnnotationError(f'{path}: image refused, {problem}')
    return (width, height), orientation


def pil_formats() -> list[str]:
    """The PIL formats an image is opened as (:func:`image_formats`' values), once each."""
    return sorted(set(image_formats().values()))


def too_many_pixels(width: int, height: int) -> str | None:
    """Why a picture of ``width`` x ``height`` is refused, or None: more pixels than PIL's
    decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``), which every tool holds (the
    crawler's downloads, the annotator, the converter, inference)."""
    from PIL import Image
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        return (f'too many pixels ({width}x{height} = {width * height:,}, more than PIL\'s '
                f'limit of {limit:,}: could be a decompression bomb)')
    return None


@contextlib.contextmanager
def bomb_warning_hushed() -> Iterator[None]:
    """PIL's ``DecompressionBombWarning`` hushed: PIL refuses only more than twice its limit
    and above the limit itself warns (a raw two-line message) and decodes the image whole; the
    tools refuse such images themselves (:func:`too_many_pixels`). Should another thread's
    ``catch_warnings`` leave this filter behind, nothing is let through: the check is ours."""
    from PIL import Image
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', Image.DecompressionBombWarning)
        yield


def _unidentified(path: str | os.PathLike, formats: list[str]) -> str:
    """Why PIL identified ``path`` as none of ``formats``: PIL says only that it cannot
    identify a file, also when the file is one of them with a broken header (a PNG chunk
    before the pixels whose checksum is wrong), which is no wrong format. The plugin of the
    format the file's first bytes name is asked why it refused."""
    from PIL import Image
    with contextlib.suppress(OSError, ValueError), open_regular_file(path) as f:
        head = f.read(16)
        for name in formats:
            factory, accept = Image.OPEN.get(name, (None, None))
            if factory is None or not (accept and accept(head)):
                continue
            f.seek(0)
            try:
                factory(f, os.fsdecode(path)).close()
            except Exception as e:  # the plugin's reason (SyntaxError, struct.error, ...)
                detail = ' '.join(str(e).split()) or e.__class__.__name__
                return f'image unreadable (a {name} file PIL cannot read: {detail}; re-save it)'
    return 'not a JPEG, PNG, WebP or BMP image (the formats the tools and training read)'


def _pixels_refusal(data: bytes) -> str | None:
    """Why the picture of these bytes is not decoded (:func:`too_many_pixels`, from the header
    PIL reads), or None where it is not refused, or PIL reads no header of it (OpenCV then says
    whether it decodes): OpenCV's own limit is 2**30 pixels, 12 times PIL's, and an 88 KB PNG
    of 9500x9500 took 1.2 GB to decode."""
    from PIL import Image
    try:
        with bomb_warning_hushed(), Image.open(io.BytesIO(data), formats=pil_formats()) as im:
            return too_many_pixels(*im.size)
    except Image.DecompressionBombError as e:  # more than twice the limit
        return f'too many pixels ({e})'
    except Exception:  # no header PIL reads: not one of these formats, or broken
        return None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image's pixels as ``cv2.imread`` gives them: BGR ``uint8`` ``(H, W, 3)``, the EXIF
    orientation applied (as mmcv, hence mmpose, decodes it; :func:`image_size` agrees).

    The bytes are read here and decoded by ``cv2.imdecode``, never ``cv2.imread``: OpenCV takes
    a path as UTF-8 text, and a name of other bytes (a lone surrogate in Python) crashes the
    process; and a FIFO or device is never read (:func:`open_regular_file`).

    Raises:
        AnnotationError: a missing or unreadable file, a FIFO or device
            (:class:`NotRegularFileError`), a picture of more pixels than PIL's limit
            (:func:`too_many_pixels`: never decoded, whoever asks), or bytes OpenCV cannot
            decode; one line naming the file.
    """
    return decode_image(path, read_image_bytes(path))


def read_image_bytes(path: str | os.PathLike) -> bytes:
    """An image file's bytes, for :func:`decode_image` (:func:`read_image` in two steps, for a
    caller that hashes the bytes it decodes).

    Raises:
        AnnotationError: a missing or unreadable file, a FIFO or device
            (:class:`NotRegularFileError`); one line naming the file.
    """
    try:
        return read_regular_file(path)
    except NotRegularFileError:
        raise
    except (OSError, ValueError) as e:  # ValueError: a NUL in the name
        reason = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise AnnotationError(f'{os.fsdecode(path)}: image unreadable ({reason})') from None


def decode_image(path: str | os.PathLike, data: bytes) -> np.ndarray:
    """The pixels of an image file's bytes (``path`` names it in errors), as
    :func:`read_image` gives them.

    Raises:
        AnnotationError: as :func:`read_image`.
    """
    import cv2
    import numpy as np
    refusal = _pixels_refusal(data)
    if refusal is not None:
        raise AnnotationError(f'{os.fsdecode(path)}: image refused, {refusal}')
    try:  # IMREAD_COLOR is cv2.imread's default: 3 channels, the EXIF orientation applied
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    except cv2.error:  # beyond OpenCV's own limits (too many pixels)
        image = None
    if image is None:
        raise AnnotationError(f'{os.fsdecode(path)}: not an image OpenCV can decode')
    return image


def write_image(path: str | os.PathLike, image_bgr: np.ndarray) -> None:
    """Save a BGR picture in the format its suffix names (``.jpg``, ``.png``), atomically
    (:func:`write_bytes_atomic`).

    The picture is encoded by ``cv2.imencode`` and written by Python, never by ``cv2.imwrite``
    (nor ``mmcv.imwrite``, which calls it): OpenCV takes a path as UTF-8 text, and a folder
    whose name holds other bytes crashes the process; and ``cv2.imwrite`` says nothing but
    ``False`` when the file cannot be written.

    Raises:
        ValueError: a suffix OpenCV does not encode, or a picture it cannot encode.
        OSError: the file cannot be written (a missing folder, a full disk, a name too long).
    """
    import cv2
    suffix = Path(path).suffix
    try:
        encoded, data = cv2.imencode(suffix, image_bgr)
    except cv2.error:  # an unknown suffix, an empty picture
        encoded = False
    if not encoded:
        raise ValueError(f'{os.fsdecode(path)}: the picture could not be encoded as '
                         f'{suffix or "(no suffix)"}')
    write_bytes_atomic(path, data.tobytes())


@dataclass
class Face:
    """One annotated face.

    Attributes:
        landmarks: 28 ``(x, y)`` pairs in image pixels; ``None`` for an absent point.
        visibility: 28 flags of :data:`~.schema.VISIBILITY_FLAGS`.
        bbox: optional face box ``(x0, y0, x1, y1)`` in pixels.
        scores: a model's score of each point, for predicted faces; None otherwise.
    """

    landmarks: list[tuple[float, float] | None]
    visibility: list[int] = field(default_factory=lambda: [VISIBLE] * NUM_KEYPOINTS)
    bbox: tuple[float, float, float, float] | None = None
    scores: list[float] | None = None

    def placed_points(self) -> list[tuple[float, float]]:
        """The points that are not absent."""
        return [p for p, v in zip(self.landmarks, self.visibility) if v != ABSENT and p is not None]

    def to_json(self) -> dict[str, Any]:
        raw = dict(
            landmarks=[None if p is None else [round(float(p[0]), 4), round(float(p[1]), 4)]
                       for p in self.landmarks],
            visibility=list(self.visibility),
            bbox=None if self.bbox is None else [float(v) for v in self.bbox],
        )
        if self.scores is not None:
            raw['scores'] = [round(float(v), 4) for v in self.scores]
        return raw


@dataclass
class ImageAnnotation:
    """The annotation of one image (see the module docstring for the JSON form).

    Attributes:
        image: image file name, relative to the image folder.
        width: image width in pixels.
        height: image height in pixels.
        faces: the annotated faces.
        status: one of :data:`STATUSES`.
        status_reason: why an image was skipped.
        meta: provenance (annotator, created/modified times, source).
    """

    image: str
    width: int
    height: int
    faces: list[Face] = field(default_factory=list)
    status: str = STATUS_ANNOTATED
    status_reason: str = ''
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(
            format=FORMAT_NAME,
            version=FORMAT_VERSION,
            image=self.image,
            image_size=dict(width=int(self.width), height=int(self.height)),
            status=self.status,
            status_reason=self.status_reason,
            faces=[f.to_json() for f in self.faces],
            meta=self.meta,
        )


def is_models_prediction(ann: ImageAnnotation) -> bool:
    """Whether a file is a model's prediction as the model wrote it: status ``predicted`` and
    nobody saved it since (``meta.annotator`` is :data:`MODEL_ANNOTATOR`). Anything else is a
    person's work (an annotation, a skip, a prediction corrected or reviewed in the annotator):
    a new prediction never replaces it (``tools/infer.py``), and it is the one shown when
    several files name the same image."""
    return ann.status == STATUS_PREDICTED and ann.meta.get('annotator') == MODEL_ANNOTATOR


def parse_number(value: Any, what: str) -> float:
    """A JSON number as a float; ``what`` names it in the error (``'a coordinate'``).

    Raises:
        AnnotationError: a bool, a string or anything but an int or float (numpy would read
            ``"10"`` as 10 and true as 1), or an integer too large for a float.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnnotationError(f'{what} is not a number: {shown_value(value)}')
    try:
        number = float(value)  # an integer of hundreds of digits does not fit
    except OverflowError:
        raise AnnotationError(f'{what} is too large: {shown_value(value)}') from None
    if not math.isfinite(number):
        raise AnnotationError(f'{what} is not finite: {value!r}')
    return number


def _is_flag(value: Any) -> bool:
    """A visibility flag: an int (not a bool) of VISIBILITY_FLAGS; lists and dicts are not."""
    return isinstance(value, int) and not isinstance(value, bool) and value in VISIBILITY_FLAGS


def parse_face(raw: Any, where: str) -> Face:
    """One face of an annotation file, by the reader's rules (what :func:`parse_annotation`
    takes of each face); ``where`` names it in the error (``'face 0'``).

    Raises:
        AnnotationError: one line saying what is wrong with the face.
    """
    if not isinstance(raw, dict):
        raise AnnotationError(f'{where} is not an object')
    points = raw.get('landmarks')
    if not isinstance(points, list) or len(points) != NUM_KEYPOINTS:
        count = len(points) if isinstance(points, list) else 'no'
        raise AnnotationError(f'{where} has {count} landmarks, expected {NUM_KEYPOINTS}')
    visibility = raw.get('visibility', [VISIBLE] * NUM_KEYPOINTS)
    if (not isinstance(visibility, list) or len(visibility) != NUM_KEYPOINTS
            or not all(_is_flag(v) for v in visibility)):
        flags = ', '.join(f'{flag} ({name})' for flag, name in VISIBILITY_FLAGS.items())
        raise AnnotationError(f'{where} visibility must be {NUM_KEYPOINTS} flags of {flags}')
    landmarks: list[tuple[float, float] | None] = []
    for i, (p, v) in enumerate(zip(points, visibility)):
        if p is None or (v == ABSENT and (p is None or p == [None, None])):
            if v != ABSENT:
                raise AnnotationError(f'{where} point {i} is null but not marked absent')
            landmarks.append(None)
            continue
        if not isinstance(p, list) or len(p) != 2:
            raise AnnotationError(f'{where} point {i} is not an [x, y] pair: {shown_value(p)}')
        landmarks.append((parse_number(p[0], f'{where} point {i} x'),
                          parse_number(p[1], f'{where} point {i} y')))
    bbox = raw.get('bbox')
    if bbox is not None:
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise AnnotationError(f'{where} bbox must be [x0, y0, x1, y1]: {shown_value(bbox)}')
        x0, y0, x1, y1 = (parse_number(v, f'{where} bbox') for v in bbox)
        if x1 <= x0 or y1 <= y0:
            raise AnnotationError(f'{where} bbox has no area: {shown_value(bbox)}')
        bbox = (x0, y0, x1, y1)
    scores = raw.get('scores')
    if scores is not None:
        if not isinstance(scores, list) or len(scores) != NUM_KEYPOINTS:
            raise AnnotationError(f'{where} scores must be {NUM_KEYPOINTS} numbers')
        scores = [parse_number(v, f'{where} score {i}') for i, v in enumerate(scores)]
    face = Face(landmarks=landmarks, visibility=list(visibility), bbox=bbox, scores=scores)
    placed = face.placed_points()
    if len(placed) < 2:
        raise AnnotationError(f'{where} has fewer than 2 placed points')
    if len(set(placed)) == 1:
        raise AnnotationError(f'{where} has all its points on one spot {placed[0]}')
    return face


def _find_value(raw: Any, wrong: Callable[[Any], bool]) -> str | None:
    """Where a decoded JSON value holds a value ``wrong`` picks, as a few words naming it
    (its key and the value, cut short), or None. Walked without recursion: the nesting is the
    file's."""
    stack = [(raw, 'top level')]
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                stack += [(key, f'a key of {where}'),
                          (item, f'"{printable(key, one_line=True, limit=40)}"')]
        elif isinstance(value, list):
            stack += [(item, where) for item in value]
        elif wrong(value):
            return f'{where} {shown_value(value)}'
    return None


def unencodable_string(raw: Any) -> str | None:
    """Where a decoded JSON value holds a string UTF-8 cannot encode (JSON spells a lone
    surrogate as ``"\\udcff"``; a file read as UTF-8 holds none otherwise), as a few words
    naming it, or None."""
    try:  # in C, a hundred times faster than the walk (opening a folder reads every file)
        json.dumps(raw, ensure_ascii=False).encode('utf-8')
    except (UnicodeEncodeError, TypeError, ValueError, RecursionError):
        pass  # one to find, or a value JSON cannot hold: the walk says where
    else:
        return None
    return _find_value(raw, lambda value: isinstance(value, str) and not is_utf8_name(value))


#: The deepest nesting of the free-form JSON the tools write back (an annotation file's
#: ``meta``, a crawler's sidecar kept as its ``meta.source``): a few levels in what they write
#: (gallery-dl's metadata about five); Python writes indented JSON by recursion, and a sidecar
#: nested 985 deep failed every save of its image with a RecursionError.
MAX_JSON_DEPTH = 64


def nested_deeper(raw: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a decoded JSON value nests lists and objects more than ``limit`` deep (walked
    without recursion, and no further than the limit)."""
    stack = [(raw, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth == limit:
                return True
            stack += [(item, depth + 1) for item in
                      (value.values() if isinstance(value, dict) else value)]
    return False


def non_finite_number(raw: Any) -> str | None:
    """Where a decoded JSON value holds NaN or an infinity (Python's ``json`` reads ``NaN``
    and ``Infinity``, which are no JSON: :func:`write_json_atomic` refuses to write them), as a
    few words naming it, or None."""
    return _find_value(raw, lambda value: isinstance(value, float) and not math.isfinite(value))


#: The most faces an annotation file may hold. The annotator makes at most 64 per image
#: (``annotate.MAX_FACES``); a detector's prediction on a crowd picture may hold more, but far
#: fewer than this. Bounded because every tool compares each face of a file with every other
#: (:func:`.converter.check_distinct_faces`): a file of tens of thousands of faces (16 MB hold
#: them) stalled each tool for hours.
ANNOTATION_MAX_FACES = 1024


def check_face_count(count: int) -> None:
    """Refuse more faces than :data:`ANNOTATION_MAX_FACES`.

    Raises:
        AnnotationError: one line, without the file name (callers add it).
    """
    if count > ANNOTATION_MAX_FACES:
        raise AnnotationError(f'{count} faces, more than the {ANNOTATION_MAX_FACES} an '
                              'annotation file may hold')


def _status_reason(raw: dict) -> str:
    """A file's ``status_reason``: text, absent or null for none (a number or null was shown and
    written back as text, 'None')."""
    reason = raw.get('status_reason')
    if reason is None:
        return ''
    if not isinstance(reason, str):
        raise AnnotationError(f'"status_reason" must be text, got {type(reason).__name__}')
    return reason


def parse_annotation(raw: Any) -> ImageAnnotation:
    """Build an :class:`ImageAnnotation` from a decoded JSON object, in either format.

    Raises:
        AnnotationError: with a one-line reason (without the file name; callers add it); more
            than :data:`ANNOTATION_MAX_FACES` faces among them.
    """
    if not isinstance(raw, dict):
        raise AnnotationError('top level is not a JSON object')
    image = raw.get('image')
    if not isinstance(image, str) or not image:
        raise AnnotationError('missing "image" file name')
    if any(c in image for c in NAME_BREAKS):
        raise AnnotationError(f'"image" holds a NUL or line break: {shown_value(image)}')
    unencodable = unencodable_string(raw)
    if unencodable is not None:
        raise AnnotationError(f'{unencodable} is not valid Unicode (a lone surrogate, which no '
                              'file name can hold nor this file be written back with)')
    size = raw.get('image_size')
    if not isinstance(size, dict):
        raise AnnotationError('missing "image_size" {"width", "height"}')
    width, height = size.get('width'), size.get('height')
    if (not isinstance(width, int) or not isinstance(height, int) or isinstance(width, bool)
            or width <= 0 or height <= 0):
        raise AnnotationError(f'image_size must be positive integers: {shown_value(size)}')

    if raw.get('format') == FORMAT_NAME:
        version = raw.get('version')
        if version != FORMAT_VERSION:
            raise AnnotationError(
                f'format version {shown_value(version)} is not supported (this version reads '
                f'{FORMAT_VERSION})')
        status = raw.get('status', STATUS_ANNOTATED)
        if status not in STATUSES:
            raise AnnotationError(f'unknown status {shown_value(status)} (one of '
                                  f'{", ".join(STATUSES)})')
        faces_raw = raw.get('faces')
        if not isinstance(faces_raw, list):
            raise AnnotationError('"faces" is not a list')
        check_face_count(len(faces_raw))  # before any face is parsed
        faces = [parse_face(f, f'face {i}') for i, f in enumerate(faces_raw)]
        meta = raw.get('meta')
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):  # the tools add to it: it must be an object
            raise AnnotationError(f'"meta" must be an object, got {type(meta).__name__}')
        if nested_deeper(meta):  # written back as it is, which would fail
            raise AnnotationError(f'"meta" nests lists and objects more than {MAX_JSON_DEPTH} '
                                  'deep; this file could not be written back')
        # the one part a save writes back as it is (the faces' numbers are checked above,
        # other keys are not written back): a value no file can hold would make the image
        # one the annotator can open but never save
        non_finite = non_finite_number(meta)
        if non_finite is not None:
            raise AnnotationError(f'"meta" holds {non_finite}: NaN and Infinity are no JSON '
                                  'numbers; this file could not be written back')
        return ImageAnnotation(image=image, width=width, height=height, faces=faces,
                               status=status, status_reason=_status_reason(raw), meta=meta)
    if 'landmarks' in raw:  # the original tools' plain format: one face, all visible
        face = parse_face({'landmarks': raw['landmarks']}, 'face')
        return ImageAnnotation(image, width, height, [face], meta={LEGACY_FORMAT_KEY: True})
    raise AnnotationError(f'neither format: no "format": "{FORMAT_NAME}" and no "landmarks"')


#: The largest annotation file read (bytes). A file of 64 faces, each with 28 points, flags,
#: scores and a box, and a generous ``meta`` is well under a megabyte; a larger one is no
#: annotation (reading a stray multi-gigabyte ``*.json`` whole would exhaust the memory).
ANNOTATION_MAX_BYTES = 16 << 20


def read_annotation_bytes(path: str | os.PathLike) -> bytes:
    """An annotation file's bytes, read as every tool reads one: a regular file
    (:func:`open_regular_file`) of at most :data:`ANNOTATION_MAX_BYTES`.

    Raises:
        NotRegularFileError: a FIFO, device or folder: never read.
        AnnotationError: one line naming the file: unreadable, too large.
    """
    try:
        return read_regular_file(path, ANNOTATION_MAX_BYTES)
    except AnnotationError:  # not regular, too large: already one line naming it
        raise
    except (OSError, ValueError) as e:  # ValueError: a NUL in the name
        raise AnnotationError(f'{os.fsdecode(path)}: cannot read ({e})') from None


def read_annotation_json(path: str | os.PathLike, data: bytes | None = None) -> Any:
    """The decoded JSON of an annotation file, read as every tool reads one: a regular file
    (:func:`open_regular_file`) of at most :data:`ANNOTATION_MAX_BYTES`, UTF-8 text.

    Args:
        path: the file.
        data: its bytes, read already (:func:`read_annotation_bytes`: a caller that also
            hashes them reads once, or what it hashed might not be what it parsed); None to
            read them here.

    Raises:
        NotRegularFileError: a FIFO, device or folder: never read.
        AnnotationError: one line naming the file: unreadable, too large, not UTF-8, broken
            JSON, nested too deeply.
    """
    path = Path(path)
    if data is None:
        data = read_annotation_bytes(path)
    try:
        return loads_user_json(data.decode('utf-8'))
    except json.JSONDecodeError as e:
        raise AnnotationError(f'{path}: broken JSON ({e})') from None
    except RepeatedKeyError as e:  # JSON, but which value is meant?
        raise AnnotationError(f'{path}: {e}') from None
    except RecursionError:
        raise AnnotationError(f'{path}: JSON nested too deeply to be an annotation') from None
    except ValueError as e:  # UnicodeDecodeError: not UTF-8
        raise AnnotationError(f'{path}: cannot read ({e})') from None


def load_annotation(path: str | os.PathLike, data: bytes | None = None) -> ImageAnnotation:
    """Read (:func:`read_annotation_json`, ``data`` the file's bytes if read already) and
    validate (:func:`parse_annotation`) one annotation file.

    Raises:
        NotRegularFileError: a FIFO, device or folder: never read.
        AnnotationError: one line, naming the file and the reason.
    """
    path = Path(path)
    raw = read_annotation_json(path, data)
    try:
        return parse_annotation(raw)
    except AnnotationError as e:
        raise AnnotationError(f'{path}: {e}') from None
    except (TypeError, ValueError, OverflowError, RecursionError) as e:  # a value of a shape
        # no check foresaw: still one line naming the file, never a traceback
        raise AnnotationError(f'{path}: not a valid annotation ({e.__class__.__name__}: '
                              f'{shown_value(str(e), 80)})') from None


# An indented pair spans lines; JSON escapes a newline inside a string, so requiring them
# keeps the pattern out of names and reasons such as 'crop[10,20].png'.
_PAIR = re.compile(r'\[\n\s*(-?[\d.eE+-]+|null),\n\s*(-?[\d.eE+-]+|null)\n\s*\]')
#: The longest file name the usual file systems take (ext4, XFS, btrfs: 255 bytes); names the
#: tools make from an image's name are cut to it, counted in UTF-8 bytes (a CJK character is 3).
NAME_MAX_BYTES = 255
#: The ending of :func:`write_json_atomic`'s temporary files: a name no person gives a file,
#: so that removing those a killed run left never takes one of theirs (``.notes.backup01.tmp``).
TEMPORARY_SUFFIX = '.animal-landmarks-tmp'
#: Its temporary files: ``.<target name, cut>.<8 random characters><TEMPORARY_SUFFIX>``.
_TEMPORARY = re.compile(rf'^\.(?P<target>.+)\.[a-z0-9_]{{8}}{re.escape(TEMPORARY_SUFFIX)}$')
_TEMPORARY_NAME_CHARS = 48  # at most 4 bytes each: 192 + 31 bytes
#: Seconds after which a temporary file is a killed run's (a write in progress takes
#: milliseconds).
STALE_TEMPORARY_AGE = 600.0


def _process_umask() -> int:
    """The process's umask (read once: setting and restoring it is not thread-safe later)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _process_umask()
#: the mode a plain ``open()`` gives a new file: what every file the tools write gets, also
#: those a library creates private (``mkstemp``, safetensors)
USUAL_FILE_MODE = 0o666 & ~_UMASK


def lies_in_folder(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it, links resolved: where a tool's output
    would land among the files of an input folder (annotations), overwriting them or being
    read back as one of them."""
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def fit_name(base: str, suffix: str) -> str:
    """A file name ``base + suffix`` of at most :data:`NAME_MAX_BYTES` UTF-8 bytes: ``base`` is
    cut (between characters, never inside one) to leave room for ``suffix``.

    Args:
        base: what the name is made from (an image's name or stem; valid UTF-8).
        suffix: what must stay whole (``.json``, a time stamp).

    Returns:
        The name; ``base + suffix`` itself when it fits.
    """
    room = NAME_MAX_BYTES - len(suffix.encode('utf-8'))
    encoded = base.encode('utf-8')
    if len(encoded) <= room:
        return base + suffix
    return encoded[:room].decode('utf-8', 'ignore') + suffix  # 'ignore': a character cut


def image_key(name: str) -> str:
    """An annotation file's ``"image"`` as the image folder resolves it: ``.`` parts and
    ``x/..`` gone (``posixpath.normpath``; a backslash stays a character of the name), as the
    converter joins it to the folder. ``./x.png`` is the image ``x.png`` to every tool."""
    return posixpath.normpath(name)


def annotation_file_names(image: str) -> Iterator[str]:
    """An image's annotation file names in order of preference: ``<stem>.json``,
    ``<name>.json``, ``<name>.1.json``, ``<name>.2.json``... (endless; the annotator takes the
    first free one), each cut to :data:`NAME_MAX_BYTES` (:func:`fit_name`: a long name's file is
    still found through its ``"image"`` field)."""
    yield fit_name(Path(image).stem, '.json')
    yield fit_name(image, '.json')
    k = 1
    while True:
        yield fit_name(image, f'.{k}.json')
        k += 1


#: :func:`annotation_file_rank` of a name that is none of an image's
_OTHER_NAME_RANK = 1 << 30


def annotation_file_rank(image: str, file_name: str) -> int:
    """Where a file named ``file_name`` stands among the names of ``image``'s annotation file:
    its place in :func:`annotation_file_names`, then the old ``<stem>_<suffix>.json``, then any
    other name."""
    candidates = annotation_file_names(image)
    for rank in range(2):
        if next(candidates) == file_name:
            return rank
    numbered = re.fullmatch(r'.*\.([1-9][0-9]{0,8})\.json', file_name)
    if numbered and fit_name(image, f'.{numbered[1]}.json') == file_name:
        return 1 + int(numbered[1])
    stem, suffix = os.path.splitext(image)
    return _OTHER_NAME_RANK - 1 if file_name == f'{stem}_{suffix[1:]}.json' else _OTHER_NAME_RANK


def file_choice_key(image: str, file_name: str, *, models: bool, status: str | None
                    ) -> tuple[bool, bool, int]:
    """How the tools choose among files naming one image (the annotator opens the first, the
    converter keeps it): a person's file before a model's prediction as the model wrote it
    (:func:`is_models_prediction`: ``models``), an accepted one before a prediction a person is
    still reviewing (``status``), then by :func:`annotation_file_rank`; ties by name, or path.
    One rule for both: the checker's report and the annotator must show the file trained on
    (where the first is skipped, no file of the image is)."""
    return models, status == STATUS_PREDICTED, annotation_file_rank(image, file_name)


def new_temporary(target: str | os.PathLike) -> Path:
    """A new empty file beside ``target``, named as :func:`write_json_atomic`'s temporaries
    (``.<name>.<random>.animal-landmarks-tmp``), for writers that take a path (``torch.save``,
    ``onnx.save``): made here, so no file of the user's is written over, and cleaned by
    :func:`remove_stale_temporaries` if a killed run leaves it."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f'.{target.name[:_TEMPORARY_NAME_CHARS]}.',
                               suffix=TEMPORARY_SUFFIX, dir=target.parent)
    os.close(fd)
    return Path(tmp)


def move_into_place(tmp: Path, out: Path) -> None:
    """Move a finished temporary file (:func:`new_temporary`) onto ``out``, with the mode a
    plain ``open()`` would give it (``mkstemp`` and safetensors make their files readable by
    their owner alone); if that fails, remove the temporary.

    The file's data reaches the disk before the rename (else a power cut could leave an empty
    or partial file under the output's name), and the folder's entry after it.
    """
    try:
        os.chmod(tmp, USUAL_FILE_MODE)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, out)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename in (None, os.fspath(tmp)):
            # (a flush names no file; the temporary named is gone): the output it was for
            e.filename, e.filename2 = os.fspath(out), None
        raise
    sync_folder(out.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, make_folder: bool = False) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one,
    whole: into a temporary file beside it (:func:`new_temporary`), then moved over it
    (:func:`move_into_place`: flushed to disk, an atomic replace on POSIX and Windows, the
    usual file mode). A link there is replaced, not written through into the file it points
    to.

    Args:
        path: the file.
        data: its new content.
        make_folder: make its folder (and those above) first where missing.

    Raises:
        OSError: the file cannot be written (a full disk, a name too long), the temporary
            removed.
    """
    path = Path(path)
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    move_into_place(write_temporary(path, data), path)


def write_temporary(path: str | os.PathLike, data: bytes, sync: bool = False) -> Path:
    """The first half of :func:`write_bytes_atomic`: ``data`` in a new temporary beside
    ``path`` (:func:`new_temporary`), for :func:`move_into_place` to move onto it; for
    writers of several files that move none before all are written.

    Args:
        path: the file the data is for.
        data: its new content.
        sync: flush it to disk now (a flush that fails, a full network disk, then fails
            before anything is moved).

    Raises:
        OSError: it cannot be written; naming ``path`` (a failed write names no file, and the
            tools' one-line error would name their output folder instead), the temporary
            removed.
    """
    tmp = new_temporary(path)
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = os.fspath(path)
        raise
    return tmp


def json_bytes(obj: Any, indent: int | None = 1) -> bytes:
    """``obj`` as the tools write JSON files: UTF-8, ``indent`` (one line per ``[x, y]`` pair),
    a final line break.

    Raises:
        ValueError: NaN or an infinity in ``obj`` (no JSON; a file holding it could not be read
            back), or ``obj`` nested deeper than Python writes indented JSON (by recursion).
    """
    # allow_nan=False: NaN is no JSON; a file holding it could not be read back
    try:
        text = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False)
    except RecursionError:  # what is read is bounded (MAX_JSON_DEPTH); this is the last net
        raise ValueError('lists and objects nested too deeply to be written') from None
    if indent is not None:  # one line per [x, y] pair, not one per number
        text = _PAIR.sub(r'[\1, \2]', text)
    return (text + '\n').encode('utf-8')


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> None:
    """Write JSON to ``path`` (:func:`json_bytes`) so that a crash leaves either the old file or
    the new one, whole (:func:`write_bytes_atomic`), its folder made if need be.

    Raises:
        ValueError: NaN or an infinity in ``obj``; nothing is written.
    """
    write_bytes_atomic(path, json_bytes(obj, indent), make_folder=True)


def sync_folder(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename, a removal) to disk, so that a power cut cannot
    undo them; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder: nothing more to do
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | os.PathLike, min_age: float = STALE_TEMPORARY_AGE,
                             of: str | None = None) -> list[Path]:
    """Delete the temporary files :func:`write_json_atomic` left in ``folder`` when a process
    was killed mid-write: only files of its own naming, older than ``min_age`` seconds.

    Args:
        folder: where to look.
        min_age: seconds; a younger one may be a write in progress.
        of: only the temporaries of the file of this name (in a folder that is the user's,
            those of the one file a tool writes there).

    Returns:
        What was removed.
    """
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if not match or (of is not None and match['target'] != of[:_TEMPORARY_NAME_CHARS]):
            continue
        try:
            if (entry.is_file(follow_symlinks=False)
                    and now - entry.stat(follow_symlinks=False).st_mtime >= min_age):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except FileNotFoundError:  # another process cleaned it
            pass
    return removed


def is_sha256_hex(value: object) -> bool:
    """Whether ``value`` is a sha256 digest as :func:`file_sha256` writes it (64 lowercase hex
    digits): the form every file and metadata field holding one must have."""
    return isinstance(value, str) and re.fullmatch('[0-9a-f]{64}', value) is not None


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a regular file's bytes.

    Raises:
        NotRegularFileError: a FIFO, device or folder (never read: a FIFO would block).
        OSError: the file cannot be read.
    """
    with open_regular_file(path) as f:
        return hashlib.file_digest(f, 'sha256').hexdigest()


def annotation_bytes(annotation: ImageAnnotation) -> bytes:
    """What :func:`save_annotation` writes for ``annotation``.

    Raises:
        AnnotationError: more than :data:`ANNOTATION_MAX_BYTES` or
            :data:`ANNOTATION_MAX_FACES` faces, which no tool would read back (a prediction
            over a boxes file of thousands of faces); one line.
        ValueError: NaN or an infinity in it.
    """
    data = json_bytes(annotation.to_json())
    if len(data) > ANNOTATION_MAX_BYTES:
        raise AnnotationError(f'{annotation.image}: its annotation file would be {len(data)} '
                              f'bytes, more than the {ANNOTATION_MAX_BYTES} the tools read '
                              f'({len(annotation.faces)} faces)')
    try:
        check_face_count(len(annotation.faces))
    except AnnotationError as e:
        raise AnnotationError(f'{annotation.image}: its annotation file would hold {e}') from None
    return data


def save_annotation(path: str | os.PathLike, annotation: ImageAnnotation) -> None:
    """Write an annotation file atomically (:func:`write_bytes_atomic`), its folder made if
    need be; never one the tools would not read back for its size or its number of faces
    (:func:`annotation_bytes`)."""
    write_bytes_atomic(path, annotation_bytes(annotation), make_folder=True)
