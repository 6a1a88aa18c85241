//! Acting on phones over HTTP: Cisco's `POST /CGI/Execute` (CiscoIPPhoneExecute,
//! setBackground, any CiscoIPPhone object), `GET /CGI/Screenshot` and
//! `GET /DeviceInformationX`, for one phone or, as a [`Channel`](crate::campaign::Channel),
//! a campaign.
//!
//! - [`addr`] reads a phone's address (`HOST[:PORT]`, `http(s)://HOST[:PORT]`).
//! - [`object`] builds and checks the objects and the form that carries them (sans-IO).
//! - [`answer`] reads the phone's answers and judges them into outcomes (sans-IO).
//! - [`auth`] is Basic and Digest authentication of the web user (sans-IO).
//! - [`pusher`] is the thin tokio layer on hyper: [`Pusher`], the campaign channel.
//! - [`rows`] turns campaign rows into requests ([`PushDefaults`]).
//! - [`sheet`] writes a campaign's contact sheet of screenshots ([`ContactSheet`]).

pub mod addr;
pub mod answer;
pub mod auth;
pub mod object;
pub mod pusher;
pub mod rows;
pub mod sheet;

pub use addr::{AddrError, PhoneAddr};
pub use auth::{AuthMode, WebCredentials};
pub use object::ObjectError;
pub use pusher::{Action, Delivery, Push, Pusher, PusherConfig, Screenshots};
pub use rows::PushDefaults;
pub use sheet::ContactSheet;
