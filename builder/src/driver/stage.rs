//! A build's stages, each with the stable name its log and the builder's state carry.

use std::fmt;

/// One stage of a build, in the order the chroot driver runs them (the simulator runs a few).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The root made, the source tarball fetched from the master and checked.
    Prepare,
    /// The package's dependencies installed into the root.
    Depends,
    /// The package's sources fetched by the builder.
    Fetch,
    /// makepkg.
    Build,
    /// The packages made installed into the root, as pacman users will.
    Install,
    /// The simulator's packages written.
    Package,
    /// The root unmounted and removed.
    Cleanup,
}

impl Stage {
    /// Its name: the log file `NAME.log`, `/v1/builds/ID/logs/NAME`, a failure's stage.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Prepare => "prepare",
            Stage::Depends => "depends",
            Stage::Fetch => "fetch",
            Stage::Build => "build",
            Stage::Install => "install",
            Stage::Package => "package",
            Stage::Cleanup => "cleanup",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_name_is_one_the_master_takes() {
        let all = [
            Stage::Prepare,
            Stage::Depends,
            Stage::Fetch,
            Stage::Build,
            Stage::Install,
            Stage::Package,
            Stage::Cleanup,
        ];
        for stage in all {
            quarters_common::peer_input::StageName::parse(stage.as_str()).unwrap();
        }
        let mut names: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
    }
}
