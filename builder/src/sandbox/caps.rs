//! The bounding set of capabilities a sandboxed command may ever hold.
//!
//! The build user gets none: changing to its uid clears the command's capabilities, and an
//! empty bounding set keeps any execve from granting one again. Root inside (pacman, with the
//! scriptlets and ALPM hooks of what it installs) keeps what installing files and creating
//! users takes, and loses the rest, `CAP_SYS_ADMIN` first: no mounts, no new namespaces over
//! its own, no `ptrace`, no raw network, as systemd-nspawn's default set drops them. Those are
//! capabilities of the build's user namespace only, but each is kernel surface a package has
//! no business touching.

use rustix::thread::{CapabilitySet, remove_capability_from_bounding_set};

/// What root inside keeps: file ownership and modes, users and groups, signals within the
/// build, and `chroot`, which pacman calls to run scriptlets (inside the pivoted root, where it
/// leads nowhere).
fn kept_by_root() -> CapabilitySet {
    CapabilitySet::CHOWN
        | CapabilitySet::DAC_OVERRIDE
        | CapabilitySet::DAC_READ_SEARCH
        | CapabilitySet::FOWNER
        | CapabilitySet::FSETID
        | CapabilitySet::SETUID
        | CapabilitySet::SETGID
        | CapabilitySet::SETFCAP
        | CapabilitySet::KILL
        | CapabilitySet::SYS_CHROOT
}

/// Drops from the bounding set every capability the command may not have. Capabilities the
/// running kernel does not know are skipped; any other failure is an error.
pub(super) fn limit_bounding_set(root_inside: bool) -> Result<(), String> {
    let keep = if root_inside {
        kept_by_root()
    } else {
        CapabilitySet::empty()
    };
    // Every bit, not only those rustix names: a newer kernel's capabilities go too.
    for bit in 0..64u32 {
        let cap = CapabilitySet::from_bits_retain(1u64 << bit);
        if keep.contains(cap) {
            continue;
        }
        match remove_capability_from_bounding_set(cap) {
            Ok(()) => {}
            Err(rustix::io::Errno::INVAL) => break,
            Err(e) => return Err(format!("dropping capability {bit}: {e}")),
        }
    }
    Ok(())
}
