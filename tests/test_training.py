"""Real training and testing through tools/train.py, tools/test.py and mim, on the CPU.

Proves the configs, the dataset type, the NME evaluator and checkpoint loading (the weights_only
fix) work together in mmengine's Runner.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import MAIN_CONFIG, TINY, run_tool

NME = re.compile(r'NME: (\d+\.\d+)')


def test_two_iterations_then_validation_nme(trained):
    work_dir, log = trained
    assert re.search(r'Epoch\(train\) \[1\]\[2/2\]', log), log[-3000:]
    nme = NME.findall(log)
    assert nme and float(nme[-1]) > 0
    assert (work_dir / 'epoch_1.pth').is_file()
    assert list(work_dir.glob('best_NME_epoch_1.pth'))
    assert list(work_dir.glob('*/vis_data/events.out.tfevents.*'))  # TensorBoard backend
    ckpt = torch.load(work_dir / 'epoch_1.pth')  # weights_only default, via the allow-list
    assert ckpt['state_dict']['head.final_layer.weight'].shape[0] == 28
    assert ckpt['meta']['dataset_meta']['dataset_name'] == 'animal_character_face'


def test_tools_test_loads_the_checkpoint_and_prints_nme(trained, coco_dir):
    work_dir, _ = trained
    proc = run_tool('test.py', MAIN_CONFIG, work_dir / 'best_NME_epoch_1.pth', '--work-dir',
                    work_dir, '--data-root', coco_dir, '--cfg-options', *TINY)
    log = proc.stdout + proc.stderr
    assert 'StrictLoadFromHook: loaded all 1839 tensors of the model' in log
    assert re.search(r'Epoch\(test\).*NME: \d', log), log[-3000:]


def test_show_dir_draws_every_test_image_into_the_runs_folder(trained, coco_dir, tmp_path):
    """mmpose's --show-dir: one picture of each test image, the predicted points and box drawn
    on it, under WORK_DIR/<timestamp>/SHOW_DIR (a relative --work-dir: the hook joins its
    folder to the work dir at every batch, here three)."""
    import numpy as np
    from PIL import Image
    work_dir, _ = trained
    run_tool('test.py', MAIN_CONFIG, work_dir / 'best_NME_epoch_1.pth', '--work-dir', 'run',
             '--data-root', coco_dir, '--show-dir', 'vis', '--cfg-options', *TINY,
             'test_dataloader.batch_size=1', cwd=tmp_path)
    tests = sorted(json.loads((coco_dir / 'annotations' / 'test.json').read_text())['images'],
                   key=lambda image: Path(image['file_name']).stem)
    pictures = sorted((tmp_path / 'run').rglob('*.png'))
    assert len(tests) == 3
    assert [p.relative_to(tmp_path / 'run').parts[1:] for p in pictures] == [
        ('vis', f'{Path(image["file_name"]).stem}_0.png') for image in tests]
    for picture, image in zip(pictures, tests):
        with Image.open(picture) as drawn, \
                Image.open(coco_dir / image['file_name']) as source:
            drawn, source = np.asarray(drawn.convert('RGB')), np.asarray(source.convert('RGB'))
        assert drawn.shape == source.shape
        assert (drawn != source).any(axis=2).sum() > 100  # the box (and points, where sure)


def test_show_dir_while_training_draws_validation_batches(coco_dir, tmp_path):
    """Training with --show-dir: mmpose's hook draws the first image of each validation batch
    into the run's vis_data/vis_image (and TensorBoard); with --no-validate there is nothing to
    draw, and a bad --interval is refused, each in one line before the runner."""
    run_tool('train.py', MAIN_CONFIG, '--work-dir', tmp_path / 'run', '--data-root', coco_dir,
             '--show-dir', 'vis', '--no-time-estimate', '--cfg-options', *TINY)
    pictures = sorted(p.name for p in (tmp_path / 'run').glob('*/vis_data/vis_image/*.png'))
    assert pictures == ['val_img_2.png', 'val_img_3.png'], pictures  # 3 faces at batch 2
    for args, message in (
            (['--no-validate'], 'error: --show-dir draws validation batches while training: '
                                'nothing to draw with --no-validate'),
            (['--interval', '0'], 'error: --interval must be a positive whole number, got 0')):
        proc = run_tool('train.py', MAIN_CONFIG, '--work-dir', tmp_path / 'refused',
                        '--data-root', coco_dir, '--show-dir', 'vis', *args, check=False)
        assert proc.returncode != 0
        assert proc.stderr.strip().splitlines()[-1] == message


def test_resume_continues_from_the_last_checkpoint(trained, coco_dir, tmp_path):
    work_dir = tmp_path / 'work_dir'  # a copy: the trained model serves other tests as it is
    shutil.copytree(trained[0], work_dir)
    # --checkpoint beside --resume: the work dir's checkpoint wins (mmengine alone would resume
    # from the --checkpoint file), and the run says so
    start = tmp_path / 'start.pth'
    shutil.copy(trained[0] / 'best_NME_epoch_1.pth', start)
    latest = (work_dir / 'last_checkpoint').read_text().strip()
    proc = run_tool('train.py', MAIN_CONFIG, '--work-dir', work_dir, '--data-root', coco_dir,
                    '--resume', '--checkpoint', start, '--cfg-options', *TINY[:-1],
                    'train_cfg.max_epochs=2')
    log = proc.stdout + proc.stderr
    assert f'--checkpoint {start} not used: the run resumes from {latest}' in proc.stdout
    assert 'Auto resumed from the latest checkpoint' in log
    assert 'resumed epoch: 1, iter: 2' in log, log[-3000:]
    assert 'Epoch(train) [2][2/2]' in log
    assert (work_dir / 'epoch_2.pth').is_file()


def test_a_resumed_run_counts_its_time_from_its_checkpoint(trained, tmp_path):
    """The plan of a resumed run expected the whole run's time: the iteration it goes on from
    is its checkpoint's (2 of the trained model's), none for a fresh run."""
    from mmengine.config import Config

    from animal_landmarks_mm.training import apply_train_args, resumed_iteration
    cfg = apply_train_args(Config.fromfile(str(MAIN_CONFIG)), str(MAIN_CONFIG),
                           work_dir=str(trained[0]), resume='auto')
    assert resumed_iteration(cfg) == 2
    cfg = apply_train_args(Config.fromfile(str(MAIN_CONFIG)), str(MAIN_CONFIG),
                           work_dir=str(tmp_path))
    assert resumed_iteration(cfg) == 0


def test_auto_resume_in_an_empty_work_dir_starts_from_the_start_weights(trained, coco_dir,
                                                                        tmp_path):
    """A rerun with --resume of a fine-tuning that crashed before its first checkpoint: it
    fine-tunes from --checkpoint again (mmengine would have resumed from that file, or with the
    config's load_from trained from a random init)."""
    start = trained[0] / 'epoch_1.pth'
    proc = run_tool('train.py', MAIN_CONFIG, '--work-dir', tmp_path, '--data-root', coco_dir,
                    '--resume', '--checkpoint', start, '--iters', '1', '--no-validate',
                    '--no-time-estimate', '--cfg-options', *TINY[:-1])
    log = proc.stdout + proc.stderr
    assert (f'--resume: no checkpoint in {tmp_path} to resume from; starting afresh from '
            f'{start}') in proc.stdout
    assert f'StrictLoadFromHook: loaded all 1839 tensors of the model from {start}' in log, \
        log[-3000:]
    assert (tmp_path / 'iter_1.pth').is_file()


def _hostile(trained, folder):
    """A real training checkpoint whose meta['config'] is code that writes a marker file
    (mmengine's resume runs Config.fromstring on it)."""
    marker = folder / 'code_ran'
    checkpoint = torch.load(trained[0] / 'epoch_1.pth')
    checkpoint['meta']['config'] = f"__import__('pathlib').Path({str(marker)!r}).touch()\n"
    work_dir = folder / 'work_dir'
    work_dir.mkdir()
    torch.save(checkpoint, work_dir / 'epoch_1.pth')
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'epoch_1.pth'))
    return work_dir, work_dir / 'epoch_1.pth', marker


def test_resume_never_runs_code_stored_in_a_checkpoint(trained, coco_dir, tmp_path):
    work_dir, hostile, marker = _hostile(trained, tmp_path)
    for how in (['--resume', hostile], ['--resume'],
                # any runner with resume=True (mim train --resume, a config): the hook refuses
                ['--cfg-options', 'resume=True', f'load_from={hostile}']):
        options = [] if how[0] == '--cfg-options' else ['--cfg-options']
        proc = run_tool('train.py', MAIN_CONFIG, '--work-dir', work_dir, '--data-root',
                        coco_dir, '--no-time-estimate', *how, *options, *TINY, check=False)
        assert not marker.exists(), how  # the stored code never ran
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''
        assert proc.returncode != 0 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
        assert last.startswith(('error: --resume: ', 'error: resume: ')), last
        assert f"{hostile}: refused: its meta holds a 'config'" in last


def test_a_resume_with_another_schedule_is_refused(trained, coco_dir, tmp_path):
    """mmengine would load the checkpoint's schedule over the printed plan (a 2-epoch plan
    here, against the config's 60-epoch schedule the checkpoint was saved with)."""
    work_dir = tmp_path / 'work_dir'
    shutil.copytree(trained[0], work_dir)
    latest = (work_dir / 'last_checkpoint').read_text().strip()
    proc = run_tool('train.py', MAIN_CONFIG, '--work-dir', work_dir, '--data-root', coco_dir,
                    '--resume', '--epochs', '2', '--no-time-estimate', '--cfg-options',
                    *TINY[:-1], check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    assert last.startswith(f"error: resume: this run's schedule is not the one {latest} was "
                           'saved with (1 schedulers now (CosineAnnealingLR), 2 saved)'), last
    assert 'resume with the flags and faces of the run it continues' in last
    assert not (work_dir / 'epoch_2.pth').exists()


def test_a_resume_on_other_data_is_refused(trained, coco_dir, tmp_path):
    """Every checkpoint records its data (the annotation files' sha256, the batch size): a
    resume on other faces went on without a word, its best checkpoint then comparing NMEs of
    another validation set with the run's (and deleting the run's best)."""
    work_dir = tmp_path / 'work_dir'
    shutil.copytree(trained[0], work_dir)
    latest = (work_dir / 'last_checkpoint').read_text().strip()
    other = tmp_path / 'other_data'
    shutil.copytree(coco_dir, other)
    train = json.loads((other / 'annotations' / 'train.json').read_text())
    train['annotations'] = train['annotations'][1:]  # a face less
    (other / 'annotations' / 'train.json').write_text(json.dumps(train))
    proc = run_tool('train.py', MAIN_CONFIG, '--work-dir', work_dir, '--data-root', other,
                    '--resume', '--cfg-options', *TINY[:-1], 'train_cfg.max_epochs=2',
                    check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    assert last == (f'error: resume: {latest} was trained on other data (its training '
                    'annotations were other files than this run\'s): mmengine would go on, its '
                    'best checkpoint comparing NMEs of other validation faces; to train on the '
                    f'new data start a new run from its weights with --checkpoint {latest}, or '
                    'resume with the data of the run it continues'), last
    assert not (work_dir / 'epoch_2.pth').exists()
    # a test of the run (its work dir's config, resume = True after a resumed run) trains
    # nothing: tested on the new data as on any
    config = next(work_dir.glob('*.py'))
    config.write_text(config.read_text() + '\nresume = True\n')
    proc = run_tool('test.py', config, work_dir / 'epoch_1.pth', '--data-root', other,
                    '--work-dir', tmp_path / 'test', check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert NME.search(proc.stdout + proc.stderr)


def test_a_resume_without_validation_goes_on_and_keeps_the_validation_files(trained, coco_dir,
                                                                            tmp_path):
    """Resuming a validated run with --no-validate compares no NMEs: it goes on (it was refused
    as trained on other validation files), and its checkpoints carry the files of the best NME
    it keeps on, so that a later resume validating on other faces is still refused."""
    from animal_landmarks_mm.hooks import TRAINING_DATA_KEY
    work_dir = tmp_path / 'work_dir'
    shutil.copytree(trained[0], work_dir)
    saved = torch.load(work_dir / 'epoch_1.pth')['meta'][TRAINING_DATA_KEY]
    assert saved['val'] and all(saved['val'])
    common = ['--work-dir', work_dir, '--data-root', coco_dir, '--resume', '--cfg-options',
              *TINY[:-1]]
    proc = run_tool('train.py', MAIN_CONFIG, *common, 'train_cfg.max_epochs=2', '--no-validate',
                    check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert torch.load(work_dir / 'epoch_2.pth')['meta'][TRAINING_DATA_KEY] == saved
    # validation on other faces after it: still the best NME's files that count
    other = tmp_path / 'other_data'
    shutil.copytree(coco_dir, other)
    val = json.loads((other / 'annotations' / 'val.json').read_text())
    val['annotations'] = val['annotations'][1:]
    (other / 'annotations' / 'val.json').write_text(json.dumps(val))
    common[3] = other
    proc = run_tool('train.py', MAIN_CONFIG, *common, 'train_cfg.max_epochs=3', check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    assert '(its validation annotations were other files than this run\'s)' in last, last
    assert not (work_dir / 'epoch_3.pth').exists()


def test_a_pretrained_backbone_init_that_loads_nothing_is_refused(trained, coco_dir,
                                                                   tmp_path):
    """mmengine's Pretrained init loads with strict=False: a checkpoint whose names carry
    "backbone." (one of ours, an mmpretrain one) loaded no tensor of the backbone, and the run
    trained from random weights, exit 0. Refused in one line naming the prefix that takes
    them; with it, the backbone starts from the checkpoint's weights."""
    start = trained[0] / 'epoch_1.pth'
    init = ['model.backbone.init_cfg._delete_=True', 'model.backbone.init_cfg.type=Pretrained',
            f'model.backbone.init_cfg.checkpoint={start}']
    proc = run_tool('train.py', MAIN_CONFIG, '--work-dir', tmp_path / 'refused', '--data-root',
                    coco_dir, '--cfg-options', *TINY, *init, check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    assert re.fullmatch(
        rf'error: Pretrained init: model\.backbone\.init_cfg\.checkpoint {re.escape(str(start))}: '
        r'\d+ of the \d+ tensors of model\.backbone are not in it under their names and shapes '
        r'\(conv1\.weight, .*\), and mmengine\'s Pretrained init would leave them as initialised; '
        r'its names start with "backbone\.": add model\.backbone\.init_cfg\.prefix=backbone',
        last), last
    work_dir = tmp_path / 'prefixed'
    run_tool('train.py', MAIN_CONFIG, '--work-dir', work_dir, '--data-root', coco_dir,
             '--cfg-options', *TINY, *init, 'model.backbone.init_cfg.prefix=backbone',
             'optim_wrapper.optimizer.lr=0')
    from animal_landmarks_mm.checkpoints import read_checkpoint
    given, _ = read_checkpoint(start)
    trained_from, _ = read_checkpoint(work_dir / 'epoch_1.pth')
    assert torch.equal(trained_from['backbone.conv1.weight'], given['backbone.conv1.weight'])


def test_mim_train_through_custom_imports(coco_dir, tmp_path):
    """`mim train mmpose CONFIG` runs mmpose's own train.py; custom_imports registers us."""
    mim = os.path.join(os.path.dirname(sys.executable), 'mim')
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    data = [f'{loader}.dataset.data_root={coco_dir}'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    proc = subprocess.run(
        [mim, 'train', 'mmpose', str(MAIN_CONFIG), '--gpus', '0', '--work-dir', str(tmp_path),
         '--cfg-options', *TINY, *data],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert NME.search(log)
    assert (tmp_path / 'epoch_1.pth').is_file()



def test_a_truncated_resume_checkpoint_is_one_line_naming_it(trained, coco_dir, tmp_path):
    # a kill while saving leaves a cut file that last_checkpoint names
    work_dir = tmp_path / 'work_dir'
    shutil.copytree(trained[0], work_dir)
    latest = work_dir / 'epoch_1.pth'
    latest.write_bytes(latest.read_bytes()[:5000])
    (work_dir / 'last_checkpoint').write_text(str(latest))
    for resume in ([], [str(latest)]):
        proc = run_tool('train.py', MAIN_CONFIG, '--work-dir', work_dir, '--data-root', coco_dir,
                        '--resume', *resume, '--cfg-options', *TINY, check=False)
        assert proc.returncode != 0
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(f'error: --resume: {latest}: not a checkpoint'), proc.stderr[-2000:]
        assert ('resume from an earlier one' in last) == (not resume)


@pytest.mark.parametrize('args, message', [
    (['configs/missing.py'], 'error: config not found: configs/missing.py'),
    ([str(MAIN_CONFIG), '--data-root', '/nonexistent/data'],
     'error: data root not found: /nonexistent/data'),
])
def test_train_bad_input_is_a_one_line_error(args, message):
    proc = run_tool('train.py', *args, check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == message


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the no-GPU message')
def test_amp_without_gpu_is_a_one_line_error(coco_dir):
    proc = run_tool('train.py', MAIN_CONFIG, '--data-root', coco_dir, '--amp', check=False)
    assert proc.returncode != 0
    assert 'error: --amp needs a CUDA GPU' in proc.stderr.strip().splitlines()[-1]


def test_test_tool_missing_checkpoint(coco_dir):
    proc = run_tool('test.py', MAIN_CONFIG, 'nope.pth', check=False)
    assert proc.stderr.strip().splitlines()[-1] == 'error: checkpoint not found: nope.pth'


def _syntax_error_config(folder):
    path = folder / 'broken.py'
    path.write_text('model = dict(\n')
    return path


@pytest.mark.parametrize('tool, case', [
    ('test.py', 'dump'),  # a test.py flag
    ('test.py', 'dump_folder'),
    ('train.py', 'auto_scale_lr'),
    *((tool, case) for tool in ('train.py', 'test.py')
      for case in ('cfg_options', 'syntax', 'launcher')),
])
def test_tool_mistakes_are_one_line_errors(tool, case, tmp_path):
    """Each of these was a traceback: mmpose's DumpResults refusing a dump that is not a pickle,
    mmengine's DictAction unpacking 'foo', Config.fromfile's SyntaxError, and torch's env://
    rendezvous without torchrun's variables."""
    config = MAIN_CONFIG
    args = []
    if case == 'dump':
        args, message = ['--dump', 'preds.json'], (
            'error: --dump must name a .pkl or .pickle file (mmengine\'s DumpResults writes a '
            'pickle), got preds.json')
    elif case == 'dump_folder':  # it failed once the whole test had run (a hunt's repro)
        (tmp_path / 'preds.pkl').mkdir()
        args, message = ['--dump', str(tmp_path / 'preds.pkl')], (
            f'error: --dump {tmp_path / "preds.pkl"} is there and no file (a folder?)')
    elif case == 'auto_scale_lr':  # a config without the section: an AttributeError
        args, message = ['--auto-scale-lr', '--cfg-options', 'auto_scale_lr=None'], (
            "error: --auto-scale-lr needs the config's auto_scale_lr.base_batch_size")
    elif case == 'cfg_options':
        args, message = ['--cfg-options', 'foo'], (
            "error: --cfg-options takes key=value pairs, got 'foo'")
    elif case == 'syntax':
        config = _syntax_error_config(tmp_path)
        message = f'error: {config}: not a config mmengine can read (SyntaxError: '
    else:
        args, message = ['--launcher', 'pytorch'], (
            'error: --launcher pytorch needs the environment its launcher sets (RANK, '
            'WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set): start it with torchrun, as '
            'tools/dist_train.sh does')
    positional = [config] if tool == 'train.py' else [config, MAIN_CONFIG]  # an existing file
    proc = run_tool(tool, *positional, '--work-dir', tmp_path / 'work', *args, check=False)
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(message), proc.stderr[-2000:]
