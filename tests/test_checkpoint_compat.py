"""torch's weights_only loading accepts mmengine checkpoints, and nothing more than needed."""
import collections
import io
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from numpy._core import multiarray

import animal_landmarks_mm  # noqa: F401  (installs the allow-list)


class _Payload:
    def __reduce__(self):
        return (getattr, (np.ndarray, 'tofile'))


class _Unknown:
    pass


def test_mmengine_style_checkpoint_loads_with_weights_only(tmp_path):
    hub = MessageHub.get_instance('compat-test')
    hub.update_scalar('train/loss', 0.5)
    hub.update_scalar('train/loss', np.float64(0.25))
    # an empty array pickles its empty buffer as bytes(): allowed
    ckpt = dict(meta=dict(seed=np.int64(3), dataset_meta=dict(flip=np.arange(4)),
                          empty=np.zeros((0, 2))),
                state_dict=dict(w=torch.ones(2)), message_hub=hub.state_dict())
    torch.save(ckpt, tmp_path / 'c.pth')
    loaded = torch.load(tmp_path / 'c.pth')  # the default: weights_only=True on torch >= 2.6
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and buffer.mean() == pytest.approx(0.375)
    assert loaded['meta']['dataset_meta']['flip'].tolist() == [0, 1, 2, 3]
    assert loaded['meta']['empty'].shape == (0, 2)


@pytest.mark.parametrize('payload', [_Payload(), _Unknown()])
def test_other_globals_are_still_refused(tmp_path, payload):
    torch.save(dict(x=payload), tmp_path / 'evil.pth')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / 'evil.pth')


class _Allocates:
    def __reduce__(self):
        return (bytes, (10 ** 15,))


def test_bytes_of_a_size_is_refused_not_allocated(tmp_path):
    """bytes is allowed for numpy's empty buffers; bytes(n) from a tiny file would allocate n
    zero bytes (a MemoryError here, gigabytes of memory for a smaller n)."""
    torch.save(dict(x=_Allocates()), tmp_path / 'bomb.pth')
    with pytest.raises(pickle.UnpicklingError, match=r'refused bytes\(\) of other than bytes'):
        torch.load(tmp_path / 'bomb.pth')


class _AllocatesArray:
    def __reduce__(self):
        return (bytearray, (10 ** 15,))


def test_bytearray_of_a_size_is_refused_before_torch_runs_the_pickle(tmp_path):
    """torch allows bytearray by a list add_safe_globals cannot narrow: the reader refuses the
    pickle before torch.load, in the zip format and the legacy one."""
    from animal_landmarks_mm.checkpoints import CheckpointError, read_checkpoint
    torch.save(dict(x=_AllocatesArray()), tmp_path / 'bomb.pth')
    torch.save(dict(x=_AllocatesArray()), tmp_path / 'legacy.pth',
               _use_new_zipfile_serialization=False)
    for name in ('bomb.pth', 'legacy.pth'):
        with pytest.raises(CheckpointError, match='refused a pickle importing bytearray'):
            read_checkpoint(tmp_path / name)
    # protocol 4 imports by STACK_GLOBAL of two memoized strings
    import io

    from animal_landmarks_mm.checkpoint_compat import _check_pickle
    with pytest.raises(pickle.UnpicklingError, match='importing bytearray'):
        _check_pickle(io.BytesIO(pickle.dumps(dict(x=_AllocatesArray()), protocol=4)))
    _check_pickle(io.BytesIO(pickle.dumps(dict(bytearray='bytearray'), protocol=4)))
    # the word elsewhere is no import: a config text in meta, tensor bytes after the pickles
    word = torch.frombuffer(bytearray(b'..bytearray..'), dtype=torch.uint8)
    for legacy in (False, True):
        torch.save(dict(state_dict=dict(w=word), meta=dict(cfg='x = bytearray(3)  # bytearray')),
                   tmp_path / 'ok.pth', _use_new_zipfile_serialization=not legacy)
        state_dict, meta = read_checkpoint(tmp_path / 'ok.pth')
        assert bytes(state_dict['w'].tolist()) == b'..bytearray..' and 'bytearray' in meta['cfg']


class _Uninitialised:
    """A class called with arguments: pickled as an import of it and a call (REDUCE)."""

    def __init__(self, cls, *arguments):
        self.cls, self.arguments = cls, arguments

    def __reduce__(self):
        return (self.cls, self.arguments)


class _SubclassRebuilt:
    """torch's rebuild of a tensor subclass, ``_rebuild_from_type_v2(func, type, args,
    state)``, whose ``func(*args)`` the restricted unpickler does not check."""

    def __reduce__(self):
        from torch._tensor import _rebuild_from_type_v2
        return (_rebuild_from_type_v2, (torch.Tensor, torch.Tensor, (28, 270, 1, 1), {}))


def _storage_weight(count: int):
    """A float32 weight rebuilt from a storage the pickle makes of ``count`` values."""
    class Rebuilt:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2,
                    (_Uninitialised(torch.storage.TypedStorage, count), 0, (count,), (1,), False,
                     collections.OrderedDict()))
    return Rebuilt()


@pytest.mark.parametrize('weight, name', [
    (_Uninitialised(torch.Tensor, 28, 270, 1, 1), 'torch.Tensor'),
    (_Uninitialised(torch.FloatTensor, 500_000), 'torch.FloatTensor'),
    (_Uninitialised(torch.cuda.HalfTensor, 3), 'torch.cuda.HalfTensor'),
    (_storage_weight(400_000), 'torch.storage.TypedStorage'),
    (_Uninitialised(torch.storage.UntypedStorage, 10**6), 'torch.storage.UntypedStorage'),
    (_SubclassRebuilt(), 'torch.Tensor'),
], ids=['Tensor', 'FloatTensor', 'cuda.HalfTensor', 'TypedStorage', 'UntypedStorage',
        'rebuild_from_type'])
def test_a_tensor_of_no_stored_bytes_is_refused_before_torch_runs_the_pickle(tmp_path, weight,
                                                                            name):
    """torch's restricted unpickler lets a pickle call torch.Tensor (and torch.FloatTensor and
    the like, and the storage classes) with a size: a tensor of whatever memory held, no byte
    of the file behind it. A weight so made was read, trained on and exported (its values
    garbage), and a 1.3 kB file became a 2 GB tensor, and a 2 GB release file (a hunt's
    repro; a review's through TypedStorage and through _rebuild_from_type_v2). No checkpoint
    calls these classes with arguments: refused, in both formats and by either import opcode.
    torch.save names them as types, which reads (float8 and uint16 weights: UntypedStorage in
    their persistent ids)."""
    from animal_landmarks_mm.checkpoint_compat import _check_pickle
    from animal_landmarks_mm.checkpoints import CheckpointError, read_checkpoint
    weights = {'head.final_layer.weight': weight, 'backbone.conv1.weight': torch.ones(4)}
    torch.save(weights, tmp_path / 'zip.pth')
    torch.save(weights, tmp_path / 'legacy.pth', _use_new_zipfile_serialization=False)
    for path in (tmp_path / 'zip.pth', tmp_path / 'legacy.pth'):
        with pytest.raises(CheckpointError) as caught:
            read_checkpoint(path)
        assert str(caught.value) == (
            f'{path}: not a checkpoint torch can read safely (refused a pickle calling {name} '
            'with arguments (it would make a tensor or storage no byte of the file holds; '
            'torch.save never does))')
    with pytest.raises(pickle.UnpicklingError, match=f'calling {re.escape(name)} '):
        _check_pickle(io.BytesIO(pickle.dumps(weight, protocol=4)))
    # the names as text, or as types, are no calls
    _check_pickle(io.BytesIO(pickle.dumps(dict(cfg=f'x = {name}(3)'), protocol=4)))
    for dtype in (torch.float8_e4m3fn, torch.uint16, torch.bfloat16):
        torch.save(dict(w=torch.ones(3, dtype=dtype)), tmp_path / 'typed.pth')
        assert read_checkpoint(tmp_path / 'typed.pth')[0]['w'].dtype == dtype


def test_a_compressed_member_is_refused_before_it_is_unpacked(tmp_path):
    """torch.save stores a checkpoint's records uncompressed; torch.load inflates a deflated
    one, so a file of kilobytes could unpack to gigabytes (a zip bomb: reviewer's
    /tmp/reviews/ckpt/mk.py, 50 MB from a 49 KB file). Any compressed member is refused."""
    import zipfile

    from animal_landmarks_mm.checkpoints import CheckpointError, read_checkpoint
    torch.save(dict(w=torch.zeros(100_000, dtype=torch.uint8)), tmp_path / 'stored.pth')
    with zipfile.ZipFile(tmp_path / 'stored.pth') as source:
        assert {info.compress_type for info in source.infolist()} == {zipfile.ZIP_STORED}
        for deflated in ('data.pkl', '/data/0'):  # the pickle, or a tensor's bytes
            name = tmp_path / f'deflated_{deflated.strip("/").replace("/", "_")}.pth'
            with zipfile.ZipFile(name, 'w') as out:
                for info in source.infolist():
                    out.writestr(info.filename, source.read(info),
                                 compress_type=zipfile.ZIP_DEFLATED
                                 if info.filename.endswith(deflated) else zipfile.ZIP_STORED)
            assert deflated == 'data.pkl' or name.stat().st_size < 10_000  # 100 KB of zeros
            with pytest.raises(CheckpointError) as info:
                read_checkpoint(name)
            message = str(info.value)
            assert 'compressed' in message and str(name) in message and '\n' not in message
    assert read_checkpoint(tmp_path / 'stored.pth')[0]['w'].shape == (100_000,)


def test_the_fifth_pickle_of_the_legacy_format_is_read_too(tmp_path):
    """torch's legacy loader unpickles five pickles: magic number, protocol, system info, the
    object, then the storage keys. A bytearray(n) in the fifth (a 387-byte file that allocated
    1.5 GB: reviewer's /tmp/reviews/ckpt/mk5.py) is refused like one in the others."""
    import io
    import pickletools

    from animal_landmarks_mm.checkpoint_compat import refuse_allocating_pickle
    from animal_landmarks_mm.checkpoints import CheckpointError, read_checkpoint
    torch.save(dict(w=torch.ones(2)), tmp_path / 'legacy.pth', _use_new_zipfile_serialization=False)
    data = (tmp_path / 'legacy.pth').read_bytes()
    stream = io.BytesIO(data)
    for _ in range(4):
        for _ in pickletools.genops(stream):
            pass
    fifth = pickle.dumps(_AllocatesArray(), protocol=2)
    (tmp_path / 'fifth.pth').write_bytes(data[:stream.tell()] + fifth + data[stream.tell():])
    with pytest.raises(pickle.UnpicklingError, match='importing bytearray'):
        refuse_allocating_pickle(tmp_path / 'fifth.pth')
    with pytest.raises(CheckpointError, match='refused a pickle importing bytearray'):
        read_checkpoint(tmp_path / 'fifth.pth')
    assert read_checkpoint(tmp_path / 'legacy.pth')[0]['w'].tolist() == [1, 1]


class _ReconstructsLarge:
    """numpy's _reconstruct of any shape: 1 GiB of uninitialised memory from a 1.7 KB file,
    which an mmpose export copied into its release file (reviewer's npalloc.pth)."""

    def __reduce__(self):
        return (multiarray._reconstruct, (np.ndarray, (2 ** 30,), b'b'))


class _CallsNdarray:
    def __reduce__(self):
        return (np.ndarray, ((2 ** 30,), 'i1'))


class _ObjectArrayOfAnotherLength:
    """numpy's ndarray.__setstate__ of an object array given a list of another length reads
    past it: the process dies of a segmentation fault."""

    def __reduce__(self):
        return (multiarray._reconstruct, (np.ndarray, (0,), b'b'),
                (1, (4,), np.dtype('O'), False, []))


class _ObjectDType:
    def __reduce__(self):
        return (np.dtypes.ObjectDType, ())


_READ_EACH = """
import sys
from animal_landmarks_mm.checkpoints import CheckpointError, read_checkpoint
for path in sys.argv[1:]:
    try:
        read_checkpoint(path)
        print('loaded', path, flush=True)
    except CheckpointError as e:
        print('refused', e, flush=True)
"""


def test_numpy_objects_in_a_checkpoint_allocate_nothing_and_crash_nothing(tmp_path):
    """Arrays come as numpy pickles them (``_reconstruct(ndarray, (0,), b'b')``, then their
    state, whose bytes bound their size); an array of another shape, ndarray called, and object
    arrays (a segmentation fault) are refused. Read in another process: a crash is a result."""
    payloads = dict(large=_ReconstructsLarge(), ndarray=_CallsNdarray(),
                    object_array=_ObjectArrayOfAnotherLength(), object_dtype=_ObjectDType())
    for name, payload in payloads.items():
        torch.save(dict(state_dict=dict(w=torch.ones(1)), meta=dict(x=payload)),
                   tmp_path / f'{name}.pth')
    proc = subprocess.run([sys.executable, '-c', _READ_EACH,
                           *(str(tmp_path / f'{name}.pth') for name in payloads)],
                          capture_output=True, text=True, timeout=300)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == len(payloads), (proc.returncode, proc.stdout,
                                                                   proc.stderr[-2000:])
    reasons = dict(large='refused numpy _reconstruct of other than an empty ndarray',
                   ndarray='refused a call of numpy.ndarray',
                   object_array="refused a numpy dtype 'O8'",
                   object_dtype='GLOBAL numpy.dtypes.ObjectDType was not an allowed global')
    for line, name in zip(lines, payloads):
        assert line.startswith(f'refused {tmp_path / name}.pth: not a checkpoint torch can '
                               'read safely (') and reasons[name] in line, line


def test_arrays_as_numpy_pickles_them_still_load(tmp_path):
    """Arrays and scalars of numbers, in any layout, load as they were, each dtype numpy's own
    singleton; arrays of text or records are refused (no mmengine checkpoint holds them:
    mmpose's dataset_meta arrays are numbers)."""
    arrays = dict(ints=np.arange(6).reshape(2, 3), empty=np.zeros((0, 2)),
                  fortran=np.asfortranarray(np.ones((2, 3), np.float16)),
                  strided=np.arange(10)[::3], flags=np.array([True, False]),
                  colors=np.zeros((28, 3), np.uint8), sigmas=np.full(28, 0.025, np.float32),
                  rng=np.random.RandomState(0).get_state(), complex=np.ones(2, np.complex64),
                  scalars=[np.int64(3), np.float32(0.5), np.bool_(True), np.float64('inf'),
                           np.uint8(7)])
    for legacy in (False, True):
        torch.save(dict(state_dict=dict(w=torch.ones(1)), meta=arrays), tmp_path / 'ok.pth',
                   _use_new_zipfile_serialization=not legacy)
        loaded = torch.load(tmp_path / 'ok.pth', weights_only=True)['meta']
        for key, value in arrays.items():
            if key in ('scalars', 'rng'):
                assert [type(v) for v in loaded[key]] == [type(v) for v in value], key
                assert all(np.array_equal(a, b) for a, b in zip(loaded[key], value)), key
            else:
                assert type(loaded[key]) is np.ndarray and loaded[key].dtype is value.dtype
                assert np.array_equal(loaded[key], value), key
        assert loaded['rng'][1].dtype is np.dtype(np.uint32)
    for other in (np.array(['a', 'bc']), np.array([b'a']),
                  np.zeros(2, dtype=[('a', 'i4'), ('b', 'f8')]),
                  np.array(['2020-01-01'], dtype='M8[D]'), np.str_('a')):
        torch.save(dict(meta=dict(x=other)), tmp_path / 'other.pth')
        with pytest.raises(pickle.UnpicklingError, match='refused a numpy dtype'):
            torch.load(tmp_path / 'other.pth', weights_only=True)


class _DType:
    """A dtype as numpy pickles one, ``dtype(name, align, copy)`` then ``BUILD`` with a state
    the file chooses (its flags, 63 = holds objects; its byte order; its size)."""

    def __init__(self, name, state=None, flags=(False, True)):
        self.name, self.state, self.flags = name, state, flags

    def __reduce__(self):
        if self.state is None:
            return (np.dtype, (self.name, *self.flags))
        return (np.dtype, (self.name, *self.flags), self.state)


class _Array:
    """An array as numpy pickles one: an empty ndarray, then ``BUILD`` with its shape, dtype
    and data (bytes, or a list for object arrays)."""

    def __init__(self, shape, dtype, data):
        self.shape, self.dtype, self.data = shape, dtype, data

    def __reduce__(self):
        return (multiarray._reconstruct, (np.ndarray, (0,), b'b'),
                (1, self.shape, self.dtype, False, self.data))


_STATE = (3, '<', None, None, None, -1, -1, 0)
_HOLDS_OBJECTS = 63  # NPY_OBJECT_DTYPE_FLAGS


def test_a_dtype_state_in_the_file_can_neither_make_objects_nor_crash(tmp_path):
    """numpy pickles ``dtype('f8', False, True)``: copy=True made a mutable copy, and the BUILD
    that follows set it to hold objects after the check, so an array of 1,000 "objects" read
    past an empty list; a datetime dtype with a version-3 state crashed in its __setstate__; a
    void dtype flagged for objects took 8 bytes of the file as a pointer (reviewer's
    /tmp/reviews/ckpt2 zipcrash.py and craft.py: the process died, rc 139). Read in another
    process, in both formats: each is refused in one line, or loads harmless numbers."""
    objects = (3, '<', None, None, None, -1, -1, _HOLDS_OBJECTS)
    payloads = {
        'f8_objects_short_list': (_Array((1000,), _DType('f8', objects), []), 'refused'),
        'f8_objects_bytes': (_Array((1,), _DType('f8', objects), b'AAAAAAAA'), 'loaded'),
        'u1_objects_bytes': (_Array((8,), _DType('u1', (3, '|') + objects[2:]), b'A' * 8),
                             'loaded'),
        'm8_version_3': (_DType('M8', _STATE), 'refused'),
        'v8_objects_pointers': (_Array((1,), _DType('V8', (3, '|', None, None, None, 8, 1, 1)),
                                       b'AAAAAAAA'), 'refused'),
    }
    paths = []
    for name, (payload, _) in payloads.items():
        for legacy in (False, True):
            path = tmp_path / f'{name}{"_legacy" if legacy else ""}.pth'
            torch.save(dict(state_dict=dict(w=torch.ones(1)), meta=dict(x=payload)), path,
                       _use_new_zipfile_serialization=not legacy)
            paths.append((path, payloads[name][1]))
    script = _READ_EACH + (
        "import numpy as np\n"
        "print('singletons', all(np.dtype(c).flags == 0 and not np.dtype(c).hasobject\n"
        "                        for c in ('f8', 'u1')))\n")
    proc = subprocess.run([sys.executable, '-c', script, *(str(path) for path, _ in paths)],
                          capture_output=True, text=True, timeout=300)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == len(paths) + 1, (
        proc.returncode, proc.stdout, proc.stderr[-2000:])
    for line, (path, outcome) in zip(lines, paths):
        if outcome == 'loaded':
            assert line == f'loaded {path}', line
        else:
            assert line.startswith(f'refused {path}: not a checkpoint torch can read safely ('), \
                line
    assert lines[-1] == 'singletons True'  # the BUILD of a builtin dtype changes nothing


_NUMERIC = ('b1', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2', 'u4', 'u8', 'f2', 'f4', 'f8', 'c8', 'c16')


@pytest.mark.parametrize('flags', [(False, True), (0, 1)])  # numpy 2; numpy 1.x pickled ints
@pytest.mark.parametrize('name', _NUMERIC)
def test_a_numeric_dtype_is_numpys_own_singleton(tmp_path, name, flags):
    """A numeric dtype is read as numpy's builtin one, whose ``__setstate__`` ignores the
    file's state (a copy would take it: flags, byte order, size)."""
    torch.save(dict(d=_DType(name, (3, '<', None, None, None, 1, 1, _HOLDS_OBJECTS), flags)),
               tmp_path / 'd.pth')
    loaded = torch.load(tmp_path / 'd.pth', weights_only=True)['d']
    assert loaded is np.dtype(name) and not loaded.hasobject and loaded.flags == 0


@pytest.mark.parametrize('name', ['U1', 'U0', 'S1', 'V8', 'O', 'M8', 'M8[D]', 'm8', '>f8',
                                  'f8,i4', '(2,)f8', 'a' * 1000])
def test_other_dtypes_are_refused(tmp_path, name):
    """Text, bytes, void, object, datetime, byte-swapped, structured and sub-array dtypes: no
    mmengine checkpoint holds one, and each is a way to crash numpy or allocate from a
    header (``U0`` holds 10**12 values in no bytes at all)."""
    torch.save(dict(d=_DType(name)), tmp_path / 'd.pth')
    with pytest.raises(pickle.UnpicklingError, match='refused a numpy dtype'):
        torch.load(tmp_path / 'd.pth', weights_only=True)


@pytest.mark.parametrize('args', [('f8', 2, True), ('f8', 'x', True), (8, False, True),
                                  (['f8'], False, True)])
def test_a_dtype_asked_otherwise_than_numpy_pickles_it_is_refused(tmp_path, args):
    class Asks:
        def __reduce__(self):
            return (np.dtype, args)

    torch.save(dict(d=Asks()), tmp_path / 'd.pth')
    with pytest.raises(pickle.UnpicklingError, match='refused a numpy dtype'):
        torch.load(tmp_path / 'd.pth', weights_only=True)


def test_an_array_of_no_bytes_holding_10_12_values_is_refused(tmp_path):
    """A ``U0`` array (itemsize 0) of 10**12 values from a 1.7 KB file loaded, and an mmpose
    export made a list of them (reviewer's u0.py: 50 million from 5*10**7)."""
    from animal_landmarks_mm.checkpoints import CheckpointError, read_checkpoint
    torch.save(dict(state_dict=dict(w=torch.ones(1)),
                    meta=dict(dataset_meta=_Array((10 ** 12,), np.dtype('U0'), b''))),
               tmp_path / 'u0.pth')
    with pytest.raises(CheckpointError, match='refused a numpy dtype') as info:
        read_checkpoint(tmp_path / 'u0.pth')
    assert str(tmp_path / 'u0.pth') in str(info.value) and '\n' not in str(info.value)


def test_only_numeric_dtype_classes_are_built():
    """BUILD is allowed on ndarray and the classes of the numeric singletons, no other dtype
    class (a datetime, void or text dtype could otherwise be filled from the file)."""
    from animal_landmarks_mm.checkpoint_compat import _BUILD_ONLY, _numpy_globals
    built = {entry[0] for entry in _numpy_globals()
             if isinstance(entry, tuple) and entry[1].endswith(_BUILD_ONLY)}
    numeric = {type(np.dtype(c)) for c in '?bhilqBHILQefdgFDG'}
    assert built == numeric | {np.ndarray}


def _empty_dicts_pickle(count: int) -> bytes:
    """A protocol-2 pickle of ``{'x': [{}, {}, ...]}``: one opcode (``}``) per empty dict, an
    object of some 80 bytes of memory from one byte of file."""
    return b'\x80\x02}q\x00X\x01\x00\x00\x00xq\x01](' + b'}' * count + b'es.'


def _legacy_file(path, the_object: bytes) -> None:
    """A file of torch's legacy format whose object pickle is ``the_object``."""
    from torch.serialization import MAGIC_NUMBER, PROTOCOL_VERSION
    with open(path, 'wb') as f:
        for header in (MAGIC_NUMBER, PROTOCOL_VERSION, dict(little_endian=True)):
            pickle.dump(header, f, protocol=2)
        f.write(the_object)
        pickle.dump([], f, protocol=2)  # the storage keys


def test_a_pickle_larger_than_a_checkpoints_is_refused_before_torch_runs_it(tmp_path,
                                                                           monkeypatch):
    """A 10 MB pickle of empty dicts took 30 s and 800 MB to unpickle before it was refused as
    no state dict (reviewer's amp.py), and the legacy format's pickles had no limit at all: a
    pickle of more opcodes than MAX_PICKLE_OPCODES, or (the legacy format's too) more bytes
    than MAX_PICKLE_BYTES, is refused by the scan before torch.load."""
    import zipfile

    from animal_landmarks_mm import checkpoint_compat
    from animal_landmarks_mm.checkpoint_compat import MAX_PICKLE_OPCODES
    from animal_landmarks_mm.checkpoints import CheckpointError, read_checkpoint
    evil = _empty_dicts_pickle(MAX_PICKLE_OPCODES)
    torch.save(dict(w=torch.ones(2)), tmp_path / 'base.pth')
    with zipfile.ZipFile(tmp_path / 'base.pth') as source, \
            zipfile.ZipFile(tmp_path / 'zip.pth', 'w') as out:
        for info in source.infolist():
            out.writestr(info.filename, evil if info.filename.endswith('data.pkl')
                         else source.read(info))
    _legacy_file(tmp_path / 'legacy.pth', evil)
    for name in ('zip.pth', 'legacy.pth'):
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(tmp_path / name)
        assert str(info.value) == (
            f'{tmp_path / name}: not a checkpoint torch can read safely (its pickle holds over '
            f'the {MAX_PICKLE_OPCODES:,} opcodes read, more than a checkpoint\'s structure '
            'takes)')  # the scan's refusal, which comes before torch.load
    # the legacy format's bytes are counted too (a small limit for the test)
    monkeypatch.setattr(checkpoint_compat, 'MAX_PICKLE_BYTES', 1000)
    _legacy_file(tmp_path / 'long.pth', pickle.dumps(dict(w='x' * 2000), protocol=2))
    with pytest.raises(CheckpointError, match=r'its pickle holds over the 1,000 bytes read'):
        read_checkpoint(tmp_path / 'long.pth')


def test_a_legacy_file_leaving_a_storage_out_of_its_list_is_refused(tmp_path):
    """torch's legacy loader fills only the storages the file's list names: a storage left
    out (its bytes with it) loaded as uninitialised memory, a weight of zeros or leftovers
    exported as the model's (reviewer's t_legacy_partial.py). The list must be the storages
    the tensors use, each once."""
    import io
    import pickletools
    import struct

    from animal_landmarks_mm.checkpoints import CheckpointError, read_checkpoint
    saved = dict(a=torch.full((2,), 3.0), b=torch.full((3,), 5.0))
    buffer = io.BytesIO()
    torch.save(saved, buffer, _use_new_zipfile_serialization=False)
    data = buffer.getvalue()
    f = io.BytesIO(data)
    for _ in range(4):  # magic, protocol, system info, the object
        for _ in pickletools.genops(f):
            pass
    cut = f.tell()
    keys = pickle.load(f)
    records, at = {}, f.tell()
    for key in keys:  # each: its element count (int64), then 4 bytes an element (float32)
        count, = struct.unpack('<q', data[at:at + 8])
        records[key], at = data[at:at + 8 + 4 * count], at + 8 + 4 * count
    assert at == len(data) and len(keys) == 2

    def legacy(name, listed):
        (tmp_path / name).write_bytes(data[:cut] + pickle.dumps(listed, protocol=2)
                                      + b''.join(records[k] for k in listed))
        return tmp_path / name

    assert read_checkpoint(legacy('whole.pth', keys))[0]['b'].tolist() == [5.0] * 3
    for name, listed in (('left_out.pth', keys[:1]), ('twice.pth', keys + keys[:1]),
                         ('none.pth', [])):
        path = legacy(name, listed)
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(path)
        assert str(info.value).startswith(
            f'{path}: not a checkpoint torch can read safely (its storage list is not the '
            'storages its tensors use ('), str(info.value)
    # a storage keyed 0 beside one keyed '0', the list naming '0' alone: read as text, both
    # passed for listed, and torch filled one (reviewer's legacy_bypass.py)
    from torch.serialization import MAGIC_NUMBER, PROTOCOL_VERSION, _should_read_directly
    first, second = torch.full((4,), 7.0), torch.full((4,), 9.0)
    key_of = {first.untyped_storage().data_ptr(): 0, second.untyped_storage().data_ptr(): '0'}

    class TwoKeyTypes(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, torch.storage.TypedStorage):
                return ('storage', torch.FloatStorage, key_of[obj._untyped_storage.data_ptr()],
                        'cpu', obj._size(), None)
            return None

    path = tmp_path / 'key_types.pth'
    with open(path, 'wb') as f:
        for header in (MAGIC_NUMBER, PROTOCOL_VERSION, dict(little_endian=True)):
            pickle.dump(header, f, protocol=2)
        TwoKeyTypes(f, protocol=2).dump(dict(a=first, b=second))
        pickle.dump(['0'], f, protocol=2)
        f.flush()
        second.untyped_storage()._write_file(f, _should_read_directly(f), True, 4)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert str(info.value) == (f'{path}: not a checkpoint torch can read safely (its storage '
                               'keys are not all text, which torch.save never writes)')


@pytest.mark.timeout(300)
def test_the_pickle_limits_admit_a_long_runs_training_checkpoint(tmp_path):
    """What the limits were measured on: a training checkpoint of the main config's HRNetV2-W18
    with AdamW moments (of every floating-point tensor here: more than a real run's 154,463
    opcodes) and the message hub of a long run (6 training scalars of 200,000 iterations each,
    19 bytes of pickle per value: 23 MB, more than a cap of 16 MB would let resume) is read to
    resume."""
    import io
    import zipfile

    from animal_landmarks_mm.checkpoint_compat import (
        MAX_PICKLE_BYTES,
        MAX_PICKLE_OPCODES,
        _check_pickle,
    )
    from animal_landmarks_mm.checkpoints import read_resume_checkpoint, reference_state_dict
    state_dict = reference_state_dict()
    state = {i: dict(step=torch.tensor(100.0), exp_avg=torch.zeros_like(v),
                     exp_avg_sq=torch.zeros_like(v))
             for i, v in enumerate(v for v in state_dict.values() if v.is_floating_point())}
    iterations = 200_000
    values = np.random.default_rng(0).random(iterations)
    hub = dict(log_scalars={f'train/{name}': HistoryBuffer(values, np.ones(iterations, np.int64))
                            for name in ('lr', 'loss', 'loss_kpt', 'acc_pose', 'time',
                                         'data_time')},
               runtime_info={}, resumed_keys={})
    checkpoint = dict(meta=dict(epoch=60, iter=iterations), state_dict=state_dict,
                      optimizer=dict(state=state, param_groups=[dict(lr=1e-3, params=list(state))]),
                      message_hub=hub)
    torch.save(checkpoint, tmp_path / 'epoch_60.pth')
    with zipfile.ZipFile(tmp_path / 'epoch_60.pth') as archive:
        pickled = archive.read('epoch_60/data.pkl')
    assert 16 << 20 < len(pickled) < MAX_PICKLE_BYTES // 8
    assert _check_pickle(io.BytesIO(pickled)) < MAX_PICKLE_OPCODES // 4  # 206,074
    read = read_resume_checkpoint(tmp_path / 'epoch_60.pth')
    assert len(read['message_hub']['log_scalars']['train/loss']._log_history) == iterations


def _local_record(name: str, data: bytes) -> bytes:
    """A stored zip record (local header, no extra field) of ``data``."""
    import struct
    import zlib
    return struct.pack('<IHHHHHIIIHH', 0x04034b50, 20, 0, 0, 0, 0, zlib.crc32(data), len(data),
                       len(data), len(name.encode()), 0) + name.encode() + data


def _central_entry(name: str, data: bytes, offset: int, size: int | None = None) -> bytes:
    """A central directory entry of a stored record of ``data`` (or claiming ``size`` bytes)
    whose local header is at ``offset``."""
    import struct
    import zlib
    size = len(data) if size is None else size
    return struct.pack('<IHHHHHHIIIHHHHHII', 0x02014b50, 20, 20, 0, 0, 0, 0, zlib.crc32(data),
                       size, size, len(name.encode()), 0, 0, 0, 0, 0, offset) + name.encode()


def _end_record(count: int, size: int, offset: int) -> bytes:
    import struct
    return struct.pack('<IHHHHIIH', 0x06054b50, 0, 0, count, count, size, offset, 0)


def _zip64_ending(count: int, size: int, offset: int, locator_at: int | None = None) -> bytes:
    """What ends a ZIP64 zip after its directory (``count`` entries, ``size`` bytes, at
    ``offset``): the ZIP64 end record, its locator (pointing at ``locator_at``, by default the
    record just before it, where the ending begins) and an end record deferring to them."""
    import struct
    return (struct.pack('<4sQHHIIQQQQ', b'PK\x06\x06', 44, 45, 45, 0, 0, count, count, size,
                        offset)
            + struct.pack('<4sLQL', b'PK\x06\x07', 0,
                          offset + size if locator_at is None else locator_at, 1)
            + struct.pack('<IHHHHIIH', 0x06054b50, *[0xFFFF] * 4, *[0xFFFFFFFF] * 2, 0))


def _saved_records(tmp_path, checkpoint) -> list[tuple[str, bytes]]:
    """The records of ``torch.save(checkpoint)``, in the file's order."""
    import zipfile
    torch.save(checkpoint, tmp_path / 'source.pth')
    with zipfile.ZipFile(tmp_path / 'source.pth') as source:
        return [(info.filename, source.read(info))
                for info in sorted(source.infolist(), key=lambda info: info.header_offset)]


def _by_hand(records, directory=None, before=b'') -> tuple[bytes, dict[str, int]]:
    """``records`` (name, bytes) as local records one after the other (after ``before``), and
    where each begins; with ``directory`` (its entries), the whole zip."""
    body, offsets = bytearray(before), {}
    for name, data in records:
        offsets[name] = len(body)
        body += _local_record(name, data)
    if directory is not None:
        entries = directory(offsets)
        body += b''.join(entries) + _end_record(len(entries), len(b''.join(entries)), len(body))
    return bytes(body), offsets


def test_zip_records_that_overlap_or_claim_more_than_the_file_are_refused(tmp_path):
    """A zip's central directory may point many entries at one stored record (reviewer's
    /tmp/review_hostile2/zip_overlap.py: 100 entries of one 4 MiB record, read as 400 MiB of
    tensors): a checkpoint whose records overlap, claim more bytes than the file, or whose
    directory Python's zipfile finds elsewhere than torch does, is refused before torch.load
    reads it. Each of these files was read by torch before (the tensors aliasing one record)."""
    from animal_landmarks_mm.checkpoints import CheckpointError, read_checkpoint
    records = _saved_records(tmp_path, {f'w{i}': torch.full((25_000,), float(i))
                                        for i in range(4)})
    prefix = records[0][0].split('/')[0]
    data = dict(records)
    aliases = {f'{prefix}/data/{i}' for i in (1, 2, 3)}
    first = f'{prefix}/data/0'

    def shared(offsets, shift=0):  # data/1..3 at data/0's record: one offset, four entries
        return [_central_entry(name, data[first] if name in aliases else data[name],
                               offsets[first if name in aliases else name] - shift)
                for name, _ in records]

    kept = [(name, data) for name, data in records if name not in aliases]
    files = {'shared.pth': _by_hand(kept, shared)[0]}
    # data/1 inside data/0's bytes (a uint8 tensor holding data/1's local record)
    (tmp_path / 'small').mkdir()
    small = _saved_records(tmp_path / 'small', dict(w0=torch.zeros(4096, dtype=torch.uint8),
                                                 w1=torch.full((100,), 7, dtype=torch.uint8)))
    small_data = dict(small)
    inner = f'{prefix}/data/1'
    outer = (bytes(64) + _local_record(inner, small_data[inner])).ljust(4096, b'\0')
    inside = [(name, outer if name.endswith('/data/0') else value)
              for name, value in small if name != inner]
    files['inside.pth'] = _by_hand(inside, lambda offsets: [
        _central_entry(name, small_data[inner], offsets[f'{prefix}/data/0'] + 30
                       + len(f'{prefix}/data/0') + 64) if name == inner
        else _central_entry(name, dict(inside)[name], offsets[name]) for name, _ in small])[0]
    # the last record claims a gigabyte: the records claim more than the file holds
    files['claims.pth'] = _by_hand(records, lambda offsets: [
        _central_entry(name, value, offsets[name], 10 ** 9 if name == records[-1][0] else None)
        for name, value in records])[0]
    # two directories: Python's zipfile reads the one before the end record (taking the
    # difference for bytes before the archive), torch's the one at the end record's offset
    length = len(b''.join(shared(dict.fromkeys(data, 0))))
    body, offsets = _by_hand(records, before=b'PK\x03\x04'.ljust(length, b'\0'))
    hostile = b''.join(shared(offsets))
    benign = b''.join(_central_entry(name, value, offsets[name] - length)
                      for name, value in records)
    assert len(hostile) == len(benign) == length
    files['shifted.pth'] = body + hostile + benign + _end_record(len(records), length, len(body))
    # two ZIP64 end records: Python's zipfile reads the one just before the locator (the
    # records listed once), torch's the one the locator points at (four entries of one record)
    body, offsets = _by_hand(records)
    hostile, benign = b''.join(shared(offsets)), b''.join(
        _central_entry(name, value, offsets[name]) for name, value in records)
    hostile_end = _zip64_ending(len(records), length, len(body))[:56]
    files['locator.pth'] = (body + hostile + hostile_end + benign + _zip64_ending(
        len(records), length, len(body) + length + 56, locator_at=len(body) + length))
    for name, reason in (('shared.pth', f'{prefix}/data/1 and {first} overlap in the file'),
                         ('inside.pth', f'{inner} and {prefix}/data/0 overlap in the file'),
                         ('claims.pth', 'its records claim 1,000,'),
                         ('shifted.pth', 'its zip directory is not where its end record says'),
                         ('locator.pth', 'its ZIP64 end record is not where its locator says')):
        (tmp_path / name).write_bytes(files[name])
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(tmp_path / name)
        message = str(info.value)
        assert reason in message and str(tmp_path / name) in message and '\n' not in message
    # the same records, each listed once where it is: read, with a ZIP64 ending too
    (tmp_path / 'once.pth').write_bytes(_by_hand(records, lambda offsets: [
        _central_entry(name, value, offsets[name]) for name, value in records])[0])
    (tmp_path / 'once64.pth').write_bytes(body + benign + _zip64_ending(len(records), length,
                                                                        len(body)))
    for name in ('once.pth', 'once64.pth'):
        assert [read_checkpoint(tmp_path / name)[0][f'w{i}'][0].item() for i in range(4)] \
            == [0, 1, 2, 3]
        assert [t[0].item() for t in torch.load(tmp_path / name).values()] == [0, 1, 2, 3]
    assert [t[0].item() for t in torch.load(tmp_path / 'locator.pth').values()] == [0] * 4


def test_real_checkpoints_pass_the_zip_layout_checks(tmp_path):
    """torch.save's zips (64-byte alignment padding in the local headers' extra fields, a data
    descriptor after each record, .data/version and serialization_id records, an empty
    tensor's empty record, a view sharing its base's storage), mmengine-style checkpoints,
    zips of Python's own writer (ZIP64 local headers) and the legacy format are read."""
    import zipfile

    from animal_landmarks_mm.checkpoint_compat import refuse_allocating_pickle
    from animal_landmarks_mm.checkpoints import read_checkpoint
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state_dict = dict(a=base, view=base[1:3], empty=torch.zeros(0, 3),
                      b=torch.ones(5, dtype=torch.float16), n=torch.tensor(7))
    hub = MessageHub.get_instance('layout-test')
    hub.update_scalar('train/loss', 0.5)
    torch.save(dict(state_dict=state_dict, meta=dict(epoch=3, flip=np.arange(4)),
                    message_hub=hub.state_dict()), tmp_path / 'mmengine.pth')
    torch.save(state_dict, tmp_path / 'plain.pth')
    torch.save(state_dict, tmp_path / 'legacy.pth', _use_new_zipfile_serialization=False)
    with zipfile.ZipFile(tmp_path / 'plain.pth') as source, \
            zipfile.ZipFile(tmp_path / 'python.pth', 'w') as out:
        for info in source.infolist():
            with out.open(info.filename, 'w', force_zip64=True) as record:
                record.write(source.read(info))
    for name in ('mmengine.pth', 'plain.pth', 'legacy.pth', 'python.pth'):
        refuse_allocating_pickle(tmp_path / name)
        read, _ = read_checkpoint(tmp_path / name)
        assert set(read) == set(state_dict), name
        for key, tensor in state_dict.items():
            assert torch.equal(read[key], tensor), (name, key)
        assert read['empty'].shape == (0, 3)
