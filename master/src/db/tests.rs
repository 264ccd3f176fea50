use super::*;

fn row(builder: &str, id: &str, verdict: VerdictKind) -> BuildRow {
    BuildRow {
        builder: builder.into(),
        build_id: id.into(),
        pkgbase: "foo".into(),
        version: "1-1".into(),
        arch: "x86_64".into(),
        verdict,
        reason: (verdict == VerdictKind::Failed).then(|| "build: exit status 1".into()),
        wall_ms: Some(1000),
        cpu_ms: Some(900),
        peak_memory_kb: Some(2048),
        log_dir: None,
        started_at: Some(time::macros::datetime!(2026-11-21 10:00:00.123456 UTC)),
    }
}

fn entry(pkgname: &str) -> RepoEntry {
    RepoEntry {
        repo: RepoKind::Build,
        arch: "x86_64".into(),
        filename: format!("{pkgname}-1-1-x86_64.pkg.tar.zst"),
        pkgname: pkgname.into(),
        pkgbase: "foo".into(),
        version: "1-1".into(),
        pkg_arch: "x86_64".into(),
        sha256: "00".repeat(32),
        size: 10,
        provides: vec!["libfoo.so".into()],
        desc: "%NAME%\nfoo\n".into(),
        files: "%FILES%\n".into(),
    }
}

#[test]
fn a_version_is_accepted_at_most_once() {
    let mut db = Db::in_memory().unwrap();
    db.accept(&row("b1", "7", VerdictKind::Accepted), &[entry("foo")])
        .unwrap();
    let err = db
        .accept(&row("b2", "3", VerdictKind::Accepted), &[entry("foo")])
        .unwrap_err();
    assert!(matches!(err, DbError::AlreadyAccepted { .. }), "{err}");
    assert!(
        db.is_accepted(&("foo".into(), "1-1".into(), "x86_64".into()))
            .unwrap()
    );
    assert_eq!(
        db.verdict_of("b1", "7").unwrap().unwrap().0,
        VerdictKind::Accepted
    );
    assert_eq!(
        db.verdict_of("b2", "3").unwrap(),
        None,
        "the refused acceptance left nothing"
    );
    assert_eq!(db.binaries().unwrap().len(), 1);
    assert_eq!(db.durations().unwrap()["foo"], 1000);
}

#[test]
fn failures_hold_until_retried() {
    let mut db = Db::in_memory().unwrap();
    db.record_build(&row("b1", "1", VerdictKind::Failed))
        .unwrap();
    db.record_build(&row("b1", "1", VerdictKind::Failed))
        .unwrap();
    let failures = db.failures().unwrap();
    assert_eq!(failures.len(), 1);
    let failure = failures.values().next().unwrap();
    assert!(
        failure.describe().contains("exit status 1 (on b1)"),
        "{failure:?}"
    );
    assert_eq!(failure.stage(), "build");
    assert_eq!(db.retry("foo").unwrap(), 1);
    assert!(db.failures().unwrap().is_empty());
    assert_eq!(db.retry("foo").unwrap(), 0);
    let builds = db.builds_of("foo", 10).unwrap();
    assert_eq!(builds, [row("b1", "1", VerdictKind::Failed)]);
    assert_eq!(db.events_of("foo", 10).unwrap()[0].1, "retry");
}

#[test]
fn promotion_copies_into_live_and_replaces_older_versions() {
    let mut db = Db::in_memory().unwrap();
    db.accept(&row("b1", "7", VerdictKind::Accepted), &[entry("foo")])
        .unwrap();
    let build = db.repo_entries().unwrap();
    db.promote(&build).unwrap();
    let mut newer = entry("foo");
    newer.version = "2-1".into();
    newer.repo = RepoKind::Live;
    db.promote(&[newer]).unwrap();
    let live: Vec<RepoEntry> = db
        .repo_entries()
        .unwrap()
        .into_iter()
        .filter(|e| e.repo == RepoKind::Live)
        .collect();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].version, "2-1");
}

#[test]
fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.sqlite");
    {
        let mut db = Db::open(&path).unwrap();
        db.accept(&row("b1", "7", VerdictKind::Accepted), &[entry("foo")])
            .unwrap();
    }
    let db = Db::open(&path).unwrap();
    assert_eq!(db.repo_entries().unwrap().len(), 1);
    assert!(
        db.is_accepted(&("foo".into(), "1-1".into(), "x86_64".into()))
            .unwrap()
    );
}

#[test]
fn a_database_of_the_first_schema_gains_the_start_times() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(super::schema::FIRST).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO builds (builder, build_id, pkgbase, version, arch, verdict, recorded_at)
             VALUES ('b1', '1', 'foo', '1-1', 'x86_64', 'accepted', '2026-01-01T00:00:00Z')",
            [],
        )
        .unwrap();
    }
    let mut db = Db::open(&path).unwrap();
    assert_eq!(db.builds_of("foo", 10).unwrap()[0].started_at, None);
    let mut newer = row("b1", "2", VerdictKind::Failed);
    newer.version = "2-1".into();
    db.record_build(&newer).unwrap();
    assert_eq!(db.builds_of("foo", 1).unwrap(), [newer.clone()]);
    let timeline = db.timeline().unwrap();
    assert_eq!(timeline.len(), 2);
    assert_eq!(
        timeline[0].1,
        time::macros::datetime!(2026-01-01 00:00:00 UTC)
    );
    assert_eq!(timeline[1].0, newer);
    assert!(timeline[1].1 > timeline[0].1);
}
