#!/usr/bin/env bash
# Peers (MLflow tracking server + client, TensorBoard's SummaryWriter via tensorboardX) in their own
# virtual environment, so their dependencies never touch the service's .venv.
# tensorboardX is TensorBoard's SummaryWriter without torch/TensorFlow (torch.utils.tensorboard is a
# copy of it); keeping torch out of this venv avoids a large download.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=benchmarks/.venv-peers
PYTHON=${PYTHON:-python3}
MLFLOW_VERSION=${MLFLOW_VERSION:-3.17.2}
TBX_VERSION=${TBX_VERSION:-2.6.5}

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import mlflow, tensorboardX" 2>/dev/null; then
  echo "peers venv ready: $VENV"
  exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "mlflow==$MLFLOW_VERSION" "tensorboardX==$TBX_VERSION"
"$VENV/bin/python" -c "import mlflow, tensorboardX; print('mlflow', mlflow.__version__, 'tensorboardX', tensorboardX.__version__)"
echo "peers venv ready: $VENV"
