#!/usr/bin/env bash
# Prepares what bench/gpu.py's device run carries: the wheels bench/gpu-requirements.txt names,
# and nothing else (--no-deps), as Python 3.12 manylinux x86-64 wheels in .whl/ (ignored by
# git), plus the shared EfficientNet-Lite0 as bench/models/efficientnet-lite0.onnx (ignored:
# *.onnx). Prints the payload's size: with the repository it must stay under 64 MiB.
#
#     bash bench/gpu_wheels.sh        # then run the command in bench/gpu.py's docstring
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
[ -x "$py" ] || py=python3
rm -rf .whl
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl -r bench/gpu-requirements.txt 2>&1 | { grep -v "is ignored: it is neither" || true; }
expected=$(grep -cE '^[A-Za-z0-9]' bench/gpu-requirements.txt)
got=$(find .whl -type f -name '*.whl' | wc -l)
if [ "$got" != "$expected" ]; then
  echo "gpu_wheels: $got wheels for $expected requirements" >&2
  exit 1
fi
mkdir -p bench/models
cp -f "${EFFICIENTNET:-../shared/models/efficientnet-lite0.onnx}" bench/models/efficientnet-lite0.onnx
du -cb .whl/*.whl bench/models/efficientnet-lite0.onnx | tail -1 | awk '{printf "payload %.1f MiB\n", $1 / 1048576}'
