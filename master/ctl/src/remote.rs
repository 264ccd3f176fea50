//! `quartersctl status|why --master URL`: the master's answers read over HTTPS from any
//! machine, checked against the farm's CA. Only questions that change nothing go this way;
//! changes go through the spool on the master's machine.

use std::path::Path;

use anyhow::Context as _;
use quarters_common::NodeName;
use quarters_common::api::v1::ctl::Answer;
use quarters_common::client::{ClientLimits, PeerClient};
use quarters_common::tls::FarmTrust;
use url::Url;

/// The largest answer read: a `why` of a package with many builds is a few kilobytes.
const MAX_ANSWER: usize = 4 << 20;

/// What may be asked from afar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Question {
    Status,
    Why { package: String },
}

impl Question {
    /// The master's path for it, the package name escaped as a path segment.
    fn path(&self) -> String {
        match self {
            Question::Status => "v1/status".to_owned(),
            Question::Why { package } => {
                let mut url = Url::parse("https://x/v1/why/").expect("a valid URL");
                url.path_segments_mut()
                    .expect("an https URL has path segments")
                    .pop_if_empty()
                    .push(package);
                url.path().trim_start_matches('/').to_owned()
            }
        }
    }
}

/// Asks the master at `url`, whose certificate must name `name` and be signed by the CA in
/// `ca`.
pub fn ask(url: &Url, ca: &Path, name: &str, question: &Question) -> anyhow::Result<Answer> {
    let trust =
        FarmTrust::load(ca).with_context(|| format!("reading the farm CA {}", ca.display()))?;
    let name = NodeName::new(name).with_context(|| format!("master name {name:?}"))?;
    let client = PeerClient::new(&trust, name, url.clone(), ClientLimits::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let answer = runtime.block_on(client.get_json::<Answer>(&question.path(), MAX_ANSWER))?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_name_is_one_escaped_path_segment() {
        assert_eq!(Question::Status.path(), "v1/status");
        let why = |p: &str| {
            Question::Why {
                package: p.to_owned(),
            }
            .path()
        };
        assert_eq!(why("gtk2+extra"), "v1/why/gtk2+extra");
        assert_eq!(why("../state"), "v1/why/..%2Fstate");
        assert_eq!(why("a b?c#d"), "v1/why/a%20b%3Fc%23d");
    }
}
