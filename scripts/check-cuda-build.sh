#!/usr/bin/env bash
# Builds the CUDA variant (`cargo build --release --features cuda`) on a machine without a GPU.
# The CUDA toolkit comes from NVIDIA's PyPI wheels (nvcc, the runtime, cuBLAS, cuRAND and CCCL
# headers and libraries) installed into a venv. The CUDA 13 wheels are used: the cu12 nvcc
# wheels ship ptxas only, without the nvcc driver. They all unpack into one CUDA root
# (site-packages/nvidia/cu13: bin/, include/, lib/, nvvm/). Every piece is pinned to one
# series: nvcc's own dependencies (crt, nvvm) are not, and a newer cicc writes PTX that the
# series' ptxas refuses.
#
#   scripts/check-cuda-build.sh                        # compute capability 8.0 (A100)
#   CUDA_COMPUTE_CAP=90 scripts/check-cuda-build.sh    # H100
#
# Needs python3 with venv, a C++ compiler and access to PyPI and crates.io. The build log goes
# to target/cuda-build.log, the binary to target/release/transfer-studio.
set -euo pipefail
cd "$(dirname "$0")/.."

# cudarc 0.19 (candle 0.11) knows CUDA up to 13.4.
CUDA_SERIES=${CUDA_SERIES:-13.0}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-80}
VENV=${CUDA_VENV:-target/cuda-venv}

if [ ! -x "$VENV/bin/pip" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  "nvidia-cuda-nvcc==${CUDA_SERIES}.*" \
  "nvidia-cuda-crt==${CUDA_SERIES}.*" \
  "nvidia-nvvm==${CUDA_SERIES}.*" \
  "nvidia-cuda-runtime==${CUDA_SERIES}.*" \
  "nvidia-cuda-nvrtc==${CUDA_SERIES}.*" \
  "nvidia-cuda-cccl==${CUDA_SERIES}.*" \
  "nvidia-cublas==${CUDA_SERIES}.*" \
  "nvidia-curand"
ROOT=$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')
[ -x "$ROOT/bin/nvcc" ] || { echo "no nvcc under $ROOT" >&2; exit 1; }
# The linker wants unversioned names (libcudart.so); some wheels ship only libcudart.so.13.
for lib in "$ROOT"/lib/lib*.so.*; do
  base=${lib%%.so.*}.so
  [ -e "$base" ] || ln -s "$(basename "$lib")" "$base"
done
[ -e "$ROOT/lib64" ] || ln -s lib "$ROOT/lib64"

# libcuda comes with the GPU driver, not the toolkit wheels. Like the toolkit's own
# lib/stubs/libcuda.so, a stub with the driver API's names (those cudarc declares) lets the
# binary link; its soname is the driver's, so a GPU machine loads the real library. (cudarc's
# source is there only once fetched: a CPU build never downloads it.)
cargo fetch --locked --quiet
CUDARC_SYS=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$(
  sed -n '/^name = "cudarc"/{n;s/version = "\(.*\)"/\1/p}' Cargo.lock)"/src/driver/sys/mod.rs | head -1)
mkdir -p "$ROOT/lib/stubs"
grep -oE '^\s+fn cu[A-Za-z0-9_]+\(' "$CUDARC_SYS" | sed -E 's/^\s+fn //; s/\($//' | sort -u \
  | sed 's/.*/void &(void) {}/' > "$ROOT/lib/stubs/libcuda_stub.c"
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$ROOT/lib/stubs/libcuda.so" \
  "$ROOT/lib/stubs/libcuda_stub.c"

export CUDA_ROOT=$ROOT CUDA_PATH=$ROOT CUDA_HOME=$ROOT CUDA_TOOLKIT_ROOT_DIR=$ROOT
export PATH=$ROOT/bin:$PATH
export LIBRARY_PATH=$ROOT/lib:$ROOT/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}
nvcc --version | tail -2
echo "building with CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"
cargo build --release --locked --features cuda 2>&1 | tee target/cuda-build.log
echo "built target/release/transfer-studio; on a GPU machine run it with LD_LIBRARY_PATH=$ROOT/lib"
