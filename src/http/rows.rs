//! From a campaign row and the command-line defaults to a [`Push`]: the HTTP channel's
//! requests, as [`Defaults`](crate::campaign::Defaults) is the SIP one's.

use super::addr::PhoneAddr;
use super::admin;
use super::auth::{AuthMode, WebCredentials};
use super::object::{self, ObjectError};
use super::pusher::{Action, Push};
use crate::campaign::channel::digest_prefix;
use crate::campaign::journal::Description;
use crate::campaign::{BadRow, Row};
use crate::sip::digest::Password;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The name of the HTTP channel in journals.
pub const CHANNEL: &str = "http";

/// What a row gets when a cell is missing.
#[derive(Debug, Clone)]
pub struct PushDefaults {
    /// The action of rows with no `action`.
    pub action: Action,
    /// The background image URL (`image`).
    pub image: Option<String>,
    /// The background thumbnail URL (`icon`).
    pub icon: Option<String>,
    /// The Execute URIs (`uri`).
    pub uris: Vec<String>,
    /// The Execute items' priority.
    pub priority: u8,
    /// The object of `push` (no column: one object for the campaign).
    pub xml: Option<String>,
    /// The web user (`user`).
    pub user: Option<String>,
    /// The password (`password`).
    pub password: Option<Password>,
    /// How to authenticate.
    pub auth: AuthMode,
    /// The largest object sent.
    pub max_object: usize,
    /// The profile (`resync`) or firmware (`upgrade`) URL of rows with no `url`.
    pub url: Option<String>,
    /// The default object, built once by [`PushDefaults::check`] when rows need not complete it.
    object: Option<Arc<str>>,
}

/// The cells an object is built from.
struct Cells<'a> {
    image: Option<&'a str>,
    icon: Option<&'a str>,
    uris: Vec<String>,
}

impl PushDefaults {
    /// Defaults for `action` and nothing else; set the other fields, then call
    /// [`PushDefaults::check`].
    pub fn new(action: Action) -> PushDefaults {
        PushDefaults {
            action,
            image: None,
            icon: None,
            uris: Vec::new(),
            priority: 0,
            xml: None,
            user: None,
            password: None,
            auth: AuthMode::Auto,
            max_object: object::DEFAULT_MAX_OBJECT,
            url: None,
            object: None,
        }
    }

    /// Checks the default object and builds it once. What rows may still complete (an
    /// image, URIs) may be missing here; anything given must be right.
    pub fn check(&mut self) -> Result<(), BadRow> {
        self.object = None;
        if self.action == Action::Push && self.xml.is_none() {
            return Err(BadRow("push needs --xml FILE".into()));
        }
        if let Some(url) = &self.url {
            if !self.action.takes_url() {
                return Err(BadRow(format!(
                    "--url is for --action resync or upgrade, not {}",
                    self.action.name()
                )));
            }
            admin::check_url(url).map_err(|e| BadRow(e.to_string()))?;
        }
        let cells = Cells {
            image: self.image.as_deref(),
            icon: self.icon.as_deref(),
            uris: self.uris.clone(),
        };
        match self.build(self.action, &cells) {
            Ok(object) => self.object = object,
            Err(Missing::Cell(_)) => {}
            Err(Missing::Bad(e)) => return Err(BadRow(e.to_string())),
        }
        Ok(())
    }

    /// The journal's campaign record: the channel, the action and the object (by digest),
    /// never a password.
    pub fn describe(&self) -> Description {
        let mut fields = BTreeMap::new();
        fields.insert("action".to_string(), self.action.name().to_string());
        let mut put = |name: &str, value: Option<String>| {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                fields.insert(name.to_string(), value);
            }
        };
        put("image", self.image.clone());
        put("icon", self.icon.clone());
        put("uri", Some(self.uris.join(" ")));
        put("url", self.url.clone());
        put(
            "object_digest",
            self.object.as_deref().map(|o| digest_prefix(o.as_bytes())),
        );
        Description {
            channel: CHANNEL.to_string(),
            fields,
        }
    }

    /// The request for a row, or why the row is bad. Never quotes the password.
    pub fn push(&self, row: &Row) -> Result<Push, BadRow> {
        let phone = PhoneAddr::parse(row.required_target()?).map_err(|e| BadRow(e.to_string()))?;
        let action = match &row.action {
            Some(name) => Action::named(name).ok_or_else(|| {
                BadRow(format!(
                    "action `{}`: one of {}",
                    crate::text::printable(name, false),
                    Action::names()
                ))
            })?,
            None => self.action,
        };
        let object = if row.image.is_none()
            && row.icon.is_none()
            && row.uri.is_none()
            && action == self.action
        {
            match &self.object {
                Some(object) => Some(object.clone()),
                None => self.row_object(action, row)?,
            }
        } else {
            self.row_object(action, row)?
        };
        let user = row.auth_user.as_deref().or(self.user.as_deref());
        let password = row.password.clone().or_else(|| self.password.clone());
        // The MPP admin pages' user is `admin` unless given; the CGI pages' has no default.
        let user = user.or((!action.classic()).then_some(admin::DEFAULT_USER));
        let credentials = password.map(|password| WebCredentials {
            user: user.unwrap_or_default().to_string(),
            password,
        });
        let url = self.row_url(action, row)?;
        Ok(Push {
            phone,
            action,
            object,
            url,
            credentials,
            auth: self.auth,
            trace: false,
        })
    }

    /// The URL handed to `/admin/resync` or `/admin/upgrade`: the row's, else the default.
    fn row_url(&self, action: Action, row: &Row) -> Result<Option<Arc<str>>, BadRow> {
        let url = row.url.as_deref().or(self.url.as_deref());
        match (action, url) {
            (Action::Upgrade, None) => Err(BadRow("upgrade needs a url (a firmware load)".into())),
            (_, Some(url)) if action.takes_url() => {
                admin::check_url(url).map_err(|e| BadRow(e.to_string()))?;
                Ok(Some(Arc::from(url)))
            }
            (_, None) => Ok(None),
            (_, Some(_)) if row.url.is_some() => Err(BadRow(format!(
                "a url is for resync or upgrade, not {}",
                action.name()
            ))),
            // The default URL is for the default action; a row that names another leaves it.
            (_, Some(_)) => Ok(None),
        }
    }

    fn row_object(&self, action: Action, row: &Row) -> Result<Option<Arc<str>>, BadRow> {
        let cells = Cells {
            image: row.image.as_deref().or(self.image.as_deref()),
            icon: row.icon.as_deref().or(self.icon.as_deref()),
            uris: match &row.uri {
                Some(uris) => uris.split_whitespace().map(str::to_string).collect(),
                None => self.uris.clone(),
            },
        };
        self.build(action, &cells).map_err(|e| match e {
            Missing::Cell(what) => BadRow(format!("{} needs {what}", action.name())),
            Missing::Bad(e) => BadRow(e.to_string()),
        })
    }

    /// The object of `action` from these cells, checked against the size limit.
    fn build(&self, action: Action, cells: &Cells<'_>) -> Result<Option<Arc<str>>, Missing> {
        let xml = match action {
            Action::Execute if cells.uris.is_empty() => return Err(Missing::Cell("a uri")),
            Action::Execute => object::execute(&cells.uris, self.priority)?,
            Action::Background => match (cells.image, cells.icon) {
                (Some(image), Some(icon)) => object::background(image, icon)?,
                _ => return Err(Missing::Cell("an image and an icon")),
            },
            Action::Push => match &self.xml {
                Some(xml) => object::checked(xml)?,
                None => return Err(Missing::Cell("--xml FILE")),
            },
            Action::Screenshot
            | Action::Info
            | Action::Resync
            | Action::Upgrade
            | Action::Reboot => return Ok(None),
        };
        object::check_size(&xml, self.max_object)?;
        Ok(Some(Arc::from(xml)))
    }
}

/// Why no object could be built.
enum Missing {
    /// A cell rows may give.
    Cell(&'static str),
    /// What was given is wrong.
    Bad(ObjectError),
}

impl From<ObjectError> for Missing {
    fn from(e: ObjectError) -> Missing {
        Missing::Bad(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::Channel;
    use crate::http::Pusher;

    #[test]
    fn rows_complete_the_defaults() {
        let mut d = PushDefaults::new(Action::Background);
        d.image = Some("http://h/bg.png".into());
        d.check().unwrap();
        assert!(d
            .push(&Row::for_target("10.0.0.7"))
            .unwrap_err()
            .0
            .contains("an image and an icon"));
        let mut r = Row::for_target("10.0.0.7:8080");
        r.icon = Some("http://h/tn.png".into());
        r.password = Some(Password::new("pw"));
        r.auth_user = Some("bbell".into());
        let push = d.push(&r).unwrap();
        assert_eq!(Pusher::target(&push), "http://10.0.0.7:8080");
        assert!(push
            .object
            .as_deref()
            .unwrap()
            .contains("<icon>http://h/tn.png</icon>"));
        assert_eq!(push.credentials.unwrap().user, "bbell");
        let mut r = Row::for_target("10.0.0.8");
        r.action = Some("execute".into());
        r.uri = Some("Key:Services Init:Services".into());
        let push = d.push(&r).unwrap();
        assert_eq!(
            (
                push.action,
                push.object.unwrap().matches("ExecuteItem").count()
            ),
            (Action::Execute, 2)
        );
        r.uri = Some("Key:A Key:B Key:C Key:D".into());
        assert!(d.push(&r).unwrap_err().0.contains("1 to 3"));
        r.action = Some("restart".into());
        assert!(d.push(&r).unwrap_err().0.contains("upgrade, reboot"));
        // The MPP web actions: the admin user by default, upgrade only with a URL.
        r.action = Some("reboot".into());
        let reboot = d.push(&r).unwrap();
        assert_eq!((reboot.action, reboot.url), (Action::Reboot, None));
        let mut admin = Row::for_target("10.0.0.9");
        admin.password = Some(Password::new("pw"));
        admin.action = Some("upgrade".into());
        assert!(d.push(&admin).unwrap_err().0.contains("needs a url"));
        admin.url = Some("http://h/fw.loads".into());
        let upgrade = d.push(&admin).unwrap();
        assert_eq!(upgrade.url.as_deref(), Some("http://h/fw.loads"));
        assert_eq!(upgrade.credentials.unwrap().user, "admin");
        admin.url = Some("http://h/fw.loads?xpassword=x".into());
        assert!(d.push(&admin).is_err());
        admin.action = Some("info".into());
        admin.url = Some("http://h/fw.loads".into());
        assert!(d.push(&admin).unwrap_err().0.contains("not info"));
        r.action = Some("info".into());
        assert!(d.push(&r).unwrap().object.is_none());
        let mut info = PushDefaults::new(Action::Info);
        info.url = Some("http://h/cfg.xml".into());
        assert!(info
            .check()
            .unwrap_err()
            .0
            .contains("--url is for --action resync"));
        let mut resync = PushDefaults::new(Action::Resync);
        resync.url = Some("http://h/cfg.xml#x".into());
        assert!(resync.check().is_err());
        assert!(d.push(&Row::for_target("ftp://h")).is_err());
    }

    #[test]
    fn the_default_object_is_checked_and_described() {
        let mut d = PushDefaults::new(Action::Push);
        assert!(d.check().is_err());
        d.xml = Some("<CiscoIPPhoneText><Text>hi</Text>".into());
        assert!(d.check().unwrap_err().0.contains("well-formed"));
        d.xml = Some(format!(
            "<CiscoIPPhoneText><Text>{}</Text></CiscoIPPhoneText>",
            "x".repeat(500)
        ));
        assert!(d.check().unwrap_err().0.contains("over the limit of 512"));
        d.max_object = 1024;
        d.check().unwrap();
        d.password = Some(Password::new("hunter2"));
        let described = serde_json::to_string(&d.describe()).unwrap();
        assert!(described.contains("\"channel\":\"http\"") && described.contains("object_digest"));
        assert!(!described.contains("hunter2"));
        let a = d.push(&Row::for_target("h")).unwrap();
        let b = d.push(&Row::for_target("http://h:80/")).unwrap();
        assert_eq!(Pusher::identity(&a), Pusher::identity(&b));
    }
}
