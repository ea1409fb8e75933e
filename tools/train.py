"""Train a landmark model (mmpose's tools/train.py flags, plus the original tools' simple ones).

Example:
    python tools/train.py configs/td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256.py \
        --data-root data/animal_faces/
"""
import argparse
import os
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a pose model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint; without a path, from the latest checkpoint in the '
        'work dir')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic-mixed-precision training (CUDA)')
    parser.add_argument('--no-validate', action='store_true',
                        help='do not evaluate checkpoints during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the actual batch size')
    parser.add_argument(
        '--data-root', help='the folder tools/dataset.py wrote (sets every dataloader)')
    simple = parser.add_argument_group('simple flags of the original training tools')
    simple.add_argument('--epochs', type=int, help='train_cfg.max_epochs (schedule stretched)')
    simple.add_argument('--batch-size', type=int, help='train_dataloader.batch_size')
    simple.add_argument('--lr', type=float, help='optim_wrapper.optimizer.lr')
    simple.add_argument('--device', help='cpu, cuda or cuda:N (default: CUDA when present)')
    simple.add_argument('--checkpoint', help='start weights (load_from): anime_face_detector '
                        'or a checkpoint trained here')
    simple.add_argument('--val-annotation-dir',
                        help='validate on this folder of annotation files instead')
    simple.add_argument('--val-image-dir', help='images of --val-annotation-dir '
                        '(default: the same folder)')
    simple.add_argument('--accumulate', type=int,
                        help='gradient accumulation over N iterations')
    simple.add_argument('--early-stop', type=int, metavar='PATIENCE',
                        help='stop after PATIENCE validations without a better NME')
    simple.add_argument('--save-freq', type=int, help='save a checkpoint every N epochs')
    from mmengine.config import DictAction
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, key=value (e.g. train_cfg.max_epochs=10)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local_rank, torchrun the LOCAL_RANK variable
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def select_device(device):
    """Hide GPUs for --device cpu, or all but one for cuda:N; before torch looks at CUDA."""
    if device is None or device == 'cuda':
        return
    if device == 'cpu':
        os.environ['CUDA_VISIBLE_DEVICES'] = ''
    elif device.startswith('cuda:') and device[5:].isdigit():
        os.environ['CUDA_VISIBLE_DEVICES'] = device[5:]
    else:
        sys.exit(f'error: --device must be cpu, cuda or cuda:N, got {device!r}')


def main(argv=None):
    args = parse_args(argv)
    select_device(args.device)
    from animal_landmarks_mm.training import (
        TrainingSetupError,
        apply_simple_flags,
        apply_train_args,
        load_config,
        set_data_root,
        train,
    )
    try:
        cfg = load_config(args.config, args.cfg_options)
        if args.data_root:
            set_data_root(cfg, args.data_root)
        cfg = apply_train_args(cfg, args.config, args.work_dir, args.resume, args.amp,
                               args.no_validate, args.auto_scale_lr, args.launcher)
        cfg = apply_simple_flags(cfg, args.epochs, args.batch_size, args.lr, args.checkpoint,
                                 args.accumulate, args.early_stop, args.save_freq,
                                 args.val_annotation_dir, args.val_image_dir)
    except (FileNotFoundError, TrainingSetupError) as e:
        sys.exit(f'error: {e}')
    train(cfg)


if __name__ == '__main__':
    main()
