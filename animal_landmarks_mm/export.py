"""Write a checkpoint trained here in a form another program loads.

- ``safetensors`` / ``pth``: anime_face_detector's layout (its mmpose 0.x names, see
  :mod:`.checkpoints`): only the model's 1,839 tensors, which
  ``anime_face_detector.LandmarkDetector`` loads with ``strict=True``;
- ``mmpose``: ``state_dict`` + ``meta`` under mmpose 1.x names, with the sha256 prefix in the
  file name, as mmpose's ``publish_model.py`` publishes models.

Reading, renaming and comparing checkpoints is :mod:`.checkpoints`' job; this module only writes.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .annotation import file_sha256, move_into_place, new_temporary, remove_stale_temporaries
from .checkpoints import (
    CheckpointError,
    check_anime_face_detector_compatible,
    is_safetensors_path,
    read_checkpoint,
    to_anime_face_detector_state_dict,
    to_mmpose_state_dict,
)
from .errors import first_line
from .onnx_predictor import is_onnx_path

FORMATS = ('safetensors', 'pth', 'mmpose')


def is_same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same path, a hard link or a symbolic link to it
    (``os.path.samefile`` where both exist), or, where one cannot be looked up, the same path
    once links and ``..`` are resolved (``new/../ckpt.pth`` names ``ckpt.pth`` once ``new`` is
    made, as the output's folder is)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them missing (or unreadable): not one existing file
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_overwriting_input(checkpoint: str | os.PathLike, out: str | os.PathLike) -> None:
    """Refuse an export whose output file is its input checkpoint (the same path, a hard link
    or a symbolic link to it): writing it would replace the training checkpoint.

    Raises:
        CheckpointError: naming both.
    """
    if is_same_file(checkpoint, out):
        same = '' if str(checkpoint) == str(out) else f' (the same file as {out})'
        raise CheckpointError(f'{checkpoint}: the output is the checkpoint being exported'
                              f'{same}; writing it would destroy it: choose another output '
                              'file')


# what a release file's meta keeps: values torch's weights_only load builds without any
# allow-list, and mmpose's init_model reads (dataset_meta)
_PLAIN = (str, int, float, bool, type(None))
# the depth of meta kept (mmengine's is 3 or 4 deep): a crafted one nested deeper than
# Python's recursion limit would fail torch.save with a traceback
_PLAIN_DEPTH = 16
# the most values a release file's meta holds in all, counted as plain data, every shared
# reference expanded (mmengine's and mmpose's meta is a few hundred): a list of ten
# references to one list of ten, and so on twelve times over, is a few hundred bytes of pickle
# and 10**12 values once made plain
_PLAIN_VALUES = 100_000
_LEFT_OUT = object()


class _TooLarge(Exception):
    """A meta entry of more values than :data:`_PLAIN_VALUES` leaves it."""


def plain_meta(meta: dict) -> dict:
    """A checkpoint's ``meta`` for a release file: plain data only.

    Kept are text, numbers, booleans, None, and lists, tuples and dicts (of such keys) of them;
    numpy numbers and arrays of numbers (all :mod:`.checkpoint_compat` reads) become their
    Python values (mmpose's ``dataset_meta`` holds colours and sigmas as arrays, which mmpose
    reads as sequences). Left out are ``meta['config']`` (Python code mmengine's resume would
    run), any value that is none of these or holds one (a tensor, mmengine's
    ``HistoryBuffer``), so the file loads with ``torch.load(weights_only=True)`` and nothing
    allow-listed, and an entry that would take the meta past :data:`_PLAIN_VALUES` values
    (each shared reference counted as often as it is reached; what the entries before it kept
    counts too).

    Each object is made plain once (at each depth) however often it is referenced, so the work
    is bounded by the objects the file holds, not by the values they would expand to.
    """
    if not isinstance(meta, dict):
        return {}
    memo: dict[tuple[int, int], tuple[object, object, int]] = {}
    left = _PLAIN_VALUES
    plain = {}
    for key, value in meta.items():
        try:
            key, key_size = _plain(key, 0, memo, left)
            item, size = _plain(value, _PLAIN_DEPTH - 1, memo, left - key_size)
        except _TooLarge:
            continue
        if key is not _LEFT_OUT and item is not _LEFT_OUT:
            plain[key] = item
            left -= key_size + size
    plain.pop('config', None)
    return plain


def _plain(value: object, depth: int, memo: dict[tuple[int, int], tuple[object, object, int]],
           left: int) -> tuple[object, int]:
    """``value`` as plain data (see :func:`plain_meta`), or ``_LEFT_OUT``, and how many values
    it holds, shared references expanded.

    Args:
        value: a part of the meta.
        depth: how many levels of containers below it are still kept.
        memo: what was made of each container and array, by its ``id`` and ``depth``; it
            holds the object too, so that its ``id`` is not reused while the memo lives.
        left: the most values it may hold.

    Raises:
        _TooLarge: it holds more than ``left`` values.
    """
    if type(value) in _PLAIN:  # not a subclass: its class would have to be allow-listed
        return value, 1
    key = (id(value), depth)
    if key in memo:
        _, plain, size = memo[key]
    else:
        plain, size = _plain_container(value, depth, memo, left)
        memo[key] = (value, plain, size)
    if size > left:
        raise _TooLarge
    return plain, size


def _plain_container(value: object, depth: int,
                     memo: dict[tuple[int, int], tuple[object, object, int]],
                     left: int) -> tuple[object, int]:
    """:func:`_plain` of other than a plain value, without the memo."""
    import numpy as np
    if isinstance(value, (np.ndarray, np.generic)):
        # numbers only (checkpoint_compat reads no other arrays): not text, objects, bytes,
        # records; the values are counted before tolist() makes them, so that an array of
        # many values is never listed
        if value.dtype.kind not in 'biuf' or value.ndim > depth:
            return _LEFT_OUT, 1
        if value.size > left:
            raise _TooLarge
        return value.tolist(), max(value.size, 1)
    if depth == 0:
        return _LEFT_OUT, 1
    size = 1
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            key, key_size = _plain(key, 0, memo, left - size)
            item, item_size = _plain(item, depth - 1, memo, left - size - key_size)
            size += key_size + item_size
            if size > left:  # plain values are not counted against it by _plain
                raise _TooLarge
            if key is not _LEFT_OUT and item is not _LEFT_OUT:
                kept[key] = item
        return kept, size
    if isinstance(value, (list, tuple)):
        items = []
        for item in value:
            item, item_size = _plain(item, depth - 1, memo, left - size)
            if item is _LEFT_OUT:
                return _LEFT_OUT, 1  # a list without one of its items would mean something else
            items.append(item)
            size += item_size
            if size > left:
                raise _TooLarge
        return (items if isinstance(value, list) else tuple(items)), size
    return _LEFT_OUT, 1


def check_suffix(out: Path, fmt: str) -> None:
    """Refuse an output name whose readers would take it for another format than ``fmt``
    (``safetensors`` or ``pth``).

    anime_face_detector reads a file as safetensors only when its suffix is exactly
    ``.safetensors`` (else with ``torch.load``); these tools read ``.safetensors`` in any case
    as safetensors and ``.onnx`` in any case as an ONNX graph.

    Raises:
        CheckpointError: saying which name to give.
    """
    if fmt == 'safetensors' and out.suffix != '.safetensors':
        raise CheckpointError(
            f'{out}: a safetensors file must end in .safetensors, lowercase (anime_face_detector '
            f'reads any other name with torch.load): name it {out.stem}.safetensors, or export '
            'with --format pth')
    if fmt == 'pth' and is_safetensors_path(out):
        raise CheckpointError(
            f'{out}: a .safetensors name for a pth file, which anime_face_detector and these '
            f'tools would read as safetensors: name it {out.stem}.pth, or export with --format '
            'safetensors')
    if is_onnx_path(out):
        raise CheckpointError(f'{out}: an .onnx name for a {fmt} file, which the tools would '
                              'read as an ONNX graph: export with --format onnx, or choose '
                              'another name')


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike,
                      fmt: str | None = None) -> Path:
    """Write a checkpoint trained here in a form another program loads.

    Args:
        checkpoint: an mmengine checkpoint (``epoch_N.pth``, ``best_NME_*.pth``) or a state dict
            in either layout.
        out: the output file. For ``mmpose`` the sha256 prefix is added to its name, as
            mmpose's ``publish_model.py`` does.
        fmt: ``safetensors`` or ``pth`` (anime_face_detector layout: tensors only, 0.x names),
            or ``mmpose`` (``state_dict`` + ``meta`` under 1.x names, no optimizer state).
            Default: from the suffix of ``out`` (``.safetensors`` in any case, else ``pth``;
            see :func:`check_suffix` for the names each format may have).

    Returns:
        The file written. A failed write leaves neither it nor a temporary file.

    Raises:
        CheckpointError: an unreadable checkpoint, a model anime_face_detector cannot hold, an
            output that is the checkpoint itself (a link to it included) or a folder, or a
            name whose readers would take the file for another format (:func:`check_suffix`:
            ``safetensors`` to other than ``.safetensors``, lowercase; ``pth`` to a
            ``.safetensors`` name; either to an ``.onnx`` one, which
            :func:`.onnx_export.export_onnx` writes). A file that cannot be written (a full
            disk) is an ``OSError`` or a one-line ``CheckpointError``.
    """
    out = Path(out)
    fmt = fmt or ('safetensors' if is_safetensors_path(out) else 'pth')
    if fmt not in FORMATS:
        raise CheckpointError(f'unknown format {fmt!r}; choose from {", ".join(FORMATS)}')
    if out.is_dir():
        raise CheckpointError(f'{out}: a folder; give the name of the file to write')
    if fmt != 'mmpose':  # an mmpose release file's name is made below: its hash, .pth
        check_suffix(out, fmt)
        refuse_overwriting_input(checkpoint, out)
    state_dict, meta = read_checkpoint(checkpoint)
    # each tensor a copy of its own: a checkpoint may hold views of one storage (tied weights,
    # slices), which safetensors refuses to write and torch.save writes whole for each view
    state_dict = {k: v.detach().cpu().clone(memory_format=torch.contiguous_format)
                  for k, v in to_mmpose_state_dict(state_dict).items()}
    if fmt != 'mmpose':  # before anything is written
        try:
            check_anime_face_detector_compatible(state_dict)
        except CheckpointError as e:
            raise CheckpointError(f'{checkpoint}: {e}') from None
    out.parent.mkdir(parents=True, exist_ok=True)
    # what a killed export of this output left: of its naming only (the folder may hold the
    # person's other files), old enough not to be another export's at work
    remove_stale_temporaries(out.parent, of=out.name)
    tmp = new_temporary(out)
    try:
        if fmt == 'mmpose':
            torch.save(dict(state_dict=state_dict, meta=plain_meta(meta)), tmp)
            out = out.with_name(f'{out.stem}-{file_sha256(tmp)[:8]}.pth')
        elif fmt == 'safetensors':
            from safetensors.torch import save_file
            save_file(to_anime_face_detector_state_dict(state_dict), str(tmp),
                      metadata=dict(format='anime_face_detector hrnetv2',
                                    exported_by='animal_landmarks_mm'))
        else:
            torch.save(to_anime_face_detector_state_dict(state_dict), tmp)
        # the name the hash gave; and the others again, their folder made now (a path
        # through a link made meanwhile)
        refuse_overwriting_input(checkpoint, out)
    except BaseException as e:  # a full disk, an unwritable folder, Ctrl-C: no half a file
        tmp.unlink(missing_ok=True)
        if isinstance(e, Exception) and not isinstance(e, (OSError, CheckpointError)):
            # torch's and safetensors' writers report a failed write in their own classes,
            # over several lines
            raise CheckpointError(f'{out}: could not write ({first_line(e)})') from None
        raise
    move_into_place(tmp, out)
    return out
