#!/usr/bin/env bash
# A GPU session's checks for issue 19, prepared so that a session lent a device spends its 15 minutes measuring.
# On this machine first: bash ../shared/tools/device-wheels.sh pytest-xdist execnet   (wheels into .whl/)
# Then up to three `device` runs (carry ".whl"), in this order of value, each starting with
# shared/tools/device-run.sh's install lines (a run is at most 10 minutes; the session has 15 in all):
#   1. bash benchmarks/device_session.sh speed   (<= 7 min: the GPU tests, issue 19's CUDA-against-CPU table)
#   2. bash benchmarks/device_session.sh learn   (<= 4 min: the GPU variant's learning on 3 seeds, and its speed)
#   3. bash benchmarks/device_session.sh suite   (<= 9 min: the default suite with CUDA visible, 16 workers)
# Every step is time-boxed and writes under $OUT (the device run brings it back); a step that fails does not stop
# the next.
set -u
out="${OUT:-device-out}"
mkdir -p "$out"
step() {  # step NAME SECONDS COMMAND...: runs COMMAND with a time limit, stdout to NAME.out, stderr to NAME.err
    local name=$1 seconds=$2
    shift 2
    echo "== $name (at most ${seconds}s)"
    local start=$SECONDS
    timeout "$seconds" "$@" > "$out/$name.out" 2> "$out/$name.err"
    echo "   exit $? after $((SECONDS - start))s"
    tail -n 3 "$out/$name.out"
}
case "${1:-speed}" in
  speed)
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
    step gpu_tests 120 python3 -m pytest -q -p no:cacheprovider -m gpu -o addopts="" tests
    step device_speed 390 python3 benchmarks/device_speed.py --configs cuda,cuda_bf16,cpu1,cpu
    ;;
  learn)
    step ppo_minatar_gpu 240 python3 benchmarks/ppo_minatar.py --preset gpu --device cuda --seeds 3 --jobs 3
    ;;
  suite)
    workers=()
    python3 -c "import xdist" 2>/dev/null && workers=(-n 16)
    step default_suite 540 python3 -m pytest -q -p no:cacheprovider -o addopts="-m 'not slow'" ${workers[@]+"${workers[@]}"} tests
    ;;
  *)
    echo "usage: bash benchmarks/device_session.sh speed|learn|suite" >&2
    exit 2
    ;;
esac
