#!/usr/bin/env bash
# Packs what scripts/gpu-bench.sh needs on a Linux x86-64 GPU machine that has neither Node nor
# npm, nor a network: this machine's Node binary, the bench and profiler bundled into single
# files with Dawn's `webgpu` addon (scripts/bench-bundle.mjs), and the Vulkan loader's Debian
# packages (the GPU driver itself is the machine's). Writes one archive, .gpu-kit/kit.tar.xz
# (29 MB on 2026-12-03; .gpu-kit/ is ignored by git). Run it from the repository after `npm ci`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(uname -m)" = x86_64 ] || { echo "gpu-kit: this machine is $(uname -m); the kit carries its Node binary, so build it on x86-64." >&2; exit 1; }
kit=.gpu-kit
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

node scripts/bench-bundle.mjs "$stage/bench"
cp "$(command -v node)" "$stage/node"

# the Vulkan loader (and the GL dispatch libraries NVIDIA's Vulkan driver links), amd64, as
# Debian packages to unpack there; without a network here the kit goes without them
mkdir -p "$stage/debs" "$stage/apt/partial"
apt=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$stage/apt" -oDebug::NoLocking=1)
if apt-get "${apt[@]}" update >/dev/null 2>&1 &&
  (cd "$stage/debs" && apt-get "${apt[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null 2>&1); then
  echo "gpu-kit: Vulkan loader packages: $(cd "$stage/debs" && ls | tr '\n' ' ')"
else
  echo "gpu-kit: apt-get could not download the Vulkan loader; the kit relies on the GPU machine's own libvulkan.so.1." >&2
fi
rm -rf "$stage/apt"

mkdir -p "$kit"
tar -C "$stage" -cf - node bench debs | xz -T0 -6 >"$kit/kit.tar.xz"
echo "gpu-kit: wrote $kit/kit.tar.xz ($(du -m "$kit/kit.tar.xz" | cut -f1) MB, $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src kernels bench || echo ', with uncommitted changes'))"
