//! A simulated SPA/MPP phone line, for tests, the demo and users' own integration tests.
//!
//! [`line`] is the sans-IO behaviour (user set, Event check, digest challenge, faults);
//! [`server`] puts it on UDP and TCP sockets with tokio.

pub mod line;
pub mod server;

pub use line::{
    AuthOutcome, ChallengeMode, Exchange, Handled, Phone, PhoneConfig, UserRange, BUILTIN_EVENTS,
};
pub use server::{spawn, PhoneStats, RunningPhone};
