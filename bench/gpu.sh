#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one run on a CUDA machine (about 10 minutes on one
# H200), each command bounded so that one slow part cannot take the others' time:
#     bash bench/gpu.sh 2>&1 | tee gpu_figures.txt
# Embedded or synthetic data only (digits, PNGs the bench writes): nothing is downloaded.
set -u
run() { echo "== $*"; timeout "$1" "${@:2}" || echo "(exit $?)"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
run 120 python bench/routing.py --device cuda --width 256 --repeats 10
run 120 python bench/train_settings.py --device cuda --preset cifar10 --data digits --steps 10 --rounds 3
run 150 python bench/train_settings.py --device cuda --setting compile --preset cifar10 --data digits --steps 10
run 120 python bench/data_pipeline.py --device cuda --images 2000 --steps 20 --rounds 3
run 60 python bench/inception_speed.py --device cuda --images 5000 --batches 100,200,500
run 200 python bench/ray_train.py --device cuda --preset cifar10 --data digits --batch 64
run 240 python bench/eval_cost.py --device cuda --preset cifar10 --data digits --steps 500 --eval-every 500
