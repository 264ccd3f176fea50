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
//! `clone3` passes its flags in memory that a filter cannot read: it fails with `ENOSYS`, and
//! the C library falls back to `clone`, whose flags the filter sees (Flatpak does the same).
//! `ptrace` stays: test suites use it, and the build's PID namespace holds nothing else to
//! trace.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// System calls refused whatever their arguments.
const REFUSED: &[i64] = &[
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_syslog,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_open_by_handle_at,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
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

/// The two programs of the filter, installed in this order: the refusals (`EPERM`), and
/// `clone3` (`ENOSYS`). A process can be under several filters; the kernel asks them all.
pub struct Filter {
    programs: Vec<BpfProgram>,
}

impl Filter {
    /// The filter for this machine's architecture; an error names an architecture seccompiler
    /// does not know.
    pub fn new() -> Result<Filter, String> {
        let arch = TargetArch::try_from(std::env::consts::ARCH)
            .map_err(|e| format!("no seccomp filter for {}: {e}", std::env::consts::ARCH))?;
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
            REFUSED.iter().map(|nr| (*nr, Vec::new())).collect();
        let masked = |arg: u8, value: u64| -> Result<SeccompRule, String> {
            SeccompCondition::new(
                arg,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(value),
                value,
            )
            .and_then(|c| SeccompRule::new(vec![c]))
            .map_err(|e| e.to_string())
        };
        let clone_rules = NAMESPACE_FLAGS
            .iter()
            .map(|flag| masked(0, u64::from(flag.unsigned_abs())))
            .collect::<Result<Vec<_>, _>>()?;
        rules.insert(libc::SYS_clone, clone_rules);
        let ioctl_rules = TERMINAL_INJECTION
            .iter()
            .map(|request| {
                SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, *request)
                    .and_then(|c| SeccompRule::new(vec![c]))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        rules.insert(libc::SYS_ioctl, ioctl_rules);
        let program = |rules, errno: i32| -> Result<BpfProgram, String> {
            let errno = u32::try_from(errno).map_err(|e| e.to_string())?;
            SeccompFilter::new(
                rules,
                SeccompAction::Allow,
                SeccompAction::Errno(errno),
                arch,
            )
            .and_then(BpfProgram::try_from)
            .map_err(|e| format!("compiling the seccomp filter: {e}"))
        };
        let refusals = program(rules, libc::EPERM)?;
        let clone3 = program(
            BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
            libc::ENOSYS,
        )?;
        Ok(Filter {
            programs: vec![refusals, clone3],
        })
    }

    /// Installs the filter on this process (every thread), for good: what it starts inherits
    /// it. `no_new_privs` must be set.
    pub fn install(&self) -> Result<(), String> {
        for program in &self.programs {
            seccompiler::apply_filter_all_threads(program)
                .map_err(|e| format!("installing the seccomp filter: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_compiles_for_this_machine() {
        let filter = Filter::new().unwrap();
        assert_eq!(filter.programs.len(), 2);
        assert!(filter.programs.iter().all(|p| !p.is_empty()));
    }
}
