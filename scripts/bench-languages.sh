#!/usr/bin/env bash
# make bench-languages: each language's hello world compiled and run in the
# default driver's sandboxes beside the same commands natively on this host,
# and each language profile's image size and build time (docs/BENCHMARKS.md).
# The host gets the toolchains here, for the native baseline only: the
# product never needs them on the host (the guest image has its own).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${BENCH_LANGUAGE_RUNS:-5}
pkgs=$(bin/codebench image packages --languages all)
# shellcheck disable=SC2086 # one word per package
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs >/dev/null
CODEBENCH_LANGUAGES=all bin/codebench bench --languages "$runs"
