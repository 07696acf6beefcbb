#!/usr/bin/env bash
# A GPU session's checks for issue 19, prepared so that a session lent a device spends its 15 minutes measuring.
# On this machine first: bash ../shared/tools/device-wheels.sh pytest-xdist execnet   (wheels into .whl/)
# Then two `device` runs (carry ".whl"), each starting with shared/tools/device-run.sh's install lines:
#   1. bash benchmarks/device_session.sh speed   (~6 min: GPU tests, issue 19's speed table, the GPU variant's
#      learning on 3 seeds)
#   2. bash benchmarks/device_session.sh suite   (the default suite with CUDA visible, 16 workers)
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
    step device_speed 300 python3 benchmarks/device_speed.py --configs cuda,cuda_bf16,cpu1,cpu
    step ppo_minatar_gpu 240 python3 benchmarks/ppo_minatar.py --preset gpu --device cuda --seeds 3 --jobs 3
    ;;
  suite)
    workers=()
    python3 -c "import xdist" 2>/dev/null && workers=(-n 16)
    step default_suite 540 python3 -m pytest -q -p no:cacheprovider -o addopts="-m 'not slow'" "${workers[@]}" tests
    ;;
  *)
    echo "usage: bash benchmarks/device_session.sh speed|suite" >&2
    exit 2
    ;;
esac
