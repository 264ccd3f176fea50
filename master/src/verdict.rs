//! What a finished build came to, as the master records it: one type for the verdict, one for
//! whose fault a refusal is, each with its one stable string form (the database's).

/// Whose fault a refused build is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Blame {
    /// The package built, but not into what its sources say (a stale `.SRCINFO`, a PKGBUILD
    /// that changes its own version): building it again will not help, so refusals of this
    /// kind count toward failing the package.
    Package,
    /// What the builder sent is not what makepkg makes from the master's sources (a wrong
    /// sha256, a renamed file, no `.BUILDINFO`, another PKGBUILD or packager): another builder
    /// may well do better, so they count against the builder first.
    Builder,
}

impl Blame {
    pub fn as_str(self) -> &'static str {
        match self {
            Blame::Package => "package",
            Blame::Builder => "builder",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "package" => Some(Blame::Package),
            "builder" => Some(Blame::Builder),
            _ => None,
        }
    }
}

/// What a finished build came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerdictKind {
    /// In the build repository.
    Accepted,
    /// It failed a check and must never enter a repository.
    Refused(Blame),
    /// The builder reported that it failed.
    Failed,
    /// Nothing wrong with it, but nothing needs it: another build of the version was accepted
    /// first, or the sources moved on.
    Unneeded,
}

/// A verdict's stored form that no version of the master wrote.
#[derive(Debug, thiserror::Error)]
#[error("unknown verdict {verdict:?} (blame {blame:?})")]
pub struct UnknownVerdict {
    pub verdict: String,
    pub blame: Option<String>,
}

impl VerdictKind {
    /// The stored form: the verdict column, and the blame column for refusals.
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Accepted => "accepted",
            VerdictKind::Refused(_) => "refused",
            VerdictKind::Failed => "failed",
            VerdictKind::Unneeded => "unneeded",
        }
    }

    pub fn blame(self) -> Option<Blame> {
        match self {
            VerdictKind::Refused(blame) => Some(blame),
            _ => None,
        }
    }

    pub fn parse(verdict: &str, blame: Option<&str>) -> Result<Self, UnknownVerdict> {
        let unknown = || UnknownVerdict {
            verdict: verdict.to_owned(),
            blame: blame.map(str::to_owned),
        };
        Ok(match verdict {
            "accepted" => VerdictKind::Accepted,
            "failed" => VerdictKind::Failed,
            "unneeded" => VerdictKind::Unneeded,
            // Refusals recorded before blame was kept are taken as the builder's: they never
            // fail a package by themselves.
            "refused" => VerdictKind::Refused(match blame {
                None => Blame::Builder,
                Some(b) => Blame::parse(b).ok_or_else(unknown)?,
            }),
            _ => return Err(unknown()),
        })
    }

    /// The word `why` and the logs use.
    pub fn describe(self) -> &'static str {
        match self {
            VerdictKind::Accepted => "accepted",
            VerdictKind::Refused(Blame::Package) => "refused (the package's fault)",
            VerdictKind::Refused(Blame::Builder) => "refused (the builder's fault)",
            VerdictKind::Failed => "failed",
            VerdictKind::Unneeded => "not needed",
        }
    }
}

/// What a verification build came to: the master's comparison of an independent rebuild with
/// the accepted packages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verification {
    /// Every package is the same bytes as the accepted one.
    Reproduced,
    /// At least one package differs (or is missing, or is extra).
    Differs,
    /// Nothing to compare: the verification build failed, or what it sent was refused.
    Unverifiable,
}

impl Verification {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Verification::Reproduced => "reproduced",
            Verification::Differs => "differs",
            Verification::Unverifiable => "unverifiable",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reproduced" => Some(Verification::Reproduced),
            "differs" => Some(Verification::Differs),
            "unverifiable" => Some(Verification::Unverifiable),
            _ => None,
        }
    }

    /// Whether it settles the question: a reproduction or a difference, not a failure.
    pub fn is_conclusive(self) -> bool {
        !matches!(self, Verification::Unverifiable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verdict_round_trips_through_its_stored_form() {
        for v in [
            VerdictKind::Accepted,
            VerdictKind::Refused(Blame::Package),
            VerdictKind::Refused(Blame::Builder),
            VerdictKind::Failed,
            VerdictKind::Unneeded,
        ] {
            let back = VerdictKind::parse(v.as_str(), v.blame().map(Blame::as_str)).unwrap();
            assert_eq!(back, v);
        }
        assert!(VerdictKind::parse("rejected", None).is_err());
        for v in [
            Verification::Reproduced,
            Verification::Differs,
            Verification::Unverifiable,
        ] {
            assert_eq!(Verification::parse(v.as_str()), Some(v));
        }
        assert_eq!(Verification::parse("accepted"), None);
        assert!(VerdictKind::parse("refused", Some("nobody")).is_err());
    }
}
