#!/usr/bin/env bash
# Runs the whole service (API, one worker, its own Redis) on a default model.
#   ResNet50 (ONNX model zoo) when it can be fetched; otherwise the EfficientNet-Lite0 in
#   ../shared/models, where that exists. Extra arguments go to `glimpse up`.
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
export GLIMPSE_MODELS_DIR="${GLIMPSE_MODELS_DIR:-$ROOT/models}"
labels="$ROOT/../shared/models/imagenet1k_labels.txt"
if [ -z "${GLIMPSE_DEFAULT_MODEL:-}" ]; then
  if [ -f "$GLIMPSE_MODELS_DIR/resnet50/model.json" ] || \
     { [ -f "$labels" ] && glimpse models fetch resnet50 --labels "$labels"; }; then
    export GLIMPSE_DEFAULT_MODEL=resnet50
  elif [ -f "$ROOT/../shared/models/efficientnet-lite0.onnx" ]; then
    echo "serve: using the shared EfficientNet-Lite0 as the default model" >&2
    [ -f "$GLIMPSE_MODELS_DIR/efficientnet-lite0/model.json" ] || \
      glimpse models add efficientnet-lite0 "$ROOT/../shared/models/efficientnet-lite0.onnx" \
        --labels "$labels" --preset imagenet-squash
    export GLIMPSE_DEFAULT_MODEL=efficientnet-lite0
  else
    echo "serve: no model: run 'glimpse models fetch resnet50 --labels FILE' or 'glimpse models add'" >&2
    exit 1
  fi
fi
exec glimpse up "$@"
