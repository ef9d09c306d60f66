#!/usr/bin/env bash
# Build what the decision and GPU benchmarks need on a lent GPU host that has no network
# (Python 3.12 with torch, no PostgreSQL, none of our server dependencies):
#   .whl/      cp312 wheels of the service's dependencies, pinned to this venv's versions
#   .pgdist/   this machine's PostgreSQL 15 (Debian) binaries + the shared libraries they
#              need, as one xz tarball (jit left out)
# Both folders are git-ignored via .git/info/exclude. Then, with the device tool:
#   run(command="bash benchmarks/device_run.sh", carry=[".whl", ".pgdist"])
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || printf '/.whl/\n/.pgdist/\n' >> .git/info/exclude
PLATFORMS=""
for tag in manylinux_2_17 manylinux2014 manylinux_2_24 manylinux_2_27 manylinux_2_28 manylinux_2_31 manylinux_2_34 manylinux1; do
  PLATFORMS="$PLATFORMS --platform ${tag}_x86_64"
done
PACKAGES="fastapi starlette uvicorn httptools SQLAlchemy greenlet alembic Mako psycopg psycopg-binary pydantic
  pydantic_core annotated-types typing-inspection pydantic-settings python-dotenv plotly narwhals tsdownsample
  standardwebhooks typing_extensions anyio opentelemetry-api"
rm -rf .whl && mkdir .whl
for name in $PACKAGES; do
  version=$(.venv/bin/python -m pip show "$name" | awk '/^Version:/{print $2}')
  echo "wheel $name==$version" >&2
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    $PLATFORMS -d .whl "$name==$version" 2>&1 | grep -v '^WARNING' || true
done
stage=$(mktemp -d)
# The Debian layout, under pg/: PostgreSQL finds share/ and lib/ relative to its binaries.
mkdir -p "$stage/pg/usr/lib/postgresql/15" "$stage/pg/usr/share/postgresql" "$stage/pg/syslib"
cp -a /usr/lib/postgresql/15/bin /usr/lib/postgresql/15/lib "$stage/pg/usr/lib/postgresql/15/"
rm -rf "$stage"/pg/usr/lib/postgresql/15/lib/llvmjit* "$stage/pg/usr/lib/postgresql/15/lib/bitcode"
cp -a /usr/share/postgresql/15 "$stage/pg/usr/share/postgresql/"
for bin in postgres initdb pg_ctl pg_isready; do ldd "/usr/lib/postgresql/15/bin/$bin"; done \
  | awk '/=>/{print $3}' | sort -u | grep -v -E 'libc\.so|libm\.so|libstdc|libgcc_s|libresolv|ld-linux' \
  | xargs -I{} cp -L {} "$stage/pg/syslib/"
rm -rf .pgdist && mkdir .pgdist
echo "compressing PostgreSQL (xz)" >&2
tar -C "$stage" -cf - pg | xz -T2 -6 > .pgdist/pg15.tar.xz
rm -rf "$stage"
du -sh .whl .pgdist >&2
