#!/usr/bin/env bash
# The host check: `codebench doctor --strict` on every sandbox driver this
# host can run (QEMU under TCG included, as allowed for development). It
# fails when a wall is missing on a driver, or when runsc or QEMU is older
# than what the host's apt sources serve and the README promises. Needs
# bin/codebench and the guest image (make build image).
set -euo pipefail
cd "$(dirname "$0")/.."
export CODEBENCH_ALLOW_TCG=true CODEBENCH_QEMU_JAIL=${CODEBENCH_QEMU_JAIL:-on}
unset CODEBENCH_DRIVER
# Which candidates work here: doctor's own probes, every candidate tried.
report=$(bin/codebench doctor --driver auto) || true
drivers=$(sed -nE 's/^(ok  |info) driver ([a-z-]+) +(USED|works): .*/\2/p' <<<"$report")
if [ -z "$drivers" ]; then
  echo "host-check: FAILED: no sandbox driver works here:" >&2
  echo "$report" >&2
  exit 1
fi
fail=0
for d in $drivers; do
  echo "host-check: doctor --strict --driver $d"
  if ! bin/codebench doctor --strict --driver "$d" | sed 's/^/  /'; then
    echo "host-check: FAILED on $d" >&2
    fail=1
  fi
done
[ "$fail" = 0 ] && echo "host-check: ok ($(echo "$drivers" | tr '\n' ' '))"
exit "$fail"
