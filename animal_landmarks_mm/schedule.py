"""Training schedules sized to the data: a run is so many samples and steps, not so many epochs.

A recipe counted in epochs fits one dataset size: WFLW's 60 epochs with a 500-step warmup is
28,000 steps for its 7,500 faces, and 240 steps, all inside the warmup, for 200 faces. Here a
config states its schedule as a *recipe* (``schedule = dict(...)`` beside ``train_cfg``)::

    schedule = dict(
        samples=40_000,        # at least this many training samples (faces seen) ...
        min_epochs=60,         # ... and at least this many passes over a large set
        warmup=0.05,           # linear warmup over this share of the steps ...
        max_warmup_iters=500,  # ... but no longer than this
        final_lr=0.01,         # cosine decay to this share of the peak lr
        validations=10,        # evaluations (and checkpoints) per run
        lr_batch=64,           # optim_wrapper's lr is for this many faces per step
    )

and :func:`plan_schedule` turns it into mmengine's ``train_cfg`` and ``param_scheduler`` for the
dataset at hand: the number of steps follows from the samples and the batch, whatever the number
of faces; the warmup is a share of the steps (none when that is under
:data:`MIN_WARMUP_ITERS`); a batch larger than the faces is the faces; the lr follows the batch
(times gradient accumulation) by the square root of its ratio to ``lr_batch``, the rule for Adam
(linear scaling overshoots at small batches); validation and checkpoint intervals are a share of
the run. ``--epochs``, ``--iters`` and ``--batch-size`` give exactly what they say and the rest
follows.

``tools/train.py`` plans every run of a config that has a ``schedule``; other runners (``mim
train``) use the config's static ``train_cfg`` and ``param_scheduler`` as written.
"""
from __future__ import annotations

import json
import math
import os.path as osp
from dataclasses import dataclass

from mmengine.config import Config, ConfigDict

from .errors import AnimalLandmarksError


class ScheduleError(AnimalLandmarksError, ValueError):
    """A schedule that cannot be planned (a bad flag value, no training faces)."""


#: what a config's ``schedule`` may hold, with the defaults of the module docstring
RECIPE_DEFAULTS = dict(samples=40_000, min_epochs=60, warmup=0.05, max_warmup_iters=500,
                       final_lr=0.01, validations=10, lr_batch=64)

#: the shortest warmup: mmengine's ``LinearLR`` reaches its end factor at its last step, so one
#: over a single step stays at its start factor (0.1 %), and the cosine after it chains from
#: there; a shorter warmup is none (the run starts at the peak lr)
MIN_WARMUP_ITERS = 2


@dataclass
class SchedulePlan:
    """A training run, as planned.

    Attributes:
        faces: training faces (annotations with at least one labelled point).
        batch: faces per step and process: the batch asked for, or the faces of a process
            when they are fewer (each step then takes them all).
        processes: training processes (GPUs), each taking its share of the faces.
        accumulate: gradient accumulation.
        iters_per_epoch: steps for one pass over the faces.
        iters: steps in all.
        epochs: passes over the data (None for an iteration-based run, ``--iters``).
        warmup_iters: steps of linear warmup (0: none, the run starts at the peak lr).
        lr: the peak learning rate.
        lr_note: how the lr was chosen, for the printed plan.
        final_lr: the lr at the end of the cosine decay.
        val_interval: validate (and save a checkpoint) every this many epochs, or steps for an
            iteration-based run.
        validate: whether the run validates at all (not with ``--no-validate``).
        checkpoint_interval: checkpoints every this many epochs or steps, when not at each
            validation (``--save-freq``).
        workers: data-loading processes per training process, when known.
        asked_batch: the batch asked for (config or ``--batch-size``) when it was more than the
            faces of a process; None otherwise.
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
    validate: bool = True
    checkpoint_interval: int | None = None
    workers: int | None = None  # data-loading processes per training process, when known
    asked_batch: int | None = None  # the batch asked for, when more than the faces allow
    short_warmup_dropped: bool = False  # a warmup under MIN_WARMUP_ITERS was made none

    @property
    def samples(self) -> int:
        """Training samples (faces seen) in all processes."""
        if self.epochs is not None:
            return self.epochs * self.faces
        return self.iters * self.batch * self.processes

    def format(self, seconds_per_step: float | None = None, device: str = '') -> str:
        """The plan, as printed before training."""
        unit = 'epoch' if self.epochs is not None else 'step'
        length = (f'{self.epochs} epochs x {self.iters_per_epoch} steps = {self.iters:,} steps'
                  if self.epochs is not None else f'{self.iters:,} steps '
                  f'({self.iters / self.iters_per_epoch:.1f} epochs)')
        warmup = (f'{self.warmup_iters} steps '
                  f'({100 * self.warmup_iters / self.iters:.0f}% of the run), linear'
                  if self.warmup_iters else
                  f'none (under {MIN_WARMUP_ITERS} steps: the run starts at the peak lr)'
                  if self.short_warmup_dropped else 'none (the recipe\'s)')
        lines = [
            f'faces       {self.faces} training faces, batch {self.batch}'
            + (f' x {self.processes} processes' if self.processes > 1 else '')
            + (f' x {self.accumulate} accumulated' if self.accumulate > 1 else '')
            + (f' (batch {self.asked_batch} asked: more than the faces, so each step takes '
               'them all; the lr and the plan follow)' if self.asked_batch else ''),
            f'length      {length}, {self.samples:,} training samples',
            f'warmup      {warmup}',
            f'lr          {self.lr:.3g} ({self.lr_note}), cosine decay to {self.final_lr:.2g}',
            self._validation_line(unit),
        ]
        if self.workers is not None:
            lines.append(f'loading     {self.workers} worker processes'
                         + (' per training process' if self.processes > 1 else ''))
        if seconds_per_step is not None:
            total = seconds_per_step * self.iters
            lines.append(f'expected    {_duration(total)} ({seconds_per_step:.2f} s per step on '
                         f'{device}, measured just now without data loading or validation)')
        return '\n'.join(['training plan', *('  ' + line for line in lines)])


    def _validation_line(self, unit: str) -> str:
        checkpoints = (f'a checkpoint {_every(self.checkpoint_interval, unit)}'
                       if self.checkpoint_interval is not None else None)
        if not self.validate:
            return (f'validation  none (--no-validate); '
                    f'{checkpoints or f"a checkpoint {_every(self.val_interval, unit)}"}')
        return (f'validation  {_every(self.val_interval, unit)} ('
                f'{checkpoints or "a checkpoint each time"}; the best by NME kept)')


def _every(interval: int, unit: str) -> str:
    """``every epoch`` or ``every 4 epochs`` (``unit`` singular)."""
    return f'every {unit}' if interval == 1 else f'every {interval} {unit}s'


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f'{seconds:.0f} s'
    if seconds < 5400:
        return f'{seconds / 60:.0f} min'
    return f'{seconds / 3600:.1f} h'


def count_training_faces(cfg: Config) -> int:
    """Faces of the training set: annotations with at least one labelled point, as mmpose keeps
    them (read from the COCO file; the dataset is not built)."""
    dataset = cfg.train_dataloader.dataset
    path = osp.join(dataset.get('data_root') or '', dataset.ann_file)
    try:
        with open(path, encoding='utf-8') as f:
            coco = json.load(f)
        return sum(1 for a in coco['annotations'] if a.get('num_keypoints', 0) > 0)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ScheduleError(f'cannot count the training faces of {path}: {e}') from None


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


def check_positive(name: str, value: float | None) -> None:
    """Refuse a flag that must be a positive finite number (``--lr nan`` compares false with
    ``<= 0`` and would pass a plain sign check).

    Raises:
        ScheduleError: naming the flag and the value.
    """
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ScheduleError(f'{name} must be positive, got {value}')


def plan_schedule(cfg: Config, faces: int, *, epochs: int | None = None,
                  iters: int | None = None, batch_size: int | None = None,
                  lr: float | None = None, processes: int = 1) -> SchedulePlan:
    """Size a run to ``faces`` and write it into ``cfg`` (see the module docstring).

    Args:
        cfg: a config with a ``schedule`` recipe; ``train_cfg``, ``param_scheduler``, the lr,
            the batch size and the checkpoint interval are set here.
        faces: the training faces (:func:`count_training_faces`).
        epochs: exactly this many passes over the data.
        iters: exactly this many steps (an iteration-based run); not with ``epochs``.
        batch_size: faces per step (default: the config's).
        lr: the peak lr as it is (default: the config's lr scaled to the batch).
        processes: distributed training processes; each runs its share of the faces per
            epoch (mmengine's ``DefaultSampler``), so a step counts ``batch x processes``.

    Raises:
        ScheduleError: no faces, a non-positive value, or both ``epochs`` and ``iters``.
    """
    recipe = recipe_of(cfg)
    if recipe is None:
        raise ScheduleError('the config has no schedule recipe')
    if faces <= 0:
        raise ScheduleError('no training faces')
    if epochs is not None and iters is not None:
        raise ScheduleError('give --epochs or --iters, not both')
    for name, value in (('--epochs', epochs), ('--iters', iters), ('--batch-size', batch_size),
                        ('--lr', lr)):
        check_positive(name, value)
    asked = batch_size or cfg.train_dataloader.batch_size
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
    accumulate = cfg.optim_wrapper.get('accumulative_counts', 1)
    iters_per_epoch = share // batch if drop_last else math.ceil(share / batch)
    if iters is None:
        if epochs is None:
            samples = max(recipe['samples'], recipe['min_epochs'] * faces)
            epochs = math.ceil(samples / faces)
        iters = epochs * iters_per_epoch
    warmup = min(recipe['max_warmup_iters'], round(recipe['warmup'] * iters), iters - 1)
    # none because the run is short, not because the recipe asks for none
    short_warmup_dropped = warmup < MIN_WARMUP_ITERS and min(recipe['warmup'],
                                                             recipe['max_warmup_iters']) > 0
    if warmup < MIN_WARMUP_ITERS:
        # mmengine's LinearLR over one step applies its start factor once and never ramps:
        # the whole run would stay at 0.1 % of the lr; a run this short starts at the peak
        warmup = 0
    auto_scale = cfg.get('auto_scale_lr') or {}
    if lr is not None:
        lr_note = 'as given'
    elif auto_scale.get('enable'):  # --auto-scale-lr: mmengine's linear rule, applied later
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
    span = epochs if epochs is not None else iters
    val_interval = max(1, round(span / recipe['validations']))
    if epochs is not None:
        cfg.train_cfg = ConfigDict(type='EpochBasedTrainLoop', max_epochs=epochs,
                                   val_interval=val_interval)
    else:
        cfg.train_cfg = ConfigDict(type='IterBasedTrainLoop', max_iters=iters,
                                   val_interval=val_interval)
        cfg.log_processor = ConfigDict({**cfg.get('log_processor', {}), 'by_epoch': False})
    checkpoint = cfg.default_hooks.checkpoint
    checkpoint.interval, checkpoint.by_epoch = val_interval, epochs is not None
    # per step, whatever the loop: the warmup and the decay are shares of the steps
    cfg.param_scheduler = [
        dict(type='LinearLR', begin=0, end=warmup, start_factor=0.001, by_epoch=False)
    ] if warmup else []
    cfg.param_scheduler.append(dict(
        type='CosineAnnealingLR', begin=warmup, end=iters, T_max=iters - warmup,
        eta_min_ratio=recipe['final_lr'], by_epoch=False))
    return SchedulePlan(faces=faces, batch=batch, processes=processes, accumulate=accumulate,
                        iters_per_epoch=iters_per_epoch, iters=iters, epochs=epochs,
                        warmup_iters=warmup, lr=lr, lr_note=lr_note,
                        final_lr=lr * recipe['final_lr'], val_interval=val_interval,
                        asked_batch=asked if asked != batch else None,
                        short_warmup_dropped=short_warmup_dropped)


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
