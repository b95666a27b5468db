#!/usr/bin/env bash
# The CUDA checks of issue 17 as one script (< 8 minutes on one H200), for a session lent a GPU.
# Python 3.12 wheels of abTEM, ASE, hydra-core, omegaconf, zarr, cupy-cuda12x and their needs go
# into .whl (ignored; the device tool's README says how) and are installed to /tmp/site first:
#   bash benchmarks/gpu_checks.sh  ->  $OUT/gpu_checks.log
set -uo pipefail
OUT="${OUT:-/tmp/gpu_checks}"; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site:$PWD"
fi
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg PTYCHOBENCH_CACHE="$OUT/cache"
log() { echo "== $* ($(date +%T))"; }
{
  nvidia-smi --query-gpu=name,memory.total --format=csv
  log "CUDA tests (torch on the GPU, abTEM on CuPy against the CPU)"
  timeout 180 python3 -m pytest -q -m cuda tests/ -p no:cacheprovider
  log "one paper-scale MSET iteration: time and peak GPU memory"
  timeout 150 python3 benchmarks/bench_mset_paper.py --device cuda --tilts 2
  log "one tilt of the paper CuAu simulation on the GPU (1024 positions, extrapolated)"
  timeout 120 python3 benchmarks/bench_simulate.py --presets paper --sim-device gpu \
    --positions 1024
  log "small ordering sweep: GPU wall time (the CPU figure is in docs/benchmarks.md)"
  /usr/bin/time -f "small ordering sweep on cuda: %e s" timeout 150 python3 -m experiments.cli \
    -m experiment=ordering scale=small device=cuda progress=false hydra.sweep.dir="$OUT/sweep"
} 2>&1 | tee "$OUT/gpu_checks.log"
