//! Reading the other builders, whose list and addresses come from the master's state.
//!
//! A claim review reads every peer twice, so with N builders a claim costs 2(N-1) reads. Each
//! read is conditional on the peer's last state seen: a peer whose claims have not changed since
//! answers 304 with no body, and the claims remembered from that state are as fresh as a full
//! read would have made them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use quarters_common::NodeName;
use quarters_common::api::v1::{BuilderState, Claim, PeerView, Role};
use quarters_common::client::{ClientLimits, Fetched, PeerClient};
use quarters_common::counters::{Counters, PEER_READS, PEER_READS_UNCHANGED};
use quarters_common::tls::FarmTrust;

use crate::claims::protocol::PeerReads;

/// How long a peer gets to answer during a claim review.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// The peers as the master last listed them, with a client for each.
#[derive(Debug)]
pub struct Peers {
    me: NodeName,
    trust: FarmTrust,
    clients: Mutex<BTreeMap<String, Peer>>,
    counters: Counters,
}

#[derive(Debug, Clone)]
struct Peer {
    client: PeerClient,
    /// The peer's claims as of the state with this entity tag.
    last: Option<(String, Vec<Claim>)>,
}

impl Peers {
    pub fn new(me: NodeName, trust: FarmTrust, counters: Counters) -> Self {
        Peers {
            me,
            trust,
            clients: Mutex::new(BTreeMap::new()),
            counters,
        }
    }

    /// Takes the builders the master lists as this builder's peers.
    pub fn update(&self, builders: &[PeerView]) {
        let mut clients = self
            .clients
            .lock()
            .expect("no code panics while holding the peers");
        clients.retain(|name, peer| {
            builders
                .iter()
                .any(|b| &b.name == name && &b.url == peer.client.base_url() && b.is_validated())
        });
        for b in builders {
            // A quarantined builder is no peer: its claims are not read, so the packages it
            // holds are claimable at once rather than after its lease.
            if b.name == self.me.as_str() || !b.is_validated() || clients.contains_key(&b.name) {
                continue;
            }
            let Ok(name) = NodeName::new(b.name.as_str()) else {
                continue;
            };
            let limits = ClientLimits {
                answer_timeout: PEER_TIMEOUT,
                connect_timeout: PEER_TIMEOUT,
                ..ClientLimits::default()
            };
            clients.insert(
                b.name.clone(),
                Peer {
                    client: PeerClient::new(&self.trust, name, b.url.clone(), limits),
                    last: None,
                },
            );
        }
    }

    fn peer(&self, name: &str) -> Option<Peer> {
        self.clients
            .lock()
            .expect("no code panics while holding the peers")
            .get(name)
            .cloned()
    }

    fn remember(&self, name: &str, client: &PeerClient, etag: String, claims: &[Claim]) {
        let mut clients = self
            .clients
            .lock()
            .expect("no code panics while holding the peers");
        // The peer may have been replaced (a new URL) while the read ran: remember only for the
        // client that read.
        if let Some(peer) = clients.get_mut(name)
            && peer.client.base_url() == client.base_url()
        {
            peer.last = Some((etag, claims.to_vec()));
        }
    }
}

impl PeerReads for Peers {
    fn peers(&self) -> Vec<String> {
        self.clients
            .lock()
            .expect("no code panics while holding the peers")
            .keys()
            .cloned()
            .collect()
    }

    async fn read(&self, name: &str) -> Result<Vec<Claim>, String> {
        let peer = self
            .peer(name)
            .ok_or_else(|| format!("{name} is no longer listed"))?;
        self.counters.add(PEER_READS, 1);
        let etag = peer.last.as_ref().map(|(etag, _)| etag.as_str());
        match peer
            .client
            .state::<BuilderState>(Role::Builder, etag, Duration::ZERO)
            .await
        {
            Ok(Fetched::New { state, etag }) => {
                self.remember(name, &peer.client, etag, &state.content.claims);
                Ok(state.content.claims)
            }
            Ok(Fetched::Unchanged) => {
                self.counters.add(PEER_READS_UNCHANGED, 1);
                match peer.last {
                    Some((_, claims)) => Ok(claims),
                    None => Err(format!("{name} answered 304 to an unconditional read")),
                }
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarters_common::api::v1::{PeerStatus, QuarantineView, QuarantinedBy};

    fn view(name: &str, quarantined: bool) -> PeerView {
        PeerView {
            name: name.to_owned(),
            url: format!("https://{name}.test/").parse().unwrap(),
            status: PeerStatus::Unknown,
            slots: Some(1),
            quarantine: quarantined.then(|| QuarantineView {
                reason: "protocol violations".to_owned(),
                since: time::OffsetDateTime::UNIX_EPOCH,
                by: QuarantinedBy::Master,
            }),
        }
    }

    #[test]
    fn a_quarantined_builder_is_no_peer_and_stops_being_one() {
        let dir = tempfile::tempdir().unwrap();
        let ca = quarters_common::pki::init_ca(dir.path(), false).unwrap();
        let trust = FarmTrust::load(&ca.cert).unwrap();
        let peers = Peers::new(NodeName::new("me").unwrap(), trust, Counters::default());
        peers.update(&[view("me", false), view("a", false), view("b", true)]);
        assert_eq!(peers.peers(), ["a"]);
        // Quarantined while listed: dropped at once, its remembered claims with it.
        peers.update(&[view("me", false), view("a", true), view("b", true)]);
        assert!(peers.peers().is_empty());
        peers.update(&[view("a", false), view("b", false)]);
        assert_eq!(peers.peers(), ["a", "b"]);
    }
}
