"""Predict face landmarks in images; write pictures and annotation files.

Example:
    python tools/infer.py data/new_images \
        --config configs/td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256.py \
        --checkpoint work_dirs/.../best_NME_epoch_60.pth --boxes boxes.json \
        --out-dir work_dirs/infer
"""
import argparse
import sys

from animal_landmarks_mm.errors import AnimalLandmarksError
from animal_landmarks_mm.infer import (
    FACE_DETECTORS,
    FaceDetector,
    InferenceInputError,
    run_inference,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('input', help='an image or a folder of images')
    parser.add_argument('--checkpoint', required=True,
                        help='a checkpoint trained here, one of anime_face_detector\'s, or '
                        'the pretrained name anime-face-detector')
    parser.add_argument('--config', help='the model config (default: the project\'s main '
                        'config)')
    boxes = parser.add_mutually_exclusive_group()
    boxes.add_argument('--boxes', help='JSON {"image name": [[x0, y0, x1, y1], ...]}')
    boxes.add_argument('--face-detector', choices=FACE_DETECTORS,
                       help='find faces with anime_face_detector\'s detector')
    parser.add_argument('--face-detector-checkpoint',
                        help='the face detector\'s weights (a local file; nothing is downloaded)')
    parser.add_argument('--face-score-thr', type=float, default=0.5)
    parser.add_argument('--out-dir', required=True,
                        help='writes OUT/vis/*.jpg and OUT/annotations/*.json')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        detector = None
        if args.face_detector:
            if not args.face_detector_checkpoint:
                raise InferenceInputError('--face-detector needs --face-detector-checkpoint')
            detector = FaceDetector(args.face_detector, args.face_detector_checkpoint,
                                    device=args.device, score_thr=args.face_score_thr)
        files = run_inference(args.input, config=args.config, checkpoint=args.checkpoint,
                              out_dir=args.out_dir, boxes_file=args.boxes,
                              face_detector=detector, device=args.device)
    except (AnimalLandmarksError, OSError) as e:
        sys.exit(f'error: {e}')
    print(f'{len(files)} images: pictures in {args.out_dir}/vis, annotations in '
          f'{args.out_dir}/annotations')


if __name__ == '__main__':
    main()
