#!/usr/bin/env bash
# Installs Debian packages the first time a Make target needs them, idempotently:
#   scripts/debian-install.sh COMMAND PACKAGE
# does nothing when COMMAND is on PATH; otherwise `apt-get install PACKAGE` (as root, or
# through sudo), running `apt-get update` once if the first try fails. Exits 1 with a
# message naming the package when it cannot be installed (no apt-get, no root, no
# registry), so the caller decides whether that is fatal or a loud skip.
set -uo pipefail

command=${1:?usage: debian-install.sh COMMAND PACKAGE}
package=${2:?usage: debian-install.sh COMMAND PACKAGE}

command -v "$command" >/dev/null && exit 0

if ! command -v apt-get >/dev/null; then
  echo "debian-install: no apt-get here: install $package so that $command is on PATH" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "debian-install: not root and no sudo: install $package so that $command is on PATH" >&2
    exit 1
  fi
  sudo=(sudo)
fi

install() {
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "$package"
}
if ! install && ! { "${sudo[@]}" apt-get update && install; }; then
  echo "debian-install: apt-get could not install $package" >&2
  exit 1
fi
command -v "$command" >/dev/null || {
  echo "debian-install: $package installed but $command is not on PATH" >&2
  exit 1
}
