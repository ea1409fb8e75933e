# HRNetV2-W18 + DARK for the 28-point animal-character face layout, trained from scratch.
# mmpose's WFLW recipe (256x256 input, 64x64 heatmaps, unbiased decoding with an 11-px blur,
# flip test with heatmap shift), with 28 outputs, our dataset and NME over the outer eye corners.
_base_ = ['mmpose::face_2d_keypoint/topdown_heatmap/wflw/'
          'td-hm_hrnetv2-w18_dark-8xb64-60e_wflw-256x256.py']

custom_imports = dict(imports=['animal_landmarks_mm'], allow_failed_imports=False)

# the point count comes from the schema, the one definition of the 28 points (after _base_, so
# that mmengine still reads this file as a plain config; the module stays out of the config)
from animal_landmarks_mm import schema  # noqa: E402

# The schedule fits the data, not WFLW's 7,500 faces: tools/train.py sizes every run with this
# recipe (animal_landmarks_mm/schedule.py) and prints the plan. At least 40,000 training samples
# (200 epochs of 200 faces at any batch: the original tools' advice for training from scratch)
# and at least 60 epochs of a large set; 5% linear warmup (at most 500 steps), then a cosine
# decay to 1% of the lr; 10 validations per run. The lr below is for 64 faces per step and
# follows the actual batch by sqrt(batch / 64) (Adam): WFLW's 2e-3 (there for 512 faces per
# step), chosen by measurement: 200 synthetic faces, --epochs 8 --batch-size 8 (200 steps),
# best validation NME 0.0198 with it against 0.0277 with half of it and 0.0329 with a quarter.
schedule = dict(samples=40_000, min_epochs=60, warmup=0.05, max_warmup_iters=500,
                final_lr=0.01, validations=10, lr_batch=64)
optim_wrapper = dict(optimizer=dict(lr=2e-3))
auto_scale_lr = dict(base_batch_size=64)
# What other runners (mim train, mmpose's tools/train.py) use as written: 60 epochs, the same
# shape in epochs (warmup 3 epochs = 5%, converted to steps, then cosine).
train_cfg = dict(max_epochs=60, val_interval=6)
param_scheduler = [
    dict(type='LinearLR', begin=0, end=3, start_factor=0.001, by_epoch=True,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', begin=3, end=60, T_max=57, eta_min_ratio=0.01,
         by_epoch=True, convert_to_iter_based=True),
]

# AtomicCheckpointHook: mmengine's, but a save cut short (a full disk, a kill) loses nothing:
# each checkpoint written whole or not at all, the previous best removed after the new one
default_hooks = dict(
    checkpoint=dict(type='AtomicCheckpointHook', save_best='NME', rule='less', interval=6,
                    max_keep_ckpts=3))

# load_from is loaded strictly, from mmpose 1.x or anime_face_detector (0.x) checkpoints alike;
# backbone_only=True loads only the backbone of a checkpoint with another head
custom_hooks = [
    dict(type='StrictLoadFromHook', backbone_only=False),
    dict(type='SyncBuffersHook'),
]

visualizer = dict(vis_backends=[
    dict(type='LocalVisBackend'),
    dict(type='TensorboardVisBackend'),
])

model = dict(
    # channels-last batches: faster convolutions on CPUs and GPUs (animal_landmarks_mm/models.py)
    data_preprocessor=dict(type='ChannelsLastPoseDataPreprocessor'),
    # ImageNet weights cannot be fetched at run time; to start from them pass (_delete_ drops the
    # None below, which mmengine cannot merge the other keys into)
    # --cfg-options model.backbone.init_cfg._delete_=True \
    #     model.backbone.init_cfg.type=Pretrained \
    #     model.backbone.init_cfg.checkpoint=/path/to/hrnetv2_w18_imagenet.pth
    backbone=dict(init_cfg=None),
    head=dict(out_channels=schema.NUM_KEYPOINTS))

dataset_type = 'AnimalCharacterFaceDataset'
# the folder tools/dataset.py wrote (--output-dir); image paths in its files are relative to it
data_root = 'data/animal_faces/'

# augmentation for drawn characters: flip with the 28-point flip pairs, box shift / scale /
# rotation, colour jitter, greyscale like manga (mmcv's, with the BGR luma weights and three
# channels kept), and (ours, animal_landmarks_mm/transforms.py) blur and occluding cut-outs
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(
        type='RandomBBoxTransform',
        shift_factor=0.1,
        shift_prob=0.3,
        rotate_factor=45,
        scale_factor=(0.75, 1.25)),
    dict(type='TopdownAffine', input_size=(256, 256)),
    dict(type='PhotometricDistortion'),
    dict(type='RandomGrayscale', prob=0.1, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.299)),
    dict(type='RandomGaussianBlur', prob=0.1),
    dict(type='RandomCutout', prob=0.3),
    dict(type='GenerateTarget', encoder={{_base_.codec}}),
    dict(type='PackPoseInputs'),
]

train_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/train.json',
        data_prefix=dict(img=''),
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/val.json',
        data_prefix=dict(img='')))
test_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/test.json',
        data_prefix=dict(img='')))

# NME normalised by the outer eye corners (points 11 and 19; equal to mmpose's NME with
# keypoint_indices=[11, 19]), by the face box, per group and per point, FR@0.1 and AUC@0.1
val_evaluator = dict(_delete_=True, type='LandmarkMetric', per_point=False)
test_evaluator = dict(_delete_=True, type='LandmarkMetric', per_point=True)
