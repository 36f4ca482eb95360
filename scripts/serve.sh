#!/usr/bin/env bash
# Runs the whole service (API, one worker, its own Redis) on the models folder's default
# model. Extra arguments go to `glimpse up` (--host, --port, --workers).
#
# The models folder is GLIMPSE_MODELS_DIR (default ~/.local/share/glimpse/models). When it has
# no default model yet, `glimpse models init` fetches ResNet50 and its labels (pinned sha256s;
# GLIMPSE_RESNET50_URL and GLIMPSE_RESNET50_LABELS_URL name a mirror). Where that cannot be
# fetched, an EfficientNet-Lite0 in GLIMPSE_LOCAL_MODELS (default ../shared/models, this
# project's development machines) stands in; otherwise it stops with one line on what to do.
GLIMPSE_EXTRAS="${GLIMPSE_EXTRAS-}" GLIMPSE_DEBS="redis-server" \
  source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
local_models="${GLIMPSE_LOCAL_MODELS:-$ROOT/../shared/models}"
if ! init_error="$(glimpse models init 2>&1 >/dev/null)"; then
  if [ -f "$local_models/efficientnet-lite0.onnx" ] && [ -f "$local_models/imagenet1k_labels.txt" ]; then
    echo "serve: ResNet50 cannot be fetched; serving the EfficientNet-Lite0 in $local_models" >&2
    glimpse models add efficientnet-lite0 "$local_models/efficientnet-lite0.onnx" \
      --labels "$local_models/imagenet1k_labels.txt" --preset imagenet-squash --default --force \
      >/dev/null
  else
    echo "serve: ${init_error#glimpse: }" >&2
    exit 1
  fi
fi
echo "serve: default model $(glimpse models default)" >&2
exec glimpse up "$@"
