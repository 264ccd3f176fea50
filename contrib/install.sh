#!/usr/bin/env bash
# Installs Quarters: the three binaries, their man pages and shell completions (generated from
# the binaries themselves, so they match what they accept), the systemd units and the example
# configs.
#
#   contrib/install.sh [--prefix /usr/local] [--destdir DIR] [--bin-dir DIR]
#
# Without --bin-dir it builds the release binaries first. --destdir stages the whole tree under
# DIR, as packaging does (a PKGBUILD's package() passes "$pkgdir"). The systemd units start
# /usr/bin/quarters-*: install with --prefix /usr for them to work as they are.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
destdir=
bin_dir=
while (($#)); do
  case $1 in
    --prefix) prefix=$2; shift 2 ;;
    --destdir) destdir=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [[ -z $bin_dir ]]; then
  echo "install.sh: building the release binaries" >&2
  cargo build --release --locked --bins
  bin_dir=target/release
fi

bins=(quarters-master quarters-builder quartersctl)
root="$destdir$prefix"
docs=$(mktemp -d)
trap 'rm -rf "$docs"' EXIT

install -d "$root/bin" "$root/share/man/man1"
for b in "${bins[@]}"; do
  install -m 755 "$bin_dir/$b" "$root/bin/$b"
  "$bin_dir/$b" generate-docs "$docs"
done
install -m 644 "$docs"/man1/*.1 "$root/share/man/man1/"
for b in "${bins[@]}"; do
  install -D -m 644 "$docs/completions/bash/$b" "$root/share/bash-completion/completions/$b"
  install -D -m 644 "$docs/completions/zsh/_$b" "$root/share/zsh/site-functions/_$b"
  install -D -m 644 "$docs/completions/fish/$b.fish" "$root/share/fish/vendor_completions.d/$b.fish"
done
install -D -m 644 -t "$root/lib/systemd/system" contrib/systemd/*.service
install -D -m 644 contrib/master.toml "$root/share/doc/quarters/master.toml.example"
install -D -m 644 contrib/builder.toml "$root/share/doc/quarters/builder.toml.example"
install -D -m 644 README.md "$root/share/doc/quarters/README.md"
echo "install.sh: installed into $root: ${bins[*]}, $(ls "$docs/man1" | wc -l) man pages, completions for bash, zsh and fish, the systemd units" >&2
