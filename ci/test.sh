#!/usr/bin/env bash
# The whole test suite, as README.adoc's second command and CI (.ci/run) run it.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/install-test-deps.sh
export CARGO_TERM_COLOR=never
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# One TLS stack: nothing may pull in OpenSSL.
if cargo tree --workspace -e normal,build -i openssl-sys >/dev/null 2>&1; then
  echo "openssl-sys is in the dependency tree; the project uses rustls only" >&2
  exit 1
fi
echo "all checks passed (screenshots of the pages: target/screenshots/)"
