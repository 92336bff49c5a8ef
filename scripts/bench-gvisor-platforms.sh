#!/usr/bin/env bash
# gVisor's platforms compared in one run: gcc hello.c compiled and run under
# `runsc do` (a whole sandbox per run, the host's root read-only) on systrap
# and on ptrace, interleaved, N runs each (default 10); medians of wall time
# and of CPU (user + system of runsc and everything it waited for).
#   scripts/bench-gvisor-platforms.sh [N]
set -euo pipefail
n=${1:-10}
dir=$(mktemp -d /tmp/cb-platforms.XXXXXX)
trap 'rm -rf "$dir"' EXIT
printf '#include <stdio.h>\nint main(void) { puts("Hello, World!"); return 0; }\n' >"$dir/hello.c"
for _ in $(seq "$n"); do
  for p in systrap ptrace; do
    /usr/bin/time -a -o "$dir/times" -f "$p %e %U %S" \
      runsc --platform="$p" --network=none "do" sh -c "cd $dir && gcc -O2 -o h hello.c && ./h" >/dev/null
  done
done
echo "runsc: $(runsc --version | sed -n 1p); $n runs each"
python3 - "$dir/times" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    p, wall, user, sys_ = line.split()
    runs.setdefault(p, []).append((float(wall), float(user) + float(sys_)))
med = {p: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for p, v in runs.items()}
for p, (w, c) in med.items():
    print(f"{p:8} wall p50 {w:.3f} s  cpu p50 {c:.3f} s")
print(f"ptrace/systrap: wall {med['ptrace'][0] / med['systrap'][0]:.2f}x, cpu {med['ptrace'][1] / med['systrap'][1]:.2f}x")
PY
