#!/usr/bin/env bash
# The GPU measurements of issue 17 in one run, on a Linux machine with a GPU driver but without
# Node or a network: `bash scripts/gpu-bench.sh KIT OUT`, KIT the archive scripts/gpu-kit.sh
# wrote. It unpacks the kit, checks that Dawn finds a hardware adapter (it stops rather than time
# SwiftShader), then runs the steps below, most wanted first, each under its own time limit and
# all under DEADLINE seconds (default 480), so that a lease of a few minutes returns every step
# that fitted. OUT receives two files, rewritten after every step: log.txt (each step's output)
# and results.tar.gz (the bench's reports, the profiles, the GPU's clocks sampled every 500 ms).
# STEPS (e.g. "profile splits-") runs only the steps it names after the adapter's check (a word
# ending in a dash names every step that begins with it).
#
# The chip's float32 peak, for the profile's "% of peak", is SMs × float32 lanes per SM × 2 ×
# the maximum SM clock (nvidia-smi, and torch for the SM count and compute capability), or
# PEAK_TFLOPS when set. ALLOW_SOFTWARE=1 lets the run go on against SwiftShader (a rehearsal of
# the script on a machine without a GPU).
set -u
kit=${1:?usage: bash scripts/gpu-bench.sh KIT OUT}
out=${2:?usage: bash scripts/gpu-bench.sh KIT OUT}
deadline=$((SECONDS + ${DEADLINE:-480}))
work=$(mktemp -d)
results="$work/results"
mkdir -p "$results" "$out"
log="$out/log.txt"
: >"$log"
say() { echo "[gpu-bench $(date -u +%H:%M:%S)] $*" | tee -a "$log"; }
pack() { tar -C "$work" -czf "$out/results.tar.gz" results; }

# xz, or Python's lzma where a slim image lacks xz
unxz() { if command -v xz >/dev/null; then xz -dc "$1"; else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"; fi; }
unxz "$kit" | tar -C "$work" -xf - || { say "cannot unpack $kit"; exit 1; }
export PATH="$work:$PATH"

# the Vulkan loader, where the machine has none
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
  for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$work/root"; done
  export LD_LIBRARY_PATH="$work/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  say "Vulkan loader from the kit: $(ls "$work/root/usr/lib/x86_64-linux-gnu" | grep -c so) libraries"
fi
# NVIDIA's driver (a container's mount of it) where the loader does not look by itself
nvidia=/usr/local/nvidia
[ -d "$nvidia/lib64" ] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$nvidia/lib64"
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nvidia/share/vulkan/icd.d/nvidia_icd.json" ] &&
  ! ls /usr/share/vulkan/icd.d/nvidia*.json /etc/vulkan/icd.d/nvidia*.json >/dev/null 2>&1; then
  export VK_DRIVER_FILES="$nvidia/share/vulkan/icd.d/nvidia_icd.json"
  [ -f "$nvidia/share/glvnd/egl_vendor.d/10_nvidia.json" ] && export __EGL_VENDOR_LIBRARY_FILENAMES="$nvidia/share/glvnd/egl_vendor.d/10_nvidia.json"
fi
say "node $(node --version); VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"

peak=${PEAK_TFLOPS:-}
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.memory --format=csv | tee -a "$log" >"$results/gpu.csv"
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,utilization.gpu,power.draw --format=csv -lms 500 >"$results/clocks.csv" 2>/dev/null &
  clocks=$!
  trap 'kill "$clocks" 2>/dev/null' EXIT
  if [ -z "$peak" ]; then
    mhz=$(nvidia-smi --query-gpu=clocks.max.sm --format=csv,noheader,nounits | head -1)
    # float32 lanes per SM: 64 on compute capability 6.0, 7.x and 8.0, 128 otherwise (Pascal to Blackwell)
    peak=$(timeout 60 python3 -c "
import torch
p = torch.cuda.get_device_properties(0)
lanes = 64 if (p.major, p.minor) in [(6, 0), (7, 0), (7, 2), (7, 5), (8, 0)] else 128
print(f'{p.multi_processor_count * lanes * 2 * $mhz / 1e6:.1f}')
print(f'{p.name}: {p.multi_processor_count} SMs, compute capability {p.major}.{p.minor}, {lanes} float32 lanes per SM, {$mhz} MHz', file=__import__('sys').stderr)
" 2>>"$log")
  fi
fi
say "float32 peak for the profile: ${peak:-unknown} TFLOP/s"
peakFlag=()
[ -n "$peak" ] && peakFlag=(--peak-tflops "$peak")

# step NAME SECONDS COMMAND…: runs within its limit and the deadline, output to the log and
# to results/NAME.txt; a step that cannot have 20 s is skipped, as is one that STEPS, when set,
# does not name
step() {
  local name=$1 limit=$2
  shift 2
  if [ -n "${STEPS:-}" ] && [ "$name" != adapter ]; then
    local w wanted=
    for w in $STEPS; do [[ "$name" == "$w" || ( "$w" == *- && "$name" == "$w"* ) ]] && wanted=1; done
    [ -n "$wanted" ] || return 0
  fi
  local left=$((deadline - SECONDS - 10))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 20 ]; then
    say "skip $name: $((deadline - SECONDS)) s left"
    return 0
  fi
  say "step $name (at most $limit s): $*"
  # a process busy in the GPU driver may outlive its TERM: KILL it 5 s later
  timeout -k 5 "$limit" "$@" >"$results/$name.txt" 2>&1
  local rc=$?
  cat "$results/$name.txt" >>"$log"
  say "end $name: exit $rc"
  pack
  return "$rc"
}
cd "$work/bench"
bench=(node bench.mjs --results "$results")
profile=(node profile.mjs "${peakFlag[@]}")

if ! step adapter 60 "${profile[@]}" 'copy 4194304'; then
  # what the Vulkan loader tried, for the next attempt
  VK_LOADER_DEBUG=error,warn,driver timeout -k 5 30 node profile.mjs 'copy 4194304' 2>&1 | head -80 >>"$log"
  say 'no adapter: stopping'
  pack
  exit 1
fi
if grep -q '^adapter: SwiftShader' "$results/adapter.txt" && [ -z "${ALLOW_SOFTWARE:-}" ]; then
  say 'the adapter is SwiftShader, not the GPU: stopping (ALLOW_SOFTWARE=1 goes on)'
  exit 1
fi
# GPU time per kernel, every registered mixer at T = 4096 and the longer cases; % of peak and of the copy
step profile 150 "${profile[@]}"
# what tuneKernels chooses here at the bench's sizes, every kernel choice timed in one run, without and with subgroups
step tune 90 node tune.mjs
step tune-subgroups 90 node tune.mjs --subgroups
# wall times against the references, validated, with tf.matMul and the decode table
step attention 150 "${bench[@]}" --attention --minutes 2
# the tiled passes' rows per invocation and the four lanes per row
for rows in 1 2 4; do step "profile-rows-$rows" 45 "${profile[@]}" --rows "$rows" 'copy' 'flashAttention forward'; done
step profile-subgroups 60 "${profile[@]}" --subgroups 'copy' 'Attention'
# the tiled passes' chunks of the other side ('auto' above), forced, where a launch has few tiles
for splits in 1 4 8 16 32; do step "splits-$splits" 40 "${profile[@]}" --splits "$splits" 'copy' 'flashAttention forward'; done
# dK/dV holding its key rows in registers, as before 'auto' read them from memory on a GPU
step dkv-registers 40 "${profile[@]}" --dkv-keys registers 'copy' 'flashAttention forward+backward'
# the split-K decode with an invocation per chunk, as before 'auto' gave a GPU without subgroups a workgroup per chunk
step split-invocation 40 "${profile[@]}" --split-pass invocation 'copy' 'decode split'
# the split-K decode with a workgroup of four-lane folders per chunk, which 'auto' does not take on a
# device with subgroups (a subgroup per chunk) until a GPU measures it
step split-workgroup-quarters 40 "${profile[@]}" --subgroups --split-pass workgroup 'copy' 'decode split'
# the tiled forward by blocks of scores, which 'auto' does not take until a GPU measures it
step forward-blocks 45 "${profile[@]}" --forward blocks 'copy' 'flashAttention forward T=' 'expressiveAttention forward T='
# the backward's dQ and dK/dV by blocks of scores, likewise
step backward-blocks 45 "${profile[@]}" --dq blocks --dkv blocks 'copy' 'flashAttention forward+backward'
# and with dP by rows, in less workgroup memory (more workgroups at once) than 'blocks' takes where
# the adapter holds dP's other factor staged
step backward-blocks-dp-rows 45 "${profile[@]}" --dq blocks-dp-rows --dkv blocks-dp-rows 'copy' 'flashAttention forward+backward'
# the attention passes compiled without WebGPU's bounds checks (Dawn's disable_robustness; no browser
# runs them so): what the clamp of every array index and the loops' guards cost
step no-robustness 60 "${profile[@]}" --no-robustness 'copy' 'flashAttention forward'
# AverageContext's levels scan with one chunk an invocation, as before 'auto' gave long sequences runs of chunks
step average-run-1 30 "${profile[@]}" --average-run 1 'copy' 'averageContext'
# AverageContext's one-pass scan (decoupled look-back), which 'auto' does not take until a GPU measures it
step average-lookback 30 "${profile[@]}" --scan=lookback 'copy' 'averageContext'
# decode tokens/s, its own deadline a minute inside the step's
step generation 120 "${bench[@]}" --generation --minutes 1
step blocks 60 "${bench[@]}" --blocks
pack
say "done in $SECONDS s"
