"""Convert per-image annotation JSON into COCO-style train/val/test files.

Example:
    python tools/dataset.py --annotation-dir data/faces/landmarks --image-dir data/faces/images \
        --output-dir data/faces --train-ratio 0.7 --val-ratio 0.2 --test-ratio 0.1 --seed 42
"""
import argparse

from animal_landmarks_mm.converter import DEFAULT_VAL_RATIO, convert
from animal_landmarks_mm.errors import exit_on_error, printable


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--annotation-dir', required=True, help='folder of annotation JSON files')
    parser.add_argument('--image-dir', required=True,
                        help='folder the annotations\' "image" names are relative to')
    parser.add_argument('--output-dir', required=True,
                        help='writes annotations/{train,val,test}.json, {train,val,test}.txt and '
                        'splits.json (the split record the next conversion follows)')
    parser.add_argument('--train-ratio', type=float, default=0.7)
    parser.add_argument('--val-ratio', type=float, default=None,
                        help=f'default {DEFAULT_VAL_RATIO:g}; 0 with --val-annotation-dir')
    parser.add_argument('--test-ratio', type=float, default=0.1)
    parser.add_argument('--seed', type=int, default=42, help='seed of the split shuffle')
    parser.add_argument('--reshuffle', action='store_true',
                        help='split afresh, ignoring the split recorded in --output-dir '
                        '(splits.json): earlier training images may land in val and test. '
                        'By default a file keeps the split an earlier conversion gave it, and '
                        'another --seed or other ratios than the record\'s are refused')
    parser.add_argument('--val-annotation-dir',
                        help='use this whole folder as the validation split; the annotation dir '
                        'is then split into train and test only, in the proportion of their '
                        'ratios')
    parser.add_argument('--strict', action='store_true',
                        help='fail on any bad annotation file instead of leaving it out')
    parser.add_argument('--include-predicted', action='store_true',
                        help='also use files of unreviewed model predictions (status '
                        '"predicted"), e.g. as pseudo-labels; left out by default')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bar')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with exit_on_error(args.output_dir):
        summary = convert(
            args.annotation_dir, args.image_dir, args.output_dir, train_ratio=args.train_ratio,
            val_ratio=args.val_ratio, test_ratio=args.test_ratio, seed=args.seed,
            val_annotation_dir=args.val_annotation_dir, strict=args.strict,
            include_predicted=args.include_predicted, reshuffle=args.reshuffle,
            progress=not args.no_progress)
    print(printable(summary.format()))  # file names and "image" values may hold escapes


if __name__ == '__main__':
    main()
