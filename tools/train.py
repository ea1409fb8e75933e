"""Train a landmark model (mmpose's tools/train.py flags).

Example:
    python tools/train.py configs/td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256.py \
        --data-root data/animal_faces/
"""
import argparse
import os
import sys

from mmengine.config import DictAction

from animal_landmarks_mm.training import (
    TrainingSetupError,
    apply_train_args,
    load_config,
    set_data_root,
    train,
)


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


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.cfg_options)
        if args.data_root:
            set_data_root(cfg, args.data_root)
        cfg = apply_train_args(cfg, args.config, args.work_dir, args.resume, args.amp,
                               args.no_validate, args.auto_scale_lr, args.launcher)
    except (FileNotFoundError, TrainingSetupError) as e:
        sys.exit(f'error: {e}')
    train(cfg)


if __name__ == '__main__':
    main()
