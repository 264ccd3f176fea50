//! The master's durable state in SQLite (WAL): every build and its verdict, what each repository
//! holds, promotions, and an event log.
//!
//! Exactly-once acceptance is a unique index, not a convention: a second accepted build of the
//! same `(pkgbase, version, arch)` cannot be recorded. The repositories' database files are
//! written from these tables, so after a crash they are rewritten from what was committed here.

mod schema;
mod verifications;

pub use verifications::{Accepted, AcceptedFile, Pending, VerificationRow};

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use crate::plan::binaries::{BinaryPackage, RepoKind};
use crate::quarantine::{By, Quarantine};
use quarters_common::{Arch, BuildKey};

/// The database, with one connection; the master serialises access to it.
#[derive(Debug)]
pub struct Db {
    conn: Connection,
}

pub use crate::verdict::{Blame, VerdictKind};

/// One build as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildRow {
    pub builder: String,
    pub build_id: String,
    pub pkgbase: String,
    pub version: String,
    pub arch: String,
    pub verdict: VerdictKind,
    pub reason: Option<String>,
    pub wall_ms: Option<u64>,
    pub cpu_ms: Option<u64>,
    pub peak_memory_kb: Option<u64>,
    /// Where the master keeps the build's logs.
    pub log_dir: Option<String>,
    /// When the build started, by its builder's clock.
    pub started_at: Option<OffsetDateTime>,
    /// What was odd about its packages but did not stop them (lint warnings), one line each.
    pub warnings: Vec<String>,
    /// The identity of the template root the builder built it from, as it published it.
    pub template: Option<String>,
}

/// A failed build, as the planner and the published state need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub builder: String,
    pub build_id: String,
    /// `stage: what happened`.
    pub reason: String,
    pub has_logs: bool,
}

impl Failure {
    /// The reason with the builder, as `why` and the plan show it.
    pub fn describe(&self) -> String {
        format!("{} (on {})", self.reason, self.builder)
    }

    /// The stage that failed.
    pub fn stage(&self) -> &str {
        self.reason.split(':').next().unwrap_or("build").trim()
    }
}

/// A build's verdict as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub verdict: VerdictKind,
    pub reason: Option<String>,
    pub warnings: Vec<String>,
}

/// How often one version was refused, and by whom.
#[derive(Debug, Default)]
struct Refusals {
    package: usize,
    builder: usize,
    builders: std::collections::HashSet<String>,
    last: Option<Failure>,
}

/// A package file in a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoEntry {
    pub repo: RepoKind,
    /// The repository's architecture directory.
    pub arch: String,
    pub filename: String,
    pub pkgname: String,
    pub pkgbase: String,
    pub version: String,
    /// The package's own architecture (`any` in every architecture's repository).
    pub pkg_arch: String,
    pub sha256: String,
    pub size: u64,
    pub provides: Vec<String>,
    /// Its run-time dependencies (`.PKGINFO`'s `depend`).
    pub depends: Vec<String>,
    /// The repository's `desc` entry for the package.
    pub desc: String,
    /// The repository's `files` entry for the package.
    pub files: String,
}

/// Why a build could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{pkgbase} {version} ({arch}) is already accepted from another build")]
    AlreadyAccepted {
        pkgbase: String,
        version: String,
        arch: String,
    },
    /// A package of the build is named like one that another pkgbase holds in a repository.
    #[error("pkgname {pkgname} belongs to pkgbase {owner} in the {repo} repository")]
    NameTaken {
        pkgname: String,
        owner: String,
        repo: &'static str,
    },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database: {0}")]
    Corrupt(#[from] crate::verdict::UnknownVerdict),
}

fn repo_str(r: RepoKind) -> &'static str {
    r.as_str()
}

/// The repository a row's column `i` names. The table's CHECK allows only the two names: any
/// other is a damaged database, and an error rather than a guess.
fn repo_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<RepoKind> {
    let text: String = r.get(i)?;
    RepoKind::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown repository {text:?}").into(),
        )
    })
}

fn now() -> String {
    format_time(OffsetDateTime::now_utc())
}

fn format_time(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 always formats")
}

fn parse_time(t: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
}

impl Db {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// A database in memory, for tests of one module.
    pub fn in_memory() -> Result<Self, DbError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, DbError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        schema::migrate(&conn)?;
        Ok(Db { conn })
    }

    /// Records a build that was not accepted. Recording the same builder's build twice is a no-op.
    pub fn record_build(&mut self, row: &BuildRow) -> Result<(), DbError> {
        debug_assert_ne!(row.verdict, VerdictKind::Accepted, "use accept()");
        insert_build(&self.conn, row)?;
        Ok(())
    }

    /// Records an accepted build and its packages in the build repository, in one transaction.
    /// Refused if this `(pkgbase, version, arch)` was accepted before.
    pub fn accept(&mut self, row: &BuildRow, packages: &[RepoEntry]) -> Result<(), DbError> {
        let tx = self.conn.transaction()?;
        insert_build(&tx, row).map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                DbError::AlreadyAccepted {
                    pkgbase: row.pkgbase.clone(),
                    version: row.version.clone(),
                    arch: row.arch.clone(),
                }
            }
            other => DbError::Sqlite(other),
        })?;
        for p in packages {
            // A package name belongs to one pkgbase, in either repository: a build of another
            // pkgbase must not take its place under dependents built against it.
            let owner: Option<(String, String)> = tx
                .query_row(
                    "SELECT pkgbase, repo FROM repo_packages WHERE pkgname = ?1 AND pkgbase != ?2 LIMIT 1",
                    params![p.pkgname, p.pkgbase],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((owner, repo)) = owner {
                return Err(DbError::NameTaken {
                    pkgname: p.pkgname.clone(),
                    owner,
                    repo: if repo == "live" { "live" } else { "build" },
                });
            }
            put_repo_entry(&tx, p)?;
            // What a verification build is compared with; an `any` package's entries in
            // several architectures' repositories are one file.
            tx.execute(
                "INSERT OR IGNORE INTO accepted_files (pkgbase, version, arch, filename, sha256, builder)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![row.pkgbase, row.version, row.arch, p.filename, p.sha256, row.builder],
            )?;
        }
        tx.execute(
            "INSERT INTO events (at, kind, subject, message) VALUES (?1, 'accepted', ?2, ?3)",
            params![
                now(),
                row.pkgbase,
                format!(
                    "{} {} ({}) from {} build {}",
                    row.pkgbase, row.version, row.arch, row.builder, row.build_id
                )
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Whether this builder's build has a verdict already, and which.
    pub fn verdict_of(&self, builder: &str, build_id: &str) -> Result<Option<Recorded>, DbError> {
        Ok(self
            .conn
            .query_row(
                "SELECT verdict, blame, reason, warnings FROM builds WHERE builder = ?1 AND build_id = ?2",
                params![builder, build_id],
                |r| {
                    Ok(Recorded {
                        verdict: verdict_at(r, 0, 1)?,
                        reason: r.get(2)?,
                        warnings: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
                    })
                },
            )
            .optional()?)
    }

    /// Whether some build of this version was accepted.
    pub fn is_accepted(&self, key: &BuildKey) -> Result<bool, DbError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM builds WHERE pkgbase = ?1 AND version = ?2 AND arch = ?3 AND verdict = 'accepted'",
                params![key.pkgbase, key.version, key.arch.as_str()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Failed builds not retried since, by what they built: the newest for each. A version
    /// refused too often counts as failed too, so that it is not built again and again:
    /// `max_refusals` refusals that were the package's fault, or refusals that were builders'
    /// faults from `max_refusals` different builders (or twice as many from fewer, so that a
    /// farm of one builder stops too).
    pub fn failures(
        &self,
        max_refusals: usize,
    ) -> Result<std::collections::HashMap<BuildKey, Failure>, DbError> {
        self.failures_where(max_refusals, "", params![])
    }

    /// [`Db::failures`] of `pkgbase` only: what the core reads again after a verdict on it.
    pub fn failures_of(
        &self,
        max_refusals: usize,
        pkgbase: &str,
    ) -> Result<std::collections::HashMap<BuildKey, Failure>, DbError> {
        self.failures_where(max_refusals, "AND pkgbase = ?1", params![pkgbase])
    }

    fn failures_where<P: rusqlite::Params + Copy>(
        &self,
        max_refusals: usize,
        filter: &str,
        params: P,
    ) -> Result<std::collections::HashMap<BuildKey, Failure>, DbError> {
        let mut failures = std::collections::HashMap::new();
        let mut stmt = self.conn.prepare(&format!(
            "SELECT pkgbase, version, arch, builder, build_id, blame, reason FROM builds
             WHERE verdict = 'refused' AND retried = 0 {filter} ORDER BY id"
        ))?;
        let rows = stmt.query_map(params, |r| {
            let key = build_key(r)?;
            let blame = Blame::parse(&r.get::<_, String>(5)?).unwrap_or(Blame::Builder);
            let last = Failure {
                builder: r.get(3)?,
                build_id: r.get(4)?,
                reason: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                has_logs: false,
            };
            Ok((key, blame, last))
        })?;
        let mut refusals: std::collections::HashMap<BuildKey, Refusals> =
            std::collections::HashMap::new();
        for row in rows {
            let (key, blame, last) = row?;
            let tally = refusals.entry(key).or_default();
            match blame {
                Blame::Package => tally.package += 1,
                Blame::Builder => {
                    tally.builder += 1;
                    tally.builders.insert(last.builder.clone());
                }
            }
            tally.last = Some(last);
        }
        for (key, tally) in refusals {
            let too_many = tally.package >= max_refusals
                || tally.builders.len() >= max_refusals
                || tally.builder >= 2 * max_refusals;
            if let Some(last) = tally.last.filter(|_| too_many) {
                let n = tally.package + tally.builder;
                failures.insert(
                    key,
                    Failure {
                        reason: format!("refused {n} times, last: {}", last.reason),
                        ..last
                    },
                );
            }
        }
        let mut stmt = self.conn.prepare(&format!(
            "SELECT pkgbase, version, arch, builder, build_id, reason, log_dir FROM builds
             WHERE verdict = 'failed' AND retried = 0 {filter} ORDER BY id"
        ))?;
        let rows = stmt.query_map(params, |r| {
            let key = build_key(r)?;
            let failure = Failure {
                builder: r.get(3)?,
                build_id: r.get(4)?,
                reason: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                has_logs: r.get::<_, Option<String>>(6)?.is_some(),
            };
            Ok((key, failure))
        })?;
        for row in rows {
            let (key, failure) = row?;
            failures.insert(key, failure);
        }
        Ok(failures)
    }

    /// Puts the failed and refused builds of `pkgbase` back in the running; returns how many
    /// there were.
    pub fn retry(&mut self, pkgbase: &str) -> Result<usize, DbError> {
        let n = self.conn.execute(
            "UPDATE builds SET retried = 1
             WHERE pkgbase = ?1 AND verdict IN ('failed', 'refused') AND retried = 0",
            params![pkgbase],
        )?;
        if n > 0 {
            self.event(
                "retry",
                pkgbase,
                &format!("{n} failed build(s) of {pkgbase} may be built again"),
            )?;
        }
        Ok(n)
    }

    /// The builds recorded for `pkgbase`, newest first.
    pub fn builds_of(&self, pkgbase: &str, limit: usize) -> Result<Vec<BuildRow>, DbError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE pkgbase = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![pkgbase, limit as i64], build_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every build recorded, oldest first, with when its verdict was recorded: the farm's
    /// timeline, as the simulator measures it.
    pub fn timeline(&self) -> Result<Vec<(BuildRow, OffsetDateTime)>, DbError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {BUILD_COLUMNS}, recorded_at FROM builds ORDER BY id"
        ))?;
        // The column after [`BUILD_COLUMNS`].
        let at = BUILD_COLUMNS.split(',').count();
        let rows = stmt.query_map([], |r| {
            let recorded: String = r.get(at)?;
            let recorded = parse_time(&recorded).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    at,
                    rusqlite::types::Type::Text,
                    format!("recorded_at {recorded:?} is not RFC 3339").into(),
                )
            })?;
            Ok((build_row(r)?, recorded))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Expected build duration per pkgbase: the mean wall time of its last five accepted builds.
    pub fn durations(&self) -> Result<std::collections::HashMap<String, u64>, DbError> {
        self.durations_where("", params![])
    }

    /// [`Db::durations`] of `pkgbase` only.
    pub fn duration_of(&self, pkgbase: &str) -> Result<Option<u64>, DbError> {
        Ok(self
            .durations_where("AND pkgbase = ?1", params![pkgbase])?
            .remove(pkgbase))
    }

    fn durations_where<P: rusqlite::Params>(
        &self,
        filter: &str,
        params: P,
    ) -> Result<std::collections::HashMap<String, u64>, DbError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT pkgbase, AVG(wall_ms) FROM (
                SELECT pkgbase, wall_ms, ROW_NUMBER() OVER (PARTITION BY pkgbase ORDER BY id DESC) AS n
                FROM builds WHERE verdict = 'accepted' AND wall_ms IS NOT NULL {filter}
             ) WHERE n <= 5 GROUP BY pkgbase"
        ))?;
        let rows = stmt.query_map(params, |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every package in the repositories.
    pub fn repo_entries(&self) -> Result<Vec<RepoEntry>, DbError> {
        self.select_repo_entries("", [])
    }

    /// The packages of `pkgbase` in the repositories.
    pub fn repo_entries_of(&self, pkgbase: &str) -> Result<Vec<RepoEntry>, DbError> {
        self.select_repo_entries("WHERE pkgbase = ?1", [pkgbase])
    }

    fn select_repo_entries<P: rusqlite::Params>(
        &self,
        filter: &str,
        params: P,
    ) -> Result<Vec<RepoEntry>, DbError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT repo, arch, filename, pkgname, pkgbase, version, pkg_arch, sha256, size, provides, desc, files, depends
             FROM repo_packages {filter} ORDER BY repo, arch, pkgname"
        ))?;
        let rows = stmt.query_map(params, |r| {
            Ok(RepoEntry {
                repo: repo_at(r, 0)?,
                arch: r.get(1)?,
                filename: r.get(2)?,
                pkgname: r.get(3)?,
                pkgbase: r.get(4)?,
                version: r.get(5)?,
                pkg_arch: r.get(6)?,
                sha256: r.get(7)?,
                size: r.get::<_, i64>(8)? as u64,
                provides: serde_json::from_str(&r.get::<_, String>(9)?).unwrap_or_default(),
                desc: r.get(10)?,
                files: r.get(11)?,
                depends: serde_json::from_str(&r.get::<_, String>(12)?).unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Sets `%PGPSIG%` of every entry of each file in `signed` (file name, base64), in one
    /// transaction; returns the repositories and architectures whose databases changed.
    pub fn set_pgpsigs(
        &mut self,
        signed: &[(String, String)],
    ) -> Result<std::collections::BTreeSet<(RepoKind, String)>, DbError> {
        let tx = self.conn.transaction()?;
        let mut changed = std::collections::BTreeSet::new();
        {
            let mut select = tx
                .prepare("SELECT rowid, repo, arch, desc FROM repo_packages WHERE filename = ?1")?;
            let mut update = tx.prepare("UPDATE repo_packages SET desc = ?2 WHERE rowid = ?1")?;
            for (file, pgpsig) in signed {
                let rows: Vec<(i64, RepoKind, String, String)> = select
                    .query_map([file], |r| {
                        Ok((r.get(0)?, repo_at(r, 1)?, r.get(2)?, r.get(3)?))
                    })?
                    .collect::<Result<_, _>>()?;
                for (rowid, repo, arch, desc) in rows {
                    let desc = crate::repo::package::with_pgpsig(&desc, pgpsig);
                    update.execute(params![rowid, desc])?;
                    changed.insert((repo, arch));
                }
            }
        }
        tx.commit()?;
        Ok(changed)
    }

    /// The repositories' contents as the planner sees them (without the database texts,
    /// which the planner never reads).
    pub fn binaries(&self) -> Result<Vec<BinaryPackage>, DbError> {
        self.binaries_where("", params![])
    }

    /// The packages named `pkgname` in the repositories, for every architecture.
    pub fn binaries_named(&self, pkgname: &str) -> Result<Vec<BinaryPackage>, DbError> {
        self.binaries_where("WHERE pkgname = ?1", params![pkgname])
    }

    fn binaries_where<P: rusqlite::Params>(
        &self,
        filter: &str,
        params: P,
    ) -> Result<Vec<BinaryPackage>, DbError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT repo, pkg_arch, pkgname, pkgbase, version, provides FROM repo_packages {filter}"
        ))?;
        let rows = stmt.query_map(params, |r| {
            Ok(BinaryPackage {
                repo: repo_at(r, 0)?,
                arch: arch_at(r, 1)?,
                pkgname: r.get(2)?,
                pkgbase: r.get(3)?,
                version: r.get(4)?,
                provides: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Copies `entries` into the live repository (replacing older versions of the same
    /// packages) and records the promotion, in one transaction.
    pub fn promote(&mut self, entries: &[RepoEntry]) -> Result<(), DbError> {
        let tx = self.conn.transaction()?;
        for e in entries {
            let live = RepoEntry {
                repo: RepoKind::Live,
                ..e.clone()
            };
            put_repo_entry(&tx, &live)?;
        }
        let names: Vec<String> = entries
            .iter()
            .map(|e| format!("{} {} ({})", e.pkgname, e.version, e.arch))
            .collect();
        tx.execute(
            "INSERT INTO promotions (at, packages) VALUES (?1, ?2)",
            params![
                now(),
                serde_json::to_string(&names).expect("strings serialize")
            ],
        )?;
        tx.execute(
            "INSERT INTO events (at, kind, subject, message) VALUES (?1, 'promoted', NULL, ?2)",
            params![now(), names.join(", ")],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Appends to the event log.
    pub fn event(&mut self, kind: &str, subject: &str, message: &str) -> Result<(), DbError> {
        self.conn.execute(
            "INSERT INTO events (at, kind, subject, message) VALUES (?1, ?2, ?3, ?4)",
            params![now(), kind, subject, message],
        )?;
        Ok(())
    }

    /// Every quarantined builder, by name.
    pub fn quarantines(&self) -> Result<Vec<(String, Quarantine)>, DbError> {
        let mut stmt = self
            .conn
            .prepare("SELECT builder, reason, since, by FROM quarantine ORDER BY builder")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (builder, reason, since, by) = row?;
            out.push((
                builder,
                Quarantine {
                    reason,
                    since: parse_time(&since).unwrap_or(OffsetDateTime::UNIX_EPOCH),
                    by: By::parse(&by).unwrap_or(By::Operator),
                },
            ));
        }
        Ok(out)
    }

    /// Quarantines `builder`, or replaces the reason of its quarantine; with an event.
    pub fn quarantine(&mut self, builder: &str, q: &Quarantine) -> Result<(), DbError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO quarantine (builder, reason, since, by) VALUES (?1, ?2, ?3, ?4)",
            params![builder, q.reason, format_time(q.since), q.by.as_str()],
        )?;
        tx.execute(
            "INSERT INTO events (at, kind, subject, message) VALUES (?1, 'quarantine', ?2, ?3)",
            params![now(), builder, format!("{builder} {q}")],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Lifts `builder`'s quarantine; says whether it had one.
    pub fn release(&mut self, builder: &str) -> Result<bool, DbError> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM quarantine WHERE builder = ?1",
            params![builder],
        )?;
        if n > 0 {
            tx.execute(
                "INSERT INTO events (at, kind, subject, message) VALUES (?1, 'enable', ?2, ?3)",
                params![now(), builder, format!("{builder} enabled by the operator")],
            )?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    /// The newest events about `subject`, newest first.
    pub fn events_of(
        &self,
        subject: &str,
        limit: usize,
    ) -> Result<Vec<(String, String, String)>, DbError> {
        let mut stmt = self.conn.prepare(
            "SELECT at, kind, message FROM events WHERE subject = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![subject, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

const BUILD_COLUMNS: &str = "builder, build_id, pkgbase, version, arch, verdict, blame, reason, wall_ms, cpu_ms, peak_memory_kb, log_dir, started_at, warnings, template";

/// The verdict stored in columns `verdict` and `blame`.
fn verdict_at(
    r: &rusqlite::Row<'_>,
    verdict: usize,
    blame: usize,
) -> rusqlite::Result<VerdictKind> {
    let text: String = r.get(verdict)?;
    let blame_text: Option<String> = r.get(blame)?;
    VerdictKind::parse(&text, blame_text.as_deref()).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(verdict, rusqlite::types::Type::Text, e.into())
    })
}

/// A [`BuildRow`] from the first columns of a row, in the order of [`BUILD_COLUMNS`].
fn build_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BuildRow> {
    Ok(BuildRow {
        builder: r.get(0)?,
        build_id: r.get(1)?,
        pkgbase: r.get(2)?,
        version: r.get(3)?,
        arch: r.get(4)?,
        verdict: verdict_at(r, 5, 6)?,
        reason: r.get(7)?,
        wall_ms: r.get::<_, Option<i64>>(8)?.map(|v| v as u64),
        cpu_ms: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
        peak_memory_kb: r.get::<_, Option<i64>>(10)?.map(|v| v as u64),
        log_dir: r.get(11)?,
        started_at: r.get::<_, Option<String>>(12)?.and_then(|t| parse_time(&t)),
        warnings: serde_json::from_str(&r.get::<_, String>(13)?).unwrap_or_default(),
        template: r.get(14)?,
    })
}

fn insert_build(conn: &Connection, row: &BuildRow) -> Result<(), rusqlite::Error> {
    conn.execute(
        "INSERT INTO builds (builder, build_id, pkgbase, version, arch, verdict, blame, reason, recorded_at, wall_ms, cpu_ms, peak_memory_kb, log_dir, started_at, warnings, template)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT (builder, build_id) DO NOTHING",
        params![
            row.builder,
            row.build_id,
            row.pkgbase,
            row.version,
            row.arch,
            row.verdict.as_str(),
            row.verdict.blame().map(Blame::as_str),
            row.reason,
            now(),
            row.wall_ms.map(|v| v as i64),
            row.cpu_ms.map(|v| v as i64),
            row.peak_memory_kb.map(|v| v as i64),
            row.log_dir,
            row.started_at.map(format_time),
            serde_json::to_string(&row.warnings).expect("strings serialize"),
            row.template,
        ],
    )?;
    Ok(())
}

fn put_repo_entry(conn: &Connection, e: &RepoEntry) -> Result<(), rusqlite::Error> {
    conn.execute(
        "INSERT INTO repo_packages (repo, arch, filename, pkgname, pkgbase, version, pkg_arch, sha256, size, provides, desc, files, added_at, depends)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (repo, arch, pkgname) DO UPDATE SET
           filename = excluded.filename, pkgbase = excluded.pkgbase, version = excluded.version,
           pkg_arch = excluded.pkg_arch, sha256 = excluded.sha256, size = excluded.size,
           provides = excluded.provides, desc = excluded.desc, files = excluded.files,
           added_at = excluded.added_at, depends = excluded.depends",
        params![
            repo_str(e.repo),
            e.arch,
            e.filename,
            e.pkgname,
            e.pkgbase,
            e.version,
            e.pkg_arch,
            e.sha256,
            e.size as i64,
            serde_json::to_string(&e.provides).expect("strings serialize"),
            e.desc,
            e.files,
            now(),
            serde_json::to_string(&e.depends).expect("strings serialize"),
        ],
    )?;
    Ok(())
}

/// The build key in a row's first three columns (`pkgbase, version, arch`).
fn build_key(r: &rusqlite::Row<'_>) -> rusqlite::Result<BuildKey> {
    Ok(BuildKey::new(
        r.get::<_, String>(0)?,
        r.get::<_, String>(1)?,
        arch_at(r, 2)?,
    ))
}

/// The architecture in column `i`. Every stored architecture was checked when it came in: one
/// that does not parse is a damaged database.
fn arch_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Arch> {
    let arch: String = r.get(i)?;
    Arch::parse(&arch).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

#[cfg(test)]
mod tests;
