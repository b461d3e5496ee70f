#!/usr/bin/env bash
# Prepares, HERE (a machine that reaches the package index), what benchmarks/gpu_check.sh needs on a GPU
# machine with no network, and prints the size of everything that travels (the limit is 64 MiB):
#   .whl/      Python 3.12 wheels of the packages train_ssl imports that the GPU machine lacks (hydra-core,
#              omegaconf, antlr4-python3-runtime), at the versions of this checkout's .venv;
#   .devdata/  ../shared/cifar10/{jpeg/, build_cifar10.py, labels.npz} (the script reads both).
# Both are git-ignored (.gitignore and .git/info/exclude) and travel as `carry: [".whl", ".devdata"]`.
#   bash benchmarks/prepare_gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
SHARED=${SHARED:-../shared/cifar10}
PACKAGES=(hydra-core omegaconf antlr4-python3-runtime)
LIMIT_MIB=64

EXCLUDE=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$EXCLUDE")"; touch "$EXCLUDE"
for p in /.whl/ /.devdata/; do grep -qxF "$p" "$EXCLUDE" || echo "$p" >>"$EXCLUDE"; done

mkdir -p .whl
FREEZE=$("$PY" -m pip freeze)
for name in "${PACKAGES[@]}"; do
  spec=$(grep -i "^${name}==" <<<"$FREEZE" || true)
  [ -n "$spec" ] || { echo "$name is not installed in $PY's environment: install the project first" >&2; exit 1; }
  rm -f .whl/"$(tr '-' '_' <<<"$name")"-*.whl  # one version of each: two stop the install there
  if ! "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .whl "$spec" 2>/dev/null; then
    "$PY" -m pip wheel -q --no-deps -w .whl "$spec"  # sdist only (antlr4-python3-runtime): a pure-Python wheel
  fi
done

rm -rf .devdata; mkdir -p .devdata
cp -r "$SHARED/jpeg" "$SHARED/build_cifar10.py" "$SHARED/labels.npz" .devdata/

echo "wheels:"; ls -1 .whl
mib() { awk '{printf "%.1f MiB", $1 / 1048576}'; }
TREE=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r ls -ld 2>/dev/null | awk '$1 !~ /^d/ {s += $5} END {print s + 0}')
WHL=$(du -sb .whl | cut -f1); DEV=$(du -sb .devdata | cut -f1)
TOTAL=$(( TREE + WHL + DEV ))
echo ".whl $(mib <<<"$WHL"), .devdata $(mib <<<"$DEV"), working tree (tracked + untracked, not ignored) $(mib <<<"$TREE")"
echo "travels with carry [.whl, .devdata]: $(mib <<<"$TOTAL") of $LIMIT_MIB MiB"
[ "$TOTAL" -le $(( LIMIT_MIB * 1048576 )) ] || { echo "too large to travel" >&2; exit 1; }
