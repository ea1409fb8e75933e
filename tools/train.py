"""Train a landmark model (mmpose's tools/train.py flags, plus the original tools' simple ones).

Example:
    python tools/train.py configs/td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256.py \
        --data-root data/animal_faces/
"""
import argparse
import sys

from animal_landmarks_mm.training import (
    TrainingSetupError,
    add_common_args,
    apply_simple_flags,
    apply_train_args,
    config_from_args,
    train,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a pose model')
    parser.add_argument('config', help='train config file path')
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
    add_common_args(parser)
    simple = parser.add_argument_group('simple flags of the original training tools')
    simple.add_argument('--epochs', type=int, help='train_cfg.max_epochs (schedule stretched)')
    simple.add_argument('--batch-size', type=int, help='train_dataloader.batch_size')
    simple.add_argument('--lr', type=float, help='optim_wrapper.optimizer.lr')
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
    simple.add_argument('--early-stop-min-delta', type=float, default=0.001,
                        help='an NME gain below this is not an improvement (default 0.001)')
    simple.add_argument('--save-freq', type=int, help='save a checkpoint every N epochs')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = apply_train_args(config_from_args(args), args.config, args.work_dir, args.resume,
                               args.amp, args.no_validate, args.auto_scale_lr, args.launcher)
        cfg = apply_simple_flags(cfg, args.epochs, args.batch_size, args.lr, args.checkpoint,
                                 args.accumulate, args.early_stop, args.save_freq,
                                 args.val_annotation_dir, args.val_image_dir,
                                 args.early_stop_min_delta)
    except (FileNotFoundError, TrainingSetupError) as e:
        sys.exit(f'error: {e}')
    train(cfg)


if __name__ == '__main__':
    main()
