//! Reading the other builders, whose list and addresses come from the master's state.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use quarters_common::NodeName;
use quarters_common::api::v1::{BuilderState, Claim, PeerView, Role};
use quarters_common::client::{ClientLimits, Fetched, PeerClient};
use quarters_common::tls::FarmTrust;

use crate::claims::protocol::PeerReads;

/// How long a peer gets to answer during a claim review.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// The peers as the master last listed them, with a client for each.
#[derive(Debug)]
pub struct Peers {
    me: NodeName,
    trust: FarmTrust,
    clients: Mutex<BTreeMap<String, PeerClient>>,
}

impl Peers {
    pub fn new(me: NodeName, trust: FarmTrust) -> Self {
        Peers {
            me,
            trust,
            clients: Mutex::new(BTreeMap::new()),
        }
    }

    /// Takes the builders the master lists as this builder's peers.
    pub fn update(&self, builders: &[PeerView]) {
        let mut clients = self
            .clients
            .lock()
            .expect("no code panics while holding the peers");
        clients.retain(|name, client| {
            builders
                .iter()
                .any(|b| &b.name == name && &b.url == client.base_url())
        });
        for b in builders {
            if b.name == self.me.as_str() || clients.contains_key(&b.name) {
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
                PeerClient::new(&self.trust, name, b.url.clone(), limits),
            );
        }
    }

    fn client(&self, peer: &str) -> Option<PeerClient> {
        self.clients
            .lock()
            .expect("no code panics while holding the peers")
            .get(peer)
            .cloned()
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

    async fn read(&self, peer: &str) -> Result<Vec<Claim>, String> {
        let client = self
            .client(peer)
            .ok_or_else(|| format!("{peer} is no longer listed"))?;
        match client
            .state::<BuilderState>(Role::Builder, None, Duration::ZERO)
            .await
        {
            Ok(Fetched::New { state, .. }) => Ok(state.content.claims),
            Ok(Fetched::Unchanged) => Err(format!("{peer} answered 304 to an unconditional read")),
            Err(e) => Err(e.to_string()),
        }
    }
}
