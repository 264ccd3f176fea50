//! The master's model of its farm, and its publication as the master's state.

use std::sync::{Arc, Mutex};

use quarters_common::NodeName;
use quarters_common::api::v1::{MasterState, PeerView, Role};
use quarters_common::follow::PeerEvent;
use quarters_common::liveness::Liveness;
use quarters_common::state::StatePublisher;
use url::Url;

use crate::config::BuilderEntry;

/// The master's in-memory model. Every change goes through a method that republishes it.
#[derive(Debug)]
pub struct Farm {
    model: Mutex<Model>,
    publisher: StatePublisher,
}

#[derive(Debug)]
struct Model {
    builders: Vec<BuilderSlot>,
}

#[derive(Debug)]
struct BuilderSlot {
    name: NodeName,
    url: Url,
    liveness: Liveness,
}

impl Model {
    fn to_wire(&self) -> MasterState {
        MasterState {
            builders: self
                .builders
                .iter()
                .map(|b| PeerView {
                    name: b.name.to_string(),
                    url: b.url.clone(),
                    status: b.liveness.to_wire(),
                })
                .collect(),
            ..MasterState::default()
        }
    }
}

impl Farm {
    /// A farm of `builders`, none of them seen yet, published under `name`.
    pub fn new(name: NodeName, builders: &[BuilderEntry]) -> Arc<Self> {
        let model = Model {
            builders: builders
                .iter()
                .map(|b| BuilderSlot {
                    name: b.name.clone(),
                    url: b.url.clone(),
                    liveness: Liveness::Unknown,
                })
                .collect(),
        };
        let publisher = StatePublisher::new(name, Role::Master, &model.to_wire(), 0);
        Arc::new(Farm {
            model: Mutex::new(model),
            publisher,
        })
    }

    pub fn publisher(&self) -> &StatePublisher {
        &self.publisher
    }

    /// Records what the follower of builder `name` saw.
    pub fn builder_event<T>(&self, name: &NodeName, event: &PeerEvent<T>) {
        let mut model = self
            .model
            .lock()
            .expect("no code panics while holding the model");
        let Some(slot) = model.builders.iter_mut().find(|b| &b.name == name) else {
            return;
        };
        if slot.liveness.observe(event) {
            match &slot.liveness {
                Liveness::Down { error, .. } => {
                    tracing::warn!(builder = %name, "builder down: {error}");
                }
                Liveness::Up { .. } => tracing::info!(builder = %name, "builder up"),
                Liveness::Unknown => {}
            }
            self.publisher.publish(&model.to_wire());
        }
    }
}
