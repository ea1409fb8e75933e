"""Checkpoint files: read them as data, rename between the two layouts, load them strictly.

One module for every reader of weights: the training hook (``load_from``), the predictor
(inference, evaluation, the annotator) and the exporter. The model is mmengine's
``runner/checkpoint.py``: a checkpoint is read into a state dict, its keys are revised by regular
expressions (``revise_keys``), and then it is loaded into the model. Unlike mmengine's
``load_from`` (``strict=False``), loading here is strict: every tensor of the model must be there
with its shape, nothing more, or the load stops and says what differs.

A checkpoint is data. ``.pth`` files go through ``torch.load(weights_only=True)``, which builds
tensors and the few plain objects :mod:`.checkpoint_compat` allow-lists, never anything callable;
``.safetensors`` hold tensors only. Nothing a checkpoint carries (its stored config included) is
ever executed.

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

import torch

from .errors import AnimalLandmarksError, first_line


class CheckpointError(AnimalLandmarksError, ValueError):
    """A checkpoint that cannot be read, or does not fit the model it is meant for; the message
    is one line naming the file and saying how."""


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


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors of a checkpoint file, whichever way it holds them, and its ``meta``.

    Reads ``.safetensors``, and ``.pth`` files that are a plain state dict or hold one under
    ``state_dict`` (mmengine and mmpose 0.x checkpoints, with or without ``meta``).

    Args:
        path: the file, or a pretrained name (:data:`~.model_zoo.PRETRAINED`).

    Raises:
        CheckpointError: no such file or name, a file torch or safetensors cannot read safely
            (empty, truncated, not a checkpoint, a pickle asking for code), or one holding no
            state dict of tensors.
    """
    from .model_zoo import resolve_checkpoint
    path = resolve_checkpoint(path)
    if path.suffix == '.safetensors':
        from safetensors.torch import load_file
        try:
            return load_file(str(path)), {}
        except Exception as e:  # SafetensorError, OSError, ...: all "not a checkpoint"
            raise CheckpointError(f'{path}: not a readable safetensors file '
                                  f'({first_line(e)})') from None
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # EOFError, UnpicklingError, RuntimeError of a broken zip, ...
        raise CheckpointError(f'{path}: not a checkpoint torch can read safely '
                              f'({first_line(e)})') from None
    meta = {}
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get('state_dict'), dict):
        meta = checkpoint.get('meta') or {}
        checkpoint = checkpoint['state_dict']
    if (not isinstance(checkpoint, dict) or not checkpoint
            or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                       for k, v in checkpoint.items())):
        raise CheckpointError(f'{path}: not a state dict of tensors')
    return dict(checkpoint), meta if isinstance(meta, dict) else {}


def revise_keys(state_dict: dict[str, torch.Tensor],
                revisions: tuple[tuple[str, str], ...]) -> dict[str, torch.Tensor]:
    """Rename keys by ``(pattern, replacement)`` regular expressions, as mmengine's
    ``load_checkpoint(revise_keys=...)`` does."""
    for pattern, replacement in revisions:
        state_dict = {re.sub(pattern, replacement, k): v for k, v in state_dict.items()}
    return state_dict


def is_anime_face_detector_layout(state_dict: dict[str, torch.Tensor]) -> bool:
    """Whether the names are mmpose 0.x's (a ``keypoint_head``) rather than 1.x's."""
    return any(k.startswith('keypoint_head.') for k in state_dict)


def to_mmpose_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict in either layout under mmpose 1.x names (other keys kept as they are)."""
    if is_anime_face_detector_layout(state_dict):
        return revise_keys(state_dict, AFD_TO_MMPOSE_KEYS)
    return state_dict


def to_anime_face_detector_state_dict(state_dict: dict[str, torch.Tensor]
                                      ) -> dict[str, torch.Tensor]:
    """mmpose 1.x names to anime_face_detector's."""
    return revise_keys(state_dict, MMPOSE_TO_AFD_KEYS)


def compare_state_dicts(state_dict: dict[str, torch.Tensor],
                        reference: dict[str, torch.Tensor]) -> str:
    """Differences of names and shapes, as one line ('' when none)."""
    missing = sorted(reference.keys() - state_dict.keys())
    unexpected = sorted(state_dict.keys() - reference.keys())
    mismatched = [f'{k} {tuple(state_dict[k].shape)} vs {tuple(reference[k].shape)}'
                  for k in reference if k in state_dict
                  and state_dict[k].shape != reference[k].shape]
    parts = []
    for label, keys in (('missing', missing), ('unexpected', unexpected),
                        ('shape mismatch', mismatched)):
        if keys:
            shown = ', '.join(keys[:3]) + (f', ... ({len(keys)} in all)' if len(keys) > 3 else '')
            parts.append(f'{label}: {shown}')
    return '; '.join(parts)


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
        CheckpointError: an unreadable file, or one that does not fit the model (the missing,
            unexpected and mis-shaped tensors, in one line).
    """
    state_dict, _ = read_checkpoint(path)
    layout = ('anime_face_detector (mmpose 0.x names)'
              if is_anime_face_detector_layout(state_dict) else 'mmpose 1.x')
    state_dict = to_mmpose_state_dict(state_dict)
    expected = model.state_dict()
    if backbone_only:
        state_dict = {k: v for k, v in state_dict.items() if k.startswith('backbone.')}
        expected = {k: v for k, v in expected.items() if k.startswith('backbone.')}
    difference = compare_state_dicts(state_dict, expected)
    if difference:
        raise CheckpointError(f'{path} does not fit the model: {difference}')
    model.load_state_dict(state_dict, strict=not backbone_only)
    return layout
