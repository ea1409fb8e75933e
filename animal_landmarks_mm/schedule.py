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
of faces; the warmup is a share of the steps; the lr follows the batch (times gradient
accumulation) by the square root of its ratio to ``lr_batch``, the rule for Adam (linear
scaling overshoots at small batches); validation and checkpoint intervals are a share of the run.
``--epochs``, ``--iters`` and ``--batch-size`` give exactly what they say and the rest follows.

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


@dataclass
class SchedulePlan:
    """A training run, as planned.

    Attributes:
        faces: training faces (annotations with at least one labelled point).
        batch: faces per step and process.
        processes: training processes (GPUs), each taking its share of the faces.
        accumulate: gradient accumulation.
        iters_per_epoch: steps for one pass over the faces.
        iters: steps in all.
        epochs: passes over the data (None for an iteration-based run, ``--iters``).
        warmup_iters: steps of linear warmup.
        lr: the peak learning rate.
        lr_note: how the lr was chosen, for the printed plan.
        final_lr: the lr at the end of the cosine decay.
        val_interval: validate (and save a checkpoint) every this many epochs, or steps for an
            iteration-based run.
        validate: whether the run validates at all (not with ``--no-validate``).
        checkpoint_interval: checkpoints every this many epochs or steps, when not at each
            validation (``--save-freq``).
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

    @property
    def samples(self) -> int:
        """Training samples (faces seen) in all processes."""
        if self.epochs is not None:
            return self.epochs * self.faces
        return self.iters * self.batch * self.processes

    def format(self, seconds_per_step: float | None = None, device: str = '') -> str:
        """The plan, as printed before training."""
        unit = 'epochs' if self.epochs is not None else 'steps'
        length = (f'{self.epochs} epochs x {self.iters_per_epoch} steps = {self.iters:,} steps'
                  if self.epochs is not None else f'{self.iters:,} steps '
                  f'({self.iters / self.iters_per_epoch:.1f} epochs)')
        lines = [
            f'faces       {self.faces} training faces, batch {self.batch}'
            + (f' x {self.processes} processes' if self.processes > 1 else '')
            + (f' x {self.accumulate} accumulated' if self.accumulate > 1 else ''),
            f'length      {length}, {self.samples:,} training samples',
            f'warmup      {self.warmup_iters} steps '
            f'({100 * self.warmup_iters / self.iters:.0f}% of the run), linear',
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
        checkpoints = (f'a checkpoint every {self.checkpoint_interval} {unit}'
                       if self.checkpoint_interval is not None else None)
        if not self.validate:
            return (f'validation  none (--no-validate); '
                    f'{checkpoints or f"a checkpoint every {self.val_interval} {unit}"}')
        return (f'validation  every {self.val_interval} {unit} ('
                f'{checkpoints or "a checkpoint each time"}; the best by NME kept)')


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


def recipe_of(cfg: Config) -> dict | None:
    """The config's ``schedule`` recipe with the defaults filled in; None when it has none."""
    recipe = cfg.get('schedule')
    if recipe is None:
        return None
    unknown = set(recipe) - set(RECIPE_DEFAULTS)
    if unknown:
        raise ScheduleError(f'unknown schedule setting(s) {sorted(unknown)}; known: '
                            f'{", ".join(RECIPE_DEFAULTS)}')
    return {**RECIPE_DEFAULTS, **recipe}


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
        if value is not None and value <= 0:
            raise ScheduleError(f'{name} must be positive, got {value}')
    batch = batch_size or cfg.train_dataloader.batch_size
    cfg.train_dataloader.batch_size = batch
    accumulate = cfg.optim_wrapper.get('accumulative_counts', 1)
    # each process takes ceil(faces / processes) faces per epoch, in batches of `batch`
    iters_per_epoch = math.ceil(math.ceil(faces / processes) / batch)
    if iters is None:
        if epochs is None:
            samples = max(recipe['samples'], recipe['min_epochs'] * faces)
            epochs = math.ceil(samples / faces)
        iters = epochs * iters_per_epoch
    warmup = min(recipe['max_warmup_iters'], max(1, round(recipe['warmup'] * iters)))
    warmup = min(warmup, max(1, iters - 1))
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
        dict(type='LinearLR', begin=0, end=warmup, start_factor=0.001, by_epoch=False)]
    if iters > warmup:  # a run of one step is all warmup
        cfg.param_scheduler.append(dict(
            type='CosineAnnealingLR', begin=warmup, end=iters, T_max=iters - warmup,
            eta_min_ratio=recipe['final_lr'], by_epoch=False))
    return SchedulePlan(faces=faces, batch=batch, processes=processes, accumulate=accumulate,
                        iters_per_epoch=iters_per_epoch, iters=iters, epochs=epochs,
                        warmup_iters=warmup, lr=lr, lr_note=lr_note,
                        final_lr=lr * recipe['final_lr'], val_interval=val_interval)


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
