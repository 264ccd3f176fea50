//! The builder's builds on disk: `WORK/builds/ID/` holds `record.json`, `logs/STAGE.log` and
//! `artifacts/FILE`. The builder's state is rebuilt from here at start-up: finished builds stay
//! until the master has judged them, unfinished ones are dropped.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use quarters_common::api::v1::{Build, BuildOutcome, ReadyPackage};
use serde::{Deserialize, Serialize};

/// A build and the job it was for, as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub job: ReadyPackage,
    pub build: Build,
}

impl Record {
    pub fn finished(&self) -> bool {
        !matches!(self.build.outcome, BuildOutcome::Running { .. })
    }
}

#[derive(Debug)]
pub struct BuildStore {
    dir: PathBuf,
}

impl BuildStore {
    pub fn open(work_dir: &Path) -> io::Result<Self> {
        let dir = work_dir.join("builds");
        fs::create_dir_all(&dir)?;
        Ok(BuildStore { dir })
    }

    /// A fresh build id for `pkgbase`: readable, and unique on this builder.
    pub fn new_id(&self, pkgbase: &str) -> String {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut n = 0u32;
        loop {
            let id = format!("{pkgbase}-{millis}-{n}");
            if !self.dir.join(&id).exists() {
                return id;
            }
            n += 1;
        }
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub fn logs(&self, id: &str) -> PathBuf {
        self.dir(id).join("logs")
    }

    pub fn artifacts(&self, id: &str) -> PathBuf {
        self.dir(id).join("artifacts")
    }

    /// Creates the directories of a new build.
    pub fn create(&self, id: &str) -> io::Result<()> {
        fs::create_dir_all(self.logs(id))?;
        fs::create_dir_all(self.artifacts(id))
    }

    /// Writes a build's record, whole or not at all.
    pub fn save(&self, record: &Record) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        quarters_common::fsutil::write_file(
            &self.dir(&record.build.id).join("record.json"),
            &bytes,
            0o644,
            true,
        )
    }

    /// Every finished build on disk; what was running when the builder stopped is removed.
    pub fn load(&self) -> Vec<Record> {
        let mut out = Vec::new();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return out;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let record = fs::read(path.join("record.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Record>(&b).ok());
            match record {
                Some(r) if r.finished() => out.push(r),
                _ => {
                    tracing::info!("dropping the unfinished build in {}", path.display());
                    let _ = fs::remove_dir_all(&path);
                }
            }
        }
        out.sort_by_key(|a| a.build.started_at);
        out
    }

    pub fn remove(&self, id: &str) {
        if let Err(e) = fs::remove_dir_all(self.dir(id))
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("removing build {id}: {e}");
        }
    }
}
