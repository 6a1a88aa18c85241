//! The tokio layer: sockets pumped into the sans-IO [`crate::proto`] core.
