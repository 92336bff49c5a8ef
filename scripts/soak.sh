#!/usr/bin/env bash
# Soak: N jobs (default 2000) through one worker; its open file descriptors,
# RSS, goroutines and run-dir entries must not grow. Not part of CI (it takes
# a while under TCG); run with: make soak [SOAK_JOBS=2000]
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${SOAK_JOBS:-2000}
user=${RABBITMQ_USER:-admin}; pass=${RABBITMQ_PASSWORD:-admin}
export RABBITMQ_URL=${RABBITMQ_URL:-amqp://$user:$pass@127.0.0.1:5672/}
export CODEBENCH_DEBUG_ADDR=127.0.0.1:6061
export CODEBENCH_RUN_DIR=/run/codebench-soak
log=/var/log/codebench-soak-worker.log
bin/codebench worker >"$log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT

sample() {
  local fds rss gor dirs
  fds=$(find /proc/$pid/fd -mindepth 1 -maxdepth 1 | wc -l)
  rss=$(awk '/^VmRSS:/ {print $2}' /proc/$pid/status)
  gor=$(curl -s http://$CODEBENCH_DEBUG_ADDR/debug/vars | jq .goroutines)
  dirs=$(find "$CODEBENCH_RUN_DIR" -mindepth 2 -maxdepth 2 | wc -l)
  echo "$fds $rss $gor $dirs"
}
for _ in $(seq 60); do curl -sf http://$CODEBENCH_DEBUG_ADDR/debug/vars >/dev/null && break; sleep 1; done
echo "soak: warming up (20 jobs)"
bin/codebench bench --load-only -n 20 -c 2 >/dev/null
sleep 5
read -r fd0 rss0 g0 d0 < <(sample)
echo "soak: before: fds=$fd0 rss_kb=$rss0 goroutines=$g0 vm_dirs=$d0"
start=$(date +%s)
bin/codebench bench --load-only -n "$jobs" -c 2
sleep 5
read -r fd1 rss1 g1 d1 < <(sample)
echo "soak: after $jobs jobs in $(( $(date +%s) - start ))s: fds=$fd1 rss_kb=$rss1 goroutines=$g1 vm_dirs=$d1"
fail=0
[ "$fd1" -le "$fd0" ] || { echo "soak: FAIL fds grew $fd0 -> $fd1"; fail=1; }
[ "$g1" -le "$g0" ] || { echo "soak: FAIL goroutines grew $g0 -> $g1"; fail=1; }
[ "$d1" -le "$d0" ] || { echo "soak: FAIL VM dirs grew $d0 -> $d1"; fail=1; }
# RSS may move with the heap; more than 20% and 8 MiB is growth.
[ "$rss1" -le $(( rss0 + rss0 / 5 + 8192 )) ] || { echo "soak: FAIL RSS grew $rss0 -> $rss1 kB"; fail=1; }
[ $fail = 0 ] && echo "soak: ok, nothing grew"
exit $fail
