# Entry points; each sets up the venv first (idempotent, seconds when already done).
# VENV: the virtual environment, .venv by default (make test VENV=/path/to/venv); setup_env.sh
# reads it from the environment, a relative one from the repository root.
VENV ?= .venv
PY := $(VENV)/bin/python
export VENV
DEMO_CONFIG := configs/td-hm_hrnetv2-w18_dark-1xb16-10e_animal-face-synthetic-256x256.py
DEMO_DIR := work_dirs/demo

.PHONY: setup demo test clean-demo

setup:
	bash tools/setup_env.sh

# Synthetic faces -> COCO splits -> a short CPU training -> test NME -> evaluation report with
# a CED plot and pictures, all under work_dirs/demo.
demo: setup
	$(PY) tools/make_synthetic_dataset.py --out-dir $(DEMO_DIR)/data --num-images 160 \
		--min-size 256 --max-size 320
	$(PY) tools/dataset.py --annotation-dir $(DEMO_DIR)/data/landmarks \
		--image-dir $(DEMO_DIR)/data/images --output-dir $(DEMO_DIR)/data
	$(PY) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_DIR)
	$(PY) tools/test.py $(DEMO_CONFIG) "$$(ls -t $(DEMO_DIR)/best_NME_epoch_*.pth | head -n 1)" \
		--work-dir $(DEMO_DIR)
	$(PY) tools/evaluate.py --checkpoint "$$(ls -t $(DEMO_DIR)/best_NME_epoch_*.pth | head -n 1)" \
		--image-dir $(DEMO_DIR)/data/images --annotation-dir $(DEMO_DIR)/data/landmarks \
		--split-file $(DEMO_DIR)/data/test.txt --output-dir $(DEMO_DIR)/eval --visualize \
		--worst-first

test: setup
	$(PY) -m pytest

clean-demo:
	rm -rf $(DEMO_DIR)
