//! The sandbox's seccomp filter: the system calls no build needs and an escape would, refused
//! with `EPERM` (as `systemd-nspawn` and Flatpak refuse theirs), everything else allowed.
//!
//! A deny list, not an allow list: builds run compilers, test suites and interpreters of every
//! kind, and an allow list that breaks one package's `check()` is a bug in the farm. What is
//! refused is kernel surface that the namespaces and the emptied bounding set already keep
//! from doing harm, refused again so that a kernel bug behind it is out of reach too:
//! * new namespaces (`unshare`, `setns`, and `clone` with a namespace flag): a build cannot make
//!   a user namespace of its own, in which it would be root again;
//! * mounts of every kind, old and new API, and `pivot_root`;
//! * the kernel keyring (`keyctl`, `add_key`, `request_key`), BPF, `perf_event_open`,
//!   `userfaultfd`;
//! * modules, `kexec`, `reboot`, swap, `syslog`, `acct`, quotas, `open_by_handle_at`, port I/O;
//! * `ioctl`s that push input into a terminal (`TIOCSTI`, `TIOCLINUX`).
//!
//! A deny list is only as good as its coverage of every way into the kernel: the filter holds
//! the machine's secondary ABIs too (i386 and x32 on x86_64, 32-bit ARM on aarch64), with the
//! same refusals under their own numbers. That is why it is built with libseccomp, the library
//! systemd, Flatpak and the container runtimes use, and not with seccompiler, which knows one
//! ABI and kills a process on any other: a 32-bit test program, as multilib `configure` scripts
//! run, would die, while the x32 numbers of the refused calls would pass.
//!
//! `clone3` passes its flags in memory that a filter cannot read: it fails with `ENOSYS`, and
//! the C library falls back to `clone`, whose flags the filter sees (Flatpak does the same).
//! `ptrace` stays: test suites use it, and the build's PID namespace holds nothing else to
//! trace.

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};

/// System calls refused whatever their arguments, by name: each ABI has its own numbers, and a
/// name one ABI lacks is skipped there.
const REFUSED: &[&str] = &[
    "unshare",
    "setns",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "syslog",
    "acct",
    "quotactl",
    "open_by_handle_at",
    "iopl",
    "ioperm",
];

/// The namespace flags `clone` may not carry.
const NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWNS,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWCGROUP,
];

/// The terminal `ioctl`s refused.
const TERMINAL_INJECTION: &[libc::c_ulong] = &[libc::TIOCSTI, libc::TIOCLINUX];

/// The filter, compiled for this machine's ABIs and ready to load.
pub struct Filter {
    context: ScmpFilterContext,
}

impl Filter {
    /// The filter for this machine; an error says what libseccomp refused.
    pub fn new() -> Result<Filter, String> {
        let err = |what: &str| {
            let what = what.to_owned();
            move |e: libseccomp::error::SeccompError| format!("seccomp filter: {what}: {e}")
        };
        let mut context =
            ScmpFilterContext::new(ScmpAction::Allow).map_err(err("making the filter"))?;
        for arch in secondary_abis() {
            context.add_arch(arch).map_err(err("adding an ABI"))?;
        }
        // Every thread of the process that loads it: the init has one, but a filter that
        // missed a thread would be no filter.
        context
            .set_ctl_tsync(true)
            .map_err(err("synchronising threads"))?;
        let eperm = ScmpAction::Errno(libc::EPERM);
        for name in REFUSED {
            // A name this libseccomp does not know on any ABI is not a call anyone can make.
            if let Ok(syscall) = libseccomp::ScmpSyscall::from_name(name) {
                context
                    .add_rule(eperm, syscall)
                    .map_err(err(&format!("refusing {name}")))?;
            }
        }
        let clone = libseccomp::ScmpSyscall::from_name("clone").map_err(err("clone"))?;
        for flag in NAMESPACE_FLAGS {
            let flag = u64::from(flag.unsigned_abs());
            context
                .add_rule_conditional(
                    eperm,
                    clone,
                    &[ScmpArgCompare::new(
                        0,
                        ScmpCompareOp::MaskedEqual(flag),
                        flag,
                    )],
                )
                .map_err(err("clone's namespace flags"))?;
        }
        let ioctl = libseccomp::ScmpSyscall::from_name("ioctl").map_err(err("ioctl"))?;
        for request in TERMINAL_INJECTION {
            context
                .add_rule_conditional(
                    eperm,
                    ioctl,
                    &[ScmpArgCompare::new(1, ScmpCompareOp::Equal, *request)],
                )
                .map_err(err("terminal ioctls"))?;
        }
        if let Ok(clone3) = libseccomp::ScmpSyscall::from_name("clone3") {
            context
                .add_rule(ScmpAction::Errno(libc::ENOSYS), clone3)
                .map_err(err("clone3"))?;
        }
        Ok(Filter { context })
    }

    /// Loads the filter into this process, for good: what it starts inherits it.
    /// `no_new_privs` must be set.
    pub fn install(&self) -> Result<(), String> {
        self.context
            .load()
            .map_err(|e| format!("installing the seccomp filter: {e}"))
    }
}

/// The ABIs besides the native one through which a process of this machine can make calls.
fn secondary_abis() -> Vec<ScmpArch> {
    match ScmpArch::native() {
        ScmpArch::X8664 => vec![ScmpArch::X86, ScmpArch::X32],
        ScmpArch::Aarch64 => vec![ScmpArch::Arm],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_covers_every_abi_of_this_machine() {
        let filter = Filter::new().unwrap();
        for arch in secondary_abis() {
            assert!(
                filter.context.is_arch_present(arch).unwrap(),
                "{arch:?} missing"
            );
        }
        // Each refused call exists under the native ABI's numbers, or is skipped knowingly.
        let known = REFUSED
            .iter()
            .filter(|n| libseccomp::ScmpSyscall::from_name(n).is_ok())
            .count();
        assert!(known >= REFUSED.len() - 3, "{known} of {}", REFUSED.len());
    }
}
