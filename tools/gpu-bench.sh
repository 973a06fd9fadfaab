#!/usr/bin/env bash
# The benchmark on a lent NVIDIA machine (Vulkan through Dawn), where nothing can be installed: everything it needs
# travels in one carried folder, .carry/gpubench (ignored by git).
#
#   here, once:        bash tools/gpu-bench.sh pack
#       bundles bench/run.ts and bench/nice-probe.ts with esbuild (all JavaScript inlined: TensorFlow.js too), and
#       packs with xz: this node binary, the two native packages (webgpu's linux-x64 dawn.node, onnxruntime-node's
#       linux/x64 libraries + onnxruntime-common), and Debian's libvulkan1 .deb (the Vulkan loader; the NVIDIA image
#       has the driver's ICD but maybe no loader). About 45 MB.
#   on the machine:    bash tools/gpu-bench.sh run [--quick]
#       through the device tool: run(command="bash tools/gpu-bench.sh run", carry=[".carry/gpubench"], timeout_s=600)
#       unpacks the loader into / (dpkg -x) and the payload into the checkout, points the loader at the NVIDIA ICD
#       if it finds none, and runs `node build/bench/run.mjs` (all sections, peers included) into $OUT (or
#       ./gpubench-out): RESULTS.md, results.json, bench.log. Where the machine's python3 has PyTorch with CUDA,
#       the torch section also measures tools/bench_torch.py --device cuda in fp32 and fp16 (--torch-cuda).
#       The full bench fits in the 10-minute command limit on an H100; --quick for a first look.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
P=.carry/gpubench

pack() {
  [ "$(uname -m)" = x86_64 ] || { echo "pack on x86-64: the lent machines are x86-64" >&2; exit 1; }
  [ -d node_modules/webgpu ] || { echo "node_modules missing: npm install (or node tools/setup.mjs) first" >&2; exit 1; }
  for m in @tensorflow/tfjs @tensorflow/tfjs-backend-webgpu onnxruntime-node onnxruntime-common; do
    [ -d "node_modules/$m" ] || { echo "node_modules/$m missing: npm install" >&2; exit 1; }
  done
  rm -rf "$P"
  mkdir -p "$P/stage/build/bench" "$P/stage/node-bin" "$P/debs"
  local esb=node_modules/.bin/esbuild
  for b in run nice-probe; do
    "$esb" "bench/$b.ts" --bundle --platform=node --format=esm --target=es2022 --loader:.wgsl=text --log-level=warning \
      --external:webgpu --external:onnxruntime-node \
      "--banner:js=import { createRequire as __ser_createRequire } from 'node:module'; const require = __ser_createRequire(import.meta.url);" \
      --outfile="$P/stage/build/bench/$b.mjs"
  done
  cp "$(command -v node)" "$P/stage/node-bin/node"
  local nm="$P/stage/node_modules"
  mkdir -p "$nm/webgpu/dist/linux-x64" "$nm/onnxruntime-node/bin/napi-v6/linux/x64"
  cp node_modules/webgpu/{package.json,index.js} "$nm/webgpu/"
  cp node_modules/webgpu/dist/linux-x64/dawn.node "$nm/webgpu/dist/linux-x64/"
  cp -r node_modules/onnxruntime-node/{package.json,dist} "$nm/onnxruntime-node/"
  cp node_modules/onnxruntime-node/bin/napi-v6/linux/x64/* "$nm/onnxruntime-node/bin/napi-v6/linux/x64/"
  cp -r node_modules/onnxruntime-common "$nm/"
  echo "[gpu-bench] compressing (xz, 2 threads; a minute or two)"
  tar -C "$P/stage" -cf - . | xz -9 -T2 > "$P/payload.tar.xz"
  rm -rf "$P/stage"
  # the Vulkan loader, for amd64, from this machine's apt sources (downloaded, not installed)
  (cd "$P/debs" && apt-get download libvulkan1 >/dev/null 2>&1) || echo "[gpu-bench] warning: could not download libvulkan1; the run relies on the machine's loader" >&2
  du -sh "$P" "$P"/* "$P"/debs/* 2>/dev/null
  echo "[gpu-bench] packed. Now: run(command=\"bash tools/gpu-bench.sh run\", carry=[\"$P\"], timeout_s=600)"
}

run() {
  local quick=""
  [ "${1:-}" = "--quick" ] && quick="--quick"
  [ -f "$P/payload.tar.xz" ] || { echo "$P/payload.tar.xz missing: bash tools/gpu-bench.sh pack here, and carry $P" >&2; exit 1; }
  local out="${OUT:-$here/gpubench-out}"
  mkdir -p "$out"
  exec > >(tee "$out/bench.log") 2>&1
  echo "[gpu-bench] $(date -u +%FT%TZ) on $(hostname)"
  command -v nvidia-smi >/dev/null && nvidia-smi -L || true
  # the Vulkan loader, unpacked into / (what the device notes recommend; the machine is given back afterwards)
  if ! ldconfig -p | grep -q 'libvulkan.so.1'; then
    for f in "$P"/debs/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done
    ldconfig
  fi
  ldconfig -p | grep -q 'libvulkan.so.1' || { echo "[gpu-bench] no Vulkan loader (libvulkan.so.1)" >&2; exit 1; }
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  if ! ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1 && [ -f "$icd" ]; then
    export VK_DRIVER_FILES="$icd" VK_ICD_FILENAMES="$icd"
    echo "[gpu-bench] VK_DRIVER_FILES=$icd"
  fi
  if command -v xz >/dev/null; then
    xz -dc "$P/payload.tar.xz" | tar -xf -
  else
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(".")' "$P/payload.tar.xz"
  fi
  local node="$here/node-bin/node"
  "$node" --version
  local torch=""
  if command -v python3 >/dev/null && python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    export SER_PYTHON="$(command -v python3)"
    torch="--torch-cuda"
    echo "[gpu-bench] PyTorch with CUDA: $SER_PYTHON ($(python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))'))"
  else
    echo "[gpu-bench] no PyTorch with CUDA here: PyTorch rows are CPU only (or skipped without PyTorch)"
  fi
  "$node" build/bench/run.mjs $quick $torch "--out=$out"
}

case "${1:-}" in
  pack) pack ;;
  run) shift; run "$@" ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
