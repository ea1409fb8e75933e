"""Checkpoint files: read them as data, rename between the two layouts, load them strictly.

One module for every reader of weights: the training hook (``load_from``), the predictor
(inference, evaluation, the annotator) and the exporter. The model is mmengine's
``runner/checkpoint.py``: a checkpoint is read into a state dict, its keys are revised by regular
expressions (``revise_keys``), and then it is loaded into the model. Unlike mmengine's
``load_from`` (``strict=False``), loading here is strict: every tensor of the model must be there
with its shape, nothing more, or the load stops and says what differs.

A checkpoint is data. ``.pth`` files go through ``torch.load(weights_only=True)``, which builds
tensors and the few plain objects :mod:`.checkpoint_compat` allow-lists, never anything callable;
``.safetensors`` hold tensors only. Only plain weights are taken: dense, unquantized, real-valued
tensors with data (a quantized, sparse, complex or meta tensor is refused when the file is read,
not half-way through loading it). Nothing a checkpoint carries (its stored config included) is
ever executed: a checkpoint to resume from is read here first (:func:`read_resume_checkpoint`),
and one carrying the ``meta['config']`` code mmengine's resume would run is refused.

The two layouts (LANDMARKS.md in the project's shared notes): ours is mmpose 1.x's; the
checkpoints of anime_face_detector are mmpose 0.x's ``TopDown`` HRNetV2-W18, whose names differ
only in the head::

    keypoint_head.final_layer.0.*  <->  head.conv_layers.0.*   Conv2d 270->270 1x1
    keypoint_head.final_layer.1.*  <->  head.conv_layers.1.*   BatchNorm2d(270)
    keypoint_head.final_layer.3.*  <->  head.final_layer.*     Conv2d 270->28 1x1
    backbone.*                     <->  backbone.*             (1,830 tensors)
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator

import numpy as np
import torch

from .checkpoint_compat import refuse_allocating_pickle
from .errors import AnimalLandmarksError, first_line, printable


class CheckpointError(AnimalLandmarksError, ValueError):
    """A checkpoint that cannot be read, or does not fit the model it is meant for; the message
    is one line naming the file and saying how."""


class CheckpointMismatchError(CheckpointError):
    """A readable checkpoint whose tensors do not fit the model (names or shapes differ)."""


#: The anime_face_detector head's names -> ours, as mmengine ``revise_keys`` (pattern, repl).
AFD_TO_MMPOSE_KEYS = (
    (r'^keypoint_head\.final_layer\.0\.', 'head.conv_layers.0.'),
    (r'^keypoint_head\.final_layer\.1\.', 'head.conv_layers.1.'),
    (r'^keypoint_head\.final_layer\.3\.', 'head.final_layer.'),
)
#: Ours -> anime_face_detector's.
MMPOSE_TO_AFD_KEYS = (
    (r'^head\.conv_layers\.0\.', 'keypoint_head.final_layer.0.'),
    (r'^head\.conv_layers\.1\.', 'keypoint_head.final_layer.1.'),
    (r'^head\.final_layer\.', 'keypoint_head.final_layer.3.'),
)


def is_safetensors_path(path: str | os.PathLike) -> bool:
    """Whether a checkpoint file is a ``.safetensors`` file, by its suffix in any case: the
    one test of the export that writes such files and of every reader."""
    return os.path.splitext(path)[1].lower() == '.safetensors'


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors of a checkpoint file, whichever way it holds them, and its ``meta``.

    Reads ``.safetensors``, and ``.pth`` files that are a plain state dict or hold one under
    ``state_dict`` (mmengine and mmpose 0.x checkpoints, with or without ``meta``).

    Args:
        path: the file, or a pretrained name (:data:`~.model_zoo.PRETRAINED`).

    Raises:
        CheckpointError: no such file or name, a file torch or safetensors cannot read safely
            (empty, truncated, not a checkpoint, a pickle asking for code; for a file of the
            Hugging Face cache, the message says how to get a fresh copy), or one holding no
            state dict of plain tensors (see :func:`tensor_problem`).
        CheckpointMismatchError: a file holding one tensor under both layouts' names
            (``head.final_layer.weight`` and ``keypoint_head.final_layer.3.weight``, say).
    """
    from .model_zoo import resolve_checkpoint
    path = resolve_checkpoint(path)
    if is_safetensors_path(path):
        from safetensors.torch import load_file
        try:
            tensors = load_file(str(path))
        except Exception as e:  # SafetensorError, OSError, ...: all "not a checkpoint"
            raise CheckpointError(f'{path}: not a readable safetensors file '
                                  f'({first_line(e)}){_fresh_copy_hint(path)}') from None
        return _tensors_and_meta(tensors, path)
    return _tensors_and_meta(_load_pth(path), path)


def _load_pth(path: str | os.PathLike) -> object:
    """A ``.pth`` file as ``torch.load(weights_only=True)`` gives it: tensors and the few
    plain objects :mod:`.checkpoint_compat` allow-lists, never anything callable."""
    try:
        what = _what_else(path)
    except OSError as e:  # a folder, no permission: the same one line as any unreadable file
        raise CheckpointError(f'{path}: cannot be read ({e.strerror or e})') from None
    if what is not None:  # an image or a text file given by mistake (last_checkpoint, say)
        raise CheckpointError(f'{path}: not a torch checkpoint ({what})')
    try:
        refuse_allocating_pickle(path)
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # EOFError, UnpicklingError, RuntimeError of a broken zip, ...
        raise CheckpointError(f'{path}: not a checkpoint torch can read safely '
                              f'({_torch_reason(e)}){_fresh_copy_hint(path)}') from None


#: how files other than checkpoints begin, for the message of one given by mistake
_OTHER_FILES = ((b'\x89PNG', 'a PNG image'), (b'\xff\xd8\xff', 'a JPEG image'),
                (b'GIF8', 'a GIF image'), (b'RIFF', 'a RIFF file (a WebP image?)'),
                (b'BM', 'a BMP image'), (b'\x08\x01\x12', 'an ONNX graph?'))


def _what_else(path: str | os.PathLike) -> str | None:
    """What a file is when it cannot be a torch checkpoint, which is a zip archive or (the
    legacy format) a pickle: None when it may be one."""
    with open(path, 'rb') as f:
        head = f.read(64)
    if not head:
        return 'an empty file'
    if head.startswith(b'PK\x03\x04') or head.startswith(b'\x80'):
        return None
    for magic, kind in _OTHER_FILES:
        if head.startswith(magic):
            return kind
    if all(32 <= b < 127 or b in b'\n\r\t' for b in head):
        return f'a text file: {printable(head.decode("ascii"), one_line=True, limit=40)}'
    return f'it begins {head[:8]!r}'


def _torch_reason(error: Exception) -> str:
    """The reason in torch's message for a file it would not load, without its advice to load
    with ``weights_only=False`` or to allow-list the class (either would run what the file
    asks: never for a checkpoint of unknown origin) or to file an issue."""
    text = str(error)
    if 'WeightsUnpickler error:' in text:
        reason = text.split('WeightsUnpickler error:', 1)[1].split(' Please use ', 1)[0]
        first = next((line.strip() for line in reason.splitlines() if line.strip()), '')
        if first and 'weights_only' not in first:
            return first
    lines = [line.strip() for line in text.splitlines() if line.strip()
             and 'weights_only' not in line
             and not line.strip().startswith(('Weights only load failed', '(1)', '(2)',
                                              'Check the documentation', 'Please file'))]
    return lines[0] if lines else error.__class__.__name__


def _fresh_copy_hint(path: str | os.PathLike) -> str:
    """How to replace a broken file of the Hugging Face cache ('' for other files)."""
    from .model_zoo import fresh_copy_hint
    return fresh_copy_hint(path)


# what a model's integer buffers (BatchNorm's num_batches_tracked) may be stored as
_INTEGRAL_DTYPES = frozenset(d for d in (
    torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
    getattr(torch, 'uint16', None), getattr(torch, 'uint32', None), getattr(torch, 'uint64', None),
) if d is not None)
# what weights may be stored as: signed floating point, each value of its own element (torch
# loads them cast to the model's dtype). Not float8_e8m0fnu, a block scale's format (powers of
# two: no sign, no zero; torch.isfinite takes its NaN, 0xFF, for finite), nor
# float4_e2m1fn_x2, two values packed in one element (torch has no float() of it on the CPU,
# and its shape is not the weight's); nor any type torch adds later unread here.
_FLOATING_DTYPES = frozenset(d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64,
    *(getattr(torch, f'float8_{kind}', None) for kind in ('e4m3fn', 'e5m2', 'e4m3fnuz',
                                                          'e5m2fnuz')),
) if d is not None)
#: the dtypes read as weights, in words, for the message refusing another
_READ_DTYPES = 'float16/32/64, bfloat16, float8 e4m3/e5m2, or integers'


def tensor_problem(tensor: torch.Tensor) -> str | None:
    """Why a tensor cannot be a model's weight, in a few words; None for a plain one.

    ``load_state_dict`` copies a checkpoint's tensor into the model's: a quantized or sparse
    one fails there with a page of message (after other tensors were already copied), a complex
    one loads with its imaginary part dropped and only a warning, and a meta tensor holds no
    values at all. A weight must be dense (strided), unquantized, on the CPU it was read to,
    and real: floating point of a type read here (:data:`_FLOATING_DTYPES`), or integral as a
    BatchNorm's counter is; and finite: NaN or Inf (a diverged run) would be fine-tuned,
    exported or predicted with as if it were weights (a float64 value beyond float32's range
    too: infinite in the model's float32 weights).
    And it must hold its values: a view claiming more values than its storage holds (a stride
    of 0, ``torch.full((1,), v).expand(10**12)``: one value in the file, 10**12 to check,
    copy and load) is refused before any value is read; views sharing a storage, each within
    it (tied weights, slices, a transpose), are fine.
    """
    problem = _held_values_problem(tensor)
    if problem is not None:
        return problem
    if tensor.dtype not in _FLOATING_DTYPES and tensor.dtype not in _INTEGRAL_DTYPES:
        return f'of dtype {tensor.dtype}, not one read as weights ({_READ_DTYPES})'
    if tensor.dtype in _FLOATING_DTYPES and not _all_finite(tensor):
        return 'not finite (NaN or Inf: a diverged run?)'
    if tensor.dtype == torch.float64 and tensor.numel() and \
            float(tensor.abs().max()) > torch.finfo(torch.float32).max:
        # finite here, infinite in the model's float32 weights (and in an export)
        return "beyond float32's range (infinite once loaded into the model)"
    return None


def _held_values_problem(tensor: torch.Tensor) -> str | None:
    """Why a tensor does not hold its values as a dense CPU array of its own, or None; no value
    is read (see :func:`tensor_problem`)."""
    if tensor.layout != torch.strided:
        return f'a {str(tensor.layout).removeprefix("torch.")} tensor, not a dense one'
    if tensor.is_quantized:
        return f'a quantized tensor ({tensor.dtype}); dequantize it first'
    if tensor.device.type != 'cpu':  # map_location='cpu' moves every tensor but meta ones
        return f'a {tensor.device.type} tensor, without values'
    return _storage_problem(tensor)


def _storage_problem(tensor: torch.Tensor) -> str | None:
    """Why a dense CPU tensor's values are not its own, or None: a stride of 0 on a dimension
    of several values (an expanded tensor), more values than its storage holds (overlapping
    strides), or values past its storage's end. Computed from its sizes, strides and offset
    alone: no value is read, whatever number the file claims."""
    count = tensor.numel()
    if count == 0:
        return None
    stored = tensor.untyped_storage().nbytes() // tensor.element_size()
    dims = list(zip(tensor.shape, tensor.stride()))
    last = tensor.storage_offset() + sum((size - 1) * stride for size, stride in dims)
    # a state dict never needs a view repeating its values; torch.load may build one (saved
    # from an expanded tensor, or crafted) from a few bytes of file
    if count > stored or last >= stored or any(stride == 0 and size > 1 for size, stride in dims):
        return (f'a view of {count} values over {stored} stored (strides '
                f'{tuple(tensor.stride())}: an expanded tensor?), not weights of its own')
    return None


#: how many values the finite check reads at once where it must look at each: its temporaries
#: (flags, a float copy of float8) stay within a chunk's size
_FINITE_CHUNK = 1 << 24


def _all_finite(tensor: torch.Tensor) -> bool:
    """Whether every value of the tensor (its own, not the rest of a storage it shares) is
    finite.

    A NaN or an Inf makes the sum NaN or infinite, so a finite sum answers at the cost of one
    reduction (about 0.05 s for the 1,533 floating-point tensors, 9.7 million values, of this
    project's model); only a sum that overflowed, or a dtype without a sum on the CPU
    (float8), looks at each value, :data:`_FINITE_CHUNK` at a time, float8 ones as float32
    (torch has no isfinite of some float8 types on the CPU). Either way the work is
    bounded by the bytes the file stores for the tensor: :func:`_storage_problem` has refused a
    view claiming more values than its storage holds, and a copy of a non-contiguous view to
    read it in chunks is no larger than that storage.
    """
    try:
        if bool(torch.isfinite(tensor.sum())):
            return True
    except (RuntimeError, NotImplementedError):  # a dtype without a sum on the CPU (float8)
        pass
    values = tensor.reshape(-1)
    for start in range(0, values.numel(), _FINITE_CHUNK):
        chunk = values[start:start + _FINITE_CHUNK]
        if chunk.element_size() == 1:  # float8
            chunk = chunk.float()
        if not bool(torch.isfinite(chunk).all()):
            return False
    return True


def _shown(key: str) -> str:
    """A tensor's name for a one-line message: the names come from the file (a line break, an
    escape sequence, a megabyte of name)."""
    return printable(key, one_line=True, limit=200)


def _tensors_and_meta(checkpoint: object, path: str | os.PathLike
                      ) -> tuple[dict[str, torch.Tensor], dict]:
    """The state dict of a loaded checkpoint (a ``.safetensors`` file's tensors, or a
    ``.pth``'s, plain or under ``state_dict``) and its ``meta``, checked: tensors under string
    names, in one layout."""
    meta = {}
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get('state_dict'), dict):
        # any object may stand there; only a dict is a meta (the truth value of a tensor or
        # array of several values is an error)
        meta = checkpoint.get('meta')
        checkpoint = checkpoint['state_dict']
    problem = _state_dict_problem(checkpoint)
    if problem is not None:
        raise CheckpointError(f'{path}: not a state dict of tensors: {problem}')
    for key, tensor in checkpoint.items():
        problem = tensor_problem(tensor)
        if problem is not None:
            raise CheckpointError(f'{path}: not a state dict of plain weights: {_shown(key)} is '
                                  f'{problem}')
    try:  # two names of one tensor (both layouts', with and without module.): one would win
        to_mmpose_state_dict(checkpoint)
    except CheckpointMismatchError as e:
        raise CheckpointMismatchError(f'{path}: {e}') from None
    return dict(checkpoint), meta if isinstance(meta, dict) else {}


def _state_dict_problem(checkpoint: object) -> str | None:
    """Why a loaded object is not a state dict of tensors under string names, in a few words
    naming the first key at fault; None when it is one."""
    if not isinstance(checkpoint, dict):
        return f'it is of type {type(checkpoint).__name__}'
    if not checkpoint:
        return 'it holds no tensors'
    for key, value in checkpoint.items():
        if not isinstance(key, str):
            return f'the key {_shown(repr(key))} is not a name'
        if not isinstance(value, torch.Tensor):
            return f'{_shown(key)} is of type {type(value).__name__}, not a tensor'
    return None


#: The largest ``last_checkpoint`` read (bytes): mmengine writes one path there.
LAST_CHECKPOINT_MAX_BYTES = 1 << 16


def resume_file(load_from: str | None, work_dir: str) -> str | None:
    """The checkpoint a run with ``resume=True`` resumes from, by mmengine's rule
    (``Runner.load_or_resume``): ``load_from`` when set, else the work dir's latest checkpoint,
    named in its ``last_checkpoint`` (read as mmengine's ``find_latest_checkpoint`` does, but
    only a regular file of at most :data:`LAST_CHECKPOINT_MAX_BYTES`, UTF-8: mmengine's read
    waited for good on a FIFO and held a sparse file of gigabytes whole); None when there is
    none (the run starts afresh).

    Raises:
        CheckpointError: the work dir's ``last_checkpoint`` names none (a write of it cut short
            left it empty), or cannot be read as one; one line naming it.
    """
    from .annotation import AnnotationError, read_regular_file
    if load_from:
        return load_from
    note = os.path.join(work_dir, 'last_checkpoint')
    if not os.path.lexists(note):
        return None
    try:
        latest = read_regular_file(note, LAST_CHECKPOINT_MAX_BYTES).decode('utf-8').strip()
    except AnnotationError as e:  # not a regular file, too large: one line naming it
        raise CheckpointError(f'{e}; it should name the latest checkpoint') from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f'{note}: cannot read the latest checkpoint\'s name '
                              f'({first_line(e)})') from None
    if not latest:  # mmengine's '' (not None): the file is there and names nothing
        raise CheckpointError(f'{note} names no checkpoint (empty: a save cut short); resume '
                              'from one with --resume PATH')
    return latest


def read_resume_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint mmengine's ``Runner.resume`` may be given, read as data: all of it
    (weights, ``meta``, optimizer and scheduler states), after the checks resuming needs.

    mmengine's resume runs ``Config.fromstring(checkpoint['meta']['config'])``, Python code a
    checkpoint may carry; mmengine itself stores its config under ``meta['cfg']`` (never
    executed), so a checkpoint with ``meta['config']`` was not written by a training run here
    and is refused before mmengine can reach it. Every resume path (``--resume [PATH]``, and a
    config run with ``resume=True``, through :class:`~.hooks.StrictLoadFromHook`) reads the
    file here first.

    Args:
        path: the checkpoint file.

    Returns:
        The checkpoint, as ``torch.load(weights_only=True)`` gives it.

    Raises:
        CheckpointError: a missing, unreadable or hostile file, one that carries
            ``meta['config']``, or one that is not a training checkpoint (no ``meta`` with the
            epoch and step it was saved at, as whole numbers, or no message hub: start
            weights, which ``--checkpoint`` takes, or a release file).
    """
    if not os.path.isfile(path):
        raise CheckpointError(missing_file_message(path))
    checkpoint = _load_pth(path)
    _tensors_and_meta(checkpoint, path)  # the weights: tensors, one layout
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    hub = checkpoint.get('message_hub') if isinstance(checkpoint, dict) else None
    # what mmengine's resume reads unasked (a release file, tools/export.py --format mmpose,
    # keeps the epoch and iter but no message hub: a KeyError traceback there)
    if not isinstance(meta, dict) or not {'epoch', 'iter'} <= meta.keys() or \
            not isinstance(hub, dict) or \
            not {'log_scalars', 'runtime_info', 'resumed_keys'} <= hub.keys() or \
            not all(isinstance(hub[key], dict)
                    for key in ('log_scalars', 'runtime_info', 'resumed_keys')):
        raise CheckpointError(f'{path}: not a training checkpoint (no meta epoch and iter, or '
                              'no message hub, to resume at); to start from its weights, pass '
                              'it as --checkpoint')
    for key in ('epoch', 'iter'):  # the loop's counters, set as they are
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
                not 0 <= value < 2**63:
            raise CheckpointError(f'{path}: not a training state to resume: meta {key} is '
                                  f'{_shown(repr(value))}, not a step count')
    if 'config' in meta:
        raise CheckpointError(f'{path}: refused: its meta holds a \'config\' (Python code that '
                              'mmengine\'s resume would run); training here never writes one')
    # not the weights' rules (a step count may be of any dtype, a moment's NaN is the run's
    # own): only what is refused before a value is read. The optimizer's load_state_dict would
    # copy an expanded view (one value in the file, 10**12 claimed) in full to the device.
    for where, tensor in _state_tensors(checkpoint):
        problem = _held_values_problem(tensor)
        if problem is not None:
            raise CheckpointError(f'{path}: not a training state to resume: {_shown(where)} is '
                                  f'{problem}')
    return checkpoint


def _state_tensors(checkpoint: dict) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor of a training checkpoint beside its weights (the optimizer's moments and
    steps, the message hub's, the schedulers'), with where it lies (``optimizer.state.0.
    exp_avg``). Walked without recursion (a file may nest lists thousands deep), each object
    once (a file may share one many times)."""
    def inside(where: str, key: object) -> str:
        # a name past 200 characters is cut there anyway (_shown): deep nesting must not build
        # ever longer names
        return where if len(where) > 200 else f'{where}.{key}'

    seen: set[int] = set()
    stack = [(str(key), value) for key, value in checkpoint.items() if key != 'state_dict']
    while stack:
        where, value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, torch.Tensor):
            yield where, value
        elif isinstance(value, dict):
            stack.extend((inside(where, key), item) for key, item in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((inside(where, index), item) for index, item in enumerate(value))


def check_pretrained_init(model_cfg: object, where: str = 'model') -> None:
    """Read, as data, every checkpoint a model config's ``Pretrained`` initialiser names,
    refusing any that mmengine would fetch.

    mmengine's ``PretrainedInit`` (an ``init_cfg`` of ``type='Pretrained'``, run when training
    starts) loads through its ``CheckpointLoader``: a URL (``http(s)://``, ``open-mmlab://``,
    ``mmcls://``, ``torchvision://``, ...) goes to torch.hub's ``load_state_dict_from_url``,
    which unpickles the download with ``weights_only=False``, running any code it carries; and a
    local file is read past this module's guards (:func:`read_checkpoint`: pickles that allocate
    gigabytes, zip bombs). So only an existing local regular file is taken, and it is read here
    first: a hostile or broken one stops the run in one line before it starts. Pretrained names
    (:data:`~.model_zoo.PRETRAINED`) are not taken either: mmengine cannot resolve them
    (``--checkpoint`` and ``load_from`` do).

    Args:
        model_cfg: the config's ``model`` (None: nothing to check); ``init_cfg`` dicts are found
            anywhere in it, alone or in lists, ``override`` ones included.
        where: its name in the config, for messages.

    Raises:
        CheckpointError: naming the option (``model.backbone.init_cfg.checkpoint``), for a URL
            or a scheme mmengine fetches, a file that is missing or not a regular file, a
            ``.safetensors`` file (mmengine reads it with ``torch.load``), or a checkpoint
            :func:`read_checkpoint` refuses.
    """
    for name, init in _pretrained_inits(model_cfg, where):
        _check_pretrained_checkpoint(init.get('checkpoint'), f'{name}.checkpoint')


def check_pretrained_loads(model: torch.nn.Module, model_cfg: object) -> None:
    """Refuse a module's ``Pretrained`` initialiser (``model.backbone.init_cfg``) whose
    checkpoint leaves tensors of the module unloaded: mmengine's ``PretrainedInit`` loads with
    ``strict=False``, so a checkpoint of other names (``backbone.conv1.weight`` for the
    backbone's ``conv1.weight``) loaded nothing, and the run trained from random weights with
    one warning in the log. Names are taken as mmengine takes them (its ``prefix`` stripped, or
    a wrapper's ``module.``); tensors the checkpoint holds beyond the module's (an ImageNet
    classifier's) are no problem, nor BatchNorm's counters.

    Args:
        model: the model, its weights initialised.
        model_cfg: the config's ``model``; initialisers inside ``override`` or lists are not
            checked here (their module is not named by their place).

    Raises:
        CheckpointMismatchError: one line naming the option, the file, the tensors missing, and
            the ``prefix`` that would take the names where they all carry the module's name.
    """
    for where, init in _pretrained_inits(model_cfg, 'model'):
        parts = where.split('.')
        if len(parts) < 3 or parts[-1] != 'init_cfg' or '[' in where:
            continue
        module: object = model
        for name in parts[1:-1]:
            module = getattr(module, name, None)
        checkpoint = init.get('checkpoint')
        if not isinstance(module, torch.nn.Module) or not isinstance(checkpoint,
                                                                     (str, os.PathLike)):
            continue
        path = os.path.expanduser(os.fspath(checkpoint))
        state_dict, _ = read_checkpoint(path)
        prefix = init.get('prefix')
        if prefix:  # mmengine's _load_checkpoint_with_prefix
            prefix = prefix if prefix.endswith('.') else f'{prefix}.'
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items()
                          if k.startswith(prefix)}
        else:
            state_dict = without_wrapper_prefix(state_dict)
        reference = module.state_dict()
        unloaded = [k for k in reference if not k.endswith('num_batches_tracked') and (
            k not in state_dict or state_dict[k].shape != reference[k].shape)]
        if not unloaded:
            continue
        own = parts[-2]
        hint = (f'; its names start with "{own}.": add {".".join(parts)}.prefix={own}'
                if not prefix and any(k.startswith(f'{own}.') for k in state_dict) else '')
        raise CheckpointMismatchError(
            f'{where}.checkpoint {_shown(path)}: {len(unloaded)} of the {len(reference)} tensors '
            f'of {".".join(parts[:-1])} are not in it under their names and shapes '
            f'({_listed(unloaded)}), and mmengine\'s Pretrained init would leave them as '
            f'initialised{hint}')


def _pretrained_inits(value: object, where: str):
    """The ``Pretrained`` initialiser dicts in a config value, with their place in it."""
    if isinstance(value, dict):
        kind = value.get('type')
        kind = kind if isinstance(kind, str) else getattr(kind, '__name__', '')
        # as mmengine's registry takes it: 'Pretrained', scoped 'mmengine.Pretrained', or the
        # class itself (a lazy config)
        if kind.rpartition('.')[2] in ('Pretrained', 'PretrainedInit'):
            yield where, value
        for key, item in value.items():
            yield from _pretrained_inits(item, f'{where}.{key}')
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _pretrained_inits(item, f'{where}[{i}]')


def _check_pretrained_checkpoint(checkpoint: object, where: str) -> None:
    """:func:`check_pretrained_init` for one initialiser's ``checkpoint``."""
    from mmengine.runner.checkpoint import CheckpointLoader, load_from_local

    from .model_zoo import redact_urls
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise CheckpointError(f'{where}: {_shown(repr(checkpoint))} is not a file path')
    checkpoint = os.fspath(checkpoint)
    shown = redact_urls(_shown(checkpoint))
    # the scheme first: 'http://host/x.pth' is also a local path ('http:/host/x.pth') when a
    # folder 'http:' is there, and mmengine would still fetch it
    if '://' in checkpoint or CheckpointLoader._get_checkpoint_loader(checkpoint) \
            is not load_from_local:
        raise CheckpointError(
            f'{where}: {shown}: only a local file is taken (mmengine would download it and '
            'unpickle it with weights_only=False, running whatever code it carries): download '
            'it yourself and give its path (it is then read as data)')
    path = os.path.expanduser(checkpoint)  # as mmengine's local loader does
    if not os.path.isfile(path):
        raise CheckpointError(f'{where}: {missing_file_message(path)}')
    if is_safetensors_path(path):
        raise CheckpointError(f'{where}: {shown}: mmengine\'s Pretrained init reads .pth files '
                              'only (torch.load); start from a .safetensors file with '
                              '--checkpoint (load_from) instead')
    try:
        read_checkpoint(path)
    except CheckpointError as e:
        raise CheckpointError(f'{where}: {e}') from None


def missing_file_message(path: str | os.PathLike) -> str:
    """Why a checkpoint path that is no regular file cannot be read, for a one-line message:
    missing, or there but no file to read (a folder, a FIFO, a link to nothing)."""
    shown = _shown(os.fspath(path))
    if os.path.isdir(path):
        return f'{shown}: not a regular file (a folder)'
    if os.path.exists(path):
        return f'{shown}: not a regular file (a FIFO, a device or a socket)'
    if os.path.islink(path):
        return f'{shown}: not a regular file (a symbolic link to nothing)'
    return f'checkpoint not found: {shown}'


def revise_keys(state_dict: dict[str, torch.Tensor],
                revisions: tuple[tuple[str, str], ...]) -> dict[str, torch.Tensor]:
    """Rename keys by ``(pattern, replacement)`` regular expressions, as mmengine's
    ``load_checkpoint(revise_keys=...)`` does, refusing two keys that become one name (one
    tensor would silently replace the other).

    Raises:
        CheckpointMismatchError: two keys renamed to one (the message names both).
    """
    revised: dict[str, torch.Tensor] = {}
    source_of: dict[str, str] = {}
    for key, value in state_dict.items():
        name = key
        for pattern, replacement in revisions:
            name = re.sub(pattern, replacement, name)
        if name in source_of:
            raise CheckpointMismatchError(
                f'holds both {_shown(source_of[name])} and {_shown(key)}, two names of one '
                f'tensor ({_shown(name)}): the one read last would silently replace the other')
        source_of[name], revised[name] = key, value
    return revised


#: The prefix a model wrapper (torch's and mmengine's DistributedDataParallel) puts before every
#: name of a model saved wrapped, stripped as mmengine's ``load_checkpoint`` and resume strip it
#: (their ``revise_keys`` default).
WRAPPER_PREFIX_KEYS = ((r'^module\.', ''),)


def without_wrapper_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict's names without a model wrapper's ``module.`` prefix, once, as mmengine
    strips it.

    Raises:
        CheckpointMismatchError: a name held with and without the prefix (``module.w`` and
            ``w``: one would silently replace the other).
    """
    if not any(k.startswith('module.') for k in state_dict):
        return state_dict
    return revise_keys(state_dict, WRAPPER_PREFIX_KEYS)


def is_anime_face_detector_layout(state_dict: dict[str, torch.Tensor]) -> bool:
    """Whether the names are mmpose 0.x's (a ``keypoint_head``) rather than 1.x's."""
    return any(k.startswith('keypoint_head.') for k in state_dict)


def to_mmpose_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict in either layout, saved from a wrapped model or not
    (:func:`without_wrapper_prefix`), under mmpose 1.x names (other keys kept as they are).

    Raises:
        CheckpointMismatchError: two names of one tensor (see :func:`revise_keys`).
    """
    state_dict = without_wrapper_prefix(state_dict)
    if is_anime_face_detector_layout(state_dict):
        return revise_keys(state_dict, AFD_TO_MMPOSE_KEYS)
    return state_dict


def to_anime_face_detector_state_dict(state_dict: dict[str, torch.Tensor]
                                      ) -> dict[str, torch.Tensor]:
    """mmpose 1.x names to anime_face_detector's."""
    return revise_keys(state_dict, MMPOSE_TO_AFD_KEYS)


def compare_state_dicts(state_dict: dict[str, torch.Tensor],
                        reference: dict[str, torch.Tensor]) -> str:
    """Differences of names, shapes and kinds of dtype, as one line ('' when none).

    A float16 tensor for a float32 weight is no difference (loading casts it, as mmengine's
    does), nor a floating-point one for an integer buffer (a checkpoint cast to float16 whole
    holds BatchNorm's counter so, and torch loads it), but an integer tensor for a
    floating-point weight is: the cast would load something that was never trained as that
    weight.
    """
    missing = sorted(reference.keys() - state_dict.keys())
    unexpected = sorted(state_dict.keys() - reference.keys())
    common = [k for k in reference if k in state_dict]
    mismatched = [f'{k} {tuple(state_dict[k].shape)} vs {tuple(reference[k].shape)}'
                  for k in common if state_dict[k].shape != reference[k].shape]
    other_kind = [f'{k} {str(state_dict[k].dtype)[6:]} vs {str(reference[k].dtype)[6:]}'
                  for k in common if state_dict[k].shape == reference[k].shape
                  and reference[k].is_floating_point() and not state_dict[k].is_floating_point()]
    parts = []
    for label, keys in (('missing', missing), ('unexpected', unexpected),
                        ('shape mismatch', mismatched), ('dtype mismatch', other_kind)):
        if keys:
            parts.append(f'{label}: {_listed(keys)}')
    return '; '.join(parts)


def _listed(keys: list[str]) -> str:
    """Tensor names for a one-line message: the first three, and how many in all."""
    return (', '.join(map(_shown, keys[:3]))
            + (f', ... ({len(keys)} in all)' if len(keys) > 3 else ''))


def load_strict(model: torch.nn.Module, path: str | os.PathLike,
                backbone_only: bool = False) -> str:
    """Load a checkpoint of either layout into ``model``, every tensor or none.

    Args:
        model: the model (unwrapped).
        path: a ``.pth`` (mmengine, mmpose 1.x or 0.x names, with or without ``meta``) or a
            ``.safetensors`` file, or a pretrained name.
        backbone_only: load (and require) only ``backbone.*``; the head keeps its weights.

    Returns:
        The checkpoint's layout in words, for logs.

    Raises:
        CheckpointError: an unreadable file, or one holding other than plain weights.
        CheckpointMismatchError: a file that does not fit the model (the missing, unexpected,
            mis-shaped tensors and those of another kind of dtype, in one line; or whatever
            else ``load_state_dict`` refuses).
    """
    state_dict, _ = read_checkpoint(path)
    unwrapped = without_wrapper_prefix(state_dict)
    layout = ('anime_face_detector (mmpose 0.x names)'
              if is_anime_face_detector_layout(unwrapped) else 'mmpose 1.x')
    if unwrapped is not state_dict:
        layout += ', saved from a wrapped model (names prefixed module.)'
    state_dict = to_mmpose_state_dict(state_dict)
    expected = model.state_dict()
    if backbone_only:
        state_dict = {k: v for k, v in state_dict.items() if k.startswith('backbone.')}
        expected = {k: v for k, v in expected.items() if k.startswith('backbone.')}
    difference = compare_state_dicts(state_dict, expected)
    if difference:
        raise CheckpointMismatchError(f'{path} does not fit the model: {difference}')
    try:
        model.load_state_dict(state_dict, strict=not backbone_only)
    except (RuntimeError, TypeError, ValueError) as e:
        # what the checks above do not foresee; torch's message is a header line ending in
        # ':' with the reasons on the lines below it, so they are joined, not cut at the first
        reason = ' '.join(str(e).split())[:400] or first_line(e)
        raise CheckpointMismatchError(f'{path} does not fit the model: {reason}') from None
    return layout


def init_model_strict(config: str | os.PathLike | None, checkpoint: str | os.PathLike,
                      device: str = 'cpu',
                      check_model: Callable[[torch.nn.Module], object] | None = None
                      ) -> torch.nn.Module:
    """The model of a config (default: the main config) with a checkpoint loaded strictly.

    Not mmpose's ``init_model(config, checkpoint)``: it loads with ``strict=False``, which would
    leave an anime_face_detector checkpoint's head random without a word.

    Args:
        config: the model's config file, or None for the main config.
        checkpoint: a checkpoint file or a pretrained name.
        device: where the model goes.
        check_model: called with the built model before any weights are read, to refuse a
            config the caller cannot use (it raises) before a large download or file is read.

    Raises:
        CheckpointError: a missing config or an unreadable checkpoint.
        CheckpointMismatchError: weights that do not fit the config's model (the message names
            the config: pass the one the model was trained with).
    """
    from pathlib import Path

    from mmpose.apis import init_model

    from .model_zoo import MAIN_CONFIG
    config = MAIN_CONFIG if config is None else config
    if not Path(config).is_file():
        raise CheckpointError(f'config not found: {config}')
    model = init_model(str(config), None, device=device)
    if check_model is not None:
        check_model(model)
    try:
        load_strict(model, checkpoint)
    except CheckpointMismatchError as e:
        raise CheckpointMismatchError(f'{e} of {config}') from None
    return model


def reference_state_dict(config: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The state dict of the model a config (default: the main config) builds: random weights,
    for names and shapes."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS

    from .model_zoo import MAIN_CONFIG
    init_default_scope('mmpose')
    return MODELS.build(Config.fromfile(str(config or MAIN_CONFIG)).model).state_dict()


def check_anime_face_detector_compatible(state_dict: dict[str, torch.Tensor],
                                         reference: dict[str, torch.Tensor] | None = None
                                         ) -> None:
    """Refuse a model anime_face_detector cannot hold.

    Args:
        state_dict: the model's weights under mmpose 1.x names.
        reference: the expected state dict (default: the main config's model).

    Raises:
        CheckpointError: another keypoint count, backbone or head layout, explained.
    """
    from .schema import NUM_KEYPOINTS
    final = state_dict.get('head.final_layer.weight')
    # (a scalar has no first dimension: the comparison below names its shape)
    if final is not None and final.ndim > 0 and final.shape[0] != NUM_KEYPOINTS:
        raise CheckpointError(
            f'the head predicts {final.shape[0]} keypoints; anime_face_detector\'s model holds '
            f'{NUM_KEYPOINTS}')
    reference = reference_state_dict() if reference is None else reference
    for part in ('backbone.', 'head.'):
        ours = {k: v for k, v in state_dict.items() if k.startswith(part)}
        expected = {k: v for k, v in reference.items() if k.startswith(part)}
        difference = compare_state_dicts(ours, expected)
        if difference:
            what = 'backbone (HRNetV2-W18 expected)' if part == 'backbone.' else \
                f'head layout (conv 270->270, BN, conv 270->{NUM_KEYPOINTS} expected)'
            raise CheckpointError(
                f'anime_face_detector cannot hold this model: other {what}: {difference}')
    others = sorted(k for k in state_dict if not k.startswith(('backbone.', 'head.')))
    if others:
        raise CheckpointError(
            f'anime_face_detector cannot hold this model: extra tensors {_listed(others)}')
