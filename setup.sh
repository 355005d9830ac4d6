#!/usr/bin/env bash
# Install Kinema and its test tools into ./.venv.
#
# The venv sees the system's site-packages, so a torch that is already installed (a CUDA build
# on a GPU box, say) is used as it is. Only when no torch is importable do we install
# torch==2.13.0 first: on our CPU machines pip takes the local CPU wheel, so the `torch>=2.4`
# requirement is already met and pip never reaches for a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")"

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv --system-site-packages .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup: no torch found, installing torch==${KINEMA_TORCH_VERSION:-2.13.0}"
  "${pip[@]}" "torch==${KINEMA_TORCH_VERSION:-2.13.0}"
fi
"${pip[@]}" -e ".[dev${KINEMA_EXTRAS:+,$KINEMA_EXTRAS}]"
# scenedetect (the curate extra) pulls opencv-python, which writes its cv2 over the headless one.
# Keep a single, headless cv2: remove the GUI build and reinstall the headless files it overwrote.
if .venv/bin/python -c "import importlib.metadata as m; m.version('opencv-python')" 2>/dev/null; then
  headless=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('opencv-python-headless'))")
  .venv/bin/python -m pip uninstall --quiet --yes opencv-python
  "${pip[@]}" --force-reinstall --no-deps "opencv-python-headless==$headless"
fi
.venv/bin/python -c "import torch, kinema; print(f'setup: kinema {kinema.__version__}, torch {torch.__version__}')"
