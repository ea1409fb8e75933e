"""Train a landmark model (mmpose's tools/train.py flags, plus the original tools' simple ones).

Example:
    python tools/train.py configs/td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256.py \
        --data-root data/animal_faces/
"""
import argparse
import sys

from device_flag import select_device_before_torch  # no torch: see its docstring

if __name__ == '__main__':
    select_device_before_torch(sys.argv[1:])

from animal_landmarks_mm.errors import exit_on_error  # noqa: E402  (after the device is set)
from animal_landmarks_mm.schedule import measure_step_seconds  # noqa: E402
from animal_landmarks_mm.training import (  # noqa: E402
    TrainingSetupError,
    add_common_args,
    apply_show_args,
    apply_simple_flags,
    apply_train_args,
    config_from_args,
    is_main_process,
    resumed_iteration,
    train,
)


def parse_args(argv=None):
    # no abbreviations: mmpose's --show would be taken for --show-dir
    parser = argparse.ArgumentParser(description='Train a pose model', allow_abbrev=False)
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
    simple.add_argument('--epochs', type=int,
                        help="exactly this many epochs, passes over the training loader's "
                        "dataset (a RepeatDataset's repeats included; default: the config's "
                        'recipe sizes the run to the data; the plan is printed)')
    simple.add_argument('--iters', type=int,
                        help='exactly this many optimizer steps (an iteration-based run; with '
                        '--accumulate K, K times as many iterations)')
    simple.add_argument('--batch-size', type=int,
                        help='faces per iteration (of each process); the lr follows by '
                        'sqrt(batch x processes x accumulation / the recipe\'s)')
    simple.add_argument('--lr', type=float, help='the peak learning rate, as it is')
    simple.add_argument('--no-time-estimate', action='store_true',
                        help='skip the few training steps that estimate the run\'s time')
    simple.add_argument('--checkpoint', help='start weights (load_from): a checkpoint trained '
                        'here, one of anime_face_detector\'s, or the pretrained name '
                        'anime-face-detector (downloaded once into the Hugging Face cache); not '
                        'used when --resume finds a checkpoint to resume from')
    simple.add_argument('--val-annotation-dir',
                        help='validate on this folder of annotation files instead')
    simple.add_argument('--val-image-dir', help='images of --val-annotation-dir '
                        '(default: the same folder)')
    simple.add_argument('--accumulate', type=int,
                        help='gradient accumulation over N iterations: an optimizer step each N '
                        '(the plan counts optimizer steps)')
    simple.add_argument('--early-stop', type=int, metavar='PATIENCE',
                        help='stop after PATIENCE validations without a better NME')
    simple.add_argument('--early-stop-min-delta', type=float, default=0.001,
                        help='an NME gain below this is not an improvement (default 0.001)')
    simple.add_argument('--save-freq', type=int, help='save a checkpoint every N epochs')
    simple.add_argument('--workers', type=int,
                        help='data-loading processes (default: the config\'s 2 on a CPU; on a '
                        'GPU, up to 8 as the cores allow)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with exit_on_error(args.work_dir):
        cfg = apply_train_args(
            config_from_args(args), args.config, work_dir=args.work_dir, resume=args.resume,
            amp=args.amp, no_validate=args.no_validate, auto_scale_lr=args.auto_scale_lr,
            launcher=args.launcher, checkpoint=args.checkpoint)
        if args.show_dir is not None and args.no_validate:
            raise TrainingSetupError('--show-dir draws validation batches while training: '
                                     'nothing to draw with --no-validate')
        apply_show_args(cfg, args.show_dir, args.interval)
        plan = apply_simple_flags(
            cfg, epochs=args.epochs, iters=args.iters, batch_size=args.batch_size, lr=args.lr,
            checkpoint=args.checkpoint, accumulate=args.accumulate, early_stop=args.early_stop,
            early_stop_min_delta=args.early_stop_min_delta, save_freq=args.save_freq,
            val_annotation_dir=args.val_annotation_dir, val_image_dir=args.val_image_dir,
            workers=args.workers, cfg_options=args.cfg_options)
        if plan is not None and is_main_process():
            estimate = None if args.no_time_estimate else measure_step_seconds(cfg)
            # a resumed run: the time left, then the whole run's
            print(plan.format(*estimate, done_iters=resumed_iteration(cfg)) if estimate
                  else plan.format(), flush=True)
        # a planned run's training file was read and checked for its plan
        train(cfg, checked=('train_dataloader',) if plan is not None else ())


if __name__ == '__main__':
    main()
