//! Which builders the master validates: offences counted towards a quarantine, and the
//! operator's `quartersctl builder list|disable|enable`.

use std::fmt::Write as _;

use time::OffsetDateTime;

use super::Core;
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

    pub(super) fn builder_list(&self) -> (bool, String) {
        let model = &self.model;
        let mut out = String::new();
        for b in &model.builders {
            let standing = match &b.quarantine {
                Some(q) => q.to_string(),
                None => "validated".to_owned(),
            };
            let _ = writeln!(
                out,
                "{} {}: {standing}",
                b.name,
                b.client.base_url().as_str()
            );
        }
        (true, out)
    }

    /// Quarantines `name` by hand (or replaces the reason of its quarantine).
    pub(super) fn builder_disable(&mut self, name: &str, reason: &str) -> (bool, String) {
        let reason = quarters_common::peer_input::shorten(reason.trim(), 400);
        if reason.is_empty() {
            return (false, "a quarantine needs a reason\n".to_owned());
        }
        if !self.model.builders.iter().any(|b| b.name.as_str() == name) {
            return (
                false,
                format!("no builder {name:?} in the master's config\n"),
            );
        }
        let q = Quarantine {
            reason,
            since: OffsetDateTime::now_utc(),
            by: By::Operator,
        };
        if let Err(e) = self.db.quarantine(name, &q) {
            tracing::error!(builder = %name, "recording the quarantine: {e}");
            return (
                false,
                "the master could not record the quarantine\n".to_owned(),
            );
        }
        tracing::warn!(builder = %name, "quarantined by the operator: {}", q.reason);
        let text = format!("{name}: {q}\n");
        if let Some(slot) = self
            .model
            .builders
            .iter_mut()
            .find(|b| b.name.as_str() == name)
        {
            slot.quarantine = Some(q);
        }
        self.request_replan();
        (true, text)
    }

    /// Lifts `name`'s quarantine; its past offences are forgotten.
    pub(super) fn builder_enable(&mut self, name: &str) -> (bool, String) {
        if !self.model.builders.iter().any(|b| b.name.as_str() == name) {
            return (
                false,
                format!("no builder {name:?} in the master's config\n"),
            );
        }
        match self.db.release(name) {
            Ok(_) => {}
            Err(e) => {
                tracing::error!(builder = %name, "lifting the quarantine: {e}");
                return (false, "the master could not record the change\n".to_owned());
            }
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
        for key in slot.committed() {
            slot.committed_since.entry(key).or_insert(now);
        }
        self.request_replan();
        match was {
            Some(_) => {
                tracing::info!(builder = %name, "enabled by the operator");
                (true, format!("{name}: validated again\n"))
            }
            None => (true, format!("{name}: was not quarantined\n")),
        }
    }
}
