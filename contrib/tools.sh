# The system tools Quarters and its tests use, and how to install the missing ones: sourced by
# contrib/test.sh and contrib/demo.sh, so that a fresh machine works whichever runs first.
# Run as root on Debian or Arch, `install_missing_tools NAME` installs what is missing; as
# another user it says what is missing and goes on.

# command (or a library to link, NAME.so) -> Debian package, Arch package
tools=(
  "curl curl curl"
  "tar tar tar"
  "svn subversion subversion"
  "svnadmin subversion subversion"
  "cvs cvs cvs"
  "makepkg makepkg pacman"
  "pacman pacman-package-manager pacman"
  "repo-add pacman-package-manager pacman"
  "pacman-key pacman-package-manager pacman"
  "gpg gnupg gnupg"
  "update-ca-certificates ca-certificates ca-certificates"
  "fakeroot fakeroot fakeroot"
  "bsdtar libarchive-tools libarchive"
  "zstd zstd zstd"
  "debootstrap debootstrap debootstrap"
  "pgrep procps procps-ng"
  "unshare util-linux util-linux"
  "setpriv util-linux util-linux"
  "prlimit util-linux util-linux"
  "script bsdutils util-linux"
  "bwrap bubblewrap bubblewrap"
  "libseccomp.so libseccomp-dev libseccomp"
  "man man-db man-db"
)

# Whether `name` is here: a command on PATH, or a library (NAME.so) the linker finds.
have_tool() {
  local name=$1 f
  if [[ $name == *.so ]]; then
    for f in /usr/lib/"$name" /usr/lib/*/"$name" /usr/lib64/"$name" /lib/*/"$name"; do
      [[ -e $f ]] && return 0
    done
    return 1
  fi
  command -v "$name" >/dev/null 2>&1
}

install_missing_tools() {
  local who=$1
  local missing_debian=() missing_arch=() missing_cmds=() entry cmd deb arch
  for entry in "${tools[@]}"; do
    read -r cmd deb arch <<<"$entry"
    if ! have_tool "$cmd"; then
      missing_cmds+=("$cmd") missing_debian+=("$deb") missing_arch+=("$arch")
    fi
  done

  if ((${#missing_cmds[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
      echo "$who: missing tools: ${missing_cmds[*]}; run as root to install them" >&2
    elif command -v apt-get >/dev/null 2>&1; then
      echo "$who: installing ${missing_debian[*]}" >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${missing_debian[@]}"
    elif command -v pacman >/dev/null 2>&1; then
      echo "$who: installing ${missing_arch[*]}" >&2
      pacman -Sy --noconfirm --needed "${missing_arch[@]}"
    else
      echo "$who: missing tools: ${missing_cmds[*]}; install them (no apt-get or pacman here)" >&2
    fi
  fi
}
