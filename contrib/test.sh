#!/usr/bin/env bash
# Runs the whole Quarters test suite: formatting aside, everything CI checks.
#
# Run as root on Debian or Arch, it first installs the system tools the tests use. The tests
# never skip for a missing tool: they fail and name it.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package, Arch package
tools=(
  "curl curl curl"
  "tar tar tar"
  "svn subversion subversion"
  "svnadmin subversion subversion"
  "cvs cvs cvs"
  "makepkg makepkg pacman"
  "pacman pacman-package-manager pacman"
  "repo-add pacman-package-manager pacman"
  "fakeroot fakeroot fakeroot"
  "bsdtar libarchive-tools libarchive"
  "zstd zstd zstd"
  "debootstrap debootstrap debootstrap"
  "pgrep procps procps-ng"
  "unshare util-linux util-linux"
  "setpriv util-linux util-linux"
  "prlimit util-linux util-linux"
  "script bsdutils util-linux"
)

missing_debian=() missing_arch=() missing_cmds=()
for entry in "${tools[@]}"; do
  read -r cmd deb arch <<<"$entry"
  if ! command -v "$cmd" >/dev/null 2>&1; then
    missing_cmds+=("$cmd") missing_debian+=("$deb") missing_arch+=("$arch")
  fi
done

if ((${#missing_cmds[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "test.sh: missing tools: ${missing_cmds[*]}; run as root to install them" >&2
  elif command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${missing_debian[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing_debian[@]}"
  elif command -v pacman >/dev/null 2>&1; then
    echo "test.sh: installing ${missing_arch[*]}" >&2
    pacman -Sy --noconfirm --needed "${missing_arch[@]}"
  else
    echo "test.sh: missing tools: ${missing_cmds[*]}; install them (no apt-get or pacman here)" >&2
  fi
fi

# The real builds need root (namespaces, mounts) and a template root, which the tests make
# once with `quarters-builder mkroot` (debootstrap) in /var/cache/quarters-test.
if [[ $(id -u) -ne 0 ]]; then
  echo "test.sh: not root: the tests of real builds will fail (they need namespaces and mounts)" >&2
fi

# The workspace tests start the real binaries, which live in other packages: build them first.
cargo build --workspace --bins --locked
cargo test --workspace --locked
