"""Test a checkpoint on the test split; prints the metrics.

Flags as mmpose's tools/test.py names them: --work-dir, --dump, --cfg-options, --show-dir
[--interval], --launcher; plus --data-root and --device (mmpose's --out, --show, --wait-time
and --badcase are not taken: --dump and --show-dir write the predictions and pictures).

Example:
    python tools/test.py configs/td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256.py \
        work_dirs/td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256/best_NME_epoch_60.pth \
        --data-root data/animal_faces/
"""
import argparse
import sys

from device_flag import select_device_before_torch  # no torch: see its docstring

if __name__ == '__main__':
    select_device_before_torch(sys.argv[1:])

from animal_landmarks_mm.errors import exit_on_error  # noqa: E402  (after the device is set)
from animal_landmarks_mm.training import (  # noqa: E402
    add_common_args,
    apply_show_args,
    apply_test_args,
    config_from_args,
    test,
)


def parse_args(argv=None):
    # no abbreviations: mmpose's --show would be taken for --show-dir
    parser = argparse.ArgumentParser(description='Test (and eval) a pose model',
                                     allow_abbrev=False)
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file (or a pretrained name)')
    parser.add_argument('--dump', help='dump every prediction to this pickle file (.pkl or '
                        '.pickle, as mmengine\'s DumpResults writes)')
    add_common_args(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with exit_on_error(args.work_dir):
        cfg = apply_test_args(config_from_args(args), args.config, args.checkpoint,
                              work_dir=args.work_dir, out=args.dump, launcher=args.launcher)
        apply_show_args(cfg, args.show_dir, args.interval)
        test(cfg)


if __name__ == '__main__':
    main()
