"""Train on synthetic faces to choose recipes: a learning curve, and fine-tuning vs scratch.

Example (hours on a CPU at the default plans; minutes on a GPU):
    python tools/recipe_experiments.py learning-curve --out-dir work_dirs/learning_curve
    python tools/recipe_experiments.py transfer --out-dir work_dirs/transfer
    # a smaller budget, e.g. on a CPU:
    python tools/recipe_experiments.py learning-curve --out-dir work_dirs/lc --iters 150 \
        --sizes 50 100 200 400
"""
import argparse
import json

from animal_landmarks_mm.errors import exit_on_error
from animal_landmarks_mm.experiments import learning_curve, transfer_curve


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='experiment', required=True)
    curve = sub.add_parser('learning-curve', help='best validation NME against training faces')
    curve.add_argument('--sizes', type=int, nargs='+', default=[50, 100, 200, 400, 800])
    transfer = sub.add_parser('transfer', help='fine-tuning from another style family vs '
                              'training from scratch')
    transfer.add_argument('--pretrain-faces', type=int, default=800)
    transfer.add_argument('--target-faces', type=int, default=100)
    transfer.add_argument('--pretrain-iters', type=int,
                          help='steps of the pretraining (default: its plan)')
    transfer.add_argument('--finetune-lr', type=float, nargs='*', default=[],
                          help='more fine-tuning runs at these peak lrs')
    transfer.add_argument('--finetune-frozen-stages', type=int, nargs='*', default=[],
                          choices=range(5), metavar='{0..4}',
                          help='more fine-tuning runs with the backbone frozen up to these '
                          'HRNet stages (0: the stem)')
    for p in (curve, transfer):
        p.add_argument('--out-dir', required=True)
        p.add_argument('--val-faces', type=int, default=100)
        p.add_argument('--iters', type=int, help='steps of each run (default: its plan)')
        p.add_argument('--batch-size', type=int, default=8)
        p.add_argument('--seed', type=int, default=0)
        p.add_argument('--amp', action='store_true', help='mixed precision (CUDA)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with exit_on_error(args.out_dir):
        if args.experiment == 'learning-curve':
            results = learning_curve(args.out_dir, sizes=tuple(args.sizes),
                                     val_faces=args.val_faces, iters=args.iters,
                                     batch_size=args.batch_size, seed=args.seed,
                                     amp=args.amp)
        else:
            results = transfer_curve(args.out_dir, pretrain_faces=args.pretrain_faces,
                                     target_faces=args.target_faces, val_faces=args.val_faces,
                                     pretrain_iters=args.pretrain_iters, iters=args.iters,
                                     batch_size=args.batch_size, seed=args.seed,
                                     finetune_lrs=tuple(args.finetune_lr),
                                     finetune_frozen_stages=tuple(args.finetune_frozen_stages),
                                     amp=args.amp)
    print(json.dumps(results, indent=1))


if __name__ == '__main__':
    main()
