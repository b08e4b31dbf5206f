#!/usr/bin/env bash
# Installs what the test suite drives as real clients and tools, on Debian: minisign (signature
# interop), curl/wget/aria2c (downloads through the network), python3-jsonschema (an
# independent schema validator), git. Run as root, or with sudo available; skips what is there.
set -euo pipefail
need=()
command -v minisign >/dev/null || need+=(minisign)
command -v curl >/dev/null || need+=(curl)
command -v wget >/dev/null || need+=(wget)
command -v aria2c >/dev/null || need+=(aria2)
command -v git >/dev/null || need+=(git)
/usr/bin/python3 -c 'import jsonschema' 2>/dev/null || need+=(python3-jsonschema)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
