#!/usr/bin/env bash
# On the lent GPU host (see device_bundle.sh): install the wheels, start PostgreSQL on its
# own two cores, then the decision benchmark with the service on two dedicated cores in
# both ingest modes (process = the default, thread = everything in the server process,
# as before), and the GPU overhead benchmark. Results land in $OUT.
# Knobs: DEVICE_RUN_MODES ("process thread"), DEVICE_RUN_GPU (1), DEVICE_RUN_AMP (0).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD
tar -C /tmp -xJf .pgdist/pg15.tar.xz
PG=/tmp/pg/usr/lib/postgresql/15
export LD_LIBRARY_PATH=/tmp/pg/syslib:$PG/lib
as_pg() {  # PostgreSQL refuses to run as root
  python3 -c 'import os, sys; os.setgid(65534); os.setuid(65534); os.execvp(sys.argv[1], sys.argv[1:])' "$@"
}
if [ ! -f /tmp/pgdata/PG_VERSION ]; then  # a machine still warm from the last call has it running already
  mkdir -p /tmp/pgdata /tmp/pgrun && chown 65534:65534 /tmp/pgdata /tmp/pgrun
  as_pg "$PG/bin/initdb" -D /tmp/pgdata -U postgres -A trust > /tmp/pgrun/initdb.log 2>&1 || { cat /tmp/pgrun/initdb.log; exit 1; }
  as_pg taskset -c 2,3 "$PG/bin/pg_ctl" -D /tmp/pgdata -l /tmp/pgrun/pg.log -w start \
    -o "-c jit=off -c unix_socket_directories=/tmp/pgrun -c listen_addresses=127.0.0.1" \
    || { cat /tmp/pgrun/pg.log; exit 1; }
  python3 -c 'import psycopg; psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True).execute("CREATE DATABASE test")'
fi
nproc; python3 --version; git log -1 --format='%h %s' 2>/dev/null || true
for mode in ${DEVICE_RUN_MODES:-process thread}; do
  echo "== decision, ingest mode $mode" >&2
  MONITOR_INGEST_MODE=$mode python3 -m benchmarks.run --only decision --service-cpus 0,1 --client-cpus 4-15 \
    --load-processes 8 --out "$OUT/decision_dedicated_$mode.json"
done
if [ "${DEVICE_RUN_GPU:-1}" = 1 ]; then
  echo "== gpu overhead" >&2
  python3 -m benchmarks.gpu_overhead --device cuda > "$OUT/gpu_fp32.json"
  cat "$OUT/gpu_fp32.json"
fi
if [ "${DEVICE_RUN_AMP:-0}" = 1 ]; then
  python3 -m benchmarks.gpu_overhead --device cuda --amp > "$OUT/gpu_amp.json"
  cat "$OUT/gpu_amp.json"
fi
