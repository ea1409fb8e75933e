# Fine-tune anime_face_detector's HRNetV2-W18 (28 points of human anime faces) on animal
# characters: the same layout, so every tensor, the head included, is a valid start.
_base_ = ['./td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256.py']

# anime_face_detector's landmark checkpoint as users have it (.pth of its releases, mmpose 0.x
# names, or .safetensors); put it here or pass --cfg-options load_from=/path/to/file
load_from = 'checkpoints/anime_face_detector_hrnetv2.pth'

# a start close to the goal: lower lr (the original tools recommend 1e-4), shorter schedule
train_cfg = dict(max_epochs=30)
optim_wrapper = dict(optimizer=dict(lr=1e-4))
param_scheduler = [
    dict(type='LinearLR', begin=0, end=100, start_factor=0.01, by_epoch=False),
    dict(type='MultiStepLR', begin=0, end=30, milestones=[20, 27], gamma=0.1, by_epoch=True),
]
auto_scale_lr = dict(base_batch_size=32)
train_dataloader = dict(batch_size=32)
