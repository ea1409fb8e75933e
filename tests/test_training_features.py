"""Training at scale on the CPU: simple flags, accumulation, early stop, save frequency, a kill
and resume, and the distributed launcher with 2 processes over gloo."""
import os
import signal
import subprocess
import sys
import time

import pytest
from mmengine.config import Config

from animal_landmarks_mm.schedule import plan_schedule
from animal_landmarks_mm.training import (
    TrainingSetupError,
    apply_simple_flags,
    apply_train_args,
    loader_workers,
    set_data_root,
)
from conftest import FINETUNE_CONFIG, MAIN_CONFIG, REPO, TINY, run_tool


def _cfg(tmp_path):
    cfg = Config.fromfile(str(MAIN_CONFIG))
    return apply_train_args(cfg, str(MAIN_CONFIG), work_dir=str(tmp_path))


def test_simple_flags_map_onto_the_config(tmp_path, coco_dir):
    cfg = set_data_root(_cfg(tmp_path), str(coco_dir))
    plan = apply_simple_flags(
        cfg, epochs=12, batch_size=8, lr=3e-4, checkpoint=str(MAIN_CONFIG), accumulate=4,
        early_stop=5, save_freq=3, val_annotation_dir=str(coco_dir / 'landmarks'),
        val_image_dir=str(coco_dir / 'images'), workers=3)
    assert cfg.train_cfg.max_epochs == 12 and plan.epochs == 12
    assert cfg.train_dataloader.batch_size == 8
    assert cfg.optim_wrapper.optimizer.lr == 3e-4  # given: as it is
    assert cfg.optim_wrapper.accumulative_counts == 4
    assert cfg.load_from == str(MAIN_CONFIG)
    stop = [h for h in cfg.custom_hooks if h.type == 'EarlyStoppingHook']
    assert stop and stop[0].patience == 5 and stop[0].monitor == 'NME'
    assert cfg.default_hooks.checkpoint.interval == 3
    assert cfg.val_dataloader.dataset.ann_file == 'val_annotations.json'
    assert (tmp_path / 'val_annotations.json').is_file()
    loader = cfg.train_dataloader
    assert (loader.num_workers, loader.persistent_workers, plan.workers) == (3, True, 3)
    assert 'loading     3 worker processes' in plan.format()


def test_loader_workers_follow_the_device_and_the_cores():
    assert loader_workers(2, cuda=False, cpus=16) == 2  # a CPU trains with the cores itself
    assert loader_workers(2, cuda=True, cpus=16) == 8  # a GPU: 2 workers would starve it
    assert loader_workers(2, cuda=True, cpus=6) == 5  # one core left for the training process
    assert loader_workers(2, cuda=True, cpus=2) == 2  # never fewer than the config's
    assert loader_workers(2, cuda=True, cpus=16, processes=4) == 3  # 4 GPUs share the host
    assert loader_workers(12, cuda=True, cpus=64) == 12  # more in the config: kept


def test_a_gpu_run_gets_more_loader_workers_unless_told(tmp_path, coco_dir, monkeypatch):
    import torch

    from animal_landmarks_mm import training
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(training, 'host_cpus', lambda: 16)
    cfg = set_data_root(Config.fromfile(str(MAIN_CONFIG)), str(coco_dir))
    cfg.work_dir = str(tmp_path)
    plan = apply_simple_flags(cfg)
    assert (cfg.train_dataloader.num_workers, cfg.train_dataloader.persistent_workers) == (8, True)
    assert plan.workers == 8 and cfg.val_dataloader.num_workers == 2  # validation: as it was
    # torchrun with 4 processes on this host: 16 cores shared
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '4')
    cfg = set_data_root(Config.fromfile(str(MAIN_CONFIG)), str(coco_dir))
    cfg.work_dir, cfg.launcher = str(tmp_path), 'pytorch'
    assert apply_simple_flags(cfg).workers == 3
    # --cfg-options train_dataloader.num_workers=... (size_workers=False) or --workers: as given
    cfg = set_data_root(Config.fromfile(str(MAIN_CONFIG)), str(coco_dir))
    cfg.work_dir = str(tmp_path)
    assert apply_simple_flags(cfg, size_workers=False).workers == 2
    cfg = set_data_root(Config.fromfile(str(MAIN_CONFIG)), str(coco_dir))
    cfg.work_dir = str(tmp_path)
    apply_simple_flags(cfg, workers=0)
    assert (cfg.train_dataloader.num_workers, cfg.train_dataloader.persistent_workers) == (0,
                                                                                         False)


def test_processes_on_this_host_from_each_launcher(monkeypatch):
    from animal_landmarks_mm.training import processes_on_this_host
    assert processes_on_this_host('none') == 1
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '8')
    monkeypatch.setenv('SLURM_NTASKS_PER_NODE', '4(x2)')
    monkeypatch.setenv('OMPI_COMM_WORLD_LOCAL_SIZE', '2')
    assert [processes_on_this_host(k) for k in ('pytorch', 'slurm', 'mpi', 'none')] == [
        8, 4, 2, 1]
    monkeypatch.setenv('SLURM_CPUS_PER_TASK', '4')  # the task's own cores: not shared
    assert processes_on_this_host('slurm') == 1


def _scheduled(config, faces, **flags):
    cfg = Config.fromfile(str(config))
    return cfg, plan_schedule(cfg, faces, **flags)


def _lr_at(cfg, plan, step):
    """The lr mmengine's schedulers give at a step (built as the runner builds them)."""
    import torch
    from mmengine.optim.scheduler import CosineAnnealingLR, LinearLR
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim_wrapper.optimizer.lr)
    kinds = dict(LinearLR=LinearLR, CosineAnnealingLR=CosineAnnealingLR)
    schedulers = [kinds[s['type']](optimizer, **{k: v for k, v in s.items() if k != 'type'})
                  for s in cfg.param_scheduler]
    for _ in range(step):
        optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
    return optimizer.param_groups[0]['lr']


def test_the_default_run_on_200_faces_is_sized_like_the_original_tools_advice():
    """200 epochs from scratch, 100 fine-tuning: at least 20,000 samples, warmup <= 10%."""
    cfg, plan = _scheduled(MAIN_CONFIG, 200)
    assert plan.epochs == 200 and plan.iters == 200 * 4 and plan.samples >= 40_000
    assert plan.warmup_iters <= plan.iters / 10 and plan.warmup_iters == 40
    assert plan.lr == pytest.approx(2e-3)  # batch 64, the recipe's own
    assert cfg.train_cfg.max_epochs == 200 and cfg.train_cfg.val_interval == 20
    # the lr reaches its peak after the warmup and decays to 1 % by the end
    assert _lr_at(cfg, plan, plan.warmup_iters) == pytest.approx(2e-3, rel=1e-3)
    assert _lr_at(cfg, plan, plan.iters) == pytest.approx(2e-5, rel=1e-2)
    cfg, plan = _scheduled(FINETUNE_CONFIG, 200)
    assert plan.epochs == 100 and plan.samples >= 20_000
    assert plan.warmup_iters <= plan.iters / 10
    # at batch 8, the peak lr the transfer experiment measured best (README "Fine-tuning pays")
    assert _scheduled(FINETUNE_CONFIG, 200, batch_size=8)[1].lr == pytest.approx(7e-4)


def test_epochs_iters_and_batch_size_give_exactly_what_they_say():
    cfg, plan = _scheduled(MAIN_CONFIG, 200, epochs=8, batch_size=8)
    assert (plan.epochs, plan.iters_per_epoch, plan.iters) == (8, 25, 200)
    assert cfg.train_cfg.max_epochs == 8 and cfg.train_dataloader.batch_size == 8
    assert plan.lr == pytest.approx(2e-3 * (8 / 64) ** 0.5)  # sqrt scaling for Adam
    assert plan.warmup_iters == 10 and cfg.param_scheduler[1]['end'] == 200
    cfg, plan = _scheduled(MAIN_CONFIG, 200, iters=300)
    assert plan.epochs is None and plan.iters == 300
    assert cfg.train_cfg.type == 'IterBasedTrainLoop' and cfg.train_cfg.max_iters == 300
    assert cfg.train_cfg.val_interval == 30 and not cfg.default_hooks.checkpoint.by_epoch
    cfg, plan = _scheduled(MAIN_CONFIG, 200, batch_size=16)
    assert plan.epochs == 200 and plan.iters == 200 * 13  # the same data, more steps
    assert plan.lr == pytest.approx(2e-3 * 0.5)
    cfg, plan = _scheduled(MAIN_CONFIG, 3000)  # a large set: at least 60 epochs of it
    assert plan.epochs == 60 and plan.warmup_iters == round(0.05 * plan.iters)
    cfg, plan = _scheduled(MAIN_CONFIG, 200, iters=1)  # one step: all warmup, no decay
    assert [s['type'] for s in cfg.param_scheduler] == ['LinearLR']


def test_the_printed_plan_says_what_validates_and_what_is_saved():
    cfg, plan = _scheduled(MAIN_CONFIG, 200, epochs=8, batch_size=8)
    assert 'validation  every 1 epochs (a checkpoint each time; the best by NME kept)' in \
        plan.format()
    plan.checkpoint_interval = 4  # what --save-freq 4 sets
    assert 'every 1 epochs (a checkpoint every 4 epochs; the best' in plan.format()
    plan.validate = False  # --no-validate
    assert 'validation  none (--no-validate); a checkpoint every 4 epochs' in plan.format()


def test_the_plan_counts_every_process_and_honours_auto_scale_lr():
    # 4 processes share each epoch's 200 faces: 50 each, 7 steps of 8; the lr sees 32 per step
    cfg, plan = _scheduled(MAIN_CONFIG, 200, epochs=8, batch_size=8, processes=4)
    assert plan.iters_per_epoch == 7 and plan.iters == 56 and plan.samples == 1600
    assert plan.lr == pytest.approx(2e-3 * (32 / 64) ** 0.5)
    assert cfg.param_scheduler[1]['end'] == 56
    # --auto-scale-lr: mmengine's linear rule instead of the plan's, applied by the runner
    cfg = Config.fromfile(str(MAIN_CONFIG))
    cfg.auto_scale_lr.enable = True
    plan = plan_schedule(cfg, 200, batch_size=16)
    assert cfg.auto_scale_lr.enable and cfg.optim_wrapper.optimizer.lr == 2e-3
    assert plan.lr == pytest.approx(2e-3 * 16 / 64) and 'linear' in plan.lr_note


def test_a_planned_run_prints_its_plan_and_runs_exactly_its_steps(coco_dir, tmp_path):
    proc = run_tool('train.py', MAIN_CONFIG, '--work-dir', tmp_path, '--data-root', coco_dir,
                    '--iters', '3', '--cfg-options', *TINY[:-1])
    log = proc.stdout + proc.stderr
    assert 'training plan' in proc.stdout and '4 training faces, batch 2' in proc.stdout
    assert '3 steps (1.5 epochs)' in proc.stdout and 's per step on' in proc.stdout
    assert 'loading     0 worker processes' in proc.stdout  # --cfg-options chose them: kept
    assert (tmp_path / 'iter_3.pth').is_file() and not (tmp_path / 'iter_4.pth').exists(), \
        log[-3000:]
    assert list(tmp_path.glob('best_NME_iter_*.pth'))


@pytest.mark.parametrize('kwargs, message', [
    (dict(epochs=0), '--epochs must be positive, got 0'),
    (dict(accumulate=-2), '--accumulate must be positive, got -2'),
    (dict(workers=-1), '--workers must be 0 or more, got -1'),
    (dict(checkpoint='missing.pth'), '--checkpoint not found: missing.pth'),
])
def test_simple_flags_refuse_bad_values(tmp_path, kwargs, message):
    with pytest.raises(TrainingSetupError, match=message):
        apply_simple_flags(_cfg(tmp_path), **kwargs)


def test_bad_device_is_a_one_line_error():
    proc = run_tool('train.py', MAIN_CONFIG, '--device', 'tpu', check=False)
    assert proc.stderr.strip().splitlines()[-1] == \
        "error: --device must be cpu, cuda or cuda:N, got 'tpu'"


def test_accumulation_save_frequency_and_early_stop(coco_dir, tmp_path):
    """An lr too small to matter and a minimum gain no 2-iteration run can reach: the NME never
    improves, so patience 1 stops the run after its second validation, long before --epochs;
    checkpoints only every 2 epochs."""
    proc = run_tool('train.py', MAIN_CONFIG, '--work-dir', tmp_path, '--data-root', coco_dir,
                    '--device', 'cpu', '--epochs', '6', '--lr', '1e-12', '--accumulate', '2',
                    '--save-freq', '2', '--early-stop', '1', '--early-stop-min-delta', '10',
                    '--cfg-options', *TINY[:-1])
    log = proc.stdout + proc.stderr
    assert 'accumulative_counts=2' in log
    assert 'Epoch(train) [2][2/2]' in log and 'Epoch(train) [3]' not in log, log[-3000:]
    assert 'did not improve' in log
    assert (tmp_path / 'epoch_2.pth').is_file() and not (tmp_path / 'epoch_1.pth').exists()


def test_resume_after_a_kill(coco_dir, tmp_path):
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    args = [sys.executable, str(REPO / 'tools' / 'train.py'), str(MAIN_CONFIG), '--work-dir',
            str(tmp_path), '--data-root', str(coco_dir), '--epochs', '3', '--cfg-options',
            *TINY[:-1]]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    # mmengine writes `last_checkpoint` once a checkpoint file is complete
    while not (tmp_path / 'last_checkpoint').exists() and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (tmp_path / 'epoch_3.pth').exists()
    resumed = subprocess.run([*args, '--resume'], env=env, capture_output=True, text=True,
                             timeout=900)
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    assert 'Auto resumed from the latest checkpoint' in log
    assert 'Epoch(train) [3][2/2]' in log and (tmp_path / 'epoch_3.pth').is_file()


def test_distributed_training_two_processes_over_gloo(coco_dir, tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, PYTHONWARNINGS='ignore',
               PORT=str(29500 + os.getpid() % 1000))
    options = [o.replace('batch_size=2', 'batch_size=1') for o in TINY]
    proc = subprocess.run(
        ['bash', str(REPO / 'tools' / 'dist_train.sh'), str(MAIN_CONFIG), '2', '--work-dir',
         str(tmp_path), '--data-root', str(coco_dir), '--cfg-options', *options],
        env=env, capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert 'Distributed training: True' in log
    # 4 training images, batch 1, 2 processes: 2 iterations each
    assert 'Epoch(train) [1][2/2]' in log and 'NME:' in log
    assert (tmp_path / 'epoch_1.pth').is_file()


@pytest.mark.parametrize('case, message', [
    ('no_images', 'holds no images'),
    ('no_annotations', 'holds no annotations'),
    ('only_absent_points', 'holds only absent points'),
    ('missing', 'annotation file not found'),
])
def test_an_empty_coco_file_is_named_before_the_runner_starts(coco_dir, tmp_path, case,
                                                              message):
    import json
    import shutil
    data = tmp_path / 'data'
    shutil.copytree(coco_dir / 'annotations', data / 'annotations')
    train = data / 'annotations' / 'train.json'
    coco = json.loads(train.read_text())
    if case == 'no_images':
        coco['images'], coco['annotations'] = [], []
    elif case == 'no_annotations':
        coco['annotations'] = []
    elif case == 'only_absent_points':
        for ann in coco['annotations']:
            ann['keypoints'], ann['num_keypoints'] = [0] * 84, 0
    train.write_text(json.dumps(coco))
    if case == 'missing':
        train.unlink()
    proc = run_tool('train.py', MAIN_CONFIG, '--work-dir', tmp_path / 'work', '--data-root',
                    data, '--cfg-options', *TINY, check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    assert last.startswith('error: train_dataloader: ') and message in last and 'train.json' in last
