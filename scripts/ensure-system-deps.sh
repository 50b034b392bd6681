#!/usr/bin/env bash
# Make sure the system programs the tests and the local stack need are on PATH.
# Installs them with apt-get when missing and running as root; otherwise says what to install.
set -euo pipefail

declare -A package_of=(
  [redis-server]=redis-server
  [redis-sentinel]=redis-sentinel
  [redis-cli]=redis-tools
  [redis-benchmark]=redis-tools
  [nginx]=nginx
  [wrk]=wrk
  [docker-compose]=docker-compose
  [envsubst]=gettext-base
  [iptables]=iptables
  [openssl]=openssl
  [prometheus]=prometheus
)

missing_pkgs=()
missing_cmds=()
for cmd in "${!package_of[@]}"; do
  # nginx lives in /usr/sbin, which is not on every user's PATH.
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
    missing_cmds+=("$cmd")
    missing_pkgs+=("${package_of[$cmd]}")
  fi
done
if [ ${#missing_pkgs[@]} -eq 0 ]; then
  exit 0
fi
mapfile -t missing_pkgs < <(printf '%s\n' "${missing_pkgs[@]}" | sort -u)
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing missing system packages: ${missing_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null
  # Debian starts the freshly installed daemons; the tests start their own on free ports
  # (Debian's Prometheus would also hold port 9090, the limiter's default metrics port).
  for svc in redis-server redis-sentinel nginx prometheus; do
    if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" >/dev/null 2>&1 || true; fi
  done
  exit 0
fi
echo "missing programs: ${missing_cmds[*]}" >&2
echo "install them first, e.g.: sudo apt-get install ${missing_pkgs[*]}" >&2
exit 1
