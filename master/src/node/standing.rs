//! Which builders the master validates: offences counted towards a quarantine, and the
//! operator's `quartersctl builder list|disable|enable`.

use quarters_common::api::v1::ctl::{Answer, BuilderStanding};
use time::OffsetDateTime;

use super::Core;
use super::ctl::refused;
use crate::quarantine::{By, Quarantine};

impl Core {
    /// Counts an offence of builder `index`, and quarantines it if that makes too many. The
    /// caller replans: a quarantined builder's claims stop counting.
    pub(super) fn offend(&mut self, index: usize, what: &str) -> bool {
        let slot = &mut self.model.builders[index];
        if slot.quarantine.is_some() {
            return false;
        }
        let now = std::time::Instant::now();
        let Some(reason) = slot.offences.record(&self.config.quarantine, what, now) else {
            return false;
        };
        let q = Quarantine {
            reason,
            since: OffsetDateTime::now_utc(),
            by: By::Master,
        };
        tracing::error!(builder = %slot.name, "quarantined: {}", q.reason);
        if let Err(e) = self.db.quarantine(slot.name.as_str(), &q) {
            tracing::error!(builder = %slot.name, "recording the quarantine: {e}");
        }
        slot.quarantine = Some(q);
        self.request_replan();
        true
    }

    /// Counts an offence of the builder called `name` (a judgement names the builder it
    /// judged).
    pub(super) fn offend_by_name(&mut self, name: &quarters_common::NodeName, what: &str) {
        if let Some(index) = self.model.builders.iter().position(|b| &b.name == name) {
            self.offend(index, what);
        }
    }

    pub(super) fn builder_list(&self) -> Answer {
        Answer::Builders {
            builders: self
                .model
                .builders
                .iter()
                .map(|b| BuilderStanding {
                    name: b.name.to_string(),
                    url: b.client.base_url().clone(),
                    quarantine: b.quarantine.as_ref().map(Quarantine::to_view),
                })
                .collect(),
        }
    }

    /// Quarantines `name` by hand (or replaces the reason of its quarantine).
    pub(super) fn builder_disable(&mut self, name: &str, reason: &str) -> Answer {
        let reason = quarters_common::peer_input::shorten(reason.trim(), 400);
        if reason.is_empty() {
            return refused("a quarantine needs a reason");
        }
        if !self.model.builders.iter().any(|b| b.name.as_str() == name) {
            return refused(format!("no builder {name:?} in the master's config"));
        }
        let q = Quarantine {
            reason,
            since: OffsetDateTime::now_utc(),
            by: By::Operator,
        };
        if let Err(e) = self.db.quarantine(name, &q) {
            tracing::error!(builder = %name, "recording the quarantine: {e}");
            return refused("the master could not record the quarantine");
        }
        tracing::warn!(builder = %name, "quarantined by the operator: {}", q.reason);
        let answer = Answer::Disabled {
            builder: name.to_owned(),
            quarantine: q.to_view(),
        };
        if let Some(slot) = self
            .model
            .builders
            .iter_mut()
            .find(|b| b.name.as_str() == name)
        {
            slot.quarantine = Some(q);
        }
        self.request_replan();
        answer
    }

    /// Lifts `name`'s quarantine; its past offences are forgotten.
    pub(super) fn builder_enable(&mut self, name: &str) -> Answer {
        if !self.model.builders.iter().any(|b| b.name.as_str() == name) {
            return refused(format!("no builder {name:?} in the master's config"));
        }
        if let Err(e) = self.db.release(name) {
            tracing::error!(builder = %name, "lifting the quarantine: {e}");
            return refused("the master could not record the change");
        }
        let slot = self
            .model
            .builders
            .iter_mut()
            .find(|b| b.name.as_str() == name)
            .expect("looked up above");
        let was = slot.quarantine.take();
        slot.offences.clear();
        // Its commitments count from now: while it was quarantined, they counted for nothing.
        let now = std::time::Instant::now();
        for key in slot.committed_work() {
            slot.committed_since.entry(key).or_insert(now);
        }
        self.request_replan();
        if was.is_some() {
            tracing::info!(builder = %name, "enabled by the operator");
        }
        Answer::Enabled {
            builder: name.to_owned(),
            was_quarantined: was.is_some(),
        }
    }
}
