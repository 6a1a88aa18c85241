//! Acting on phones over HTTP or HTTPS: Cisco's `POST /CGI/Execute` (CiscoIPPhoneExecute,
//! setBackground, any CiscoIPPhone object), `GET /CGI/Screenshot` and
//! `GET /DeviceInformationX`, for one phone or, as a [`Channel`](crate::campaign::Channel),
//! a campaign; and the MPP web interface's `/admin/resync`, `/admin/upgrade` and
//! `/admin/reboot`, for one phone or a campaign.
//!
//! - [`addr`] reads a phone's address (`HOST[:PORT]`, `http(s)://HOST[:PORT]`).
//! - [`admin`] checks the URLs of the MPP web actions and writes their requests' targets
//!   (sans-IO).
//! - [`object`] builds and checks the objects and the form that carries them (sans-IO).
//! - [`answer`] reads the phone's answers and judges them into outcomes (sans-IO).
//! - [`auth`] is Basic and Digest authentication of the web user (sans-IO).
//! - [`pusher`] is the thin tokio layer on hyper: [`Pusher`], the campaign channel.
//! - [`rows`] turns campaign rows into requests ([`PushDefaults`]).
//! - [`sheet`] writes a campaign's contact sheet of screenshots ([`ContactSheet`]).
//!
//! # Example
//!
//! Make a phone open its services menu. Here the phone is the simulator's web server, so
//! the example runs anywhere.
//!
//! ```
//! use sipnotify::http::{object, Action, AuthMode, PhoneAddr, Push, Pusher, PusherConfig, WebCredentials};
//! use sipnotify::phone::{spawn_web, WebAuth, WebConfig};
//! use sipnotify::{OutcomeKind, Password};
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = WebConfig { auth: WebAuth::Digest, password: Password::new("secret"), ..WebConfig::default() };
//! let phone = spawn_web(config, &["127.0.0.1:0".parse()?]).await?;
//!
//! let push = Push {
//!     phone: PhoneAddr::parse(&phone.local_addrs()[0].to_string())?,
//!     action: Action::Execute,
//!     object: Some(Arc::from(object::execute(&["Key:Services".into()], 0)?)),
//!     url: None,
//!     credentials: Some(WebCredentials { user: "admin".into(), password: Password::new("secret") }),
//!     auth: AuthMode::Auto,
//!     trace: false,
//! };
//! let delivery = Pusher::new(PusherConfig::default()).exchange(&push).await;
//! assert_eq!(delivery.outcome.kind, OutcomeKind::Delivered);
//! assert_eq!(delivery.outcome.attempts, 2); // Basic first, then the phone's Digest challenge
//! # phone.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! A campaign runs the same pushes through [`Campaign`](crate::campaign::Campaign): open it
//! with [`PushDefaults::push`] as the row function, and run it with a [`Pusher`].

pub mod addr;
pub mod admin;
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
