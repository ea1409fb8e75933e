"""Benchmarks that print numbers (never timed tests). ``tools/benchmark.py`` runs them.

Each benchmark runs in a fresh process (so that its peak memory is its own) on whatever device
is present, and returns a dict of measurements:

- ``training``: images/s of a real mmengine training loop (data loader, augmentation, forward,
  backward, optimizer) for our config and for mmpose's stock WFLW HRNetV2-W18 config, on the
  same synthetic images (WFLW's 98 points made from our 28), same batch size and workers;
- ``pipeline``: our training data pipeline alone, images/s in one worker, and whether the
  configured workers keep up with training;
- ``inference``: latency per face and batched throughput of our model through mmpose's
  ``inference_topdown`` against anime-face-detector 0.1.0 on the same image and boxes;
- ``converter``: annotation files/s of ``tools/dataset.py``'s converter;
- ``annotator``: the annotator's click-to-redraw time on a 2000x2000 image (server side, and the
  round trip in headless Chromium), and the time to open a folder of 5,000 images.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from .annotation import Face, ImageAnnotation, load_annotation, save_annotation
from .converter import AnnotationConverter
from .synthetic import make_synthetic_dataset

CONFIG_ROOT = Path(__file__).resolve().parent.parent / 'configs'
OUR_CONFIG = CONFIG_ROOT / 'td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256.py'
STOCK_CONFIG = ('face_2d_keypoint/topdown_heatmap/wflw/'
                'td-hm_hrnetv2-w18_dark-8xb64-60e_wflw-256x256.py')


def _stock_config() -> Path:
    """mmpose's own WFLW config file, as installed with mmpose (``mmpose::`` in configs)."""
    import mmpose
    return Path(mmpose.__file__).parent / '.mim' / 'configs' / STOCK_CONFIG


def _peak_memory() -> dict:
    """Peak resident memory of this process, and of the GPU when one is used (MiB)."""
    out = dict(peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    import torch
    if torch.cuda.is_available():
        out['peak_gpu_mib'] = round(torch.cuda.max_memory_allocated() / 2**20)
    return out


def _device() -> str:
    import torch
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def _synthetic_coco(folder: Path, num_images: int) -> Path:
    """Synthetic faces converted to our COCO layout; returns the data root."""
    make_synthetic_dataset(folder, num_images, seed=11, progress=False)
    AnnotationConverter(folder / 'images', folder, progress=False).convert(
        folder / 'landmarks', 0.5, 0.5, 0.0)
    return folder


def _as_wflw(data_root: Path, split: str) -> str:
    """The same faces as a 98-point WFLW file: our 28 points, then the first 70 repeated."""
    coco = json.loads((data_root / 'annotations' / f'{split}.json').read_text())
    for ann in coco['annotations']:
        points = np.array(ann['keypoints']).reshape(28, 3)
        ann['keypoints'] = np.concatenate([points, points, points, points[:14]]).ravel().tolist()
        ann['num_keypoints'] = 98
        x, y, w, h = ann['bbox']  # WFLW files give the box as centre and scale (px / 200)
        ann['center'], ann['scale'] = [x + w / 2, y + h / 2], max(w, h) / 200
    coco['categories'][0]['keypoints'] = [f'p{i}' for i in range(98)]
    path = data_root / 'annotations' / f'{split}_wflw98.json'
    path.write_text(json.dumps(coco))
    return path.name


def _train_throughput(config, data_root: Path, ann_file: str, dataset_type: str | None,
                      batch_size: int, iters: int, workers: int, work_dir: Path) -> float:
    """Images/s of mmengine's training loop, after 2 warm-up iterations."""
    from mmengine.config import Config
    from mmengine.hooks import Hook
    from mmengine.runner import Runner
    cfg = Config.fromfile(str(config))
    loader = cfg.train_dataloader
    loader.batch_size, loader.num_workers = batch_size, workers
    loader.persistent_workers = workers > 0
    loader.dataset.data_root, loader.dataset.ann_file = str(data_root), ann_file
    loader.dataset.data_prefix = dict(img='')
    if dataset_type:
        loader.dataset.type = dataset_type
    cfg.model.backbone.init_cfg = None  # no pretrained download
    cfg.train_cfg = dict(by_epoch=False, max_iters=iters + 2, val_interval=10**9)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10**9)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10**9)
    cfg.custom_hooks = []
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    cfg.work_dir = str(work_dir)
    cfg.load_from = None
    if _device() == 'cuda':
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.env_cfg.cudnn_benchmark = True
    stamps = []

    class Timer(Hook):
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            stamps.append(time.perf_counter())

    runner = Runner.from_cfg(cfg)
    runner.register_hook(Timer(), priority='LOWEST')
    runner.train()
    return round(batch_size * iters / (stamps[-1] - stamps[1]), 2)


def training_throughput(batch_size: int | None = None, iters: int | None = None,
                        workers: int = 2) -> dict:
    """Ours against mmpose's stock WFLW config; see the module docstring."""
    import animal_landmarks_mm  # noqa: F401
    cuda = _device() == 'cuda'
    batch_size = batch_size or (64 if cuda else 8)
    iters = iters or (30 if cuda else 4)
    with tempfile.TemporaryDirectory() as tmp:
        root = _synthetic_coco(Path(tmp) / 'data', max(2 * batch_size, 16))
        ours = _train_throughput(OUR_CONFIG, root, 'annotations/train.json', None, batch_size,
                                 iters, workers, Path(tmp) / 'ours')
        stock = _train_throughput(_stock_config(), root, 'annotations/' + _as_wflw(root, 'train'),
                                  'WFLWDataset', batch_size, iters, workers, Path(tmp) / 'stock')
    return dict(device=_device(), batch_size=batch_size, iters=iters, workers=workers,
                ours_img_s=ours, stock_wflw_img_s=stock, ratio=round(ours / stock, 3),
                **_peak_memory())


def pipeline_throughput(samples: int = 64, workers: int = 2) -> dict:
    """Our training data pipeline alone in this process (one worker)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import animal_landmarks_mm  # noqa: F401

    from .dataset import AnimalCharacterFaceDataset
    init_default_scope('mmpose')
    cfg = Config.fromfile(str(OUR_CONFIG))
    with tempfile.TemporaryDirectory() as tmp:
        root = _synthetic_coco(Path(tmp) / 'data', 32)
        dataset = AnimalCharacterFaceDataset(
            data_root=str(root), ann_file='annotations/train.json', data_prefix=dict(img=''),
            pipeline=cfg.train_dataloader.dataset.pipeline)
        dataset[0]
        start = time.perf_counter()
        for i in range(samples):
            dataset[i % len(dataset)]
        rate = samples / (time.perf_counter() - start)
    return dict(per_worker_img_s=round(rate, 1), workers=workers,
                loader_img_s=round(rate * workers, 1), **_peak_memory())


def inference_latency(repeats: int | None = None, batch: int = 8) -> dict:
    """Our model through mmpose vs anime-face-detector 0.1.0, same image and boxes (flip test
    and DARK in both), random weights in the same architecture."""
    import cv2
    import torch
    from anime_face_detector import LandmarkDetector
    from mmpose.apis import inference_topdown, init_model

    import animal_landmarks_mm  # noqa: F401

    from .export import export_checkpoint, reference_state_dict
    device = _device()
    repeats = repeats or (50 if device == 'cuda' else 5)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.save(dict(state_dict=reference_state_dict()), tmp / 'ours.pth')
        export_checkpoint(tmp / 'ours.pth', tmp / 'afd.safetensors')
        model = init_model(str(OUR_CONFIG), str(tmp / 'ours.pth'), device=device)
        afd = LandmarkDetector(landmark_checkpoint_path=tmp / 'afd.safetensors',
                               face_detector_name=None, device=device)
        make_synthetic_dataset(tmp / 'img', 1, seed=5, min_size=512, max_size=512,
                               progress=False)
        image = cv2.imread(str(next((tmp / 'img' / 'images').glob('*.png'))))
    boxes = np.array([[100 + 10 * i, 100, 300 + 10 * i, 300] for i in range(batch)], np.float32)

    def timed(fn) -> float:
        fn()
        if device == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        if device == 'cuda':
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / repeats

    ours_one = timed(lambda: inference_topdown(model, image, boxes[:1], bbox_format='xyxy'))
    afd_one = timed(lambda: afd(image, boxes=[np.append(boxes[0], 1.0)]))
    ours_batch = timed(lambda: inference_topdown(model, image, boxes, bbox_format='xyxy'))
    afd_batch = timed(lambda: afd(image, boxes=[np.append(b, 1.0) for b in boxes]))
    return dict(device=device, ours_ms_per_face=round(ours_one * 1000, 1),
                afd_ms_per_face=round(afd_one * 1000, 1),
                latency_ratio_afd_over_ours=round(afd_one / ours_one, 3),
                ours_faces_s_batched=round(batch / ours_batch, 1),
                afd_faces_s_batched=round(batch / afd_batch, 1),
                throughput_ratio_ours_over_afd=round(afd_batch / ours_batch, 3),
                batch=batch, **_peak_memory())


def converter_throughput(num_files: int = 10_000, num_images: int = 20) -> dict:
    """Convert ``num_files`` annotation files (each its own image path, hard-linked to one of
    ``num_images`` real synthetic images so that every header really is read)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_synthetic_dataset(tmp / 'src', num_images, seed=0, min_size=128, max_size=160,
                               progress=False)
        sources = sorted((tmp / 'src' / 'images').glob('*.png'))
        templates = [load_annotation(p) for p in sorted((tmp / 'src' / 'landmarks').glob('*'))]
        image_dir, ann_dir = tmp / 'images', tmp / 'landmarks'
        image_dir.mkdir()
        ann_dir.mkdir()
        rng = np.random.default_rng(0)
        for i in range(num_files):
            k = i % len(sources)
            os.link(sources[k], image_dir / f'{i:06d}.png')
            t = templates[k]
            pts = np.array(t.faces[0].landmarks) + rng.normal(0, 0.5, (28, 2))
            save_annotation(ann_dir / f'{i:06d}.json', ImageAnnotation(
                f'{i:06d}.png', t.width, t.height, [Face([tuple(p) for p in pts.clip(0)])]))
        start = time.perf_counter()
        summary = AnnotationConverter(image_dir, tmp / 'out', progress=False).convert(ann_dir)
        seconds = time.perf_counter() - start
        assert sum(summary.counts.values()) == num_files, summary.format()
    return dict(files=num_files, seconds=round(seconds, 2),
                files_per_s=round(num_files / seconds), **_peak_memory())


def _browser_clicks(url: str, points: list, image_size: tuple[int, int]) -> list[float]:
    """Seconds from a click in headless Chromium to the redrawn picture being shown."""
    from playwright.sync_api import sync_playwright

    from .annotate_app import (
        CHROMIUM,
        CHROMIUM_FLAGS,
        PICTURE_GEOMETRY_JS,
        PICTURE_REDRAWN_JS,
        screen_position,
    )
    seconds = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={'width': 1600, 'height': 1000})
        page.goto(url)
        page.wait_for_selector('#picture img', timeout=60000)
        for point in points:
            img = page.locator('#picture img')
            old = img.get_attribute('src')
            geometry = img.evaluate(PICTURE_GEOMETRY_JS)
            start = time.perf_counter()
            page.mouse.click(*screen_position(point, image_size, geometry))
            page.wait_for_function(PICTURE_REDRAWN_JS, arg=old, timeout=20000)
            seconds.append(time.perf_counter() - start)
        browser.close()
    return seconds


def annotator_redraw(side: int = 2000, clicks: int = 56, folder_images: int = 5000) -> dict:
    """The annotator's click-to-redraw on a ``side`` x ``side`` image, and opening a folder.

    ``server``: the click handler (map the click, edit, autosave, draw the points) plus the JPEG
    encoding Gradio does for the picture and the chart; ``browser``: the whole round trip in
    headless Chromium (click to redrawn picture shown), when Chromium is installed.
    ``open_folder``: listing a folder of ``folder_images`` images and counting the done ones.
    """
    import socket

    import cv2
    import gradio as gr

    from .annotate import AnnotationSession
    from .annotate_app import CHROMIUM, Annotator, TabState, launch
    from .synthetic import render_face_image

    def ms(values) -> dict:
        values = np.array(values) * 1000
        return dict(median=round(float(np.median(values)), 1),
                    p95=round(float(np.percentile(values, 95)), 1))

    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / 'images'
        images.mkdir()
        image, points, _ = render_face_image(np.random.default_rng(5), side, side)
        cv2.imwrite(str(images / '0_big.png'), image)
        cv2.imwrite(str(images / 'small.png'), image[:64, :64])
        for i in range(folder_images - 1):
            os.link(images / 'small.png', images / f'img_{i:05d}.png')
        (images / 'small.png').unlink()

        start = time.perf_counter()
        session = AnnotationSession(images, Path(tmp) / 'out')
        session.progress()
        open_folder = time.perf_counter() - start

        annotator = Annotator(session)
        state = TabState()
        annotator.jump(state, '0_big.png')
        picture, chart = gr.Image(format='jpeg'), gr.Image(format='jpeg')
        server = []
        for k in range(clicks):
            if state.edit.current.complete():
                annotator.clear_all(state)
            u, v = annotator.view(state).to_display([points[k % 28]])[0]
            event = gr.SelectData(None, dict(index=[round(u), round(v)], value=None))
            start = time.perf_counter()
            outputs = annotator.click(state, event)
            picture.postprocess(outputs[1])
            chart.postprocess(outputs[8])
            server.append(time.perf_counter() - start)
        result = dict(image=f'{side}x{side}', server_ms=ms(server))

        if os.access(CHROMIUM, os.X_OK):
            annotator.clear_all(state)
            with socket.socket() as s:
                s.bind(('127.0.0.1', 0))
                port = s.getsockname()[1]
            app = launch(annotator, port=port, block=False)
            try:
                # a fresh tab opens the first image without annotation: the big one
                seconds = _browser_clicks(f'http://127.0.0.1:{port}', list(points[:28]),
                                          (side, side))
                result['browser_ms'] = ms(seconds[1:])  # the first includes warming up
            finally:
                app.close()
        result.update(folder_images=folder_images,
                      open_folder_ms=round(open_folder * 1000, 1), **_peak_memory())
    return result


BENCHMARKS = {
    'training': training_throughput,
    'pipeline': pipeline_throughput,
    'inference': inference_latency,
    'converter': converter_throughput,
    'annotator': annotator_redraw,
}


def _child(name: str, queue) -> None:
    try:
        queue.put((name, BENCHMARKS[name]()))
    except Exception as e:  # reported, not raised: the other benchmarks still run
        queue.put((name, dict(error=f'{e.__class__.__name__}: {e}')))


def run_isolated(name: str) -> dict:
    """One benchmark in a fresh process, so its peak memory is its own."""
    context = multiprocessing.get_context('spawn')
    queue = context.Queue()
    process = context.Process(target=_child, args=(name, queue))
    process.start()
    _, result = queue.get()
    process.join()
    return result


def format_table(results: dict[str, dict]) -> str:
    """One line per benchmark: its name and its measurements."""
    return '\n'.join(f'{name:10s} ' + '  '.join(f'{k}={v}' for k, v in values.items())
                     for name, values in results.items())
