#!/usr/bin/env bash
# On the lent GPU host (wheels from benchmarks/device_bundle.sh in .whl/): the CUDA tests of the
# trainer client's RLAN readings (issue 18: masked attention, LoRA delta dict, no host sync) and
# the 256-rank run of benchmarks/rules_cost.py (issue 17) on a 16-core host where the service's
# processes have cores to themselves. Results land in $OUT.
#   run(command="bash benchmarks/device_rules.sh", carry=[".whl"])
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD
nproc; python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
echo "== CUDA tests of the trainer client" >&2
python3 -m pytest -q -p no:cacheprovider tests/test_diagnostics.py tests/test_rlan.py tests/test_stability.py \
  -k "not service" 2>&1 | tail -20 | tee "$OUT/cuda_tests.txt"
echo "== 256 ranks x 10 records/s" >&2
python3 - <<'PY' | tee "$OUT/rules_ranks_256.json"
import json, tempfile
from pathlib import Path
from benchmarks.rules_cost import ranks_run
with tempfile.TemporaryDirectory() as work:
    print(json.dumps(ranks_run(Path(work), 256, 10.0, 30.0), indent=1))
PY
