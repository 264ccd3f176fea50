//! The builder's in-memory model, and its publication as the builder's state.

use std::sync::Mutex;

use quarters_common::api::v1::{BuilderState, PeerView, Role};
use quarters_common::follow::PeerEvent;
use quarters_common::liveness::Liveness;
use quarters_common::state::StatePublisher;

use crate::config::BuilderConfig;

/// The builder's model. Every change goes through a method that republishes it.
#[derive(Debug)]
pub struct Node {
    model: Mutex<Model>,
    publisher: StatePublisher,
}

#[derive(Debug)]
struct Model {
    arch: Vec<String>,
    slots: u32,
    master_name: String,
    master_url: url::Url,
    master: Liveness,
}

impl Model {
    fn to_wire(&self) -> BuilderState {
        BuilderState {
            arch: self.arch.clone(),
            slots: self.slots,
            master: PeerView {
                name: self.master_name.clone(),
                url: self.master_url.clone(),
                status: self.master.to_wire(),
            },
            claims: Vec::new(),
            builds: Vec::new(),
        }
    }
}

impl Node {
    pub fn new(config: &BuilderConfig) -> Self {
        let model = Model {
            arch: config.arch.clone(),
            slots: config.slots,
            master_name: config.master_name.to_string(),
            master_url: config.master_url.clone(),
            master: Liveness::Unknown,
        };
        let publisher =
            StatePublisher::new(config.name.clone(), Role::Builder, &model.to_wire(), 0);
        Node {
            model: Mutex::new(model),
            publisher,
        }
    }

    pub fn publisher(&self) -> &StatePublisher {
        &self.publisher
    }

    /// Records what the follower of the master saw.
    pub fn master_event<T>(&self, event: &PeerEvent<T>) {
        let mut model = self
            .model
            .lock()
            .expect("no code panics while holding the model");
        if model.master.observe(event) {
            match &model.master {
                Liveness::Down { error, .. } => tracing::warn!("master down: {error}"),
                Liveness::Up { .. } => tracing::info!("master up"),
                Liveness::Unknown => {}
            }
            self.publisher.publish(&model.to_wire());
        }
    }
}
