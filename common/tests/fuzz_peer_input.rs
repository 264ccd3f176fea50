//! Property tests of the boundary where a builder's state enters a reader: whatever bytes a
//! builder publishes, parsing and checking them never panics, and what comes out holds the
//! invariants every later reader relies on (names that cannot be paths, bounded counts and
//! text, leases no longer than the maximum).
//!
//! CI runs a few hundred cases per property; `PROPTEST_CASES=100000 cargo test -p
//! quarters-common --test fuzz_peer_input` runs a longer campaign.

use std::time::Duration;

use proptest::prelude::*;
use quarters_common::api::v1::{
    Artifact, Build, BuildOutcome, BuilderState, Claim, ClaimPhase, PeerStatus, PeerView,
};
use quarters_common::peer_input::{BuilderLimits, CheckedBuilder, CheckedOutcome, MAX_TEXT};
use time::OffsetDateTime;

/// Strings a hostile builder would try: path traversal, separators, control characters,
/// overlong values, and anything else Unicode allows.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9@._+-]{0,12}",
        "(\\.\\./){1,4}[a-z]{0,6}",
        "[a-zA-Z0-9/\\\\.:\\x00-\\x1f ]{0,24}",
        any::<String>(),
        (1usize..600).prop_map(|n| "x".repeat(n)),
    ]
}

/// A value of the shape `valid` describes most of the time, a hostile one otherwise: states
/// must get past the checks often enough for the properties to say something.
fn mostly(valid: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![3 => proptest::string::string_regex(valid).unwrap(), 1 => hostile_string()]
}

fn phase() -> impl Strategy<Value = ClaimPhase> {
    prop_oneof![
        Just(ClaimPhase::Claimed),
        Just(ClaimPhase::Committed),
        Just(ClaimPhase::Done),
        Just(ClaimPhase::Failed),
    ]
}

fn time_at() -> impl Strategy<Value = OffsetDateTime> {
    // From 1970 to 9999: leases that go backwards, and leases that never end.
    (0i64..253_402_300_799).prop_map(|s| OffsetDateTime::from_unix_timestamp(s).unwrap())
}

fn claim() -> impl Strategy<Value = Claim> {
    (
        mostly("[a-z][a-z0-9]{0,8}"),
        mostly("[1-9]\\.[0-9]-[1-9]"),
        mostly("x86_64|any"),
        phase(),
        time_at(),
        time_at(),
        proptest::option::of(mostly("[a-z]{1,6}-[0-9]{1,4}")),
    )
        .prop_map(
            |(pkgbase, version, arch, phase, renewed_at, lease_until, build)| Claim {
                pkgbase,
                version,
                arch,
                phase,
                renewed_at,
                lease_until,
                build,
                purpose: Default::default(),
            },
        )
}

fn outcome() -> impl Strategy<Value = BuildOutcome> {
    prop_oneof![
        mostly("[a-z]{1,8}").prop_map(|stage| BuildOutcome::Running { stage }),
        Just(BuildOutcome::Succeeded),
        (
            mostly("[a-z]{1,8}"),
            prop_oneof![
                hostile_string(),
                (MAX_TEXT - 4..MAX_TEXT * 3).prop_map(|n| "é\u{1b}".repeat(n / 3)),
            ]
        )
            .prop_map(|(stage, reason)| BuildOutcome::Failed { stage, reason }),
    ]
}

fn build() -> impl Strategy<Value = Build> {
    (
        mostly("[a-z]{1,6}-[0-9]{1,4}"),
        mostly("[a-z][a-z0-9]{0,8}"),
        mostly("[1-9]\\.[0-9]-[1-9]"),
        outcome(),
        time_at(),
        proptest::collection::vec(mostly("[a-z]{1,8}"), 0..40),
        proptest::collection::vec(
            (
                mostly("[a-z]{1,6}-1\\.0-1-x86_64\\.pkg\\.tar\\.zst"),
                mostly("[0-9a-f]{64}"),
                any::<u64>(),
            )
                .prop_map(|(file, sha256, size)| Artifact { file, sha256, size }),
            0..6,
        ),
    )
        .prop_map(
            |(id, pkgbase, version, outcome, started_at, logs, artifacts)| Build {
                id,
                pkgbase,
                version,
                arch: "x86_64".to_owned(),
                outcome,
                started_at,
                finished_at: None,
                logs,
                artifacts,
                wall_ms: None,
                cpu_ms: None,
                peak_memory_kb: None,
                purpose: Default::default(),
            },
        )
}

fn state() -> impl Strategy<Value = BuilderState> {
    (
        proptest::collection::vec(mostly("x86_64|aarch64"), 0..20),
        prop_oneof![3 => 1u32..8, 1 => any::<u32>()],
        proptest::collection::vec(claim(), 0..24),
        proptest::collection::vec(build(), 0..12),
    )
        .prop_map(|(arch, slots, claims, builds)| BuilderState {
            arch,
            slots,
            master: PeerView {
                name: "master".to_owned(),
                url: "https://master.test/".parse().unwrap(),
                status: PeerStatus::Unknown,
                slots: None,
                quarantine: None,
            },
            claims,
            builds,
            template: None,
            machine: None,
        })
}

/// Small limits, so that the generated states cross them.
fn limits() -> BuilderLimits {
    BuilderLimits {
        max_lease: Duration::from_secs(600),
        max_claims: 16,
        max_builds: 8,
        max_logs: 32,
        max_artifacts: 4,
        max_slots: 64,
    }
}

/// A name that a reader could ever make part of a path, or that is out of bounds.
fn path_safe(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn holds_invariants(checked: &CheckedBuilder, limits: &BuilderLimits) -> Result<(), TestCaseError> {
    prop_assert!(checked.claims.len() <= limits.max_claims);
    prop_assert!(checked.builds.len() <= limits.max_builds);
    prop_assert!(
        (1..=limits.max_slots).contains(&checked.slots),
        "slots {}",
        checked.slots
    );
    for c in &checked.claims {
        prop_assert!(c.lease <= limits.max_lease, "lease {:?}", c.lease);
        prop_assert!(path_safe(c.pkgbase.as_str(), 128));
        if let Some(b) = &c.build {
            prop_assert!(path_safe(b.as_str(), 128), "build id {b}");
        }
    }
    for b in &checked.builds {
        prop_assert!(path_safe(b.id.as_str(), 128), "build id {}", b.id);
        prop_assert!(b.logs.len() <= limits.max_logs);
        prop_assert!(b.artifacts.len() <= limits.max_artifacts);
        for stage in &b.logs {
            prop_assert!(path_safe(stage.as_str(), 32), "stage {stage}");
        }
        for a in &b.artifacts {
            prop_assert!(path_safe(a.file.as_str(), 255), "file {}", a.file);
        }
        if let CheckedOutcome::Failed { reason, .. } = &b.outcome {
            prop_assert!(reason.as_str().len() <= MAX_TEXT + '…'.len_utf8());
            prop_assert!(
                !reason
                    .as_str()
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t')
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_state_checks_into_values_that_hold_the_invariants(state in state()) {
        let limits = limits();
        let (checked, violations) = CheckedBuilder::check(&state, &limits);
        holds_invariants(&checked, &limits)?;
        // Whatever was left out is said: a state that lost something names a violation.
        let dropped = checked.claims.len() < state.claims.len()
            || checked.builds.len() < state.builds.len();
        prop_assert!(!dropped || !violations.is_empty());
        // The check is a function of the state.
        prop_assert_eq!(CheckedBuilder::check(&state, &limits), (checked, violations));
    }

    #[test]
    fn any_bytes_parse_or_fail_without_harm(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(state) = serde_json::from_slice::<BuilderState>(&bytes) {
            let (checked, _) = CheckedBuilder::check(&state, &limits());
            holds_invariants(&checked, &limits())?;
        }
    }

    #[test]
    fn a_valid_state_with_bytes_changed_parses_or_fails_without_harm(
        state in state(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = serde_json::to_vec(&state).unwrap();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok(state) = serde_json::from_slice::<BuilderState>(&bytes) {
            let (checked, _) = CheckedBuilder::check(&state, &limits());
            holds_invariants(&checked, &limits())?;
        }
    }
}
