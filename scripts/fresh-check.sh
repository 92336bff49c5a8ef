#!/usr/bin/env bash
# make fresh-check: rehearse a new machine's install on this one. It removes
# what scripts/install-deps.sh takes from bookworm-backports (runsc, QEMU),
# the backports source it added, chromium (the playground's test) and
# postgresql (the API store's), runs the install as a new machine would,
# then the host check (doctor --strict on every driver this host can run).
# It changes the host's packages: run it on a development or CI machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
start=$(date +%s)
echo "fresh-check: removing runsc, QEMU, chromium, postgresql and the bookworm-backports source"
apt-get purge -y -qq runsc 'qemu-system-*' qemu-utils 'qemu-block-*' chromium chromium-common 'postgresql*' >/dev/null 2>&1 || true
apt-get autoremove -y -qq >/dev/null
rm -f /etc/apt/sources.list.d/codebench-backports.sources
apt-get update -qq
for p in runsc qemu-system-x86 chromium postgresql; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) || true
  if [[ $st == *" installed" ]]; then
    echo "fresh-check: FAILED: $p is still installed" >&2
    exit 1
  fi
done
echo "fresh-check: scripts/install-deps.sh, as on a new machine"
t0=$(date +%s)
scripts/install-deps.sh
echo "fresh-check: install took $(( $(date +%s) - t0 ))s"
make build image
scripts/host-check.sh
echo "fresh-check: ok in $(( $(date +%s) - start ))s"
