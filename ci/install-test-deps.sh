#!/usr/bin/env bash
# Installs what the test suite drives as real clients and tools, on Debian: minisign (signature
# interop), curl/wget/aria2c (downloads through the network), python3-jsonschema (an
# independent schema validator), git; and the ecosystem clients of agent/tests/it/clients.rs:
# pip (python3-pip), Maven with Debian's offline plugin repository under /usr/share/maven-repo
# (maven, libmaven-dependency-plugin-java, and junit4 which its Debian poms depend on), apt
# and dpkg-deb (apt, dpkg); Debian's Chromium, Node.js and npm for the browser tests of
# agent/tests/it/web.rs; Pebble (an ACME test CA), h2load (nghttp2-client), testssl.sh
# and slowhttptest for agent/tests/it/tls.rs, demo.rs and flood.rs. Run as root, or with sudo available; skips what is there.
set -euo pipefail
need=()
command -v minisign >/dev/null || need+=(minisign)
command -v curl >/dev/null || need+=(curl)
command -v wget >/dev/null || need+=(wget)
command -v aria2c >/dev/null || need+=(aria2)
command -v git >/dev/null || need+=(git)
/usr/bin/python3 -c 'import jsonschema' 2>/dev/null || need+=(python3-jsonschema)
command -v python3 >/dev/null || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
command -v mvn >/dev/null || need+=(maven)
repo=/usr/share/maven-repo
ls "$repo"/org/apache/maven/plugins/maven-dependency-plugin/*/maven-dependency-plugin-*.jar >/dev/null 2>&1 || need+=(libmaven-dependency-plugin-java)
[ -d "$repo/junit/junit/4.x" ] || need+=(junit4)
command -v apt-get >/dev/null || need+=(apt)
command -v dpkg-deb >/dev/null || need+=(dpkg)
command -v apt-ftparchive >/dev/null || need+=(apt-utils)
command -v sha256sum >/dev/null || need+=(coreutils)
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
# HTTPS as operators run it (agent/tests/it/tls.rs): an ACME test CA, HTTP/2 load.
command -v pebble >/dev/null || need+=(pebble)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v testssl >/dev/null || need+=(testssl.sh)
command -v slowhttptest >/dev/null || need+=(slowhttptest)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Real Debian packages for the apt import test (agent/tests/it/publish.rs): fetched once from
# the distribution's mirrors with apt itself, kept under target/ (not committed).
debs="$(dirname "$0")/../target/test-data/debs"
if ! ls "$debs"/hello_*.deb "$debs"/sl_*.deb >/dev/null 2>&1; then
  mkdir -p "$debs"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  ( cd "$debs" && { apt-get download -qq hello sl 2>/dev/null || { $SUDO apt-get update -qq && apt-get download -qq hello sl; }; } )
fi

# Real wheels for the PyPI import test (agent/tests/it/publish.rs): python-dateutil and its one
# dependency, six, pinned, fetched from PyPI with pip itself, kept under target/ (not committed).
wheels="$(dirname "$0")/../target/test-data/wheels"
if ! ls "$wheels"/python_dateutil-*.whl "$wheels"/six-*.whl >/dev/null 2>&1; then
  mkdir -p "$wheels"
  python3 -m pip download -q --disable-pip-version-check --only-binary=:all: --dest "$wheels" \
    python-dateutil==2.9.0.post0 six==1.16.0
fi

# The browser tests' npm packages (playwright-core drives the system Chromium, axe-core checks
# accessibility), exactly as package-lock.json pins them; node_modules is not committed.
web="$(dirname "$0")/../agent/tests/web"
if ! [ -d "$web/node_modules/playwright-core" ] || ! [ -d "$web/node_modules/axe-core" ]; then
  ( cd "$web" && npm ci --no-audit --no-fund --loglevel=error )
fi

# A real MaxMind-format City database (GeoLite2, as MaxMind's 2018 release is packaged on PyPI)
# and mmdb-writer, which writes the small ASN databases of agent/tests/it/geo.rs; pinned, kept
# under target/ (not committed).
geo="$(dirname "$0")/../target/test-data/geo"
if ! [ -f "$geo/GeoLite2-City.mmdb" ]; then
  mkdir -p "$geo"
  tmp=$(mktemp -d)
  python3 -m pip download -q --disable-pip-version-check --no-deps --no-binary=:all: --dest "$tmp" \
    maxminddb-geolite2==2018.703
  tar -xzf "$tmp"/maxminddb-geolite2-2018.703.tar.gz -C "$tmp"
  cp "$tmp"/maxminddb-geolite2-2018.703/_maxminddb_geolite2/GeoLite2-City.mmdb "$geo/"
  rm -rf "$tmp"
fi
if ! [ -d "$geo/py/mmdb_writer" ]; then
  python3 -m pip install -q --disable-pip-version-check --target "$geo/py" mmdb-writer==0.2.7 netaddr==1.3.0
fi
