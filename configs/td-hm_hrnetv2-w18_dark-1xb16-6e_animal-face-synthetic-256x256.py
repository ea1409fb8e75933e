# The README demo: a short CPU schedule on the built-in synthetic faces (make demo).
# Same model and pipeline as the main config; only the data and the schedule differ.
_base_ = ['./td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256.py']

data_root = 'work_dirs/demo/data/'
train_cfg = dict(max_epochs=6, val_interval=2)
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', begin=0, end=20, start_factor=0.01, by_epoch=False),
    dict(type='MultiStepLR', begin=0, end=6, milestones=[5], gamma=0.1, by_epoch=True),
]
default_hooks = dict(logger=dict(interval=5))
randomness = dict(seed=0)  # the README quotes its numbers

train_dataloader = dict(
    batch_size=16, num_workers=2, dataset=dict(data_root=data_root))
val_dataloader = dict(
    batch_size=16, num_workers=2, dataset=dict(data_root=data_root))
test_dataloader = dict(
    batch_size=16, num_workers=2, dataset=dict(data_root=data_root))
