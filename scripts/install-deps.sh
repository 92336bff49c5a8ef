#!/usr/bin/env bash
# Install what codebench needs on Debian 12, from the host's own apt sources.
# Idempotent: packages already present are left alone.
#
# gVisor (runsc) comes from bookworm-backports (its systrap platform is
# several times faster than ptrace) when the host's mirror serves that suite:
# the suite is added for the mirror the host's sources already name, never a
# host name of ours. Otherwise bookworm's own runsc (ptrace only) is used.
# QEMU comes from the same suite when it serves 8.2 or later: a jailed VM
# maps its snapshot template from a file it opened read-only
# (readonly=on,rom=off), which bookworm's QEMU 7.2 cannot.
#
# It also creates codebench-vm, the unprivileged user each jailed QEMU runs
# as (docs/SECURITY.md).
set -euo pipefail
# Pipelines here never end in `grep -q` or `head` reading another command:
# under pipefail the writer's SIGPIPE (141) would make a true test false.
# Output is captured first, then matched.
# nftables, iptables, containernetworking-plugins: the opt-in guest network
# (docs/NETWORKING.md): its fences, ptp's masquerading, the ptp and
# host-local CNI plugins; python3 serves the network tests' HTTP servers;
# and the linter make test runs over scripts/ and .ci/ (package shellcheck);
# chromium: the API playground's test drives it headless (chromedp);
# postgresql: the API's store tests run against a throwaway cluster of it
# (scripts/postgres.sh; Debian's own cluster is left alone).
pkgs=(debootstrap rabbitmq-server e2fsprogs curl jq ca-certificates systemd
  nftables iptables containernetworking-plugins iproute2 python3 shellcheck chromium postgresql)
# Taken from bookworm-backports when the host's mirror serves it there:
#   runsc: systrap (and an EROFS root) instead of ptrace only
#   qemu-system-x86: 8.2+ maps a jailed VM's template read-only
backported=(runsc qemu-system-x86)
# The oldest version of each that gives what the docs describe.
declare -A wanted=([runsc]=0.0~20231113 [qemu-system-x86]=1:8.2)
export DEBIAN_FRONTEND=noninteractive

installed_version() { dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null | awk '$3 == "installed" { print $4 }'; }
installed() { [ -n "$(installed_version "$1")" ]; }
# new_enough PKG: installed, at the version the docs describe or later.
new_enough() {
  local v
  v=$(installed_version "$1")
  [ -n "$v" ] && dpkg --compare-versions "$v" ge "${wanted[$1]}"
}
# backports_version PKG: the version bookworm-backports serves, or nothing.
backports_version() {
  local out
  out=$(apt-cache madison "$1" 2>/dev/null) || true
  awk -F'|' '$3 ~ /bookworm-backports/ { gsub(/ /, "", $2); print $2; exit }' <<<"$out"
}

# mirror_of SUITE: the URI (and Signed-By, if any) of the host's apt source
# for SUITE, from deb822 .sources files or one-line .list files.
mirror_of() {
  local suite=$1 f found
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    found=$(awk -v suite="$suite" 'BEGIN { RS = ""; FS = "\n" }
      {
        types = ""; uris = ""; suites = ""; signed = ""
        for (i = 1; i <= NF; i++) {
          line = $i
          if (line ~ /^[ \t]*#/) continue
          if (line ~ /^Types:/)     { sub(/^Types:[ \t]*/, "", line); types = " " line " " }
          if (line ~ /^URIs:/)      { sub(/^URIs:[ \t]*/, "", line); uris = line }
          if (line ~ /^Suites:/)    { sub(/^Suites:[ \t]*/, "", line); suites = " " line " " }
          if (line ~ /^Signed-By:/) { sub(/^Signed-By:[ \t]*/, "", line); signed = line }
        }
        if (index(types, " deb ") && index(suites, " " suite " ") && uris != "") {
          split(uris, u, " "); print u[1] "\t" signed; exit
        }
      }' "$f")
    if [ -n "$found" ]; then echo "$found"; return 0; fi
  done
  found=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    sed -nE '/^deb[[:space:]]/ { s/\[[^]]*\][[:space:]]*//; p }' |
    awk -v suite="$suite" '$3 == suite && !done { print $2 "\t"; done = 1 }')
  [ -n "$found" ] && echo "$found"
}

# add_backports: the bookworm-backports suite of the host's own mirror.
backports_src=/etc/apt/sources.list.d/codebench-backports.sources
add_backports() {
  local line uri signed
  [ -e "$backports_src" ] && return 0
  line=$(mirror_of bookworm) || { echo "deps: no apt source for bookworm found; not adding backports"; return 1; }
  uri=${line%%$'\t'*}; signed=${line#*$'\t'}
  {
    echo "# written by codebench scripts/install-deps.sh: the host's own mirror, suite bookworm-backports"
    echo "Types: deb"
    echo "URIs: $uri"
    echo "Suites: bookworm-backports"
    echo "Components: main"
    [ -n "$signed" ] && echo "Signed-By: $signed"
  } >"$backports_src"
  echo "deps: added bookworm-backports for $uri"
}

missing=()
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
stale=()
for p in "${backported[@]}"; do new_enough "$p" || stale+=("$p"); done
updated=""
if ((${#missing[@]} + ${#stale[@]})); then
  add_backports || true
  apt-get update -qq
  updated=1
fi
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian package may start a broker bound to every interface through
  # its init script; ours (scripts/rabbitmq.sh) binds to loopback only.
  if command -v rabbitmqctl >/dev/null && rabbitmqctl -q status >/dev/null 2>&1; then
    rabbitmqctl -q stop >/dev/null 2>&1 || true
  fi
fi
for p in "${stale[@]}"; do
  bpv=$(backports_version "$p")
  if [ -n "$bpv" ] && dpkg --compare-versions "$bpv" ge "${wanted[$p]}"; then
    echo "deps: installing $p $bpv from bookworm-backports"
    apt-get install -y -qq --no-install-recommends -t bookworm-backports "$p" >/dev/null
  elif ! installed "$p"; then
    # Said loudly: the docs describe the newer one (doctor --strict fails
    # only where the mirror serves it and it was not installed).
    echo "deps: WARNING: the host's mirror serves no $p >= ${wanted[$p]} in bookworm-backports;" \
      "installing bookworm's (runsc: ptrace only, several times slower; QEMU < 8.2: no jailed snapshot clones)" >&2
    apt-get install -y -qq --no-install-recommends "$p" >/dev/null
  else
    echo "deps: WARNING: $p $(installed_version "$p") is older than ${wanted[$p]} and the host's mirror serves no newer one" >&2
  fi
done
# What was promised is what is there: a backports version served but not
# installed is a failure here, not a surprise in the tests.
for p in "${backported[@]}"; do
  bpv=$(backports_version "$p")
  if [ -n "$bpv" ] && ! new_enough "$p"; then
    echo "deps: FAILED: bookworm-backports serves $p $bpv but $(installed_version "$p") is installed" >&2
    exit 1
  fi
done
if [ -z "$updated" ]; then echo "deps: system packages present"; fi
qv=$(qemu-system-x86_64 --version)
echo "deps: ${qv%%$'\n'*}"
if ! id -u codebench-vm >/dev/null 2>&1; then
  echo "deps: creating user codebench-vm (jailed QEMU runs as it)"
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin codebench-vm
fi
rv=$(runsc --version 2>/dev/null) || true
echo "deps: ${rv%%$'\n'*}"
# The image build resolves the kernel package with apt-cache: make sure the
# package lists exist (a fresh machine may have none).
if ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
  apt-get update -qq
fi
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  export PATH=/usr/local/go/bin:$PATH
fi
command -v go >/dev/null || { echo "deps: Go is not installed (need the version in go.mod, at /usr/local/go or on PATH)" >&2; exit 1; }
go mod download
# The tc-redirect-tap CNI plugin, pinned in its own module, built from the
# Go module proxy into /opt/cni/bin (where the original worker had it).
if [ ! -x /opt/cni/bin/tc-redirect-tap ]; then
  echo "deps: building the tc-redirect-tap CNI plugin into /opt/cni/bin"
  mkdir -p /opt/cni/bin
  (cd "$(dirname "$0")/../tools/tc-redirect-tap" && go build -o /opt/cni/bin/tc-redirect-tap github.com/awslabs/tc-redirect-tap/cmd/tc-redirect-tap)
fi
# The E2B SDK's conformance test (make test) and bench --sandboxes run the
# unmodified npm e2b, which needs Node.js 20.18 or newer: the machine's own
# (Debian 12 serves 18, too old, so it is not installed from here).
nv=$(node --version 2>/dev/null || echo none)
case "$nv" in
  v2[1-9].*|v[3-9][0-9].*|v20.1[89].*|v20.[2-9][0-9].*) echo "deps: node $nv (the E2B SDK's tests)" ;;
  *) echo "deps: WARNING: node $nv: the E2B SDK's conformance test (make test) needs Node.js 20.18 or newer with npm" >&2 ;;
esac
echo "deps: ok ($(go version | cut -d' ' -f3))"
