#!/usr/bin/env bash
# Install every build and test dependency of waggle on Debian 12 (idempotent).
# Runs apt-get update once, and only when something is missing.
set -euo pipefail
pkgs=(build-essential cmake pkg-config git
      libzmq3-dev libmsgpack-dev libhiredis-dev redis-server libcriterion-dev
      libjansson-dev libpcre2-dev libutf8proc-dev libssl-dev libmicrohttpd-dev
      clang libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# redis-server from Debian starts a system instance; tests start their own on free ports.
echo "setup: dependencies present" >&2
