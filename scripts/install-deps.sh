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
# nftables, iptables, containernetworking-plugins: the opt-in guest network
# (docs/NETWORKING.md): its fences, ptp's masquerading, the ptp and
# host-local CNI plugins; python3 serves the network tests' HTTP servers.
pkgs=(qemu-system-x86 debootstrap rabbitmq-server e2fsprogs curl jq ca-certificates systemd
  nftables iptables containernetworking-plugins iproute2 python3)
export DEBIAN_FRONTEND=noninteractive

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# mirror_of SUITE: the URI (and Signed-By, if any) of the host's apt source
# for SUITE, from deb822 .sources files or one-line .list files.
mirror_of() {
  local suite=$1 f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    awk -v suite="$suite" 'BEGIN { RS = ""; FS = "\n" }
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
      }' "$f" | head -1 | grep . && return 0
  done
  grep -hE "^deb[[:space:]]" /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    sed -E 's/\[[^]]*\][[:space:]]*//' | awk -v suite="$suite" '$3 == suite { print $2 "\t"; exit }' | grep .
}

# add_backports: the bookworm-backports suite of the host's own mirror.
add_backports() {
  local src=/etc/apt/sources.list.d/codebench-backports.sources line uri signed
  [ -e "$src" ] && return 0
  line=$(mirror_of bookworm) || { echo "deps: no apt source for bookworm found; not adding backports"; return 1; }
  uri=${line%%$'\t'*}; signed=${line#*$'\t'}
  {
    echo "# written by codebench scripts/install-deps.sh: the host's own mirror, suite bookworm-backports"
    echo "Types: deb"
    echo "URIs: $uri"
    echo "Suites: bookworm-backports"
    echo "Components: main"
    [ -n "$signed" ] && echo "Signed-By: $signed"
  } >"$src"
  echo "deps: added bookworm-backports for $uri"
}

missing=()
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
updated=""
# qemu_old: the installed QEMU is older than 8.2.
qemu_old() {
  local v
  v=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null) || return 0
  dpkg --compare-versions "$v" lt 1:8.2
}
if ((${#missing[@]})) || ! installed runsc || qemu_old; then
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
if ! installed runsc; then
  if apt-cache policy runsc 2>/dev/null | grep -q bookworm-backports; then
    echo "deps: installing runsc (gVisor) from bookworm-backports"
    apt-get install -y -qq --no-install-recommends -t bookworm-backports runsc >/dev/null
  else
    echo "deps: installing runsc (gVisor) from bookworm (ptrace platform only)"
    apt-get install -y -qq --no-install-recommends runsc >/dev/null
  fi
fi
if qemu_old && apt-cache policy qemu-system-x86 2>/dev/null | grep -q bookworm-backports; then
  echo "deps: installing QEMU from bookworm-backports (8.2+ maps templates read-only)"
  apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 >/dev/null
fi
if [ -z "$updated" ]; then echo "deps: system packages present"; fi
echo "deps: $(qemu-system-x86_64 --version | head -1)"
if ! id -u codebench-vm >/dev/null 2>&1; then
  echo "deps: creating user codebench-vm (jailed QEMU runs as it)"
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin codebench-vm
fi
echo "deps: $(runsc --version 2>/dev/null | head -1)"
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
echo "deps: ok ($(go version | cut -d' ' -f3))"
