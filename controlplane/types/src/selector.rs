//! Label and field selectors: the Kubernetes grammar, parsing and matching.

pub mod fields;
pub mod labels;
