//! What independent verification keeps: the files each accepted build put into the build
//! repository, and the verdict of every verification build.

use rusqlite::{OptionalExtension, params};

use super::{Db, DbError, arch_at, now};
use crate::verdict::Verification;
use quarters_common::BuildKey;

/// A package file an accepted build put into the build repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedFile {
    pub filename: String,
    pub sha256: String,
}

/// The accepted build of a version: who built it, from which template, and what it made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub builder: String,
    pub template: Option<String>,
    pub files: Vec<AcceptedFile>,
}

/// A verification build's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerificationRow {
    pub builder: String,
    pub build_id: String,
    pub key: BuildKey,
    pub verdict: Verification,
    /// What differs, or why nothing could be compared.
    pub detail: Option<String>,
    pub wall_ms: Option<u64>,
    pub cpu_ms: Option<u64>,
    pub log_dir: Option<String>,
    /// What the build made, where it could be pulled.
    pub files: Vec<AcceptedFile>,
    /// The identity of the verifying builder's template root.
    pub template: Option<String>,
}

/// A version accepted but not verified yet, and the builders that have built it (the first
/// one, and any whose verification was inconclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub key: BuildKey,
    pub built_by: Vec<String>,
    /// Inconclusive verifications so far.
    pub unverifiable: u32,
}

impl Db {
    /// Records a verification build's verdict; a build recorded before is left as it was.
    pub fn record_verification(&mut self, row: &VerificationRow) -> Result<(), DbError> {
        self.conn.execute(
            "INSERT INTO verifications (builder, build_id, pkgbase, version, arch, verdict, detail, recorded_at, wall_ms, cpu_ms, log_dir, files, template)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (builder, build_id) DO NOTHING",
            params![
                row.builder,
                row.build_id,
                row.key.pkgbase,
                row.key.version,
                row.key.arch.as_str(),
                row.verdict.as_str(),
                row.detail,
                now(),
                row.wall_ms.map(|v| v as i64),
                row.cpu_ms.map(|v| v as i64),
                row.log_dir,
                serde_json::to_string(
                    &row.files
                        .iter()
                        .map(|f| (&f.filename, &f.sha256))
                        .collect::<Vec<_>>()
                )
                .expect("strings serialize"),
                row.template,
            ],
        )?;
        Ok(())
    }

    /// The verdict of this builder's verification build, if it has one.
    pub fn verification_of(
        &self,
        builder: &str,
        build_id: &str,
    ) -> Result<Option<(Verification, Option<String>)>, DbError> {
        Ok(self
            .conn
            .query_row(
                "SELECT verdict, detail FROM verifications WHERE builder = ?1 AND build_id = ?2",
                params![builder, build_id],
                |r| Ok((verification_at(r, 0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// The accepted build of `key` as verification needs it; `None` for a version not
    /// accepted, or accepted before files were recorded.
    pub fn accepted(&self, key: &BuildKey) -> Result<Option<Accepted>, DbError> {
        let mut stmt = self.conn.prepare(
            "SELECT filename, sha256, builder FROM accepted_files
             WHERE pkgbase = ?1 AND version = ?2 AND arch = ?3 ORDER BY filename",
        )?;
        let rows = stmt.query_map(params![key.pkgbase, key.version, key.arch.as_str()], |r| {
            Ok((
                AcceptedFile {
                    filename: r.get(0)?,
                    sha256: r.get(1)?,
                },
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut accepted: Option<Accepted> = None;
        for row in rows {
            let (file, builder) = row?;
            accepted
                .get_or_insert_with(|| Accepted {
                    builder,
                    template: None,
                    files: Vec::new(),
                })
                .files
                .push(file);
        }
        if let Some(a) = &mut accepted {
            a.template = self
                .conn
                .query_row(
                    "SELECT template FROM builds WHERE pkgbase = ?1 AND version = ?2 AND arch = ?3 AND verdict = 'accepted'",
                    params![key.pkgbase, key.version, key.arch.as_str()],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
        }
        Ok(accepted)
    }

    /// The architectures of the builds of `pkgbase` at `version` that `reproductions`
    /// independent builds reproduced.
    pub fn reproduced_archs(
        &self,
        pkgbase: &str,
        version: &str,
        reproductions: u32,
    ) -> Result<Vec<String>, DbError> {
        let mut stmt = self.conn.prepare(
            "SELECT arch FROM verifications
             WHERE pkgbase = ?1 AND version = ?2 AND verdict = 'reproduced'
             GROUP BY arch HAVING count(DISTINCT builder) >= ?3",
        )?;
        let rows = stmt.query_map(params![pkgbase, version, reproductions], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every version that an independent build did not reproduce, and none did.
    pub fn differing(&self) -> Result<Vec<BuildKey>, DbError> {
        let mut stmt = self.conn.prepare(
            "SELECT DISTINCT pkgbase, version, arch FROM verifications v WHERE verdict = 'differs'
             AND NOT EXISTS (SELECT 1 FROM verifications r WHERE r.pkgbase = v.pkgbase
                 AND r.version = v.version AND r.arch = v.arch AND r.verdict = 'reproduced')",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(BuildKey::new(
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                arch_at(r, 2)?,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many versions an independent build reproduced, and how many only differ.
    pub fn verification_counts(&self) -> Result<(u64, u64), DbError> {
        let reproduced: i64 = self.conn.query_row(
            "SELECT count(*) FROM (SELECT DISTINCT pkgbase, version, arch FROM verifications
             WHERE verdict = 'reproduced')",
            [],
            |r| r.get(0),
        )?;
        Ok((reproduced as u64, self.differing()?.len() as u64))
    }

    /// The verifications of `pkgbase`'s versions, newest first.
    pub fn verifications_of(&self, pkgbase: &str) -> Result<Vec<VerificationRow>, DbError> {
        let mut stmt = self.conn.prepare(
            "SELECT builder, build_id, version, arch, verdict, detail, wall_ms, cpu_ms, log_dir, files, template
             FROM verifications WHERE pkgbase = ?1 ORDER BY id DESC",
        )?;
        let rows = stmt.query_map([pkgbase], |r| {
            Ok(VerificationRow {
                builder: r.get(0)?,
                build_id: r.get(1)?,
                key: BuildKey::new(pkgbase, r.get::<_, String>(2)?, arch_at(r, 3)?),
                verdict: verification_at(r, 4)?,
                detail: r.get(5)?,
                wall_ms: r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
                cpu_ms: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
                log_dir: r.get(8)?,
                files: serde_json::from_str::<Vec<(String, String)>>(&r.get::<_, String>(9)?)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(filename, sha256)| AcceptedFile { filename, sha256 })
                    .collect(),
                template: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every accepted version that no verification has settled (`reproductions` reproductions
    /// do; a difference does once a second verification has said which side it is on), with
    /// fewer than `max_unverifiable` inconclusive ones.
    pub fn pending_verifications(
        &self,
        max_unverifiable: u32,
        reproductions: u32,
    ) -> Result<Vec<Pending>, DbError> {
        let mut stmt = self.conn.prepare(
            "SELECT a.pkgbase, a.version, a.arch, MIN(a.builder),
                (SELECT group_concat(v.builder, char(10)) FROM verifications v
                    WHERE v.pkgbase = a.pkgbase AND v.version = a.version AND v.arch = a.arch),
                (SELECT count(*) >= ?1 FROM verifications v
                    WHERE v.pkgbase = a.pkgbase AND v.version = a.version AND v.arch = a.arch
                    AND v.verdict = 'reproduced')
                + (SELECT count(*) >= 2 FROM verifications v
                    WHERE v.pkgbase = a.pkgbase AND v.version = a.version AND v.arch = a.arch
                    AND v.verdict = 'differs'),
                (SELECT count(*) FROM verifications v
                    WHERE v.pkgbase = a.pkgbase AND v.version = a.version AND v.arch = a.arch
                    AND v.verdict = 'unverifiable')
             FROM accepted_files a GROUP BY a.pkgbase, a.version, a.arch",
        )?;
        let rows = stmt.query_map([reproductions], |r| {
            let first: String = r.get(3)?;
            let others: Option<String> = r.get(4)?;
            let mut built_by = vec![first];
            for b in others.iter().flat_map(|o| o.lines()) {
                if !built_by.iter().any(|x| x == b) {
                    built_by.push(b.to_owned());
                }
            }
            Ok((
                Pending {
                    key: BuildKey::new(
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        arch_at(r, 2)?,
                    ),
                    built_by,
                    unverifiable: r.get::<_, i64>(6)? as u32,
                },
                r.get::<_, i64>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (pending, conclusive) = row?;
            if conclusive == 0 && pending.unverifiable < max_unverifiable {
                out.push(pending);
            }
        }
        Ok(out)
    }
}

fn verification_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Verification> {
    let text: String = r.get(i)?;
    Verification::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown verification verdict {text:?}").into(),
        )
    })
}
