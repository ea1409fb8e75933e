"""Test a checkpoint on the test split (mmpose's tools/test.py flags); prints NME.

Example:
    python tools/test.py configs/td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256.py \
        work_dirs/td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256/best_NME_epoch_60.pth
"""
import argparse
import os
import sys

from mmengine.config import DictAction

from animal_landmarks_mm.training import apply_test_args, load_config, set_data_root, test


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and eval) a pose model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save evaluation results and logs')
    parser.add_argument('--dump', help='dump every prediction to this pickle file')
    parser.add_argument(
        '--data-root', help='the folder tools/dataset.py wrote (sets every dataloader)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
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
        cfg = apply_test_args(cfg, args.config, args.checkpoint, args.work_dir, args.dump,
                              args.launcher)
    except FileNotFoundError as e:
        sys.exit(f'error: {e}')
    test(cfg)


if __name__ == '__main__':
    main()
