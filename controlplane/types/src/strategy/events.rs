//! Events: kept for an hour after their last write, as Kubernetes keeps them.

use std::time::Duration;

use super::Strategy;

/// Events.
#[derive(Debug)]
pub(crate) struct Events;

/// The strategy of events.
pub(crate) static EVENTS: Events = Events;

impl Strategy for Events {
    fn ttl(&self) -> Option<Duration> {
        Some(Duration::from_secs(3600))
    }
}
