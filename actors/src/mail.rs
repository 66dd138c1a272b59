//! Outgoing mail (payout email codes). With `CLAWJOBS_SMTP_URL` set, mail goes through that SMTP
//! server with `lettre`; without it, the engine keeps each message in the admin outbox and the
//! log instead.

use std::future::Future;
use std::pin::Pin;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

pub type MailFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;

pub trait Mailer: Send + Sync + 'static {
    fn send(&self, to: &str, subject: &str, body: &str) -> MailFuture;
}

/// SMTP through `lettre`: `smtp://[user:pass@]host[:port][?tls=required|opportunistic]` or
/// `smtps://…` (implicit TLS), as `lettre`'s `from_url` reads them.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    pub fn new(url: &str, from: &str) -> Result<SmtpMailer, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("CLAWJOBS_SMTP_URL: {e}"))?
            .timeout(Some(std::time::Duration::from_secs(10)))
            .build();
        let from = from
            .parse()
            .map_err(|e| format!("CLAWJOBS_SMTP_FROM {from:?}: {e}"))?;
        Ok(SmtpMailer { transport, from })
    }
}

impl Mailer for SmtpMailer {
    fn send(&self, to: &str, subject: &str, body: &str) -> MailFuture {
        let message = to
            .parse::<Mailbox>()
            .map_err(|e| format!("recipient {to:?}: {e}"))
            .and_then(|to| {
                Message::builder()
                    .from(self.from.clone())
                    .to(to)
                    .subject(subject)
                    .body(body.to_string())
                    .map_err(|e| format!("message: {e}"))
            });
        let transport = self.transport.clone();
        Box::pin(async move {
            transport
                .send(message?)
                .await
                .map(|_| ())
                .map_err(|e| format!("smtp: {e}"))
        })
    }
}
