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
        warnings: Vec::new(),
        template: Some("ab".repeat(32)),
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
        depends: vec!["glibc".into()],
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
        db.is_accepted(&BuildKey::new(
            "foo",
            "1-1",
            quarters_common::Arch::parse("x86_64").unwrap()
        ))
        .unwrap()
    );
    assert_eq!(
        db.verdict_of("b1", "7").unwrap().unwrap().verdict,
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
    let failures = db.failures(2).unwrap();
    assert_eq!(failures.len(), 1);
    let failure = failures.values().next().unwrap();
    assert!(
        failure.describe().contains("exit status 1 (on b1)"),
        "{failure:?}"
    );
    assert_eq!(failure.stage(), "build");
    assert_eq!(db.retry("foo").unwrap(), 1);
    assert!(db.failures(2).unwrap().is_empty());
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
        db.is_accepted(&BuildKey::new(
            "foo",
            "1-1",
            quarters_common::Arch::parse("x86_64").unwrap()
        ))
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

fn refusal(builder: &str, id: &str, blame: Blame) -> BuildRow {
    BuildRow {
        reason: Some(format!("refusal {id}")),
        ..row(builder, id, VerdictKind::Refused(blame))
    }
}

/// A version refused again and again stops being built: after `max_refusals` refusals that are
/// the package's fault, or builders' refusals from that many builders (twice as many from one).
#[test]
fn refusals_fail_a_version_once_there_are_enough_of_them() {
    let key = BuildKey::new(
        "foo",
        "1-1",
        quarters_common::Arch::parse("x86_64").unwrap(),
    );
    let mut db = Db::in_memory().unwrap();
    db.record_build(&refusal("b1", "1", Blame::Package))
        .unwrap();
    assert!(db.failures(2).unwrap().is_empty());
    db.record_build(&refusal("b2", "2", Blame::Package))
        .unwrap();
    let failure = &db.failures(2).unwrap()[&key];
    assert_eq!(failure.reason, "refused 2 times, last: refusal 2");
    assert_eq!(failure.builder, "b2");
    assert_eq!(db.retry("foo").unwrap(), 2);
    assert!(db.failures(2).unwrap().is_empty());

    // The builders' fault: one builder alone does not fail the package until it did so four
    // times; a second builder with the same complaint does.
    for id in ["3", "4", "5"] {
        db.record_build(&refusal("b1", id, Blame::Builder)).unwrap();
    }
    assert!(db.failures(2).unwrap().is_empty());
    db.record_build(&refusal("b2", "6", Blame::Builder))
        .unwrap();
    assert!(db.failures(2).unwrap().contains_key(&key));
    db.retry("foo").unwrap();
    for id in ["7", "8", "9", "10"] {
        db.record_build(&refusal("b1", id, Blame::Builder)).unwrap();
    }
    assert!(db.failures(2).unwrap().contains_key(&key));
    assert_eq!(
        db.builds_of("foo", 1).unwrap()[0].verdict,
        VerdictKind::Refused(Blame::Builder)
    );
}

/// A database of the second schema, with its `rejected` verdicts, comes through the third
/// migration with every build and the right verdict for each.
#[test]
fn rejected_builds_of_the_old_schema_become_refused_or_unneeded() {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(schema::FIRST).unwrap();
    conn.execute_batch("ALTER TABLE builds ADD COLUMN started_at TEXT;")
        .unwrap();
    conn.pragma_update(None, "user_version", 2).unwrap();
    for (id, verdict, reason) in [
        ("1", "rejected", "not needed: the sources are at 2-1 now"),
        ("2", "rejected", "x.pkg.tar.zst: sha256 mismatch"),
        ("3", "accepted", ""),
        ("4", "failed", "build: exit status 2"),
    ] {
        conn.execute(
            "INSERT INTO builds (builder, build_id, pkgbase, version, arch, verdict, reason, recorded_at)
             VALUES ('b1', ?1, 'foo', '1-1', 'x86_64', ?2, ?3, '2026-11-21T10:00:00Z')",
            params![id, verdict, reason],
        )
        .unwrap();
    }
    let db = Db::init(conn).unwrap();
    let verdicts: Vec<VerdictKind> = ["1", "2", "3", "4"]
        .iter()
        .map(|id| db.verdict_of("b1", id).unwrap().unwrap().verdict)
        .collect();
    assert_eq!(
        verdicts,
        [
            VerdictKind::Unneeded,
            VerdictKind::Refused(Blame::Builder),
            VerdictKind::Accepted,
            VerdictKind::Failed
        ]
    );
}

#[test]
fn a_package_name_belongs_to_one_pkgbase() {
    let mut db = Db::in_memory().unwrap();
    db.accept(&row("b1", "7", VerdictKind::Accepted), &[entry("foo")])
        .unwrap();
    let mut impostor = row("b2", "8", VerdictKind::Accepted);
    impostor.pkgbase = "bar".into();
    let mut taken = entry("foo");
    taken.pkgbase = "bar".into();
    let err = db.accept(&impostor, &[taken]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pkgname foo belongs to pkgbase foo in the build repository"
    );
    assert_eq!(db.verdict_of("b2", "8").unwrap(), None, "nothing was kept");
    let binaries = db.repo_entries().unwrap();
    assert_eq!(binaries.len(), 1);
    assert_eq!(binaries[0].pkgbase, "foo");
}

#[test]
fn a_quarantine_is_kept_until_released() {
    let mut db = Db::in_memory().unwrap();
    let q = Quarantine {
        reason: "3 protocol violations".into(),
        since: OffsetDateTime::UNIX_EPOCH,
        by: By::Master,
    };
    db.quarantine("b2", &q).unwrap();
    assert_eq!(db.quarantines().unwrap(), vec![("b2".to_owned(), q)]);
    assert!(db.release("b2").unwrap());
    assert!(!db.release("b2").unwrap(), "released once");
    assert!(db.quarantines().unwrap().is_empty());
    let events = db.events_of("b2", 5).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].1, "enable");
    assert_eq!(events[1].1, "quarantine");
}

/// Packages accepted before the sixth schema gain their dependencies from their `desc`
/// entries, so that promotion finds them in the table.
#[test]
fn packages_of_the_fifth_schema_gain_their_dependencies_from_desc() {
    let conn = Connection::open_in_memory().unwrap();
    for step in [
        schema::FIRST,
        "ALTER TABLE builds ADD COLUMN started_at TEXT;",
    ] {
        conn.execute_batch(step).unwrap();
    }
    conn.pragma_update(None, "user_version", 2).unwrap();
    conn.execute(
        "INSERT INTO repo_packages (repo, arch, filename, pkgname, pkgbase, version, pkg_arch,
             sha256, size, provides, desc, files, added_at)
         VALUES ('build', 'x86_64', 'hello-1-1-x86_64.pkg.tar.zst', 'hello', 'hello', '1-1',
             'x86_64', ?1, 10, '[]', ?2, '%FILES%\n', '2026-11-21T10:00:00Z')",
        params![
            "00".repeat(32),
            "%NAME%\nhello\n\n%DEPENDS%\nlibhello>=1.0\nglibc\n\n%PROVIDES%\nhi\n\n"
        ],
    )
    .unwrap();
    let db = Db::init(conn).unwrap();
    let entries = db.repo_entries().unwrap();
    assert_eq!(entries[0].depends, ["libhello>=1.0", "glibc"]);
}
