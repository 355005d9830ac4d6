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
.venv/bin/python -c "import torch, kinema; print(f'setup: kinema {kinema.__version__}, torch {torch.__version__}')"
