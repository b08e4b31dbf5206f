#!/usr/bin/env bash
# What a pull request to the network repository must pass. Call it from any hosted CI with the
# pull request checked out (full history) and the target branch as BASE:
#
#   ci/network-check.sh origin/main
#
# It verifies the head commit as every agent will (signatures, trust, schema, references,
# safe paths), that the head descends from BASE, and that every document changed since BASE
# raised its serial. Set ODI to a prebuilt binary to skip the build.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-origin/main}
if [ -n "${ODI:-}" ]; then
  odi=("$ODI")
else
  cargo build --release --locked -q -p odi
  odi=(target/release/odi)
fi
echo "validating HEAD against $base"
# The snapshot lists the documents after the merge (ci/snapshot-workflow.example.yml writes it),
# so a pull request is checked without it.
"${odi[@]}" validate . --commit HEAD --since "$base" --without-snapshot
