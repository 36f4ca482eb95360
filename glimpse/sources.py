"""Where the default model comes from: the ONNX model zoo's ResNet50-v2-7 and the zoo's
ImageNet labels (`synset.txt`), each pinned by its sha256.

The settings (`GLIMPSE_RESNET50_URL`, `…_SHA256`, `…_LABELS_URL`, `…_LABELS_SHA256`) default to
these and may point at a mirror; a download whose checksum differs is never registered.
"""

ZOO = "https://github.com/onnx/models/raw/main/validated/vision/classification"
RESNET50_URL = f"{ZOO}/resnet/model/resnet50-v2-7.onnx"
# `model_sha` of resnet50-v2-7.onnx in the onnx/models ONNX_HUB_MANIFEST.json (102442452 bytes).
RESNET50_SHA256 = "79102261eb6e5fd7af5d27f41316293e388c5cb691e5d25bfb035c4f64fefe31"
# synset.txt at onnx/models 4c46cd00 (31675 bytes): "n01440764 tench, Tinca tinca", 1000 lines.
RESNET50_LABELS_URL = f"{ZOO}/synset.txt"
RESNET50_LABELS_SHA256 = "acf75ef0abe89694b19056e0796401068b459c457baa30335f240c7692857355"
