# The README demo: a short CPU schedule on the built-in synthetic faces (make demo).
# Same model and pipeline as the main config; only the data and the schedule differ.
_base_ = ['./td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256.py']

data_root = 'work_dirs/demo/data/'
# about 1,100 training samples, whatever the number of faces: 10 epochs of the demo's 112 faces
# at batch 16 (70 steps), a few minutes on 2 CPU cores; the main recipe's lr at batch 16
# (2e-3 x sqrt(16/64) = 1e-3), stated for batch 16 so that other runners use it too
schedule = dict(samples=1_100, min_epochs=1, warmup=0.05, validations=5, lr_batch=16)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
auto_scale_lr = dict(base_batch_size=16)
# as written, for other runners
train_cfg = dict(max_epochs=10, val_interval=2)
param_scheduler = [
    dict(type='LinearLR', begin=0, end=0.5, start_factor=0.001, by_epoch=True,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', begin=0.5, end=10, T_max=9.5, eta_min_ratio=0.01,
         by_epoch=True, convert_to_iter_based=True),
]
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=2))
randomness = dict(seed=0)  # the README quotes its numbers

train_dataloader = dict(
    batch_size=16, num_workers=2, dataset=dict(data_root=data_root))
val_dataloader = dict(
    batch_size=16, num_workers=2, dataset=dict(data_root=data_root))
test_dataloader = dict(
    batch_size=16, num_workers=2, dataset=dict(data_root=data_root))
