//! Outgoing mail (password resets) over SMTP with `lettre`.
//!
//! `SMTP_URL` is `smtp://[user:password@]host[:port]`: plain SMTP to a relay
//! next to the service (a local MTA, or the mail catcher of
//! docker-compose.yml). TLS is not built in, which keeps a TLS stack out of
//! the build; a relay that needs it is reached through the local MTA.

use std::time::Duration;

use anyhow::{bail, Context};
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

const SMTP_PORT: u16 = 25;
/// A stuck relay must not hold a reset task for long.
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(smtp_url: &str, from: &str) -> anyhow::Result<Self> {
        let Some(rest) = smtp_url.strip_prefix("smtp://") else {
            bail!("must start with smtp:// (TLS relays are reached through a local MTA)");
        };
        let rest = rest.trim_end_matches('/');
        let (credentials, address) = match rest.rsplit_once('@') {
            Some((userinfo, address)) => {
                let (user, password) = userinfo
                    .split_once(':')
                    .context("credentials must be user:password")?;
                (
                    Some(Credentials::new(user.to_owned(), password.to_owned())),
                    address,
                )
            }
            None => (None, rest),
        };
        let (host, port) = match address.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().context("the port is not a number")?),
            None => (address, SMTP_PORT),
        };
        if host.is_empty() {
            bail!("names no host");
        }
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(SMTP_TIMEOUT));
        if let Some(credentials) = credentials {
            builder = builder.credentials(credentials);
        }
        Ok(Self {
            transport: builder.build(),
            from: from.parse().context("MAIL_FROM is not a mailbox")?,
        })
    }

    pub async fn send(&self, to: &str, subject: &str, body: String) -> anyhow::Result<()> {
        let message = Message::builder()
            .from(self.from.clone())
            .to(to.parse().context("the recipient is not a mailbox")?)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .context("building the message")?;
        self.transport
            .send(message)
            .await
            .context("sending over SMTP")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Mailer;

    #[test]
    fn only_plain_smtp_urls_with_a_host_are_accepted() {
        let from = "Content API <no-reply@example.com>";
        assert!(Mailer::new("smtp://127.0.0.1:1025", from).is_ok());
        assert!(Mailer::new("smtp://user:secret@mail.local", from).is_ok());
        for bad in [
            "smtps://mail.local",
            "mail.local",
            "smtp://",
            "smtp://h:port",
        ] {
            assert!(Mailer::new(bad, from).is_err(), "{bad}");
        }
        assert!(Mailer::new("smtp://127.0.0.1:1025", "not a mailbox").is_err());
    }
}
