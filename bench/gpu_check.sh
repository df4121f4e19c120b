#!/usr/bin/env bash
# The GPU check of issue 13, prepared to run once on a lent GPU machine (which may have no
# network): the CUDA-marked tests, then bench/decode.py --device cuda. Everything it prints
# goes to $OUT (gpu_check.log, pytest-cuda.txt, bench-cuda.txt, env.txt).
#
#   bash bench/gpu_check.sh [tests,bench,profile]   # from the repository root; carry .gpu-wheels
#
# The argument picks the steps (default: tests,bench); `profile` runs bench/gpu_profile.py
# (where a decode step and a first token spend their time) into profile-cuda.txt.
#
# Python: the first of python3 / python whose torch sees a GPU, in a venv that sees its
# packages (--system-site-packages, plus a .pth for a python that is itself a venv), so
# the CUDA torch there is used as it is. Packages the machine lacks come from the wheels
# in .gpu-wheels (platformdirs, tomlkit, tomli_w, hatchling, ...; `pip install --no-index`),
# then gptterm itself with `pip install --no-deps -e .`. Only when no python has a CUDA
# torch and the network answers does it install one (pip's CUDA wheel) into the venv.
# About 3-5 minutes on an H100, most of it the bench.
set -uo pipefail
cd "$(dirname "$0")/.."
STEPS=",${1:-tests,bench},"
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1
export GPTTERM_DATA_DIR=/tmp/gptterm-gpu-data GPTTERM_CONFIG_DIR=/tmp/gptterm-gpu-config
VENV=/tmp/gptterm-gpu-venv
WHEELS=.gpu-wheels
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }

step "machine"
nvidia-smi 2>&1 | head -15

step "a python whose torch sees the GPU"
BASE=""
for cand in python3 python /opt/torch/.venv/bin/python3; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c \
      'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    BASE="$(command -v "$cand")"; break
  fi
done
echo "base python: ${BASE:-none}"

PY=""
if [ -n "$BASE" ]; then
  "$BASE" -m venv --system-site-packages "$VENV" && PY="$VENV/bin/python"
  if [ -n "$PY" ]; then
    # A base python that is itself a venv: its packages are not "system" ones to the new
    # venv, so point at them with a .pth file.
    "$BASE" -c 'import site; print("\n".join(site.getsitepackages()))' \
      > "$("$PY" -c 'import site; print(site.getsitepackages()[0])')/gptterm-base.pth"
    "$PY" -c 'import torch; assert torch.cuda.is_available()' || PY=""
  fi
  [ -z "$PY" ] && PY="$BASE"   # no usable venv: the base python, packages via --target
elif timeout 20 python3 -c 'import urllib.request; urllib.request.urlopen("https://pypi.org", timeout=10)' 2>/dev/null; then
  echo "no CUDA torch here: installing one into a fresh venv (network is up)"
  python3 -m venv "$VENV" && PY="$VENV/bin/python"
  "$PY" -m pip install -q "torch>=2.4,<2.14" || { echo "FAILED: pip install torch"; exit 1; }
  "$PY" -m pip install -q -e '.[dev]' || { echo "FAILED: pip install -e .[dev]"; exit 1; }
else
  echo "FAILED: no python here has a torch that sees a GPU, and there is no network"
  exit 1
fi
echo "python: $PY"

step "packages"
# Only the pure-Python wheels gptterm's engine and its install need (the folder may hold
# others, for other checks, built for another Python).
need=()
for name in platformdirs tomlkit tomli_w hatchling trove_classifiers; do
  for w in "$WHEELS"/"$name"-*-py3-none-any.whl; do [ -f "$w" ] && need+=("$w"); done
done
echo "wheels: ${need[*]:-none}"
if [ ${#need[@]} -gt 0 ]; then
  if [ "$PY" = "$BASE" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gptterm-site \
      "${need[@]}" && export PYTHONPATH=/tmp/gptterm-site
  else
    "$PY" -m pip install -q --no-index --no-deps --no-compile "${need[@]}"
  fi
fi
if [ "$PY" != "$BASE" ] && "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . ; then
  echo "gptterm installed editable"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  echo "gptterm from PYTHONPATH=$PYTHONPATH"
fi
# The bench's GPT-2 tokenizer is rebuilt from whisper's BPE ranks (no network there).
mkdir -p "$HOME/.cache/gptterm-bench"
[ -f "$WHEELS/gpt2.tiktoken" ] && cp -n "$WHEELS/gpt2.tiktoken" "$HOME/.cache/gptterm-bench/"
"$PY" - <<'EOF' 2>&1 | tee "$OUT/env.txt"
import importlib, sys
import torch
print("python", sys.version.split()[0], sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
for name in ("transformers", "tokenizers", "safetensors", "platformdirs", "tomlkit",
             "pytest", "hypothesis", "gptterm"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"), getattr(module, "__file__", ""))
    except Exception as exc:
        print(name, "MISSING:", exc)
EOF

if [[ $STEPS == *,profile,* ]]; then
  step "bench/gpu_profile.py"
  timeout 300 "$PY" bench/gpu_profile.py 2>&1 | tee "$OUT/profile-cuda.txt"
  echo "profile exit: ${PIPESTATUS[0]}"
fi

if [[ $STEPS == *,tests,* ]]; then
  step "pytest -m cuda"
  timeout 300 "$PY" -m pytest -m cuda -q -p no:cacheprovider tests/test_cuda.py \
    2>&1 | tee "$OUT/pytest-cuda.txt"
  echo "pytest exit: ${PIPESTATUS[0]}"
fi

if [[ $STEPS == *,bench,* ]]; then
  step "bench/decode.py --device cuda"
  timeout 360 "$PY" bench/decode.py --device cuda --repeats 3 --tokens 64 \
    2>&1 | tee "$OUT/bench-cuda.txt"
  echo "bench exit: ${PIPESTATUS[0]}"
fi
step "done"
