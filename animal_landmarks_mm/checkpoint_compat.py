"""Let torch >= 2.6 load mmengine checkpoints with ``weights_only=True`` (its default).

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; since torch 2.6 that means the
restricted unpickler, which refuses the few non-tensor objects an mmengine checkpoint holds in its
``message_hub`` and ``meta``: numpy arrays and scalars, and mmengine's ``HistoryBuffer``, whose
state names its statistics methods through ``getattr(HistoryBuffer, 'mean')``. Instead of turning
the safety off, this module allow-lists exactly those classes, and for ``getattr`` registers a
stand-in that only returns ``HistoryBuffer``'s registered statistics methods: any other
``getattr`` in a checkpoint is still refused. Likewise ``bytes``, which a pickle of an empty numpy
array calls for its empty buffer, gets a stand-in that only copies bytes: ``bytes(n)`` would let
a file of a few hundred bytes allocate ``n`` zero bytes (gigabytes) when it is read; and numpy's
``_reconstruct`` and ``dtype`` get stand-ins that take only what numpy's own pickles ask, while
``ndarray`` and the dtype classes cannot be called at all (see :func:`_numpy_globals`).

numpy arrays and scalars are read with numeric dtypes only (booleans, integers, floating-point
and complex numbers, in the machine's byte order), and each such dtype is numpy's own builtin
singleton (``np.dtype('f8')`` itself), never a copy: a pickle names a dtype and then gives it a
state (``BUILD``), and a copy takes whatever state the file gives, such as flags saying it holds
Python objects (an array then reads pointers from the file, or past its list: a segmentation
fault), whereas the builtin singletons ignore it. Text, bytes, void, structured, sub-array,
datetime and object dtypes, and byte-swapped ones, are refused: mmengine and mmpose checkpoints
never hold them (mmpose's ``dataset_meta`` arrays are colours, weights and sigmas; the numpy
random state in ``message_hub`` is ``uint32``), and several crash numpy or hold any number of
values in no bytes (``U0``).
"""
from __future__ import annotations

import functools
import io
import os
import pickle
import pickletools
import re
import struct
import zipfile
from typing import Any

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from .errors import printable

_installed = False
# HistoryBuffer's built-in statistics; it registers them lazily, on its first instance
_BUILTIN_STATISTICS = frozenset({'min', 'max', 'current', 'mean'})


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` restricted to what an mmengine ``HistoryBuffer`` pickles."""
    if obj is HistoryBuffer and (name in _BUILTIN_STATISTICS
                                 or name in HistoryBuffer._statistics_methods):
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'refused getattr({obj!r}, {name!r}) in a checkpoint (only HistoryBuffer statistics '
        'methods are allowed)')


def _restricted_bytes(*args: Any) -> bytes:
    """``bytes`` restricted to what a pickle of numpy arrays asks (``bytes()`` for an empty
    buffer; non-empty ones come through ``_codecs.encode``) and copies of bytes: never
    ``bytes(n)``, ``n`` zero bytes allocated from a number in the file, nor an iterable."""
    if not args:
        return b''
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    raise pickle.UnpicklingError(
        'refused bytes() of other than bytes in a checkpoint (a size would allocate that many '
        'bytes)')


# the end of the name under which a class is allow-listed for BUILD alone: a pickle names its
# globals by GLOBAL (module and name, each on a line of its own; torch's restricted unpickler
# has no STACK_GLOBAL), so no file can spell a name with a line break, and REDUCE or NEWOBJ
# only reach a class a GLOBAL put on the stack
_BUILD_ONLY = '\n(built by a pickle, never named by one)'


def _build_only(cls: type) -> tuple[type, str]:
    """``cls`` for ``add_safe_globals`` so that ``BUILD`` (``__setstate__``) may fill an
    instance of it that an allowed function made, while no pickle can call it."""
    return cls, f'{cls.__module__}.{cls.__qualname__}{_BUILD_ONLY}'


def _refused_ndarray(*args: Any) -> None:
    """What ``numpy.ndarray`` names in a checkpoint: an argument of ``_reconstruct`` (see
    :func:`_restricted_reconstruct`), never called: ``ndarray(shape)`` would allocate any size
    of uninitialised memory."""
    raise pickle.UnpicklingError('refused a call of numpy.ndarray in a checkpoint (a shape '
                                 'would allocate that much memory)')


def _restricted_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's ``_reconstruct`` restricted to what numpy's own pickles ask: an empty ``int8``
    ``ndarray`` (``(0,)``, ``b'b'``), which the ``__setstate__`` that follows resizes to the
    shape its bytes fill, with its own dtype. Any other shape would allocate that much
    uninitialised memory (a gigabyte from a file of 1.7 KB), which no ``__setstate__`` follows
    to fill; any other dtype (an object one) would stay in the checkpoint when none follows."""
    if subtype not in (_refused_ndarray, np.ndarray) or tuple(shape) != (0,) \
            or dtype not in (b'b', 'b'):
        raise pickle.UnpicklingError(
            'refused numpy _reconstruct of other than an empty ndarray in a checkpoint (numpy '
            'pickles arrays so; a shape would allocate that much memory)')
    from numpy._core import multiarray
    return multiarray._reconstruct(np.ndarray, (0,), b'b')


#: the dtype names read: numpy pickles a numeric dtype as its kind and size ('f8', 'c16',
#: 'b1'); no shape, field list or byte order, which np.dtype would parse (a sub-array's shape
#: through Python's literal_eval)
_DTYPE_NAME = re.compile(r'[a-z?]{1,2}[0-9]{0,2}', re.IGNORECASE)


def _restricted_dtype(name: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """``numpy.dtype`` as numpy pickles a numeric one (``dtype('f8', False, True)``), giving
    numpy's builtin singleton, never a copy.

    ``copy`` is ignored: a copy takes the state the ``BUILD`` after it gives, from the file
    (flags 63, "holds objects", after any check here; then an array of it reads pointers from
    the file's bytes, or past the end of its list: a segmentation fault), while numpy's builtin
    dtypes ignore ``__setstate__``. Accepted are the numeric kinds (``b``, ``i``, ``u``, ``f``,
    ``c``) in the machine's byte order, each numpy's builtin singleton. Refused are text,
    bytes, void, structured, sub-array, datetime (whose ``__setstate__`` crashes on a version-3
    state) and object dtypes, byte-swapped ones, and ``U0`` (itemsize 0: any number of values
    in no bytes); no mmengine or mmpose checkpoint holds them. A big-endian machine's pickle
    names its dtype as a little-endian one does and gives the byte order in the state, which
    the singleton ignores: such arrays would read byte-swapped, but no checkpoint here comes
    from one (and torch swaps the tensors itself).

    Raises:
        pickle.UnpicklingError: any other dtype, or a name that is not a kind and a size.
    """
    # numpy 2 passes align and copy as False and True, older numpy as 0 and 1
    if (isinstance(name, str) and _DTYPE_NAME.fullmatch(name)
            and type(align) in (bool, int) and align in (0, 1)):
        try:
            dtype = np.dtype(name, bool(align))
        except (TypeError, ValueError):
            dtype = None
        # a builtin singleton is what np.dtype gives for its own one-letter code, and the only
        # kind of dtype whose __setstate__ ignores the file's state
        if (dtype is not None and dtype.kind in 'biufc' and dtype.isbuiltin == 1
                and dtype.byteorder in '=|' and dtype.itemsize > 0 and dtype.names is None
                and dtype.subdtype is None and not dtype.hasobject
                and dtype is np.dtype(dtype.char)):
            return dtype
    raise pickle.UnpicklingError(
        f'refused a numpy dtype {printable(repr(name), one_line=True, limit=40)} in a checkpoint '
        '(only numbers in the machine\'s byte order are read: no text, records, dates or '
        'objects)')


#: numpy's builtin numeric dtypes, by their one-letter codes (bool, the integers, float16 to
#: long double, the complex ones): the only dtype classes ``BUILD`` may reach
_NUMERIC_DTYPE_CODES = '?bhilqBHILQefdgFDG'


def _numpy_globals() -> list[Any]:
    """numpy's pickling helpers, under both the numpy 2 (``_core``) and numpy 1 (``core``)
    module names, so checkpoints written under either load.

    numpy pickles an array as ``_reconstruct(ndarray, (0,), b'b')`` then ``BUILD`` with its
    shape, dtype and bytes (``ndarray.__setstate__`` refuses bytes of another size than the
    shape's, and a list, which only object arrays take), a scalar as ``scalar(dtype, bytes)``,
    and a dtype as ``dtype(name, align, copy)`` then ``BUILD``: the functions it calls are
    restricted stand-ins (:func:`_restricted_reconstruct`, :func:`_restricted_dtype`: numeric
    dtypes only, as numpy's builtin singletons), and ``ndarray`` and the classes of those
    singletons are allow-listed for ``BUILD`` alone (on a singleton it changes nothing). No
    other dtype class is listed: none can be made, and ``BUILD`` on one would fill it from the
    file.
    """
    from numpy._core import multiarray
    entries: list[Any] = [(_refused_ndarray, 'numpy.ndarray'), (_restricted_dtype, 'numpy.dtype'),
                          (_restricted_bytes, 'builtins.bytes'), _build_only(np.ndarray)]
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        entries += [(_restricted_reconstruct, f'{module}._reconstruct'),
                    (multiarray.scalar, f'{module}.scalar')]
    entries += [_build_only(cls) for cls in {type(np.dtype(c)) for c in _NUMERIC_DTYPE_CODES}]
    return entries


#: the most bytes a ``.pth`` file's pickles may hold (its structure and the numpy data of its
#: message hub; the tensors' bytes lie beside them). Measured: a training checkpoint of this
#: project's HRNetV2-W18 with its AdamW state holds 0.56 MB of pickle after two iterations, and
#: mmengine's message hub adds 19 bytes of pickle per logged value: each of the 6 training
#: scalars (loss, lr, times, ...) logs one an iteration into a HistoryBuffer kept to its last
#: 1,000,000, so a long run's checkpoint holds up to 114 MB of them, about 150 MB with the
#: validation ones. A lower cap would refuse a long run's checkpoints to resume or export; what
#: a hostile pickle costs beyond its bytes comes from its opcodes, :data:`MAX_PICKLE_OPCODES`.
MAX_PICKLE_BYTES = 256 * 1024 * 1024
#: the most opcodes a ``.pth`` file's pickles may hold. Measured: 154,463 in the training
#: checkpoint above (1,839 tensors, the AdamW moments of 921 parameters); a HistoryBuffer's
#: values are a few opcodes however many they are, so the count does not grow with a run.
#: Each opcode may make an object: a 10 MB file of 10 million empty dicts took 30 s and 800 MB
#: to unpickle; this many cost at most a few seconds and a few hundred MB.
MAX_PICKLE_OPCODES = 1_000_000


def refuse_allocating_pickle(path: str | os.PathLike) -> None:
    """Refuse a ``.pth`` file whose pickle calls ``bytearray`` or is larger than a checkpoint's,
    before ``torch.load`` runs it.

    torch's restricted unpickler allows ``bytearray`` by its own list, which
    ``add_safe_globals`` cannot narrow as it narrows ``bytes``: ``bytearray(n)`` in a file of a
    few hundred bytes would allocate ``n`` bytes (gigabytes) when read. No state dict or mmengine
    checkpoint calls it (numpy arrays come through ``bytes`` and ``_codecs.encode``), so a pickle
    that imports it is refused outright. The pickle's opcodes are read, not its bytes searched:
    a config text in ``meta`` may mention the word. A pickle of more bytes or opcodes than
    :data:`MAX_PICKLE_BYTES` and :data:`MAX_PICKLE_OPCODES` (the zip format's, or the legacy
    format's five together) is refused too: each opcode may make an object, tens of bytes of
    memory from one byte of file.

    A zip file whose records are compressed is refused too: torch writes them uncompressed, and
    ``torch.load`` would inflate a few kilobytes into gigabytes. So is one whose records overlap
    or hold more bytes than the file (see :func:`_refuse_overlapping_records`): one stored
    record listed many times would be read as many; and one whose central directory Python
    finds elsewhere than torch does (see :func:`_refuse_shifted_directory`).

    Raises:
        pickle.UnpicklingError: the import is there, the pickle is larger than those limits, or
            a record of the zip format is compressed, overlaps another or claims more bytes
            than the file holds, or the zip's directory is not where its end record says.
    """
    with open(path, 'rb') as f:
        if f.read(4) == b'PK\x03\x04':  # torch's zip format: the pickle is its own member
            with zipfile.ZipFile(f) as archive:
                _refuse_shifted_directory(f, archive)
                infos = archive.infolist()
                for info in infos:
                    if (info.compress_type != zipfile.ZIP_STORED
                            or info.file_size > info.compress_size):
                        # torch.save stores every record as it is; torch.load would inflate
                        # a compressed one, kilobytes of file to gigabytes (a zip bomb)
                        raise pickle.UnpicklingError(
                            f'{printable(info.filename, one_line=True, limit=100)} is '
                            'compressed, which torch.save never does (a compressed record may '
                            'unpack to gigabytes)')
                _refuse_overlapping_records(f, infos)
                for info in infos:
                    if not info.filename.endswith('.pkl'):
                        continue
                    if max(info.file_size, info.compress_size) > MAX_PICKLE_BYTES:
                        raise _too_large(f'{info.file_size:,} bytes, over the '
                                         f'{MAX_PICKLE_BYTES:,} read')
                    _check_pickle(io.BytesIO(archive.read(info)), MAX_PICKLE_OPCODES)
            return
        # the legacy format: five pickles (magic number, protocol, system info, the object,
        # the storage keys: torch.serialization's _legacy_load unpickles each), then the
        # tensors' bytes, which are not read; the limits count the five together
        f.seek(0)
        pickles, opcodes = _Bounded(f, MAX_PICKLE_BYTES), MAX_PICKLE_OPCODES
        for _ in range(_LEGACY_PICKLES):
            if not f.peek(1):
                return  # cut short: torch.load says so
            opcodes -= _check_pickle(pickles, opcodes)
        f.seek(0)
        _refuse_unlisted_storages(f)


class _Inert:
    """What :class:`_LegacyStorageReader` makes of every class and call a pickle names: an
    object taking any arguments, state and items, and doing nothing with them."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs) -> _Inert:
        return _Inert()

    def __setstate__(self, state) -> None:
        pass

    def __setitem__(self, key, value) -> None:
        pass

    def append(self, value) -> None:
        pass

    def extend(self, values) -> None:
        pass


class _LegacyStorageReader(pickle.Unpickler):
    """Reads a legacy-format pickle for the storages it refers to (``storages``: their keys,
    in order), calling nothing it names: every class is :class:`_Inert`. Run on pickles
    :func:`_check_pickle` has bounded."""

    def __init__(self, file):
        # torch's legacy loader reads text as UTF-8 (a Python 2 file's str included)
        super().__init__(file, encoding='utf-8')
        self.storages: list[object] = []

    def find_class(self, module: str, name: str) -> type:
        return _Inert

    def persistent_load(self, pid):
        # torch's legacy persistent id of a storage: ('storage', its type, key, location,
        # size, view)
        if isinstance(pid, tuple) and len(pid) == 6 and pid[0] == 'storage':
            self.storages.append(pid[2])  # as torch keys it: 0 and '0' are two storages
        return _Inert()


def _refuse_unlisted_storages(f: io.BufferedReader) -> None:
    """Refuse a legacy-format file whose storage list (its fifth pickle) is not the storages
    its object uses (its fourth).

    torch's ``_legacy_load`` makes each storage the object refers to with uninitialised memory
    and fills only the listed ones from the bytes after the list: a storage left out of it
    loaded as whatever memory it got (zeros, or another object's leftovers), a model's weights
    silently wrong. A key listed that the object never refers to is no file torch writes
    either. (Each listed storage's byte count is torch's own check.)

    Raises:
        pickle.UnpicklingError: the two differ (or a pickle is no legacy file's).
    """
    readers = [_LegacyStorageReader(f) for _ in range(_LEGACY_PICKLES)]
    try:
        loaded = [reader.load() for reader in readers]
    except Exception as e:  # what the pickles hold is another writer's: say it, do not load
        raise pickle.UnpicklingError(f'its pickles are no legacy torch file\'s '
                                     f'({e.__class__.__name__})') from None
    used, listed = readers[3].storages, loaded[4]
    # torch.save writes every key as text: another type could pass for a listed key of its
    # text (0 beside '0'), the storage it names never filled
    if not isinstance(listed, list) or not all(type(k) is str for k in [*listed, *used]):
        raise pickle.UnpicklingError('its storage keys are not all text, which torch.save '
                                     'never writes')
    used, listed_keys = set(used), set(listed)
    if len(listed_keys) != len(listed) or listed_keys != used:
        unlisted = len(used - listed_keys)
        raise pickle.UnpicklingError(
            f'its storage list is not the storages its tensors use ({unlisted} of {len(used)} '
            'left out, or others listed or twice), which torch.save never writes (torch would '
            'give a left-out tensor uninitialised memory)')


#: a ZIP64 end record's locator: signature, disk, the record's offset, disks
_ZIP64_LOCATOR = struct.Struct('<4sLQL')


def _refuse_shifted_directory(f: io.BufferedReader, archive: zipfile.ZipFile) -> None:
    """Refuse a zip whose central directory is not where its end record says.

    Python's ``zipfile`` takes such a difference for bytes before the archive (a
    self-extracting one) and reads the directory just before the end record, shifting every
    offset by it; torch's reader (miniz) reads the directory at the offset the end record
    gives. A file with two directories, one for each, passed every check here on records torch
    never read (and torch read overlapping ones). torch.save's zips, ZIP64 ones included, begin
    with their first record and have their directory where the end record says. The end record
    is found by ``zipfile._EndRecData``, as ``ZipFile`` itself found it.

    A ZIP64 end record is found differently too: Python's reads it just before its locator
    (the 20 bytes before the end record), miniz where the locator's offset says. A locator
    pointing at another ZIP64 record, with another directory, had torch read records nobody
    checked (four entries of one record, read as four tensors): the locator must point at
    the record Python read.
    """
    end = zipfile._EndRecData(f)  # type: ignore[attr-defined]
    if end is None or end[zipfile._ECD_OFFSET] != archive.start_dir:  # type: ignore[attr-defined]
        raise pickle.UnpicklingError(
            'its zip directory is not where its end record says, which torch.save never writes '
            '(torch would read other records than the ones checked)')
    location = end[zipfile._ECD_LOCATION]  # type: ignore[attr-defined]
    if location < _ZIP64_LOCATOR.size:
        return
    f.seek(location - _ZIP64_LOCATOR.size)
    signature, _, zip64_at, _ = _ZIP64_LOCATOR.unpack(f.read(_ZIP64_LOCATOR.size))
    if signature != zipfile.stringEndArchive64Locator:  # type: ignore[attr-defined]
        return
    read_at = location - _ZIP64_LOCATOR.size - zipfile.sizeEndCentDir64  # type: ignore
    if (end[zipfile._ECD_SIGNATURE] != zipfile.stringEndArchive64  # type: ignore[attr-defined]
            or zip64_at != read_at):
        raise pickle.UnpicklingError(
            'its ZIP64 end record is not where its locator says, which torch.save never writes '
            '(torch would read other records than the ones checked)')


def _refuse_overlapping_records(f: io.BufferedReader, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse a zip whose records overlap, or whose records' sizes add up to more than the file.

    The central directory gives each record's offset and size, and nothing in the zip format
    stops two entries from pointing at the same bytes: 100 entries of one 4 MB stored record
    made a 4 MB file that ``torch.load`` read as 400 MB of tensors (with ~40,000 tensors under
    :data:`MAX_PICKLE_OPCODES`, a 40 MB file would claim hundreds of gigabytes). torch.save
    writes each record once, one after the other, so a record is its local header (30 bytes,
    its name and its extra field, which holds torch's 64-byte alignment padding and any ZIP64
    sizes: both read from the header itself, as the central directory's copy may differ) and
    its stored bytes, and no two such ranges may share a byte. A data descriptor after the
    bytes (torch writes one) is not counted, so it never makes an overlap. The sizes are the
    central directory's (``ZipInfo``, ZIP64 ones included), which torch reads too; stored
    records (see the compression check before this) hold no more than the file.
    """
    end, last = -1, None  # where the records read so far end, and the one ending there
    for info in sorted(infos, key=lambda info: info.header_offset):
        name = printable(info.filename, one_line=True, limit=100)
        f.seek(info.header_offset)
        header = f.read(30)
        if len(header) < 30 or header[:4] != b'PK\x03\x04':
            raise pickle.UnpicklingError(f'{name} has no record where the zip directory says')
        name_length, extra_length = int.from_bytes(header[26:28], 'little'), \
            int.from_bytes(header[28:30], 'little')
        if info.header_offset < end:
            raise pickle.UnpicklingError(
                f'{name} and {printable(last, one_line=True, limit=100)} overlap in the file, '
                'which torch.save never writes: one stored record listed many times is read '
                'as many, more memory than the file holds')
        record_end = info.header_offset + 30 + name_length + extra_length + info.compress_size
        if record_end > end:
            end, last = record_end, info.filename
    file_size = os.fstat(f.fileno()).st_size
    total = sum(info.file_size for info in infos)
    if total > file_size:
        raise pickle.UnpicklingError(
            f'its records claim {total:,} bytes in a file of {file_size:,}, which stored '
            'records cannot hold')


_LEGACY_PICKLES = 5
_STRING_OPS = frozenset({'UNICODE', 'SHORT_BINUNICODE', 'BINUNICODE', 'BINUNICODE8', 'STRING',
                         'BINSTRING', 'SHORT_BINSTRING'})


def _too_large(size: str) -> pickle.UnpicklingError:
    """The error of a pickle past one of the limits of :func:`refuse_allocating_pickle`."""
    return pickle.UnpicklingError(f'its pickle holds {size}, more than a checkpoint\'s '
                                  'structure takes')


class _Bounded:
    """A file's pickles read no further than ``limit`` bytes from where they begin: a string
    opcode's length comes from the file, and ``pickletools`` would read that many bytes (the
    tensors' gigabytes after the legacy format's pickles) before the next opcode is counted.
    The bytes read are counted here, not asked of the file (its ``tell`` is a system call for
    each opcode)."""

    def __init__(self, f: io.BufferedReader, limit: int):
        self._file, self._left, self._read = f, limit, 0

    def _count(self, size: int) -> None:
        if size > self._left:
            raise _too_large(f'over the {MAX_PICKLE_BYTES:,} bytes read')
        self._left -= size
        self._read += size

    def read(self, size: int) -> bytes:
        self._count(size)
        data = self._file.read(size)
        self._left += size - len(data)  # the file ended: fewer read
        self._read -= size - len(data)
        return data

    def readline(self) -> bytes:
        line = self._file.readline(self._left + 1)
        self._count(len(line))
        return line

    def tell(self) -> int:
        return self._read


def _check_pickle(stream: io.BufferedIOBase | _Bounded,
                  opcodes: int = MAX_PICKLE_OPCODES) -> int:
    """Read one pickle's opcodes (up to its STOP), following what each puts on the stack and
    in the memo, and refuse what would allocate memory no byte of the file backs
    (:func:`_refuse_import`, :func:`_refuse_call`), and a pickle of more than ``opcodes``
    opcodes. The imports are found by ``GLOBAL`` and by ``STACK_GLOBAL`` of two strings pushed
    before it, directly or from the memo; the calls by ``REDUCE`` and ``NEWOBJ``.

    Returns:
        How many opcodes it holds.
    """
    # what an entry of the stack is known to be: ('global', 'module.name'), ('str', text),
    # ('tuple', entries); None for anything else
    stack: list[tuple | None] = []
    marks: list[int] = []  # the stack's height at each MARK
    memo: dict[object, tuple | None] = {}
    count = 0

    def take(number: int) -> list[tuple | None]:
        taken = stack[len(stack) - number:] if number else []
        del stack[len(stack) - len(taken):]
        return [None] * (number - len(taken)) + taken  # (a broken pickle: torch says so)

    for op, arg, _ in pickletools.genops(stream):
        count += 1
        if count > opcodes:
            raise _too_large(f'over the {MAX_PICKLE_OPCODES:,} opcodes read')
        name = op.name
        if name == 'MARK':
            marks.append(len(stack))
            continue
        if name in ('PUT', 'BINPUT', 'LONG_BINPUT', 'MEMOIZE'):
            memo[len(memo) if name == 'MEMOIZE' else arg] = stack[-1] if stack else None
            continue
        before = op.stack_before
        if pickletools.markobject in before:  # the entries above the last mark, then those
            # below it the opcode takes too (APPENDS: the list)
            height = marks.pop() if marks else 0
            above = stack[height:]
            del stack[height:]
            taken = take(before.index(pickletools.markobject)) + above
        else:
            taken = take(len(before))
        result: tuple | None = None
        if name == 'GLOBAL':
            module, _, attr = str(arg).partition(' ')
            _refuse_import(module, attr)
            result = ('global', f'{module}.{attr}')
        elif name == 'STACK_GLOBAL':
            if all(entry is not None and entry[0] == 'str' for entry in taken):
                _refuse_import(taken[0][1], taken[1][1])
                result = ('global', f'{taken[0][1]}.{taken[1][1]}')
        elif name in _STRING_OPS:
            result = ('str', arg)
        elif name in ('EMPTY_TUPLE', 'TUPLE1', 'TUPLE2', 'TUPLE3', 'TUPLE'):
            result = ('tuple', tuple(taken))
        elif name in ('GET', 'BINGET', 'LONG_BINGET'):
            result = memo.get(arg)
        elif name in ('REDUCE', 'NEWOBJ', 'NEWOBJ_EX'):
            _refuse_call(taken[0], taken[1:])
        if name == 'DUP':
            stack += taken * 2
        else:
            stack += [result] * len(op.stack_after)
    return count


@functools.cache
def _allocating_classes() -> frozenset[str]:
    """The classes torch's restricted unpickler lets a pickle call that make memory of a size
    given to them, by the names it looks them up by: ``torch.Tensor``, the legacy
    ``torch.FloatTensor`` and the like, and the storages (``torch.storage.TypedStorage``,
    ``UntypedStorage``; the legacy ``torch.FloatStorage`` names are no classes there)."""
    return frozenset({'torch.Tensor', *(f'{cls.__module__}.{cls.__name__}' for cls in (
        *torch._tensor_classes, torch.storage.TypedStorage, torch.storage.UntypedStorage))})


#: torch's function rebuilding a tensor of a subclass, which calls its first argument with its
#: third (``func(*args)``) unchecked by the restricted unpickler
_REBUILD_FROM_TYPE = 'torch._tensor._rebuild_from_type_v2'


def _refuse_import(module: str, attr: str) -> None:
    """Refuse a pickle's import of ``bytearray``: torch's restricted unpickler allows it by its
    own list, which ``add_safe_globals`` cannot narrow as it narrows ``bytes``, and
    ``bytearray(n)`` allocates ``n`` bytes. No checkpoint names it (numpy arrays come through
    ``bytes`` and ``_codecs.encode``).

    Raises:
        pickle.UnpicklingError: naming the import.
    """
    if attr == 'bytearray' and module in ('builtins', '__builtin__'):
        raise pickle.UnpicklingError('refused a pickle importing bytearray (a size given to '
                                     'it would allocate that many bytes; no checkpoint needs '
                                     'it)')


def _refuse_call(function: tuple | None, arguments: list[tuple | None]) -> None:
    """Refuse a pickle's call of a tensor or storage class (:func:`_allocating_classes`) with
    arguments, directly or through :data:`_REBUILD_FROM_TYPE`: ``torch.Tensor(28, 270, 1, 1)``
    or ``TypedStorage(400_000_000)`` makes a tensor of whatever memory held, no byte of the
    file behind it (a weight of garbage loaded, trained on and exported, or gigabytes from a
    file of a few hundred bytes). ``torch.save`` names these classes only as types (a
    storage's in its persistent id, a subclass's), or calls one with nothing (the legacy
    format's empty tensor, filled by ``BUILD`` from the file's storage). A call whose
    arguments are not known here (built by other opcodes) counts as one with arguments.

    Raises:
        pickle.UnpicklingError: naming the class.
    """
    def refuse_calling(cls: str, called_with: tuple | None) -> None:
        if cls in _allocating_classes() and called_with != ('tuple', ()):
            raise pickle.UnpicklingError(
                f'refused a pickle calling {printable(cls, limit=60)} with arguments (it would '
                'make a tensor or storage no byte of the file holds; torch.save never does)')

    if function is None or function[0] != 'global':
        return
    called_with = arguments[0] if len(arguments) == 1 else ('unknown',)
    refuse_calling(function[1], called_with)
    if function[1] == _REBUILD_FROM_TYPE and called_with is not None \
            and called_with[0] == 'tuple' and called_with[1][:1] != (None,):
        inner = called_with[1]
        if len(inner) >= 3 and inner[0][0] == 'global':
            refuse_calling(inner[0][1], inner[2])
        elif inner and inner[0][0] == 'global':
            refuse_calling(inner[0][1], None)


def allow_mmengine_checkpoints() -> None:
    """Allow-list the globals of mmengine checkpoints for ``torch.load(weights_only=True)``.

    Idempotent; called when :mod:`animal_landmarks_mm` is imported, which every config of this
    project does through ``custom_imports`` before any checkpoint is loaded (``load_from``,
    ``--resume``, ``tools/test.py``, ``mmpose.apis.init_model``).
    """
    global _installed
    if _installed:
        return
    torch.serialization.add_safe_globals([
        HistoryBuffer,
        (_history_buffer_getattr, 'builtins.getattr'),
        *_numpy_globals(),
    ])
    _installed = True
