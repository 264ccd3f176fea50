//! Node names: the one name by which the farm knows a node, written into its certificate.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A validated node name: a lower-case DNS name (labels of `a-z`, `0-9` and inner `-`, joined
/// by dots), because it goes into a certificate's subject alternative names and peers check it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid node name {name:?}: {reason}")]
pub struct InvalidNodeName {
    pub name: String,
    pub reason: &'static str,
}

impl NodeName {
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidNodeName> {
        let name = name.into();
        match Self::problem(&name) {
            None => Ok(NodeName(name)),
            Some(reason) => Err(InvalidNodeName { name, reason }),
        }
    }

    fn problem(name: &str) -> Option<&'static str> {
        if name.is_empty() {
            return Some("it is empty");
        }
        if name.len() > 253 {
            return Some("it is longer than 253 characters");
        }
        for label in name.split('.') {
            if label.is_empty() {
                return Some("it has an empty label (two dots, or a dot at an end)");
            }
            if label.len() > 63 {
                return Some("a label is longer than 63 characters");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Some("only a-z, 0-9, '-' and '.' are allowed");
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Some("a label starts or ends with '-'");
            }
        }
        None
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeName {
    type Error = InvalidNodeName;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        NodeName::new(value)
    }
}

impl From<NodeName> for String {
    fn from(value: NodeName) -> Self {
        value.0
    }
}

impl std::str::FromStr for NodeName {
    type Err = InvalidNodeName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeName::new(s)
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_names() {
        for ok in ["master", "builder-1", "b1.farm.example.org", "x"] {
            assert_eq!(NodeName::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_what_cannot_go_into_a_certificate() {
        for (bad, why) in [
            ("", "empty"),
            ("Master", "only a-z"),
            ("../etc", "empty label"),
            ("a..b", "empty label"),
            ("-a", "starts or ends"),
            ("a b", "only a-z"),
        ] {
            let err = NodeName::new(bad).unwrap_err();
            assert!(err.to_string().contains(why), "{bad:?}: {err}");
        }
    }
}
