"""Pretrained weights by name, and the project's main config (the network they fit).

anime_face_detector publishes its models on the Hugging Face Hub; wherever a checkpoint is taken
(``--checkpoint`` of the tools, ``load_from`` in a config, ``--face-detector``) one of these names
works as well as a file:

- ``anime-face-detector``: the 28-point landmark model, ``model.safetensors`` of
  ``hysts/anime-face-detector-hrnetv2``;
- ``anime-face-detector-yolov3``, ``anime-face-detector-faster-rcnn``: its face detectors,
  ``model.safetensors`` of ``hysts/anime-face-detector-yolov3`` / ``-faster-rcnn``.

Names are resolved with ``huggingface_hub.hf_hub_download``, the way anime_face_detector itself
fetches them: the first use downloads into the Hub cache (with a progress bar), later ones read
the cache; ``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE=1`` are honoured. Offline without a
cached copy, the error says which repository and file are missing and how to bring them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import CheckpointError

CONFIG_ROOT = Path(__file__).resolve().parent.parent / 'configs'
#: The project's main config: HRNetV2-W18 with the 270-270-28 head, the network of every
#: checkpoint trained here with the shipped configs and of anime_face_detector's landmark model;
#: the default config wherever a checkpoint is given without one.
MAIN_CONFIG = CONFIG_ROOT / 'td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256.py'


@dataclass(frozen=True)
class PretrainedWeights:
    """A published checkpoint.

    Attributes:
        name: what users type.
        repo_id: its Hugging Face model repository.
        filename: the file in that repository.
        description: what the model does, for messages.
        face_detector: anime_face_detector's detector name (``yolov3``, ``faster-rcnn``) when
            the weights are a face detector's.
    """

    name: str
    repo_id: str
    filename: str
    description: str
    face_detector: str | None = None


PRETRAINED: dict[str, PretrainedWeights] = {w.name: w for w in (
    PretrainedWeights('anime-face-detector', 'hysts/anime-face-detector-hrnetv2',
                      'model.safetensors', 'anime_face_detector\'s 28-point landmark model '
                      '(HRNetV2-W18, human anime faces)'),
    PretrainedWeights('anime-face-detector-yolov3', 'hysts/anime-face-detector-yolov3',
                      'model.safetensors', 'anime_face_detector\'s YOLOv3 face detector',
                      face_detector='yolov3'),
    PretrainedWeights('anime-face-detector-faster-rcnn', 'hysts/anime-face-detector-faster-rcnn',
                      'model.safetensors', 'anime_face_detector\'s Faster R-CNN face detector',
                      face_detector='faster-rcnn'),
)}


def face_detector_weights(detector: str) -> str:
    """The pretrained name of one of anime_face_detector's face detectors."""
    return next(w.name for w in PRETRAINED.values() if w.face_detector == detector)


def is_pretrained_name(value: str | os.PathLike) -> bool:
    return str(value) in PRETRAINED


def download_hint(weights: PretrainedWeights) -> str:
    """How to bring a model to a machine that cannot download it."""
    return (f'on a machine with internet run `hf download {weights.repo_id} {weights.filename}` '
            'and copy its Hugging Face cache folder (~/.cache/huggingface/hub/models--'
            f'{weights.repo_id.replace("/", "--")}) into this machine\'s cache (or set HF_HOME '
            'to a copied cache), or download the file and pass its path')


def resolve_checkpoint(value: str | os.PathLike) -> Path:
    """A checkpoint file from a path or a name of :data:`PRETRAINED`.

    An existing file wins over a name; a name is downloaded on first use (see the module
    docstring).

    Raises:
        CheckpointError: neither a file nor a name; or a name that is neither cached nor
            downloadable (offline, no network, the repository gone), in one line saying what to
            do.
    """
    path = Path(value)
    if path.is_file():
        return path
    weights = PRETRAINED.get(str(value))
    if weights is None:
        names = ', '.join(PRETRAINED)
        raise CheckpointError(f'checkpoint not found: {value} (give a file, or one of the '
                              f'pretrained names: {names})')
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    try:
        return Path(hf_hub_download(weights.repo_id, weights.filename))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        if constants.HF_HUB_OFFLINE:
            why = 'HF_HUB_OFFLINE is set'
        elif isinstance(e, LocalEntryNotFoundError):
            why = 'huggingface.co cannot be reached'
        else:
            why = ' '.join(str(e).split())[:120]
        raise CheckpointError(
            f'{weights.name}: {weights.filename} of the Hugging Face repository '
            f'{weights.repo_id} is not in the cache {constants.HF_HUB_CACHE} and cannot be '
            f'downloaded ({why}); {download_hint(weights)}') from None
