"""Generate cartoon animal-character faces with exact 28-point annotations.

Example:
    python tools/make_synthetic_dataset.py --out-dir data/synthetic --num-images 200
"""
import argparse

from animal_landmarks_mm.errors import exit_on_error
from animal_landmarks_mm.synthetic import FAMILIES, make_synthetic_dataset


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out-dir', required=True,
                        help='writes OUT/images/*.png, OUT/landmarks/*.json and the settings '
                        '(OUT/.synthetic.json; a folder of another set is refused)')
    parser.add_argument('--num-images', type=int, default=200)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--min-size', type=int, default=256, help='smallest image side (px)')
    parser.add_argument('--max-size', type=int, default=384, help='largest image side (px)')
    parser.add_argument('--family', choices=FAMILIES,
                        help='one style family: human anime faces, or animal characters '
                        'with muzzles (default: the original style, neither: a species\' ears, '
                        'no muzzle)')
    parser.add_argument('--workers', type=int, default=1,
                        help='processes drawing images (the same files as one)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with exit_on_error(args.out_dir):
        files = make_synthetic_dataset(args.out_dir, num_images=args.num_images, seed=args.seed,
                                       min_size=args.min_size, max_size=args.max_size,
                                       family=args.family, workers=args.workers)
    print(f'wrote {len(files)} images to {args.out_dir}/images and their annotations to '
          f'{args.out_dir}/landmarks')


if __name__ == '__main__':
    main()
