//! The schema, and its migrations: each a step applied once, in order, inside a transaction.

use rusqlite::Connection;

/// One step: SQL, then what SQL cannot do, in the same transaction.
struct Migration {
    sql: &'static str,
    then: Option<fn(&Connection) -> rusqlite::Result<()>>,
}

const fn sql(sql: &'static str) -> Migration {
    Migration { sql, then: None }
}

const MIGRATIONS: &[Migration] = &[
    sql(FIRST),
    sql(SECOND),
    sql(THIRD),
    sql(FOURTH),
    sql(FIFTH),
    Migration {
        sql: SIXTH,
        then: Some(fill_depends),
    },
    sql(SEVENTH),
];

/// 1: builds, repositories, promotions, events.
pub(super) const FIRST: &str = "CREATE TABLE builds (
        id INTEGER PRIMARY KEY,
        builder TEXT NOT NULL,
        build_id TEXT NOT NULL,
        pkgbase TEXT NOT NULL,
        version TEXT NOT NULL,
        arch TEXT NOT NULL,
        verdict TEXT NOT NULL CHECK (verdict IN ('accepted', 'rejected', 'failed')),
        reason TEXT,
        recorded_at TEXT NOT NULL,
        wall_ms INTEGER,
        cpu_ms INTEGER,
        peak_memory_kb INTEGER,
        log_dir TEXT,
        retried INTEGER NOT NULL DEFAULT 0,
        UNIQUE (builder, build_id)
    );
    CREATE UNIQUE INDEX builds_accepted_once ON builds (pkgbase, version, arch) WHERE verdict = 'accepted';
    CREATE INDEX builds_by_pkgbase ON builds (pkgbase);
    CREATE TABLE repo_packages (
        repo TEXT NOT NULL CHECK (repo IN ('build', 'live')),
        arch TEXT NOT NULL,
        filename TEXT NOT NULL,
        pkgname TEXT NOT NULL,
        pkgbase TEXT NOT NULL,
        version TEXT NOT NULL,
        pkg_arch TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        provides TEXT NOT NULL,
        desc TEXT NOT NULL,
        files TEXT NOT NULL,
        added_at TEXT NOT NULL,
        PRIMARY KEY (repo, arch, pkgname)
    );
    CREATE TABLE promotions (id INTEGER PRIMARY KEY, at TEXT NOT NULL, packages TEXT NOT NULL);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT,
        message TEXT NOT NULL
    );
    CREATE INDEX events_by_subject ON events (subject);";

/// 2: when each build started, by its builder's clock, to measure how long packages wait.
const SECOND: &str = "ALTER TABLE builds ADD COLUMN started_at TEXT;";

/// 3: verdicts that say what they mean. `rejected` was both a refused build and one that was
/// not needed; refusals now keep whose fault they were (`blame`), and every build keeps the
/// warnings its packages raised. SQLite cannot change a CHECK constraint in place, so the table
/// is made anew and filled from the old one.
const THIRD: &str = "CREATE TABLE builds_new (
        id INTEGER PRIMARY KEY,
        builder TEXT NOT NULL,
        build_id TEXT NOT NULL,
        pkgbase TEXT NOT NULL,
        version TEXT NOT NULL,
        arch TEXT NOT NULL,
        verdict TEXT NOT NULL CHECK (verdict IN ('accepted', 'refused', 'failed', 'unneeded')),
        blame TEXT CHECK (blame IN ('package', 'builder')),
        reason TEXT,
        recorded_at TEXT NOT NULL,
        wall_ms INTEGER,
        cpu_ms INTEGER,
        peak_memory_kb INTEGER,
        log_dir TEXT,
        retried INTEGER NOT NULL DEFAULT 0,
        started_at TEXT,
        warnings TEXT NOT NULL DEFAULT '[]',
        UNIQUE (builder, build_id),
        CHECK ((verdict = 'refused') = (blame IS NOT NULL))
    );
    INSERT INTO builds_new (id, builder, build_id, pkgbase, version, arch, verdict, blame, reason,
        recorded_at, wall_ms, cpu_ms, peak_memory_kb, log_dir, retried, started_at)
    SELECT id, builder, build_id, pkgbase, version, arch,
        CASE WHEN verdict = 'rejected' AND reason LIKE 'not needed:%' THEN 'unneeded'
             WHEN verdict = 'rejected' THEN 'refused'
             ELSE verdict END,
        CASE WHEN verdict = 'rejected' AND reason NOT LIKE 'not needed:%' THEN 'builder' END,
        reason, recorded_at, wall_ms, cpu_ms, peak_memory_kb, log_dir, retried, started_at
    FROM builds;
    DROP TABLE builds;
    ALTER TABLE builds_new RENAME TO builds;
    CREATE UNIQUE INDEX builds_accepted_once ON builds (pkgbase, version, arch) WHERE verdict = 'accepted';
    CREATE INDEX builds_by_pkgbase ON builds (pkgbase);
    CREATE INDEX builds_refused ON builds (pkgbase, version, arch) WHERE verdict = 'refused' AND retried = 0;";

/// 4: quarantined builders, which stay so across restarts until an operator enables them.
const FOURTH: &str = "CREATE TABLE quarantine (
        builder TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        since TEXT NOT NULL,
        by TEXT NOT NULL CHECK (by IN ('operator', 'master'))
    );";

/// 5: lookups by package name and by pkgbase. Every acceptance checks that no other pkgbase
/// holds its package names, and without an index that check read the whole table: at 33,000
/// packages it was a tenth of the master's time.
const FIFTH: &str = "CREATE INDEX repo_packages_by_pkgname ON repo_packages (pkgname);
    CREATE INDEX repo_packages_by_pkgbase ON repo_packages (pkgbase);";

/// 6: each package's run-time dependencies in a column of their own (JSON, as `provides`), so
/// that promotion reads them from the table rather than from the repository's `desc` text.
const SIXTH: &str = "ALTER TABLE repo_packages ADD COLUMN depends TEXT NOT NULL DEFAULT '[]';";

/// 7: independent verification. What each accepted build put into the build repository
/// (file and sha256), which a verification build is compared with, and every verification's
/// verdict with the files it made (so that a later one can say which of two differing builds
/// it agrees with); for builds and verifications alike, the identity of the builder's template
/// root. Versions accepted before this step have no files recorded and are not verified.
const SEVENTH: &str = "CREATE TABLE accepted_files (
        pkgbase TEXT NOT NULL,
        version TEXT NOT NULL,
        arch TEXT NOT NULL,
        filename TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        builder TEXT NOT NULL,
        PRIMARY KEY (pkgbase, version, arch, filename)
    );
    CREATE TABLE verifications (
        id INTEGER PRIMARY KEY,
        builder TEXT NOT NULL,
        build_id TEXT NOT NULL,
        pkgbase TEXT NOT NULL,
        version TEXT NOT NULL,
        arch TEXT NOT NULL,
        verdict TEXT NOT NULL CHECK (verdict IN ('reproduced', 'differs', 'unverifiable')),
        detail TEXT,
        recorded_at TEXT NOT NULL,
        wall_ms INTEGER,
        cpu_ms INTEGER,
        log_dir TEXT,
        files TEXT NOT NULL DEFAULT '[]',
        template TEXT,
        UNIQUE (builder, build_id)
    );
    ALTER TABLE builds ADD COLUMN template TEXT;
    CREATE INDEX verifications_by_key ON verifications (pkgbase, version, arch);";

/// Fills the new `depends` column of the packages already in the repositories from their
/// `desc` entries' `%DEPENDS%`, once.
fn fill_depends(conn: &Connection) -> rusqlite::Result<()> {
    let rows: Vec<(i64, String)> = conn
        .prepare("SELECT rowid, desc FROM repo_packages")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut update = conn.prepare("UPDATE repo_packages SET depends = ?1 WHERE rowid = ?2")?;
    for (rowid, desc) in rows {
        let depends = crate::repo::package::desc_section(&desc, "%DEPENDS%");
        let json = serde_json::to_string(&depends).expect("strings serialize");
        update.execute(rusqlite::params![json, rowid])?;
    }
    Ok(())
}

/// Brings the database up to the newest schema.
pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: usize =
        conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(step.sql)?;
        if let Some(then) = step.then {
            then(&tx)?;
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
