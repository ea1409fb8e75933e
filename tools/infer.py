"""Predict face landmarks in images; write pictures and annotation files to review.

Example:
    python tools/infer.py data/new_images --checkpoint work_dirs/.../best_NME_epoch_60.pth \
        --face-detector yolov3 --out-dir work_dirs/infer --rank
"""
import argparse

from animal_landmarks_mm.errors import exit_on_error, printable
from animal_landmarks_mm.infer import (
    FACE_DETECTORS,
    FaceDetector,
    InferenceInputError,
    check_arguments,
    run_inference,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('input', help='an image or a folder of images')
    parser.add_argument('--checkpoint', required=True,
                        help='a checkpoint trained here, one of anime_face_detector\'s, the '
                        'pretrained name anime-face-detector, or an exported .onnx graph (run '
                        'by onnxruntime, no config)')
    parser.add_argument('--config', help='the model config (default: the project\'s main '
                        'config)')
    boxes = parser.add_mutually_exclusive_group()
    boxes.add_argument('--boxes', help='JSON {"image name": [[x0, y0, x1, y1], ...]}')
    boxes.add_argument('--face-detector', choices=FACE_DETECTORS,
                       help='find faces with anime_face_detector\'s detector')
    parser.add_argument('--face-detector-checkpoint',
                        help='the face detector\'s weights (default: its published weights, '
                        'anime-face-detector-yolov3 or -faster-rcnn, downloaded once into the '
                        'Hugging Face cache)')
    parser.add_argument('--face-score-thr', type=float, default=0.5,
                        help='keep the faces the detector scores at least this, from 0 to 1 '
                        '(default %(default)s)')
    parser.add_argument('--out-dir', required=True,
                        help='writes OUT/vis/*.jpg, OUT/annotations/*.json and with --rank '
                        'OUT/ranking.json')
    parser.add_argument('--annotation-dir',
                        help='write the annotation files here instead of OUT/annotations, e.g. '
                        'the annotator\'s output folder (files a person annotated, skipped or '
                        'saved in the annotator are never overwritten; refused while an '
                        'annotator runs there)')
    parser.add_argument('--rank', action='store_true',
                        help='also rank the images by the model\'s uncertainty (disagreement '
                        'of a plain and a mirrored pass), most uncertain first, in '
                        'OUT/ranking.json: annotate those first (annotator --files)')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with exit_on_error(args.out_dir):
        detector = None
        if args.face_detector_checkpoint and not args.face_detector:
            raise InferenceInputError('--face-detector-checkpoint needs --face-detector')
        # run_inference's checks, the peek at an annotator's lock on the annotation folder
        # among them, before the face detector's weights are read (or downloaded)
        check_arguments(args.input, checkpoint=args.checkpoint, out_dir=args.out_dir,
                        annotation_dir=args.annotation_dir, boxes_file=args.boxes,
                        device=args.device, rank=args.rank)
        if args.face_detector:
            detector = FaceDetector(args.face_detector, args.face_detector_checkpoint,
                                    device=args.device, score_thr=args.face_score_thr)
        result = run_inference(args.input, config=args.config, checkpoint=args.checkpoint,
                               out_dir=args.out_dir, annotation_dir=args.annotation_dir,
                               boxes_file=args.boxes, face_detector=detector,
                               device=args.device, rank=args.rank)
    # the folders as the user gave them, escaped: a name that is not UTF-8 cannot be printed
    out_dir = printable(args.out_dir)
    folder = printable(args.annotation_dir or f'{args.out_dir}/annotations')
    print(f'{len(result.written)} images predicted: pictures in {out_dir}/vis, annotation '
          f'files (status "predicted", to review in the annotator) in {folder}')
    if result.kept:
        print(f'{len(result.kept)} images already annotated by a person or being annotated (a '
              'draft, or a prediction under review; in a subfolder too): their files were kept')
    if result.of_other_folder:
        print(printable(
            f'warning: {len(result.of_other_folder)} images not predicted: {folder} holds '
            f'predictions of pictures of the same names in another image folder, still there '
            f'(such as {result.of_other_folder[0]}), which were kept; predict the folder the '
            'annotator opens (its --image-dir), remove those files, or give another '
            '--annotation-dir', one_line=True))
    if result.ranking:
        ranking = printable(str(result.ranking))
        print(f'ranking, most uncertain first: {ranking} (open the annotator with '
              f'--files {ranking})')


if __name__ == '__main__':
    main()
