"""Training schedules sized to the data: a run is so many samples and steps, not so many epochs.

A recipe counted in epochs fits one dataset size: WFLW's 60 epochs with a 500-step warmup is
28,000 steps for its 7,500 faces, and 240 steps, all inside the warmup, for 200 faces. Here a
config states its schedule as a *recipe* (``schedule = dict(...)`` beside ``train_cfg``)::

    schedule = dict(
        samples=40_000,        # at least this many training samples (faces seen) ...
        min_epochs=60,         # ... and at least this many epochs of a large set
        warmup=0.05,           # linear warmup over this share of the steps ...
        max_warmup_iters=500,  # ... but no longer than this (optimizer steps, as all counts
                               # here: with gradient accumulation, K times the iterations)
        final_lr=0.01,         # cosine decay to this share of the peak lr
        validations=10,        # evaluations (and checkpoints) per run
        lr_batch=64,           # optim_wrapper's lr is for this many faces per step
    )

and :func:`plan_schedule` turns it into mmengine's ``train_cfg`` and ``param_scheduler`` for the
dataset at hand: the number of steps follows from the samples and the batch, whatever the number
of faces; the warmup is a share of the steps (none when that is under
:data:`MIN_WARMUP_ITERS`); a batch larger than the faces of a process is those faces; the lr
follows the faces of an optimizer step (batch x processes x gradient accumulation) by the square
root of their ratio to ``lr_batch``, the rule for Adam (linear scaling overshoots at small
batches); validation and checkpoint intervals are a share of the run. ``--epochs``,
``--iters`` and ``--batch-size`` give exactly what they say and the rest follows. An epoch is
mmengine's: a pass over the training loader's dataset, in which a ``RepeatDataset`` draws each
of its faces ``times`` times (the plan shows the faces and the samples an epoch draws).

With gradient accumulation (``optim_wrapper.accumulative_counts``, ``--accumulate``) a step is an
optimizer step, ``accumulate`` loader iterations: ``--iters``, the warmup and the validation
interval count optimizer steps, and are given to mmengine in iterations (its loop, schedulers and
hooks count those). ``--cfg-options`` that set ``train_cfg`` keys other than the loop and its
length (``val_interval``, ``val_begin``), and ``default_hooks.checkpoint.interval``, are applied
over the plan and shown in it; those that set the schedule itself (:data:`SCHEDULE_OPTIONS`)
leave the config's schedule as written, unplanned. The config's own ``train_cfg`` keys other than
the planned ones (:data:`PLANNED_LOOP_KEYS`), such as ``val_begin``, are kept, in the unit of the
planned loop (epochs; iterations for ``--iters``); ``dynamic_intervals`` (the config's or an
option's), an interval the plan would not follow, is refused.

``tools/train.py`` plans every run of a config that has a ``schedule``; other runners (``mim
train``) use the config's static ``train_cfg`` and ``param_scheduler`` as written.
"""
from __future__ import annotations

import math
import os.path as osp
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mmengine.config import Config, ConfigDict

from .annotation import AnnotationError
from .dataset import check_croppable, read_coco_file
from .errors import AnimalLandmarksError


class ScheduleError(AnimalLandmarksError, ValueError):
    """A schedule that cannot be planned (a bad flag value, no training faces)."""


#: what a config's ``schedule`` may hold, with the defaults of the module docstring
RECIPE_DEFAULTS = dict(samples=40_000, min_epochs=60, warmup=0.05, max_warmup_iters=500,
                       final_lr=0.01, validations=10, lr_batch=64)

#: ``--cfg-options`` keys that set the schedule itself (with the keys under them): given one,
#: the config's schedule is used as written, not planned; other ``train_cfg`` keys are applied
#: over the plan
SCHEDULE_OPTIONS = ('train_cfg.type', 'train_cfg.by_epoch', 'train_cfg.max_epochs',
                    'train_cfg.max_iters', 'param_scheduler')
#: the ``train_cfg`` keys a plan sets (the loop, its length, its validation interval): the
#: config's own other keys (``val_begin``) are kept beside them
PLANNED_LOOP_KEYS = frozenset({*(option.split('.', 1)[1] for option in SCHEDULE_OPTIONS
                                 if option.startswith('train_cfg.')), 'val_interval'})
#: the ``--cfg-options`` key outside ``train_cfg`` that the plan would write over: kept when given
CHECKPOINT_INTERVAL_OPTION = 'default_hooks.checkpoint.interval'

#: the most loader iterations a run may have: 7 years at 0.1 s each; mmengine's time estimate
#: (a datetime.timedelta) fails in a traceback on a run of some 10**13 or more
MAX_RUN_ITERS = 2**31

#: the shortest warmup (optimizer steps): mmengine's ``LinearLR`` reaches its end factor at its
#: last step, so one over a single step stays at its start factor (0.1 %), and the cosine after
#: it chains from there; a shorter warmup is none (the run starts at the peak lr)
MIN_WARMUP_ITERS = 2


@dataclass
class SchedulePlan:
    """A training run, as planned.

    A *step* is an optimizer step: ``accumulate`` loader iterations (one without accumulation).
    mmengine counts iterations (its ``max_iters``, schedulers and intervals), and so do the
    attributes below that say so.

    Attributes:
        faces: training samples of an epoch (a pass over the loader): the training faces
            (those mmpose keeps), each as many times as a ``RepeatDataset`` draws it
            (:func:`count_training_faces`).
        batch: faces per iteration and process: the batch asked for, or the faces of a process
            when they are fewer (each iteration then takes them all).
        processes: training processes (GPUs), each taking its share of the faces.
        accumulate: gradient accumulation: loader iterations per optimizer step.
        iters_per_epoch: loader iterations of an epoch.
        iters: loader iterations in all (mmengine's); optimizer steps are :attr:`steps`.
        epochs: epochs, passes over the loader's dataset (None for an iteration-based run,
            ``--iters``).
        warmup_iters: loader iterations of linear warmup, a whole number of optimizer steps
            (0: none, the run starts at the peak lr).
        lr: the peak learning rate.
        lr_note: how the lr was chosen, for the printed plan.
        final_lr: the lr at the end of the cosine decay.
        val_interval: validate (and save a checkpoint) every this many epochs, or loader
            iterations for an iteration-based run.
        val_begin: the first epoch (or iteration) that may validate (mmengine's ``val_begin``).
        validate: whether the run validates at all (not with ``--no-validate``).
        checkpoint_interval: checkpoints every this many epochs or iterations, when not at each
            validation (``--save-freq``, ``--cfg-options default_hooks.checkpoint.interval``).
        drop_last: the loader drops each pass's incomplete last batch.
        workers: data-loading processes per training process, when known.
        asked_batch: the batch asked for (config or ``--batch-size``) when it was more than the
            faces of a process; None otherwise.
        short_warmup_dropped: a warmup under :data:`MIN_WARMUP_ITERS` steps was made none.
        repeated: (faces, times drawn per epoch) of each training dataset when a
            ``RepeatDataset`` draws some more than once (:func:`training_face_counts`); empty
            when each face is drawn once an epoch.
    """

    faces: int
    batch: int
    processes: int
    accumulate: int
    iters_per_epoch: int
    iters: int
    epochs: int | None
    warmup_iters: int
    lr: float
    lr_note: str
    final_lr: float
    val_interval: int
    val_begin: int = 1
    validate: bool = True
    checkpoint_interval: int | None = None
    drop_last: bool = False
    workers: int | None = None
    asked_batch: int | None = None
    short_warmup_dropped: bool = False
    repeated: tuple[tuple[int, int], ...] = ()

    @property
    def steps(self) -> int:
        """Optimizer steps in all: mmengine's OptimWrapper updates every ``accumulate``
        iterations, and once more at the last iteration for a remainder."""
        return math.ceil(self.iters / self.accumulate)

    @property
    def warmup_steps(self) -> int:
        """Optimizer steps of linear warmup."""
        return self.warmup_iters // self.accumulate

    @property
    def samples(self) -> int:
        """Training samples (faces drawn) in all processes, as the loader draws them: each pass
        over a process's share of the faces ends with a smaller batch (none with drop_last),
        and an iteration-based run may stop inside a pass."""
        share = math.ceil(self.faces / self.processes)  # DefaultSampler pads the shares
        per_pass = self.iters_per_epoch * self.batch if self.drop_last else share
        passes, iters_left = divmod(self.iters, self.iters_per_epoch)
        # a pass cut short stops before its last batch, the only smaller one
        return (passes * per_pass + iters_left * self.batch) * self.processes

    def _step_word(self) -> str:
        return 'optimizer step' if self.accumulate > 1 else 'step'

    def _faces_per_process(self) -> str:
        """``faces``, or ``25 faces of a process`` (each takes its share, DefaultSampler);
        ``samples`` where a RepeatDataset draws faces more than once."""
        noun = 'samples' if self.repeated else 'faces'
        if self.processes == 1:
            return noun
        return f'{math.ceil(self.faces / self.processes)} {noun} of a process'

    def _faces(self) -> str:
        """``200 training faces``; with a RepeatDataset, the faces and the samples an epoch
        draws from them (``4 training faces x 3 (RepeatDataset) = 12 samples per epoch``)."""
        if not self.repeated:
            return f'{self.faces} training faces'
        distinct = sum(faces for faces, _ in self.repeated)
        times = {times for _, times in self.repeated}
        if len(times) == 1:
            return (f'{distinct} training faces x {times.pop()} (RepeatDataset) = {self.faces} '
                    'samples per epoch')
        return (f'{distinct} training faces, repeated (RepeatDataset) to {self.faces} samples '
                'per epoch')

    def format(self, seconds_per_step: float | None = None, device: str = '',
               done_iters: int = 0) -> str:
        """The plan, as printed before training.

        Args:
            seconds_per_step: seconds per loader iteration (:func:`measure_step_seconds`).
            device: the device those were measured on.
            done_iters: loader iterations done already: a resumed run goes on from its
                checkpoint's (the time expected is then what is left, and the whole).
        """
        step = self._step_word()
        if self.accumulate == 1:
            length = (f'{self.epochs} epochs x {self.iters_per_epoch} steps = {self.iters:,} '
                      'steps' if self.epochs is not None else f'{self.iters:,} steps '
                      f'({self.iters / self.iters_per_epoch:.1f} epochs)')
        else:
            per_epoch = (f'{self.iters_per_epoch} per epoch' if self.epochs is not None else
                         f'{self.iters / self.iters_per_epoch:.1f} epochs')
            length = (f'{self.epochs} epochs = ' if self.epochs is not None else '') + (
                f'{self.steps:,} optimizer steps ({self.iters:,} iterations of batch '
                f'{self.batch}, {per_epoch})')
        warmup = (f'{self.warmup_steps} {step}s '
                  f'({100 * self.warmup_iters / self.iters:.0f}% of the run), linear'
                  if self.warmup_iters else
                  f'none (under {MIN_WARMUP_ITERS} {step}s: the run starts at the peak lr)'
                  if self.short_warmup_dropped else 'none (the recipe\'s)')
        lines = [
            f'faces       {self._faces()}, batch {self.batch}'
            + (f' x {self.processes} processes' if self.processes > 1 else '')
            + (f' x {self.accumulate} accumulated' if self.accumulate > 1 else '')
            + (f' (batch {self.asked_batch} asked: more than the {self._faces_per_process()}, '
               'so each step takes them all; the lr and the plan follow)'
               if self.asked_batch else ''),
            f'length      {length}, {self.samples:,} training samples',
            f'warmup      {warmup}',
            f'lr          {self.lr:.3g} ({self.lr_note}), cosine decay to {self.final_lr:.2g}',
            self._validation_line(),
        ]
        if self.workers is not None:
            lines.append(f'loading     {self.workers} worker processes'
                         + (' per training process' if self.processes > 1 else ''))
        if seconds_per_step is not None:
            total = seconds_per_step * self.iters
            unit = 'iteration' if self.accumulate > 1 else 'step'
            # a resumed run goes on from its checkpoint: what is left first, then the whole
            time = (f'{_duration(seconds_per_step * max(0, self.iters - done_iters))} left of '
                    f'{_duration(total)} (resumed at {unit} {done_iters:,} of {self.iters:,}; '
                    if done_iters else f'{_duration(total)} (')
            lines.append(f'expected    {time}{seconds_per_step:.2f} s per {unit} on {device}, '
                         'measured just now without data loading or validation)')
        return '\n'.join(['training plan', *('  ' + line for line in lines)])

    def _every(self, interval: int) -> str:
        """``every epoch``, ``every 4 epochs``, ``every 30 steps``: an interval of mmengine's
        (epochs, or iterations), in optimizer steps where it is a whole number of them."""
        if self.epochs is not None:
            unit, count = 'epoch', interval
        elif interval % self.accumulate == 0:
            unit, count = self._step_word(), interval // self.accumulate
        else:
            unit, count = 'iteration', interval
        return f'every {unit}' if count == 1 else f'every {count} {unit}s'

    def _validation_line(self) -> str:
        checkpoints = (None if self.checkpoint_interval is None else
                       f'a checkpoint {self._every(self.checkpoint_interval)}'
                       if self.checkpoint_interval > 0 else 'no checkpoint by interval')
        if not self.validate:
            return (f'validation  none (--no-validate); '
                    f'{checkpoints or f"a checkpoint {self._every(self.val_interval)}"}')
        begin = ''
        if self.val_begin > 1:
            unit = 'epoch' if self.epochs is not None else 'iteration' if self.accumulate > 1 \
                else 'step'
            begin = f' from {unit} {self.val_begin}'
        return (f'validation  {self._every(self.val_interval)}{begin} ('
                f'{checkpoints or "a checkpoint each time"}; the best by NME kept)')


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f'{seconds:.0f} s'
    if seconds < 5400:
        return f'{seconds / 60:.0f} min'
    return f'{seconds / 3600:.1f} h'


#: mmengine's dataset wrappers whose draws follow from what they wrap, by the key that holds it
#: (its ClassBalancedDataset repeats by category, which mmpose's datasets do not give)
_DATASET_WRAPPERS = dict(RepeatDataset='dataset', ConcatDataset='datasets')


def wrapped_datasets(dataset: dict, where: str) -> list[tuple[str, dict, int]]:
    """The datasets inside a dataloader's ``dataset`` config, through mmengine's
    ``RepeatDataset`` and ``ConcatDataset``; the config itself when it is neither.

    Args:
        dataset: a dataloader's ``dataset`` config.
        where: its place in the config, for messages (``train_dataloader.dataset``).

    Returns:
        (place in the config, dataset config, how many times a pass over the loader draws each
        of its samples).
    """
    key = _DATASET_WRAPPERS.get(dataset.get('type'))
    if key is None:
        return [(where, dataset, 1)]
    if key == 'datasets':
        return [found for i, part in enumerate(dataset.get(key) or ())
                for found in wrapped_datasets(part, f'{where}.{key}.{i}')]
    times = dataset.get('times', 1)
    return [(place, found, n * times)
            for place, found, n in wrapped_datasets(dataset.get(key) or {}, f'{where}.{key}')]


def training_faces(coco: dict) -> int:
    """How many faces of a COCO keypoints file mmpose trains on (:func:`kept_faces`)."""
    return len(kept_faces(coco))


def kept_faces(coco: dict) -> list[dict]:
    """The faces of a COCO keypoints file that mmpose trains on (and validates on), as its
    top-down ``BaseCocoStyleDataset`` keeps them (``_load_annotations``, ``parse_data_info``
    and ``_is_valid_instance``): annotations of the listed images with a box and keypoints, not
    crowd, with labelled points (``num_keypoints``, else the points not at 0,0), and a box of
    some width and height once clipped to the image.

    Args:
        coco: a file as :func:`~.dataset.read_coco_file` gives it (checked: a file mmpose
            loads).
    """
    import numpy as np
    images = {image['id']: image for image in coco['images']}
    kept = []
    for face in coco['annotations']:
        image = images.get(face['image_id'])
        if (image is None or 'bbox' not in face or 'keypoints' not in face
                or face.get('iscrowd', 0)):
            continue
        points = np.array(face['keypoints'], dtype=np.float32).reshape(-1, 3)[:, :2]
        labelled = (face['num_keypoints'] if 'num_keypoints' in face
                    else np.count_nonzero(points.max(axis=1)))
        x, y, w, h = face['bbox']
        width, height = image['width'], image['height']
        box = np.array([np.clip(x, 0, width - 1), np.clip(y, 0, height - 1),
                        np.clip(x + w, 0, width - 1), np.clip(y + h, 0, height - 1)],
                       dtype=np.float32)
        box_width, box_height = box[2:] - box[:2]
        if labelled != 0 and box_width > 0 and box_height > 0 and points.max() > 0:
            kept.append(face)
    return kept


def read_training_faces(path: str) -> tuple[dict, int]:
    """A COCO keypoints file, read and checked as mmpose's dataset needs it
    (:func:`~.dataset.read_coco_file`, :func:`~.dataset.check_croppable`), and its
    :func:`training_faces`.

    Raises:
        AnnotationError: a file that cannot be read or that mmpose would fail on, or train on
            wrongly; one line naming it and the entry.
    """
    coco = read_coco_file(path)
    faces = kept_faces(coco)
    check_croppable(coco, faces, path)
    return coco, len(faces)


def annotation_file(dataset: dict) -> str:
    """The COCO file a dataset config reads: its ``ann_file`` under its ``data_root``, as
    mmengine's ``BaseDataset`` joins them."""
    return osp.join(dataset.get('data_root') or '', dataset.ann_file)


#: dataset settings whose samples the plan does not count (a top-down face model trains on
#: each face of a COCO file): the setting and the value that is counted
_UNCOUNTED_SETTINGS = dict(data_mode='topdown', bbox_file=None, sample_interval=1)


def training_face_counts(cfg: Config, counted: Mapping[str, int] | None = None
                         ) -> list[tuple[int, int]]:
    """The faces of each COCO dataset of the training loader and how many times one pass over
    the loader (an epoch) draws each of them: faces as mmpose keeps them
    (:func:`training_faces`), read from the COCO files (the dataset is not built), through
    mmengine's ``RepeatDataset`` and ``ConcatDataset`` and a dataset's ``indices``.

    Args:
        cfg: the config.
        counted: the training faces of files read already, by :func:`annotation_file` (what
            ``training.check_annotation_files`` returns): not read again.

    Returns:
        (faces, times drawn per epoch) of each dataset, in the loader's order.

    Raises:
        ScheduleError: a file that cannot be read, or a dataset the plan cannot count (another
            wrapper, a bottom-up or detection-box dataset), in one line naming it.
    """
    counts = []
    for where, dataset, times in wrapped_datasets(cfg.train_dataloader.dataset,
                                                  'train_dataloader.dataset'):
        uncounted = (f'a {dataset.get("type")}' if 'ann_file' not in dataset
                     else next((f'{name}={dataset[name]!r}'
                                for name, expected in _UNCOUNTED_SETTINGS.items()
                                if dataset.get(name, expected) != expected), None))
        if uncounted is not None:
            raise ScheduleError(
                f'cannot count the training faces of {where} ({uncounted}): the plan counts '
                'those of top-down COCO datasets (also inside RepeatDataset and ConcatDataset); '
                'set the schedule yourself with --cfg-options train_cfg.max_epochs=N (then used '
                'as written)')
        path = annotation_file(dataset)
        try:
            faces = (counted[path] if counted is not None and path in counted
                     else read_training_faces(path)[1])
        except AnnotationError as e:  # names the file
            raise ScheduleError(f'cannot count the training faces: {e}') from None
        # mmengine's BaseDataset keeps the first (or, negative, last) `indices` samples, or
        # those it lists
        indices = dataset.get('indices')
        if isinstance(indices, int) and not isinstance(indices, bool):
            faces = min(faces, abs(indices))
        elif isinstance(indices, (list, tuple)) and all(
                isinstance(i, int) and not isinstance(i, bool) for i in indices):
            faces = len(indices)
        elif indices is not None:  # (2.5 was a TypeError traceback here)
            raise ScheduleError(f'{where}.indices must be a whole number or a list of them (the '
                                f'samples mmengine keeps), got {indices!r}'[:300])
        counts.append((faces, times))
    return counts


def count_training_faces(cfg: Config, counted: Mapping[str, int] | None = None) -> int:
    """Training samples of one pass over the training loader (an epoch): the faces of
    :func:`training_face_counts`, each as many times as a pass draws it."""
    return _samples_per_epoch(training_face_counts(cfg, counted))


def _samples_per_epoch(counts: Sequence[tuple[int, int]]) -> int:
    return sum(faces * times for faces, times in counts)


#: what each recipe setting may be: (whole number?, smallest, largest, what it must be)
_RECIPE_RANGES = dict(
    samples=(True, 0, math.inf, 'a whole number, 0 or more'),
    min_epochs=(True, 0, math.inf, 'a whole number, 0 or more'),
    warmup=(False, 0, 1, 'a share of the steps from 0 to 1'),
    max_warmup_iters=(True, 0, math.inf, 'a whole number, 0 or more'),
    final_lr=(False, 0, 1, 'a share of the peak lr from 0 to 1'),
    validations=(True, 1, math.inf, 'a whole number, 1 or more'),
    lr_batch=(True, 1, math.inf, 'a whole number, 1 or more'),
)


def overridden_recipe(config_file: str) -> tuple[str, list[str]] | None:
    """The config file, derived (``_base_``) from one with a schedule recipe, when it (or a
    file between them) changes what the recipe's plan replaces (a planned ``train_cfg`` key,
    :data:`PLANNED_LOOP_KEYS`, ``param_scheduler``, or the checkpoint interval) without
    changing the recipe: the plan would train otherwise than those files say, unseen. Returns
    the file and the keys; None when nothing differs (or the files cannot be read: mmengine has
    read them, the check is then left out).

    The recipe's file is the nearest one down the ``_base_`` chain that assigns ``schedule``
    (found as mmengine finds base files, never run); the derived config and that file are then
    loaded by mmengine and compared, so every way of setting a key counts (an assignment,
    ``train_cfg.update(...)``, ``_base_.train_cfg.max_epochs = ...``, YAML, ``{{fileDirname}}``).
    A config that sets a recipe of its own (``schedule = dict(...)`` or ``schedule = None``) is
    its own recipe's file: nothing is compared.
    """
    try:
        recipe_file = _recipe_file(config_file, set())
        if recipe_file is None or osp.realpath(recipe_file) == osp.realpath(config_file):
            return None
        derived, recipe = Config.fromfile(config_file), Config.fromfile(recipe_file)
    except Exception:  # noqa: BLE001  mmengine has read it; a form this reading does not
        # know: the check is left out, never the run
        return None
    if derived.get('schedule') != recipe.get('schedule'):
        return None  # the recipe was changed on the way: that file's plan, as it says
    keys = [key for key in (*(f'train_cfg.{key}' for key in sorted(PLANNED_LOOP_KEYS)),
                            'param_scheduler', CHECKPOINT_INTERVAL_OPTION)
            if _config_value(derived, key) != _config_value(recipe, key)]
    return (config_file, keys) if keys else None


def _config_value(cfg: Config, key: str) -> object:
    """A dotted key's value in a config; None where a part of the path is missing."""
    first, *rest = key.split('.')
    value = cfg.get(first)
    for part in rest:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _recipe_file(path: str, seen: set[str]) -> str | None:
    """The nearest file down the ``_base_`` chain from ``path`` (itself first) that assigns
    ``schedule``, depth first in the order of the bases as mmengine merges them; None if none
    does. A package's config (``mmpose::...``) is none of ours: not followed."""
    real = osp.realpath(path)
    if real in seen:
        return None
    seen.add(real)
    names, bases = _assigned_names(path)
    if 'schedule' in names:
        return path
    for base in bases:
        found = _recipe_file(base, seen)
        if found is not None:
            return found
    return None


def _assigned_names(path: str) -> tuple[set[str], list[str]]:
    """The names a config file assigns at its top level (Python's ``ast``, never run; a
    ``.json`` or ``.yaml`` config's keys) and its base files' paths, read as mmengine reads
    them: after its ``{{fileDirname}}``-style and ``{{$ENV}}`` substitutions."""
    import ast
    import tempfile

    import mmengine
    suffix = osp.splitext(path)[1]
    with tempfile.TemporaryDirectory() as folder:
        substituted = osp.join(folder, f'config{suffix}')
        Config._substitute_predefined_vars(path, substituted)
        Config._substitute_env_variables(substituted, substituted)
        if suffix == '.py':
            with open(substituted, encoding='utf-8') as f:
                tree = ast.parse(f.read())
            names = set()
            for node in tree.body:
                targets = (node.targets if isinstance(node, ast.Assign) else
                           [node.target] if isinstance(node, ast.AnnAssign) else [])
                names |= {target.id for target in targets if isinstance(target, ast.Name)}
        else:
            loaded = mmengine.load(substituted)
            names = set(loaded) if isinstance(loaded, dict) else set()
        bases = []
        for base in Config._get_base_files(substituted):
            base_path, scope = Config._get_cfg_path(base, path)
            if scope is None:
                bases.append(base_path)
    return names, bases


def recipe_of(cfg: Config) -> dict | None:
    """The config's ``schedule`` recipe with the defaults filled in; None when it has none.

    Raises:
        ScheduleError: an unknown setting, or a value out of its range (one line naming it).
    """
    recipe = cfg.get('schedule')
    if recipe is None:
        return None
    unknown = set(recipe) - set(RECIPE_DEFAULTS)
    if unknown:
        raise ScheduleError(f'unknown schedule setting(s) {sorted(unknown)}; known: '
                            f'{", ".join(RECIPE_DEFAULTS)}')
    recipe = {**RECIPE_DEFAULTS, **recipe}
    for name, (whole, low, high, what) in _RECIPE_RANGES.items():
        value = recipe[name]
        # bool is an int to Python, and nan compares false with everything: both refused here
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or not low <= value <= high
                or (whole and value != int(value))):
            raise ScheduleError(f'schedule.{name} must be {what}, got {value!r} (the config\'s '
                                'schedule recipe)')
        recipe[name] = int(value) if whole else float(value)
    if recipe['samples'] == 0 and recipe['min_epochs'] == 0:
        raise ScheduleError('schedule.samples and schedule.min_epochs are both 0: a run of no '
                            'steps (the config\'s schedule recipe)')
    return recipe


def _check_setting(key: str, value: object, whole: bool) -> None:
    """Refuse a config value the plan computes with (the config's, or ``--cfg-options``'):
    a batch or an accumulation of 0 divided by zero in the plan, a negative one failed in
    ``math.log``, 2.5 in torch's sampler, a negative lr was printed and then failed in torch's
    optimizer.

    Args:
        key: where it is in the config (``train_dataloader.batch_size``).
        value: the value found there.
        whole: whether it counts something (a positive int), else a positive finite number.

    Raises:
        ScheduleError: naming the key and the value.
    """
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    # nan compares false with everything; an int is compared, never made a float
    if number and (isinstance(value, int) or not whole) and 0 < value < math.inf:
        return
    what = 'a whole number, 1 or more' if whole else 'a positive finite number'
    raise ScheduleError(f'{key} must be {what}, got {value!r} (the config\'s, or --cfg-options)')


def check_count(key: str, value: object, least: int | None, given: str) -> None:
    """Refuse a loop or hook setting mmengine counts epochs or iterations with that is not a
    whole number: nan compares false with every epoch (no validation, and a plan saying
    otherwise), 1.5 was planned as such while mmengine's hooks fire where ``(epoch + 1) % 1.5``
    is 0, a string fails a comparison in a traceback.

    Args:
        key: where it is in the config (``train_cfg.val_begin``).
        value: the value found there.
        least: the smallest allowed; None for any.
        given: where it came from, for the message.

    Raises:
        ScheduleError: naming the key and the value.
    """
    if (isinstance(value, int) and not isinstance(value, bool)
            and (least is None or value >= least)):
        return
    what = 'a whole number' + (f', {least} or more' if least is not None else '')
    raise ScheduleError(f'{key} must be {what}, got {value!r} ({given})')


def check_positive(name: str, value: float | None, most: int | None = None) -> None:
    """Refuse a flag that must be a positive finite number (``--lr nan`` compares false with
    ``<= 0`` and would pass a plain sign check).

    Args:
        name: the flag.
        value: its value (None: not given).
        most: the largest allowed (:data:`MAX_RUN_ITERS` for a run's length).

    Raises:
        ScheduleError: naming the flag and the value.
    """
    if value is None:
        return
    # an int is compared as it is: math.isfinite makes it a float, OverflowError past 1e308
    if not (value > 0 if isinstance(value, int) else math.isfinite(value) and value > 0):
        raise ScheduleError(f'{name} must be positive, got {_shown(value)}')
    if most is not None and value > most:
        raise ScheduleError(f'{name} must be at most {most:,}, got {_shown(value)}')


def _shown(value: float) -> str:
    """A number for a message: an int with thousands separators, or its count of digits when
    it has many."""
    if not isinstance(value, int):
        return str(value)
    return f'a number of {len(str(abs(value)))} digits' if abs(value) >= 10**15 else f'{value:,}'


def _under(key: str, option: str) -> bool:
    """Whether a ``--cfg-options`` key is ``option`` or a key inside it."""
    return key == option or key.startswith(option + '.')


def schedule_options(cfg_options: dict | None) -> list[str]:
    """The ``--cfg-options`` keys that set the schedule itself (:data:`SCHEDULE_OPTIONS`, or
    the whole ``train_cfg``): given one, the config's schedule is used as written."""
    # train_cfg._delete_ makes the whole train_cfg the options' own, as train_cfg=dict(...) does
    return [key for key in cfg_options or {}
            if key in ('train_cfg', 'train_cfg._delete_')
            or any(_under(key, option) for option in SCHEDULE_OPTIONS)]


def options_over_the_plan(cfg_options: dict | None) -> dict:
    """The ``--cfg-options`` a plan applies over its own settings: the ``train_cfg`` keys that
    do not set the schedule (``val_interval``, ``val_begin``) and the checkpoint interval."""
    schedule = schedule_options(cfg_options)
    return {key: value for key, value in (cfg_options or {}).items()
            if key not in schedule
            and (_under(key, 'train_cfg') or key == CHECKPOINT_INTERVAL_OPTION)}


def plan_schedule(cfg: Config, faces: int | Sequence[tuple[int, int]], *,
                  epochs: int | None = None,
                  iters: int | None = None, batch_size: int | None = None,
                  lr: float | None = None, processes: int = 1,
                  cfg_options: dict | None = None) -> SchedulePlan:
    """Size a run to ``faces`` and write it into ``cfg`` (see the module docstring).

    Args:
        cfg: a config with a ``schedule`` recipe; ``train_cfg`` (its keys but
            :data:`PLANNED_LOOP_KEYS` kept), ``param_scheduler``, the lr, the batch size and
            the checkpoint interval are set here.
        faces: the training faces, or (faces, times drawn per epoch) of each training
            dataset (:func:`training_face_counts`: a ``RepeatDataset`` is then counted and
            shown as such); an epoch draws their samples.
        epochs: exactly this many epochs (passes over the loader's dataset).
        iters: exactly this many optimizer steps (an iteration-based run); not with
            ``epochs``.
        batch_size: faces per iteration (default: the config's).
        lr: the peak lr as it is (default: the config's lr scaled to the batch).
        processes: distributed training processes; each runs its share of the faces per
            epoch (mmengine's ``DefaultSampler``), so a step counts ``batch x processes``.
        cfg_options: the ``--cfg-options`` given (already merged into ``cfg``); those of
            :func:`options_over_the_plan` are applied over the plan, and shown in it.

    Raises:
        ScheduleError: no faces, a non-positive value (of a flag, or of the config's batch
            size, gradient accumulation or lr), both ``epochs`` and ``iters``, a loop
            setting that is not a whole number or begins validating past the run's end,
            ``dynamic_intervals``, or a run of more than :data:`MAX_RUN_ITERS` iterations.
    """
    recipe = recipe_of(cfg)
    if recipe is None:
        raise ScheduleError('the config has no schedule recipe')
    repeated = ()
    if isinstance(faces, Sequence):  # an epoch draws each dataset's faces `times` times
        repeated = tuple(faces) if any(times != 1 for _, times in faces) else ()
        faces = _samples_per_epoch(faces)
    if faces <= 0:
        raise ScheduleError('no training faces')
    if epochs is not None and iters is not None:
        raise ScheduleError('give --epochs or --iters, not both')
    for name, value in (('--epochs', epochs), ('--iters', iters)):
        check_positive(name, value, most=MAX_RUN_ITERS)
    for name, value in (('--batch-size', batch_size), ('--lr', lr)):
        check_positive(name, value)
    asked = batch_size or cfg.train_dataloader.batch_size
    if batch_size is None:  # (the flag is checked above)
        _check_setting('train_dataloader.batch_size', asked, whole=True)
    # each process takes ceil(faces / processes) faces per epoch (DefaultSampler), in batches
    # of `asked`; a batch larger than that share is the share: the lr and the plan follow the
    # faces a step really holds, and the loader is given that batch (the same batches)
    share = math.ceil(faces / processes)
    drop_last = cfg.train_dataloader.get('drop_last', False)
    if asked > share and drop_last:
        raise ScheduleError(f'batch {asked} is more than the {share} training faces of a process '
                            'and the loader drops incomplete batches (drop_last): no step; give '
                            f'--batch-size {share} or less')
    batch = min(asked, share)
    cfg.train_dataloader.batch_size = batch
    # mmengine's OptimWrapper steps every `accumulate` iterations, while its loop, schedulers
    # and intervals count iterations: the plan counts optimizer steps, and gives iterations
    accumulate = cfg.optim_wrapper.get('accumulative_counts', 1)
    _check_setting('optim_wrapper.accumulative_counts', accumulate, whole=True)
    iters_per_epoch = share // batch if drop_last else math.ceil(share / batch)
    if iters is None:
        if epochs is None:
            # an epoch draws each process's padded share (or its whole batches, drop_last):
            # with fewer faces than processes, up to a face per process, more than the faces
            # (3 faces on 8 GPUs: 8 samples an epoch; counting 3 ran 2.7x the recipe's samples)
            drawn = (iters_per_epoch * batch if drop_last else share) * processes
            epochs = max(math.ceil(recipe['samples'] / drawn), recipe['min_epochs'])
        iters = epochs * iters_per_epoch
    else:
        iters *= accumulate
    if iters > MAX_RUN_ITERS:
        raise ScheduleError(f'the run would be {_shown(iters)} loader iterations, more than the '
                            f'{MAX_RUN_ITERS:,} a run may have (--epochs, --iters, --accumulate '
                            'or the recipe\'s samples): give fewer')
    steps = math.ceil(iters / accumulate)
    warmup = min(recipe['max_warmup_iters'], round(recipe['warmup'] * steps), steps - 1)
    # none because the run is short, not because the recipe asks for none
    short_warmup_dropped = warmup < MIN_WARMUP_ITERS and min(recipe['warmup'],
                                                             recipe['max_warmup_iters']) > 0
    if warmup < MIN_WARMUP_ITERS:
        # mmengine's LinearLR over one step applies its start factor once and never ramps:
        # the whole run would stay at 0.1 % of the lr; a run this short starts at the peak
        warmup = 0
    warmup_iters = warmup * accumulate
    auto_scale = cfg.get('auto_scale_lr') or {}
    if lr is None:  # the config's, scaled here
        _check_setting('optim_wrapper.optimizer.lr', cfg.optim_wrapper.optimizer.lr,
                       whole=False)
    if lr is not None:
        lr_note = 'as given'
    elif auto_scale.get('enable'):  # --auto-scale-lr: mmengine's linear rule, applied later
        _check_setting('auto_scale_lr.base_batch_size', auto_scale.get('base_batch_size'),
                       whole=True)
        base = cfg.optim_wrapper.optimizer.lr
        lr = base * batch * processes / auto_scale['base_batch_size']
        lr_note = (f'{base:.3g} x {batch * processes}/{auto_scale["base_batch_size"]}, '
                   'mmengine\'s linear scaling (--auto-scale-lr)')
    else:
        base = cfg.optim_wrapper.optimizer.lr
        total = batch * processes * accumulate
        lr = base * math.sqrt(total / recipe['lr_batch'])
        lr_note = f'{base:.3g} for {recipe["lr_batch"]} faces per step x sqrt({total}/' \
            f'{recipe["lr_batch"]})'
    if auto_scale.get('enable') and lr_note != 'as given':
        pass  # the config keeps its lr: mmengine scales it when the runner starts
    else:
        cfg.optim_wrapper.optimizer.lr = lr
        if cfg.get('auto_scale_lr'):
            cfg.auto_scale_lr.enable = False  # the plan's lr is final
    # the config's own loop settings beside its schedule (val_begin) stay
    own = {key: value for key, value in (cfg.get('train_cfg') or {}).items()
           if key not in PLANNED_LOOP_KEYS}
    if epochs is not None:
        val_interval = max(1, round(epochs / recipe['validations']))
        cfg.train_cfg = ConfigDict(type='EpochBasedTrainLoop', max_epochs=epochs,
                                   val_interval=val_interval, **own)
    else:
        val_interval = max(1, round(steps / recipe['validations'])) * accumulate
        cfg.train_cfg = ConfigDict(type='IterBasedTrainLoop', max_iters=iters,
                                   val_interval=val_interval, **own)
        cfg.log_processor = ConfigDict({**cfg.get('log_processor', {}), 'by_epoch': False})
        # mmengine's LoggerHook logs each validation at the loop's epoch by default: always 0
        # in an IterBasedTrainLoop, so every validation of the run would be logged at step 0
        if cfg.default_hooks.get('logger'):
            cfg.default_hooks.logger.log_metric_by_epoch = False
    kept = options_over_the_plan(cfg_options)
    if kept:
        cfg.merge_from_dict(kept)
        val_interval = cfg.train_cfg.val_interval
        check_count('train_cfg.val_interval', val_interval, 1, '--cfg-options')
    if cfg.train_cfg.get('dynamic_intervals'):
        # mmengine's loop would change the validation interval during the run, while the
        # checkpoint hook and the printed plan keep the planned one
        raise ScheduleError('train_cfg.dynamic_intervals (the config\'s, or --cfg-options) '
                            'changes the validation interval during the run, which the plan '
                            'does not follow: drop it (--cfg-options '
                            'train_cfg.dynamic_intervals=None), or set the schedule as written '
                            '(--cfg-options train_cfg.max_epochs=N)')
    val_begin = cfg.train_cfg.get('val_begin', 1)
    check_count('train_cfg.val_begin', val_begin, 1, 'the config\'s, or --cfg-options')
    last = epochs if epochs is not None else iters
    if val_begin > last and cfg.get('val_cfg') is not None:  # (not with --no-validate)
        # mmengine validates from val_begin on, and at the last epoch (or iteration) only
        # from there
        unit = 'epoch' if epochs is not None else 'iteration' if accumulate > 1 else 'step'
        raise ScheduleError(f'train_cfg.val_begin {val_begin} is past the run\'s last {unit} '
                            f'({last:,}): nothing would validate (the config\'s, or '
                            '--cfg-options); give a smaller one, or --no-validate')
    checkpoint = cfg.default_hooks.checkpoint
    checkpoint.by_epoch = epochs is not None
    checkpoint_given = CHECKPOINT_INTERVAL_OPTION in kept
    if checkpoint_given:
        check_count(CHECKPOINT_INTERVAL_OPTION, checkpoint.interval, None,
                     '--cfg-options; 0 or less for none')
    else:  # a checkpoint at each validation
        checkpoint.interval = val_interval
    # per iteration, whatever the loop: the warmup and the decay are shares of the steps
    cfg.param_scheduler = [
        dict(type='LinearLR', begin=0, end=warmup_iters, start_factor=0.001, by_epoch=False)
    ] if warmup_iters else []
    cfg.param_scheduler.append(dict(
        type='CosineAnnealingLR', begin=warmup_iters, end=iters, T_max=iters - warmup_iters,
        eta_min_ratio=recipe['final_lr'], by_epoch=False))
    return SchedulePlan(faces=faces, batch=batch, processes=processes, accumulate=accumulate,
                        iters_per_epoch=iters_per_epoch, iters=iters, epochs=epochs,
                        warmup_iters=warmup_iters, lr=lr, lr_note=lr_note,
                        final_lr=lr * recipe['final_lr'], val_interval=val_interval,
                        val_begin=val_begin,
                        checkpoint_interval=checkpoint.interval if checkpoint_given else None,
                        drop_last=drop_last, asked_batch=asked if asked != batch else None,
                        short_warmup_dropped=short_warmup_dropped, repeated=repeated)


def measure_step_seconds(cfg: Config, steps: int = 2) -> tuple[float, str]:
    """Seconds per training step of the config's model at its batch size on this machine's
    device: forward, backward and an optimizer step on random crops (data loading, the
    pipeline and validation not included), after one warm-up step.

    Returns:
        The seconds per step and the device's name.
    """
    import torch
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS
    init_default_scope('mmpose')
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    model = MODELS.build(cfg.model).to(device).train()
    width, height = cfg.codec.input_size
    crops = torch.randn(cfg.train_dataloader.batch_size, 3, height, width, device=device)
    crops = crops.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-6)
    amp = cfg.optim_wrapper.get('type') == 'AmpOptimWrapper' and device == 'cuda'

    def step() -> None:
        with torch.autocast(device, enabled=amp):
            heatmaps = model.head.forward(model.extract_feat(crops))
            loss = heatmaps.float().square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    from .benchmarks.common import seconds_per_call
    seconds = seconds_per_call(dict(step=step), steps, synchronize=torch.cuda.synchronize
                               if device == 'cuda' else lambda: None)['step']
    name = torch.cuda.get_device_name(0) if device == 'cuda' else f'{torch.get_num_threads()} ' \
        'CPU threads'
    return seconds, name


#: what a saved scheduler state holds that is its progress, or follows from other settings
_SCHEDULER_PROGRESS = frozenset({'last_step', 'verbose', 'total_iters'})
#: settings named first, in this order (then the others, alphabetically)
_SCHEDULER_SETTINGS_FIRST = ('base_values', 'begin', 'end', 'T_max')
#: how a scheduler setting is called in the refusal
_SCHEDULER_SETTING_NAMES = dict(base_values='lr')


def resumed_schedule_difference(schedulers: list | dict, saved: list | dict) -> str:
    """How the schedule of a run differs from the one a checkpoint was saved with, in one line
    ('' when it does not).

    mmengine's resume loads every saved scheduler state over the scheduler built for the run:
    its begin, end, ``T_max`` and base lr come back from the checkpoint, so a run resumed with
    another plan (more steps, another batch or lr, a grown dataset) would print one schedule
    and follow the other. The run's schedulers are compared here, as built (lr scaling and
    epoch-to-step conversion done), with the saved states.

    Args:
        schedulers: the runner's built parameter schedulers (a list, or a dict of lists by
            optimizer name).
        saved: the checkpoint's ``param_schedulers``, in the same shape.
    """
    if isinstance(schedulers, dict) or isinstance(saved, dict):
        if not (isinstance(schedulers, dict) and isinstance(saved, dict)) \
                or schedulers.keys() != saved.keys():
            return 'other optimizers\' schedulers'
        return '; '.join(filter(None, (resumed_schedule_difference(schedulers[name],
                                                                   saved[name])
                                       for name in schedulers)))
    if len(schedulers) != len(saved):
        names = ', '.join(type(s).__name__ for s in schedulers) or 'none'
        return f'{len(schedulers)} schedulers now ({names}), {len(saved)} saved'
    differences = []
    for scheduler, state in zip(schedulers, saved):
        ours = scheduler.state_dict()
        keys = [k for k in ours.keys() & state.keys()
                if not k.startswith('_') and k not in _SCHEDULER_PROGRESS]
        keys.sort(key=lambda k: (_SCHEDULER_SETTINGS_FIRST.index(k)
                                 if k in _SCHEDULER_SETTINGS_FIRST else 99, k))
        changed = [f'{_SCHEDULER_SETTING_NAMES.get(k, k)} {_setting(ours[k])} vs '
                   f'{_setting(state[k])}' for k in keys if not _same_setting(ours[k], state[k])]
        if changed:
            differences.append(f'{type(scheduler).__name__} {", ".join(changed)}')
    return '; '.join(differences) + (' (now vs saved)' if differences else '')


def _same_setting(ours: object, saved: object) -> bool:
    if isinstance(ours, (list, tuple)) and isinstance(saved, (list, tuple)):
        return len(ours) == len(saved) and all(map(_same_setting, ours, saved))
    if isinstance(ours, float) or isinstance(saved, float):
        try:
            return math.isclose(ours, saved, rel_tol=1e-9, abs_tol=1e-15)
        except TypeError:
            return False
    return ours == saved


def _setting(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return '/'.join(map(_setting, value))
    return f'{value:.4g}' if isinstance(value, float) else str(value)
