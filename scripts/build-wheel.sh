#!/usr/bin/env bash
# Builds the runner (runner/) into a wheel in OUTDIR: scripts/build-collection.sh ships it in the sync_runner role's
# files/. VERSION, when given, replaces the library's version in the build (the upgrade test's "newer build").
# Built from a copy, so that setuptools leaves no build/ in the work tree; pip takes setuptools from the index.
#   scripts/build-wheel.sh OUTDIR [VERSION]     prints the wheel's path
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
version=${2:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$root/runner/pyproject.toml" "$root/runner/src" "$tmp/"
rm -rf "$tmp"/src/*.egg-info
find "$tmp" -name __pycache__ -prune -exec rm -rf {} +
if [[ -n $version ]]; then
  sed -i "s/^__version__ = .*/__version__ = \"$version\"/" "$tmp/src/pgrepl/__init__.py"
fi
rm -f "$out"/pgrepl-*.whl
"$root/.venv/bin/python" -m pip wheel -q --no-deps --wheel-dir "$out" "$tmp" 2> >(grep -v "^WARNING: Location" >&2)
ls "$out"/pgrepl-*.whl
