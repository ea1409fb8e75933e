"""Evaluate a checkpoint: metrics.txt/json, predictions.json, ced.png and pictures.

Example:
    python tools/evaluate.py --checkpoint work_dirs/demo/best_NME_epoch_8.pth \
        --image-dir work_dirs/demo/data/images --annotation-dir work_dirs/demo/data/landmarks \
        --split-file work_dirs/demo/data/test.txt --output-dir work_dirs/demo/eval --visualize
"""
import argparse

from animal_landmarks_mm.errors import exit_on_error, printable
from animal_landmarks_mm.evaluation import (
    check_outside_inputs,
    evaluate,
    faces_from_annotation_dir,
    faces_from_coco,
    print_left_out,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--checkpoint', required=True,
                        help='the model to evaluate (a checkpoint, an exported .onnx graph, or '
                        'a pretrained name such as anime-face-detector)')
    parser.add_argument('--config', help='the model\'s config (default: the project\'s main '
                        'config; a checkpoint\'s stored config is never executed)')
    parser.add_argument('--image-dir', help='the images of --annotation-dir')
    parser.add_argument('--annotation-dir', help='a folder of annotation JSON files')
    which = parser.add_mutually_exclusive_group()
    which.add_argument('--split-file', help='only the annotation files it lists (test.txt)')
    which.add_argument('--ann-file', help='a COCO file of tools/dataset.py instead of a folder '
                       '(images relative to its output folder)')
    parser.add_argument('--output-dir', required=True,
                        help='where the outputs go: not the annotation folder nor the image '
                        'folder, nor inside them')
    parser.add_argument('--visualize', action='store_true',
                        help='write pictures of ground truth vs prediction')
    parser.add_argument('--num-vis-samples', type=int, default=20,
                        help='how many faces --visualize pictures (default 20)')
    parser.add_argument('--worst-first', action='store_true',
                        help='picture the worst faces rather than a random sample')
    parser.add_argument('--compare', help='a second checkpoint whose CED curve joins the plot '
                        '(curves of files of one name are labelled with their folders)')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    args = parser.parse_args(argv)
    if not args.ann_file and not (args.annotation_dir and args.image_dir):
        parser.error('give --annotation-dir and --image-dir, or --ann-file')
    if args.ann_file and (args.annotation_dir or args.image_dir):  # they would go unread
        parser.error('--ann-file names its images and annotations itself: give it without '
                     '--annotation-dir and --image-dir')
    if args.num_vis_samples < 0:  # it took that many faces off the end of the list
        parser.error(f'--num-vis-samples must be 0 or more, not {args.num_vis_samples}')
    return args


def main(argv=None):
    args = parse_args(argv)
    with exit_on_error(args.output_dir):
        # before anything is read (a COCO file's images: evaluate's)
        check_outside_inputs(args.output_dir, args.annotation_dir,
                             [] if args.ann_file else [args.image_dir],
                             [name for name in (args.ann_file, args.split_file) if name])
        if args.ann_file:
            faces, problems = faces_from_coco(args.ann_file)
        else:
            faces, summary = faces_from_annotation_dir(args.annotation_dir, args.image_dir,
                                                       args.split_file)
            problems = summary.problems
        for problem in problems:
            print_left_out(problem)
        metrics = evaluate(args.checkpoint, faces, args.output_dir, config=args.config,
                           device=args.device, visualize=args.visualize,
                           num_vis_samples=args.num_vis_samples, worst_first=args.worst_first,
                           compare=args.compare)
    with open(f'{args.output_dir}/metrics.txt', encoding='utf-8') as f:
        print(printable(f.read().split('\nper group')[0]))
    print(printable(f'outputs in {args.output_dir}: metrics.txt, metrics.json, '
                    'predictions.json, ced.png' + (', visualizations/' if args.visualize else '')))
    return metrics


if __name__ == '__main__':
    main()
