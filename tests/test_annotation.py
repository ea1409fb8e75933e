"""The annotation file format: both schemas, validation, atomic writing."""
import errno
import json
import os
import struct

import pytest

from animal_landmarks_mm.annotation import (
    AnnotationError,
    Face,
    ImageAnnotation,
    load_annotation,
    parse_annotation,
    save_annotation,
    write_json_atomic,
)
from animal_landmarks_mm.schema import ABSENT, OCCLUDED, VISIBLE

POINTS = [(10.0 + i, 20.0 + i / 2) for i in range(28)]


def test_round_trip_keeps_everything(tmp_path):
    vis = [VISIBLE] * 28
    vis[3], vis[4] = OCCLUDED, ABSENT
    points = list(POINTS)
    points[4] = None
    ann = ImageAnnotation(
        image='a.png', width=64, height=48,
        faces=[Face(points, vis, bbox=(1.0, 2.0, 50.0, 40.0)), Face(list(POINTS))],
        meta=dict(annotator='me', source=dict(site='safebooru', post_id=1)))
    save_annotation(tmp_path / 'a.json', ann)
    loaded = load_annotation(tmp_path / 'a.json')
    assert loaded == ann
    raw = json.loads((tmp_path / 'a.json').read_text())
    assert raw['format'] == 'animal_landmarks_mm.annotation' and raw['version'] == 1


def test_legacy_format_is_one_visible_face():
    ann = parse_annotation(dict(image='x.jpg', landmarks=[list(p) for p in POINTS],
                                image_size=dict(width=100, height=80)))
    assert (ann.width, ann.height, len(ann.faces)) == (100, 80, 1)
    assert ann.faces[0].visibility == [VISIBLE] * 28
    assert ann.faces[0].landmarks == POINTS


@pytest.mark.parametrize('raw, reason', [
    ([], 'not a JSON object'),
    (dict(landmarks=[[0, 0]] * 28, image_size=dict(width=9, height=9)), 'missing "image"'),
    (dict(image='x', landmarks=[[0, 0]] * 28), 'missing "image_size"'),
    (dict(image='x', landmarks=[[0, 0]] * 27, image_size=dict(width=9, height=9)),
     'has 27 landmarks, expected 28'),
    (dict(image='x', landmarks=[[0, 0]] * 27 + [[float('nan'), 1]],
          image_size=dict(width=9, height=9)), 'point 27 x is not finite'),
    (dict(image='x', landmarks=[[0, 0]] * 27 + [['a', 1]],
          image_size=dict(width=9, height=9)), 'point 27 x is not a number'),
    (dict(image='x', landmarks=[[0, 0]] * 28, image_size=dict(width=0, height=9)),
     'image_size must be positive'),
    (dict(format='animal_landmarks_mm.annotation', version=7, image='x', faces=[],
          image_size=dict(width=9, height=9)), 'version 7 is not supported'),
    (dict(image='x', image_size=dict(width=9, height=9)), 'neither format'),
    # JSON spells a lone surrogate as "\udcff": no file name, and no report could hold it
    (dict(image='\udcff.png', landmarks=[[0, 0]] * 28, image_size=dict(width=9, height=9)),
     '"image" .* is not valid Unicode'),
    # anywhere in the file: it could not be written back (the annotator's save, infer's meta)
    (dict(format='animal_landmarks_mm.annotation', version=1, image='x', faces=[],
          status='skipped', status_reason='bad \udcff', image_size=dict(width=9, height=9)),
     '"status_reason" .* is not valid Unicode'),
    (dict(image='x', landmarks=[[0, 0]] * 28, image_size=dict(width=9, height=9),
          meta=dict(tags=['ok', '\ud800'])), '"tags" .* is not valid Unicode'),
    # a hostile file's megabyte of status or version is cut short in the one line
    (dict(format='animal_landmarks_mm.annotation', version='v' * 10**6, image='x', faces=[],
          image_size=dict(width=9, height=9)), 'version .* is not supported'),
    (dict(format='animal_landmarks_mm.annotation', version=1, status='s' * 10**6, image='x',
          faces=[], image_size=dict(width=9, height=9)), 'unknown status'),
])
def test_bad_content_gives_a_one_line_reason(raw, reason):
    with pytest.raises(AnnotationError, match=reason) as info:
        parse_annotation(raw)
    assert '\n' not in str(info.value) and len(str(info.value)) < 200


def test_load_names_the_file(tmp_path):
    path = tmp_path / 'broken.json'
    path.write_text('{"image": ')
    with pytest.raises(AnnotationError, match=r'broken\.json: broken JSON'):
        load_annotation(path)


def test_a_key_twice_in_one_object_is_refused_naming_it(tmp_path):
    """A file edited by hand with a key twice (json.loads kept the last one: the faces written
    first were dropped unseen) is refused in one line naming the file and the key; the same
    key in different objects (each face's "landmarks") is no repetition."""
    path = tmp_path / 'a.json'
    save_annotation(path, ImageAnnotation(image='a.png', width=64, height=48,
                                          faces=[Face(list(POINTS)), Face(list(POINTS))]))
    text = path.read_text().rstrip()
    assert text.endswith('}') and len(load_annotation(path).faces) == 2
    path.write_text(text[:-1] + ', "faces": []}')
    with pytest.raises(AnnotationError) as info:
        load_annotation(path)
    assert str(info.value) == (f'{path}: the key "faces" twice in one object (which one is '
                               'meant?)')
    path.write_text('{"image": "a.png", "\\u001b[2J": 1, "\\u001b[2J": 2}')
    with pytest.raises(AnnotationError, match=r'the key "\\x1b\[2J" twice'):
        load_annotation(path)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    """A write that fails after part of the new file reached the disk (a disk filling up:
    here the process's file size limit, a real EFBIG from the kernel) leaves the old file
    whole and no temporary behind. A writer that opened the file itself would have cut it
    (a failure before any byte is written, such as JSON that cannot be encoded, proves
    nothing: the old file is whole either way)."""
    resource = pytest.importorskip('resource')
    import signal
    path = tmp_path / 'a.json'
    write_json_atomic(path, dict(version='old'))
    limit = 4096  # more than the old file, less than the new one
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # past the limit the kernel sends SIGXFSZ, which ends the process unless ignored (the
    # write then fails with EFBIG)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(OSError) as caught:
            write_json_atomic(path, dict(version='new', pad='x' * 4 * limit))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert caught.value.errno == errno.EFBIG
    assert caught.value.filename == str(path)  # the tools' error names it, not their folder
    assert json.loads(path.read_text()) == dict(version='old')
    assert os.listdir(tmp_path) == ['a.json']  # no temporary file left behind


def test_nan_or_infinity_in_meta_is_refused_at_load(tmp_path):
    """Python's json reads NaN and Infinity, which no file can be written back with
    (:func:`write_json_atomic` refuses them): such a file is refused when read, in one line
    naming it and the value, not opened for an edit that can never be saved."""
    raw = ImageAnnotation('a.png', 64, 48, [Face(list(POINTS))]).to_json()
    for constant in ('NaN', 'Infinity', '-Infinity'):
        path = tmp_path / f'{constant}.json'
        path.write_text(json.dumps(raw).replace('"meta": {}',
                                                f'"meta": {{"source": {{"score": {constant}}}}}'))
        with pytest.raises(AnnotationError) as caught:
            load_annotation(path)
        message = str(caught.value)
        assert message.startswith(f'{path}: "meta" holds "score" ') and '\n' not in message
        assert 'NaN and Infinity are no JSON numbers' in message
    # what is not written back is no reason to refuse the file: the plain format's other keys
    legacy = tmp_path / 'legacy.json'
    legacy.write_text('{"image": "a.png", "image_size": {"width": 64, "height": 48}, '
                      f'"landmarks": {json.dumps([list(p) for p in POINTS])}, "score": NaN}}')
    assert load_annotation(legacy).image == 'a.png'


def test_an_annotation_file_larger_than_any_annotation_is_not_read(tmp_path):
    """A stray huge ``*.json`` (a dump, a log) is refused in one line naming it, after
    reading no more than an annotation's size (reading it whole exhausted the memory)."""
    from animal_landmarks_mm.annotation import ANNOTATION_MAX_BYTES, read_annotation_json
    huge = tmp_path / 'huge.json'
    with open(huge, 'wb') as f:  # sparse: no disk used
        f.truncate(ANNOTATION_MAX_BYTES + 1)
    for read in (load_annotation, read_annotation_json):
        with pytest.raises(AnnotationError) as caught:
            read(huge)
        assert str(caught.value) == (f'{huge}: more than {ANNOTATION_MAX_BYTES} bytes, too '
                                     'large to read')


def test_image_size_follows_the_exif_orientation_like_mmcv(tmp_path):
    import mmcv
    from PIL import Image

    from animal_landmarks_mm.annotation import image_size
    path = tmp_path / 'sideways.jpg'
    image = Image.new('RGB', (200, 100))
    exif = image.getexif()
    exif[0x0112] = 6  # stored sideways: shown rotated by 90 degrees
    image.save(path, exif=exif)
    height, width = mmcv.imread(str(path)).shape[:2]
    assert image_size(path) == (width, height) == (100, 200)


@pytest.mark.timeout(30)  # before the fix, PIL's open of a FIFO waited for a writer for good
def test_image_size_of_a_fifo_or_folder_is_refused_without_waiting(tmp_path):
    """PIL opens a path with a plain open, which waits for a writer for good on a FIFO (an
    image replaced by one): image_size refuses it, as a folder, in one line naming it
    (NotRegularFileError); a missing file is still one line naming it."""
    from animal_landmarks_mm.annotation import NotRegularFileError, image_size
    fifo, folder, missing = tmp_path / 'a.png', tmp_path / 'b.png', tmp_path / 'c.png'
    os.mkfifo(fifo)
    folder.mkdir()
    for path in (fifo, folder):
        with pytest.raises(NotRegularFileError) as caught:
            image_size(path)
        assert str(caught.value) == (f'{path}: not a regular file (a FIFO, a device or a '
                                     'folder): left alone')
    with pytest.raises(AnnotationError) as caught:
        image_size(missing)
    assert str(caught.value).startswith(f'{missing}: image unreadable (')
    assert not isinstance(caught.value, NotRegularFileError)


def test_a_png_pil_cannot_read_is_called_broken_not_another_format(tmp_path):
    """PIL refuses a PNG whose chunk before the pixels has a wrong checksum and says only
    that it cannot identify the file: the message was that it is no JPEG, PNG, WebP or BMP
    image, which is false. It names the format and PIL's reason; a file of no such format keeps
    the old message."""
    import io
    import struct

    from PIL import Image

    from animal_landmarks_mm.annotation import image_size
    written = io.BytesIO()
    Image.new('RGB', (20, 10), 'red').save(written, 'PNG')
    data = written.getvalue()
    text = b'Comment\x00hello'  # a tEXt chunk whose CRC is zeros
    chunk = struct.pack('>I', len(text)) + b'tEXt' + text + bytes(4)
    at = data.index(b'IDAT') - 4
    broken, other = tmp_path / 'broken.png', tmp_path / 'other.png'
    broken.write_bytes(data[:at] + chunk + data[at:])
    other.write_bytes(b'GIF89a' + bytes(64))
    with pytest.raises(AnnotationError) as caught:
        image_size(broken)
    assert str(caught.value) == (f"{broken}: image unreadable (a PNG file PIL cannot read: "
                                 f"broken PNG file (bad header checksum in b'tEXt'); re-save "
                                 f"it)")
    with pytest.raises(AnnotationError) as caught:
        image_size(other)
    assert str(caught.value) == (f'{other}: not a JPEG, PNG, WebP or BMP image (the formats '
                                 'the tools and training read)')


def test_an_image_over_pils_limit_is_refused_not_only_warned_of(tmp_path):
    """PIL refuses more than twice its pixel limit and only warns above the limit itself (a
    raw two-line warning), so a 12000x12000 picture (1.6x) passed image_size and was decoded
    whole, where the README says it is skipped. Refused in one line, with no PIL warning."""
    import struct
    import warnings
    import zlib

    from PIL import Image

    from animal_landmarks_mm.annotation import image_size, read_image

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data)))

    side = 12000
    assert Image.MAX_IMAGE_PIXELS < side * side < 2 * Image.MAX_IMAGE_PIXELS
    big = tmp_path / 'big.png'
    big.write_bytes(b'\x89PNG\r\n\x1a\n'
                    + chunk(b'IHDR', struct.pack('>IIBBBBB', side, side, 8, 0, 0, 0, 0))
                    + chunk(b'IDAT', zlib.compress(bytes(1024))) + chunk(b'IEND', b''))
    # read_image too, whoever calls it without asking image_size first (the annotator's
    # pre-annotation decoded an 88 KB PNG of 9500x9500 into 1.2 GB): OpenCV's limit is 2**30
    for read in (image_size, read_image):
        with warnings.catch_warnings(record=True) as caught_warnings:
            warnings.simplefilter('always')
            with pytest.raises(AnnotationError) as caught:
                read(big)
        assert str(caught.value) == (
            f"{big}: image refused, too many pixels (12000x12000 = 144,000,000, more than PIL's "
            f"limit of {Image.MAX_IMAGE_PIXELS:,}: could be a decompression bomb)"), read
        assert caught_warnings == [], read


def test_written_files_get_the_usual_mode_not_mkstemps_private_one(tmp_path):
    from animal_landmarks_mm.annotation import _UMASK
    write_json_atomic(tmp_path / 'a.json', dict(a=1))
    assert (tmp_path / 'a.json').stat().st_mode & 0o777 == 0o666 & ~_UMASK
    assert 0o666 & ~_UMASK != 0o600  # the test would prove nothing under umask 077


def test_stale_temporaries_of_killed_writes_are_removed_and_nothing_else(tmp_path):
    from animal_landmarks_mm.annotation import TEMPORARY_SUFFIX, remove_stale_temporaries
    old = tmp_path / f'.a.json.abcd1234{TEMPORARY_SUFFIX}'
    fresh = tmp_path / f'.b.json.k2j3h4g5{TEMPORARY_SUFFIX}'
    # a person's files, named like temporaries of other programs (kept whatever their age)
    others = [tmp_path / name for name in ('.a.json.tmp', 'a.json', '.hidden', 'x.tmp',
                                           '.c.json.abcd1234.tmp', '.notes.backup01.tmp',
                                           f'.c.json.abcd1234{TEMPORARY_SUFFIX}x')]
    for path in [old, fresh, *others]:
        path.write_text('{')
    hour_ago = os.path.getmtime(old) - 3600
    for path in [old, *others]:
        os.utime(path, (hour_ago, hour_ago))
    other_file = tmp_path / f'.other.json.abcd1234{TEMPORARY_SUFFIX}'
    other_file.write_text('{')
    os.utime(other_file, (hour_ago, hour_ago))
    assert remove_stale_temporaries(tmp_path, of='a.json') == [old]  # one file's only
    old.write_text('{')
    os.utime(old, (hour_ago, hour_ago))
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([old, other_file])
    assert fresh.exists() and all(p.exists() for p in others)


def test_hidden_names_are_not_images(tmp_path):
    from animal_landmarks_mm.annotation import scan_images
    for name in ('a.png', '.cat.png', 'b.JPG', 'c.txt'):
        (tmp_path / name).write_bytes(b'')
    (tmp_path / '.drafts').mkdir()
    assert [p.name for p in scan_images(tmp_path)[0]] == ['a.png', 'b.JPG']


def test_brackets_in_names_and_reasons_are_written_as_they_are(tmp_path):
    annotation = ImageAnnotation('crop[10,20].png', 64, 64, status='skipped',
                                 status_reason='same as [3,4]')
    save_annotation(tmp_path / 'a.json', annotation)
    again = load_annotation(tmp_path / 'a.json')
    assert (again.image, again.status_reason) == ('crop[10,20].png', 'same as [3,4]')
    points = [(1.5 + k, 2.0) for k in range(28)]
    save_annotation(tmp_path / 'b.json', ImageAnnotation('b.png', 64, 64, [Face(points)]))
    assert '[1.5, 2.0]' in (tmp_path / 'b.json').read_text()  # still one line per pair


def test_a_long_legal_name_is_written(tmp_path):
    path = tmp_path / ('猫' * 80 + '.json')  # 245 bytes: the temporary's name must stay legal
    write_json_atomic(path, dict(a=1))
    assert json.loads(path.read_text()) == dict(a=1)
    assert os.listdir(tmp_path) == [path.name]


def test_a_broken_exif_block_does_not_hide_the_image(tmp_path):
    import struct
    import zlib

    from PIL import Image

    from animal_landmarks_mm.annotation import image_size
    exif = b'Exif\x00\x00MM\x00*'  # an eXIf chunk cut short
    chunk = struct.pack('>I', len(exif)) + b'eXIf' + exif + struct.pack(
        '>I', zlib.crc32(b'eXIf' + exif))
    path = tmp_path / 'a.png'
    Image.new('RGB', (64, 48)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[:33] + chunk + data[33:])  # after the IHDR chunk
    assert Image.open(path).info.get('exif')  # PIL sees the broken block
    assert image_size(path) == (64, 48)


def test_image_names_that_are_not_utf8_are_left_out_and_named_apart(tmp_path):
    """os hands a name's bytes that are no UTF-8 over as lone surrogates, which no JSON file
    or page can hold: such images are left out, and named apart to be renamed."""
    from animal_landmarks_mm.annotation import scan_images
    for name in (b'caf\xe9.png', b'z.png', b'\xff.txt'):
        with open(os.path.join(os.fsencode(tmp_path), name), 'wb') as f:
            f.write(b'')
    images, undecodable = scan_images(tmp_path)
    assert [p.name for p in images] == ['z.png'] and undecodable == ['caf\udce9.png']


@pytest.mark.timeout(60)  # before the fix, reading the FIFO waited for a writer for good
def test_fifos_and_folders_are_never_read(tmp_path):
    from animal_landmarks_mm.annotation import NotRegularFileError, file_sha256
    fifo, folder = tmp_path / 'fifo.json', tmp_path / 'folder.json'
    os.mkfifo(fifo)
    folder.mkdir()
    for path in (fifo, folder):
        for read in (load_annotation, file_sha256):
            with pytest.raises(NotRegularFileError, match='not a regular file') as caught:
                read(path)
            assert str(caught.value) == f'{path}: not a regular file (a FIFO, a device or a ' \
                'folder): left alone'
    assert fifo.is_fifo()  # left as it was


def _undecodable_folder(tmp_path):
    """A folder ``d<0xff>`` in ``tmp_path``: its name is no UTF-8, a lone surrogate in Python."""
    folder = tmp_path / os.fsdecode(b'd\xff')
    folder.mkdir()
    return folder


@pytest.mark.timeout(60)  # a FIFO read would wait for a writer for good
def test_read_image_decodes_as_cv2_imread_under_any_name(tmp_path):
    """read_image gives the pixels cv2.imread gives (BGR, the EXIF orientation applied, as mmcv
    decodes them) also where cv2.imread cannot go: a path that is not UTF-8 crashed the process
    in cv2.imread (a segmentation fault). What it cannot decode is one line naming the file."""
    import cv2
    import numpy as np
    from PIL import Image

    from animal_landmarks_mm.annotation import NotRegularFileError, read_image
    folder = _undecodable_folder(tmp_path)
    pixels = np.zeros((20, 40, 4), np.uint8)
    pixels[:, :10] = (255, 0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown turned by 90 degrees
    for name, mode in (('a.jpg', 'RGB'), ('a.png', 'RGBA'), ('a.webp', 'RGB'),
                       ('grey.png', 'L'), ('plain.bmp', 'RGB')):
        picture = Image.fromarray(pixels).convert(mode)
        picture.save(tmp_path / name, **({} if name.endswith('.bmp') else dict(exif=exif)))
        expected = cv2.imread(str(tmp_path / name))  # an ASCII path: cv2.imread is safe
        (folder / name).write_bytes((tmp_path / name).read_bytes())
        decoded = read_image(folder / name)
        assert decoded.dtype == np.uint8 and decoded.shape == expected.shape, name
        assert np.array_equal(decoded, expected), name
    assert read_image(folder / 'a.png').shape == (40, 20, 3)  # turned, as mmcv shows it
    (folder / 'not.png').write_bytes(b'no image')
    (folder / 'empty.png').write_bytes(b'')
    for name in ('not.png', 'empty.png'):
        with pytest.raises(AnnotationError) as caught:
            read_image(folder / name)
        assert str(caught.value) == f'{folder / name}: not an image OpenCV can decode'
    with pytest.raises(AnnotationError, match='missing.png: image unreadable'):
        read_image(folder / 'missing.png')
    os.mkfifo(folder / 'fifo.png')
    with pytest.raises(NotRegularFileError, match='not a regular file'):
        read_image(folder / 'fifo.png')


def test_write_image_saves_under_any_name_and_refuses_what_it_cannot_encode(tmp_path):
    """write_image saves where cv2.imwrite crashed (a folder not UTF-8) or said only False (an
    unknown suffix); the picture reads back as written (PNG: lossless)."""
    import numpy as np

    from animal_landmarks_mm.annotation import read_image, write_image
    folder = _undecodable_folder(tmp_path)
    picture = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    write_image(folder / 'a.png', picture)
    np.testing.assert_array_equal(read_image(folder / 'a.png'), picture)
    write_image(folder / 'a.jpg', picture)
    assert read_image(folder / 'a.jpg').shape == picture.shape
    with pytest.raises(ValueError, match=r'a\.nope: the picture could not be encoded as \.nope'):
        write_image(folder / 'a.nope', picture)
    with pytest.raises(FileNotFoundError):
        write_image(folder / 'missing' / 'a.png', picture)
    assert sorted(p.name for p in folder.iterdir()) == ['a.jpg', 'a.png']  # no temporaries


def test_an_annotation_file_the_tools_would_not_read_back_is_never_written(tmp_path):
    """save_annotation refuses a file over ANNOTATION_MAX_BYTES, which every reader refuses
    (infer wrote one for thousands of boxes of one image; later runs kept it for good)."""
    from animal_landmarks_mm.annotation import (
        ANNOTATION_MAX_BYTES,
        AnnotationError,
        Face,
        ImageAnnotation,
        annotation_bytes,
        load_annotation,
        save_annotation,
    )
    face = Face([(float(k), float(k % 7)) for k in range(28)])
    one = ImageAnnotation('a.png', 4000, 3000, [face])
    per_face = len(annotation_bytes(ImageAnnotation('a.png', 4000, 3000, [face, face]))) - \
        len(annotation_bytes(one))
    many = ImageAnnotation('a.png', 4000, 3000, [face] * (ANNOTATION_MAX_BYTES // per_face + 1))
    with pytest.raises(AnnotationError, match=rf'^a\.png: its annotation file would be \d+ '
                       rf'bytes, more than the {ANNOTATION_MAX_BYTES} the tools read'):
        save_annotation(tmp_path / 'a.json', many)
    assert not list(tmp_path.iterdir())
    save_annotation(tmp_path / 'a.json', one)
    assert load_annotation(tmp_path / 'a.json').faces[0].landmarks == face.landmarks


def tiff_block(orientation: int) -> bytes:
    """An EXIF block (TIFF, without JPEG's ``Exif\\0\\0``) holding only an orientation."""
    from PIL import Image
    exif = Image.Exif()
    exif[0x0112] = orientation
    block = exif.tobytes()
    return block[6:] if block.startswith(b'Exif\x00\x00') else block


def png_with_exif_chunks(picture, before: list[bytes] = (), after: list[bytes] = (),
                         animated: bool = False) -> bytes:
    """The PNG of a PIL picture with ``eXIf`` chunks of the given data before its pixel data
    (IDAT) and after it; ``animated``: an APNG of two frames (the picture, then black)."""
    import io
    import struct
    import zlib

    from PIL import Image

    def chunk(data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + b'eXIf' + data + struct.pack(
            '>I', zlib.crc32(b'eXIf' + data))
    out = io.BytesIO()
    if animated:
        picture.save(out, 'PNG', save_all=True, append_images=[Image.new(picture.mode,
                                                                          picture.size)])
    else:
        picture.save(out, 'PNG')
    data = out.getvalue()
    pixels, end = data.index(b'IDAT') - 4, data.index(b'IEND') - 4
    return (data[:pixels] + b''.join(map(chunk, before)) + data[pixels:end] +
            b''.join(map(chunk, after)) + data[end:])


def test_image_size_reads_a_pngs_exif_as_opencv_and_says_where_a_browser_differs(tmp_path):
    """Training decodes with OpenCV, which applies the eXIf chunk libpng keeps: the first one
    that starts with a TIFF header (one with JPEG's Exif\\0\\0 first is dropped; PIL took it),
    before the pixel data or after it (PIL saw none there), and none in an animated PNG.
    image_size agreed with OpenCV on none of those three; Chromium reads only the first
    chunk, before the pixels: the orientation says when it would show the picture otherwise
    (the annotator then serves it turned)."""
    from PIL import Image

    from animal_landmarks_mm.annotation import image_orientation, image_size, read_image
    picture = Image.new('RGB', (200, 120), (90, 90, 90))
    six, one = tiff_block(6), tiff_block(1)
    cases = {  # name: (the chunks before, after, animated), (OpenCV's orientation, alike)
        'before.png': (([six], [], False), (6, True)),
        'prefixed.png': (([b'Exif\x00\x00' + six], [], False), (1, True)),
        'after.png': (([], [six], False), (6, False)),
        'prefixed_then_plain.png': (([b'Exif\x00\x00' + six, six], [], False), (6, False)),
        'upright_then_turned.png': (([one], [six], False), (1, True)),
        'turned_twice.png': (([], [six, one], False), (6, False)),
        'too_short.png': (([b'II*'], [], False), (1, True)),
        'animated.png': (([six], [], True), (1, False)),
    }
    for name, ((before, after, animated), expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(png_with_exif_chunks(picture, before, after, animated))
        height, width = read_image(path).shape[:2]  # as training decodes it
        assert image_size(path) == (width, height), name
        assert tuple(image_orientation(path)) == expected, name



def test_a_pngs_chunks_are_walked_only_as_far_as_they_are_chunks(tmp_path, monkeypatch):
    """Megabytes of zeros after a PNG's pixel data (a broken copy, a file with a hole; the
    converter benchmark's pictures) are no chunks (libpng stops at a chunk type that is not
    four letters): the orientation walk stepped over them 12 bytes a read, seconds per picture;
    it stops there now, and an eXIf chunk before them is still read."""
    from PIL import Image

    import animal_landmarks_mm.annotation as annotation_module
    from animal_landmarks_mm.annotation import image_orientation
    reads = []
    read_at = annotation_module._read_at
    monkeypatch.setattr(annotation_module, '_read_at',
                        lambda *args: reads.append(args[1:]) or read_at(*args))
    picture = Image.new('RGB', (200, 120), (90, 90, 90))
    for after, expected in (([], (1, True)), ([tiff_block(6)], (6, False))):
        data = png_with_exif_chunks(picture, after=after)
        end = data.index(b'IEND') - 4
        path = tmp_path / 'zeros.png'
        path.write_bytes(data[:end] + bytes(1 << 20) + data[end:])
        reads.clear()
        assert tuple(image_orientation(path)) == expected
        assert len(reads) < 10, len(reads)

def test_a_png_of_more_chunks_than_a_picture_has_is_refused(tmp_path, monkeypatch):
    """Empty chunks are chunks: 4 million after the pixels (48 MB) held each open for 4.8 s.
    The walk stops at PNG_MAX_CHUNKS and refuses the file in one line (the eXIf libpng keeps may
    follow: no orientation rather than a wrong one); a picture's chunks are walked whole."""
    import struct
    import zlib

    from PIL import Image

    import animal_landmarks_mm.annotation as annotation_module
    from animal_landmarks_mm.annotation import image_orientation, image_size
    empty = struct.pack('>I', 0) + b'tEXt' + struct.pack('>I', zlib.crc32(b'tEXt'))
    data = png_with_exif_chunks(Image.new('RGB', (200, 120), (90, 90, 90)),
                                after=[tiff_block(6)])
    pixels_end = data.index(b'eXIf') - 4  # the eXIf after the pixels, then IEND
    path = tmp_path / 'padded.png'
    path.write_bytes(data[:pixels_end] + empty * 2000 + data[pixels_end:])
    assert tuple(image_orientation(path)) == (6, False)  # 2,000 more chunks: walked
    monkeypatch.setattr(annotation_module, 'PNG_MAX_CHUNKS', 1000)
    with pytest.raises(AnnotationError) as caught:
        image_size(path)
    assert str(caught.value) == (f'{path}: image refused, more than 1,000 PNG chunks (a '
                                 'picture has a few thousand)')


def test_an_exif_block_that_is_no_tiff_is_read_upright(tmp_path):
    """A WebP whose EXIF block is no TIFF at all (PIL: SyntaxError) was refused as unreadable;
    OpenCV decodes its pixels upright, and so does image_size now."""
    from PIL import Image

    from animal_landmarks_mm.annotation import image_orientation, image_size, read_image
    for k, block in enumerate((b'garbage-not-tiff', b'Exif\x00\x00garbage-not-tiff')):
        path = tmp_path / f'{k}.webp'
        Image.new('RGB', (60, 40), (100, 150, 200)).save(path, 'WEBP', exif=block)
        assert read_image(path).shape[:2] == (40, 60)
        assert image_size(path) == (60, 40) and tuple(image_orientation(path)) == (1, True)



def _tiff_block(entries, big_endian=False) -> bytes:
    """A TIFF block of one directory of (tag, type, value) entries (type 3 SHORT, 4 LONG)."""
    import struct
    order = '>' if big_endian else '<'
    block = (b'MM\x00*' if big_endian else b'II*\x00') + struct.pack(order + 'IH', 8,
                                                                     len(entries))
    for tag, kind, value in entries:
        packed = struct.pack(order + ('HH' if kind == 3 else 'I'), *(
            (value, 0) if kind == 3 else (value,)))
        block += struct.pack(order + 'HHI', tag, kind, 1) + packed
    return block + struct.pack(order + 'I', 0)


@pytest.mark.parametrize('entries, big_endian, upright', [
    ([(0x0112, 3, 6)], True, False),  # as cameras write it: read alike
    ([(0x0112, 4, 6)], True, True),  # a LONG: OpenCV reads its first 16 bits (0)
    ([(0x0112, 4, 6)], False, False),  # ... which little-endian are the 6
    ([(0x0112, 3, 1), (0x0112, 3, 6)], False, True),  # two tags: OpenCV takes the first
    ([(0x0112, 3, 6), (0x0112, 3, 1)], False, False),
], ids=['short', 'long-big-endian', 'long-little-endian', 'tags-1-6', 'tags-6-1'])
@pytest.mark.parametrize('fmt', ['JPEG', 'WEBP', 'PNG'])
def test_image_size_reads_an_odd_exif_block_as_opencv_decodes_it(tmp_path, entries, big_endian,
                                                                 upright, fmt):
    """PIL's reading of an orientation stored as a LONG, or given twice, is not OpenCV's: the
    annotator and the converter took a picture's size turned where training (and infer) did
    not, so an annotation and its picture were in two frames (a helper's repro). The size is
    OpenCV's now, and a browser shown such a JPEG itself (which reads it as PIL does) is not
    trusted to turn it alike: the annotator serves it turned."""
    from PIL import Image

    from animal_landmarks_mm.annotation import image_orientation, image_size, read_image
    block = _tiff_block(entries, big_endian)
    path = tmp_path / f'odd.{fmt.lower()}'
    Image.new('RGB', (300, 100), (90, 120, 30)).save(
        path, fmt, exif=block if fmt == 'PNG' else b'Exif\x00\x00' + block)
    height, width = read_image(path).shape[:2]
    assert image_size(path) == (width, height) == ((300, 100) if upright else (100, 300))
    orientation = image_orientation(path)
    standard = entries == [(0x0112, 3, 6)] or (not big_endian and entries[-1][2] == 6
                                               and len(entries) == 1)
    assert orientation.value == (1 if upright else 6)
    if fmt == 'JPEG':
        assert orientation.shown_alike == standard
    # the rule read here for a block too large to ask OpenCV through a PNG agrees
    from animal_landmarks_mm.annotation import _first_orientation_entry
    assert _first_orientation_entry(block) == orientation.value


def test_a_webp_exif_block_too_large_for_the_probe_is_read_by_opencvs_rule(tmp_path):
    """OpenCV turns a WebP by an EXIF block of any size; the probe (a PNG chunk) holds at
    most 8 MB, and a larger block was read as upright (a review's repro)."""
    from PIL import Image

    from animal_landmarks_mm.annotation import image_size, read_image
    block = _tiff_block([(0x0112, 3, 6)]) + bytes(8_100_000)
    path = tmp_path / 'big_exif.webp'
    Image.new('RGB', (64, 40)).save(path, 'WEBP', lossless=True, exif=b'Exif\x00\x00' + block)
    height, width = read_image(path).shape[:2]
    assert image_size(path) == (width, height) == (40, 64)

@pytest.mark.parametrize('first, expected', [
    (_tiff_block([(0x010F, 3, 5)]), 6),  # no orientation in the first: OpenCV reads on
    (_tiff_block([(0x0112, 3, 8)])[:8] + bytes(2), 6),  # its directory past the end
    (b'II*\x00', 6),  # cut short
    (_tiff_block([(0x0112, 3, 1)]), 1),  # an orientation, upright: the second is not read
    (_tiff_block([(0x0112, 3, 8)]), 8),
    (_tiff_block([(0x0112, 3, 9)]), 1),  # an orientation out of range: upright, read no further
], ids=['no-orientation', 'past-the-end', 'cut-short', 'upright', 'turned', 'out-of-range'])
def test_a_jpeg_of_several_exif_segments_is_read_as_opencv_decodes_it(tmp_path, first,
                                                                      expected):
    """A JPEG with two Exif APP1 segments: PIL reads the first, OpenCV the first in which it
    finds an orientation, so a first segment without one (or unreadable) had the annotator
    take the picture upright and training turn it by the second: points and picture in two
    frames. Its size and orientation are OpenCV's now, and it is served turned (a browser's
    choice of segment is not trusted)."""
    from PIL import Image

    from animal_landmarks_mm.annotation import image_orientation, image_size, read_image

    def segment(block):
        data = b'Exif\x00\x00' + block
        return b'\xff\xe1' + struct.pack('>H', len(data) + 2) + data
    plain = tmp_path / 'plain.jpg'
    picture = Image.new('RGB', (300, 100), (90, 120, 30))
    picture.paste((250, 250, 250), (0, 0, 60, 30))  # a corner that says how it was turned
    picture.save(plain, 'JPEG')
    body = plain.read_bytes()[2:]
    path, alone = tmp_path / 'several.jpg', tmp_path / 'alone.jpg'
    path.write_bytes(b'\xff\xd8' + segment(first) + segment(_tiff_block([(0x0112, 3, 6)]))
                     + body)
    alone.write_bytes(b'\xff\xd8' + segment(_tiff_block([(0x0112, 3, expected)])) + body)
    trained = read_image(path)
    assert (trained == read_image(alone)).all()  # OpenCV's reading, as the test expects it
    assert image_size(path) == (trained.shape[1], trained.shape[0])
    assert image_orientation(path) == (expected, False)


def test_an_annotation_file_of_more_faces_than_any_picture_has_is_refused(tmp_path):
    """A file of more than ANNOTATION_MAX_FACES faces (16 MB hold tens of thousands: a
    detector's boxes) is refused in one line naming it, and never written: comparing its
    faces pair by pair stalled every tool for hours. A file of that many is read."""
    from animal_landmarks_mm.annotation import ANNOTATION_MAX_FACES
    face = Face([(float(k), float(k % 7)) for k in range(28)])
    path = tmp_path / 'crowd.json'
    path.write_text(json.dumps(ImageAnnotation(
        'a.png', 4000, 3000, [face] * (ANNOTATION_MAX_FACES + 1)).to_json()))
    with pytest.raises(AnnotationError) as caught:
        load_annotation(path)
    assert str(caught.value) == (f'{path}: {ANNOTATION_MAX_FACES + 1} faces, more than the '
                                 f'{ANNOTATION_MAX_FACES} an annotation file may hold')
    with pytest.raises(AnnotationError, match=(
            rf'^a\.png: its annotation file would hold {ANNOTATION_MAX_FACES + 1} faces, more '
            rf'than the {ANNOTATION_MAX_FACES} an annotation file may hold$')):
        save_annotation(tmp_path / 'new.json', ImageAnnotation(
            'a.png', 4000, 3000, [face] * (ANNOTATION_MAX_FACES + 1)))
    assert not (tmp_path / 'new.json').exists()
    save_annotation(path, ImageAnnotation('a.png', 4000, 3000, [face] * ANNOTATION_MAX_FACES))
    assert len(load_annotation(path).faces) == ANNOTATION_MAX_FACES


def test_a_bounded_read_takes_the_files_size_and_still_sees_it_grow(tmp_path, monkeypatch):
    """read_regular_file asked for max_bytes + 1 at once (Python allocates all of it: 512 MiB
    for each ONNX graph of a few megabytes); it reads the file's size and a byte more, and a file
    that grew since its size was taken is read on, never past one byte over the limit."""
    import tracemalloc

    from animal_landmarks_mm import annotation
    from animal_landmarks_mm.annotation import read_regular_file
    path = tmp_path / 'data.bin'
    path.write_bytes(b'x' * 1000)
    tracemalloc.start()
    try:
        assert read_regular_file(path, 256 << 20) == b'x' * 1000
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    fstat = os.fstat

    class Smaller:  # the size taken before the file grew to 1000 bytes
        def __init__(self, fd):
            self.st_size, self.st_mode = 10, fstat(fd).st_mode

    monkeypatch.setattr(annotation.os, 'fstat', Smaller)
    assert read_regular_file(path, 2000) == b'x' * 1000
    with pytest.raises(AnnotationError, match='more than 500 bytes, too large to read'):
        read_regular_file(path, 500)
