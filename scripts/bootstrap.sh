#!/usr/bin/env bash
# Set up a development environment: system packages (when root), .venv, torch CPU build, codekiln[all].
# Idempotent: re-running after a change of pyproject.toml reinstalls.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the sandbox needs (isolation, limits, and the toolchains it runs code with).
missing=""
for pair in bwrap:bubblewrap prlimit:util-linux git:git gcc:gcc g++:g++ node:nodejs /usr/bin/python3:python3; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
done
# libseccomp: the tests load the SandboxPool pod's seccomp profile with it (apt depends on it on Debian)
ldconfig -p 2>/dev/null | grep 'libseccomp\.so\.2' >/dev/null || missing="$missing libseccomp2"
if [ -n "$missing" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing system packages:$missing"
  # shellcheck disable=SC2086
  (apt-get install -y -q $missing >/dev/null 2>&1) || (apt-get update -q >/dev/null && apt-get install -y -q $missing >/dev/null)
fi
command -v bwrap >/dev/null 2>&1 || echo "warning: bubblewrap (bwrap) not found; sandbox isolation tests will fail" >&2

PYTHON="${PYTHON:-python3}"
stamp=".venv/.codekiln-installed"
want="$(cat pyproject.toml setup.py constraints.txt | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "==> creating .venv"
[ -d .venv ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q -U pip
echo "==> installing torch==2.13.0 (CPU build)"
.venv/bin/python -m pip install -q torch==2.13.0
echo "==> installing codekiln[all]"
.venv/bin/python -m pip install -q -c constraints.txt -e '.[all]'
echo "$want" > "$stamp"
