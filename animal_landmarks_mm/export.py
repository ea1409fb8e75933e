"""Checkpoints in anime_face_detector's layout: read them to fine-tune, write them to deploy.

anime_face_detector's landmark model is mmpose 0.x's ``TopDown`` HRNetV2-W18 with a
``TopdownHeatmapSimpleHead``; ours is the same network under mmpose 1.x names. Only the head's
names differ (LANDMARKS.md in the project's shared notes)::

    keypoint_head.final_layer.0.*  <->  head.conv_layers.0.*   Conv2d 270->270 1x1
    keypoint_head.final_layer.1.*  <->  head.conv_layers.1.*   BatchNorm2d(270)
    keypoint_head.final_layer.3.*  <->  head.final_layer.*     Conv2d 270->28 1x1
    backbone.*                     <->  backbone.*             (1,830 tensors)

The exported file holds only those 1,839 tensors under the 0.x names, which is what
``anime_face_detector.LandmarkDetector`` loads with ``strict=True``.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from mmengine.config import Config

from .annotation import file_sha256
from .schema import NUM_KEYPOINTS

#: mmpose 0.x (anime_face_detector) name prefix -> mmpose 1.x name prefix.
AFD_TO_MMPOSE_PREFIXES = (
    ('keypoint_head.final_layer.0.', 'head.conv_layers.0.'),
    ('keypoint_head.final_layer.1.', 'head.conv_layers.1.'),
    ('keypoint_head.final_layer.3.', 'head.final_layer.'),
)

#: The config whose model anime_face_detector can hold (HRNetV2-W18, 270-270-28 head).
REFERENCE_CONFIG = (Path(__file__).resolve().parent.parent / 'configs' /
                    'td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256.py')

FORMATS = ('safetensors', 'pth', 'mmpose')


class CheckpointLayoutError(ValueError):
    """A checkpoint that does not fit the model it is meant for; the message says how."""


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors of a checkpoint file, whichever way it holds them, and its ``meta``.

    Reads ``.safetensors``, and ``.pth`` files that are a plain state dict or hold one under
    ``state_dict`` (mmengine and mmpose 0.x checkpoints, with or without ``meta``).

    Raises:
        FileNotFoundError: no such file.
        CheckpointLayoutError: the file holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'checkpoint not found: {path}')
    if path.suffix == '.safetensors':
        from safetensors.torch import load_file
        return load_file(str(path)), {}
    checkpoint = torch.load(path, map_location='cpu')  # weights_only; see checkpoint_compat
    meta = {}
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get('state_dict'), dict):
        meta = checkpoint.get('meta') or {}
        checkpoint = checkpoint['state_dict']
    if (not isinstance(checkpoint, dict) or not checkpoint
            or not all(isinstance(v, torch.Tensor) for v in checkpoint.values())):
        raise CheckpointLayoutError(f'{path}: not a state dict of tensors')
    return dict(checkpoint), meta


def is_anime_face_detector_layout(state_dict: dict[str, torch.Tensor]) -> bool:
    """Whether the names are mmpose 0.x's (a ``keypoint_head``) rather than 1.x's."""
    return any(k.startswith('keypoint_head.') for k in state_dict)


def _rename(state_dict: dict[str, torch.Tensor], pairs) -> dict[str, torch.Tensor]:
    renamed = {}
    for key, value in state_dict.items():
        for old, new in pairs:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        renamed[key] = value
    return renamed


def anime_face_detector_to_mmpose(state_dict: dict[str, torch.Tensor]
                                  ) -> dict[str, torch.Tensor]:
    """0.x names to 1.x names; keys outside the mapping are kept (and then reported)."""
    return _rename(state_dict, AFD_TO_MMPOSE_PREFIXES)


def mmpose_to_anime_face_detector(state_dict: dict[str, torch.Tensor]
                                  ) -> dict[str, torch.Tensor]:
    """1.x names to 0.x names."""
    return _rename(state_dict, [(new, old) for old, new in AFD_TO_MMPOSE_PREFIXES])


def to_mmpose_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict in either layout under mmpose 1.x names."""
    if is_anime_face_detector_layout(state_dict):
        return anime_face_detector_to_mmpose(state_dict)
    return state_dict


def reference_state_dict(config: str | os.PathLike = REFERENCE_CONFIG) -> dict[str, torch.Tensor]:
    """The state dict of the model a config builds (random weights; for names and shapes)."""
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS
    init_default_scope('mmpose')
    return MODELS.build(Config.fromfile(str(config)).model).state_dict()


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


def check_anime_face_detector_compatible(state_dict: dict[str, torch.Tensor],
                                         reference: dict[str, torch.Tensor] | None = None
                                         ) -> None:
    """Refuse a model anime_face_detector cannot hold.

    Args:
        state_dict: the model's weights under mmpose 1.x names.
        reference: the expected state dict (default: the reference config's model).

    Raises:
        CheckpointLayoutError: another keypoint count, backbone or head layout, explained.
    """
    final = state_dict.get('head.final_layer.weight')
    if final is not None and final.shape[0] != NUM_KEYPOINTS:
        raise CheckpointLayoutError(
            f'the head predicts {final.shape[0]} keypoints; anime_face_detector\'s model holds '
            f'{NUM_KEYPOINTS}')
    reference = reference_state_dict() if reference is None else reference
    for part in ('backbone.', 'head.'):
        ours = {k: v for k, v in state_dict.items() if k.startswith(part)}
        expected = {k: v for k, v in reference.items() if k.startswith(part)}
        difference = compare_state_dicts(ours, expected)
        if difference:
            what = 'backbone (HRNetV2-W18 expected)' if part == 'backbone.' else \
                'head layout (conv 270->270, BN, conv 270->28 expected)'
            raise CheckpointLayoutError(
                f'anime_face_detector cannot hold this model: other {what}: {difference}')
    others = sorted(k for k in state_dict if not k.startswith(('backbone.', 'head.')))
    if others:
        raise CheckpointLayoutError(
            f'anime_face_detector cannot hold this model: extra tensors {others[:3]}')


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
            Default: from the suffix of ``out`` (``.safetensors`` or ``.pth``).

    Returns:
        The file written.

    Raises:
        CheckpointLayoutError: a model anime_face_detector cannot hold.
    """
    out = Path(out)
    fmt = fmt or ('safetensors' if out.suffix == '.safetensors' else 'pth')
    if fmt not in FORMATS:
        raise ValueError(f'unknown format {fmt!r}; choose from {", ".join(FORMATS)}')
    state_dict, meta = read_checkpoint(checkpoint)
    state_dict = {k: v.detach().cpu().contiguous()
                  for k, v in to_mmpose_state_dict(state_dict).items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == 'mmpose':
        tmp = out.with_name(f'.{out.name}.tmp')
        torch.save(dict(state_dict=state_dict, meta=meta), tmp)
        final = out.with_name(f'{out.stem}-{file_sha256(tmp)[:8]}.pth')
        os.replace(tmp, final)
        return final
    check_anime_face_detector_compatible(state_dict)
    tensors = mmpose_to_anime_face_detector(state_dict)
    tmp = out.with_name(f'.{out.name}.tmp')
    if fmt == 'safetensors':
        from safetensors.torch import save_file
        save_file(tensors, str(tmp), metadata=dict(format='anime_face_detector hrnetv2',
                                                   exported_by='animal_landmarks_mm'))
    else:
        torch.save(tensors, tmp)
    os.replace(tmp, out)
    return out
