#!/usr/bin/env bash
# Builds Quarters and runs `quartersctl demo`: a whole farm on this machine, on loopback.
# Arguments are passed on, e.g. `contrib/demo.sh --builders 3 --dir /tmp/farm`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins --locked
exec target/release/quartersctl demo "$@"
