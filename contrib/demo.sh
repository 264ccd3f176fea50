#!/usr/bin/env bash
# Builds Quarters and runs `quartersctl demo`: a whole farm on this machine, on loopback.
# Arguments are passed on, e.g. `contrib/demo.sh --builders 3 --dir /tmp/farm`.
#
# Run as root on Debian or Arch, it first installs the system tools a farm uses (the same as
# contrib/test.sh), so that it works on a fresh machine whichever of the two runs first.
set -euo pipefail
cd "$(dirname "$0")/.."
source contrib/tools.sh
install_missing_tools demo.sh
cargo build --release --workspace --bins --locked
exec target/release/quartersctl demo "$@"
