//! The sans-IO SIP core: no sockets, no clock reads; time is always passed in.

pub mod codec;
pub mod digest;
