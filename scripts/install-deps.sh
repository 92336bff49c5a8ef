#!/usr/bin/env bash
# Install what codebench needs on Debian 12, from the host's own apt sources.
# Idempotent: packages already present are left alone.
set -euo pipefail
pkgs=(qemu-system-x86 debootstrap rabbitmq-server e2fsprogs curl jq ca-certificates)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian package may start a broker bound to every interface through
  # its init script; ours (scripts/rabbitmq.sh) binds to loopback only.
  if command -v rabbitmqctl >/dev/null && rabbitmqctl -q status >/dev/null 2>&1; then
    rabbitmqctl -q stop >/dev/null 2>&1 || true
  fi
else
  echo "deps: system packages present"
fi
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
echo "deps: ok ($(go version | cut -d' ' -f3))"
