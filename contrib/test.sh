#!/usr/bin/env bash
# Runs the whole Quarters test suite: formatting aside, everything CI checks.
#
# Run as root on Debian or Arch, it first installs the system tools the tests use. The tests
# never skip for a missing tool: they fail and name it.
set -euo pipefail
cd "$(dirname "$0")/.."

source contrib/tools.sh
install_missing_tools test.sh

# The real builds need root (namespaces, mounts) and a template root, which the tests make
# once with `quarters-builder mkroot` (debootstrap) in /var/cache/quarters-test.
if [[ $(id -u) -ne 0 ]]; then
  echo "test.sh: not root: the tests of real builds will fail (they need namespaces and mounts)" >&2
fi

# The workspace tests start the real binaries, which live in other packages: build them first.
cargo build --workspace --bins --locked
cargo test --workspace --locked
