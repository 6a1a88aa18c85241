//! A simulated SPA/MPP phone line, for tests, the demo and users' own rehearsals.
//!
//! `line` is the sans-IO behaviour ([`Phone`]: user set, Event check, digest challenge,
//! faults); `server` puts it on UDP and TCP sockets with tokio ([`spawn`]).

mod line;
mod server;

pub use line::{
    AuthOutcome, BadSetting, ChallengeMode, Exchange, Handled, Phone, PhoneConfig, UserRange,
};
pub use server::{spawn, spawn_with_hook, NotifyHook, PhoneStats, RunningPhone};
