#!/usr/bin/env bash
# make lint: no build output is tracked. Fails on any tracked ELF file, and
# on any tracked file over 1 MiB that is not on the allow-list below (each
# entry says why it is there).
set -euo pipefail
cd "$(dirname "$0")/.."
# Entries are "path  reason"; none is needed today (the largest tracked
# file, go.sum, is well under 1 MiB).
allow=()
allowed() {
  local e
  for e in "${allow[@]}"; do
    [[ "${e%% *}" == "$1" ]] && return 0
  done
  return 1
}
bad=0
while IFS= read -r -d '' f; do
  [[ -f "$f" ]] || continue
  if [[ "$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')" == "7f454c46" ]]; then
    echo "tracked-files: $f is an ELF binary: build outputs are not committed" >&2
    bad=1
    continue
  fi
  size=$(stat -c %s "$f")
  if ((size > 1048576)) && ! allowed "$f"; then
    echo "tracked-files: $f is $size bytes, over 1 MiB and not on the allow-list in $0" >&2
    bad=1
  fi
done < <(git ls-files -z)
if ((bad)); then
  exit 1
fi
echo "tracked-files: no binary, nothing over 1 MiB outside the allow-list"
