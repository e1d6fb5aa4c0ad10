//! The Streams registry: every open WebSocket and SSE stream, by id, with its client IP and the
//! session it was opened with. It enforces the per-IP limit and reaches the streams that must
//! hear about something: a drain (reconnect elsewhere) or the end of a session (revoked or
//! expired). Messages: `Reserve`, `Attach`, `Release`, `Drain`, `SessionsEnded`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use actix::prelude::*;

/// What a stream is told; it writes the matching error frame and closes.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "()")]
pub enum Notice {
    /// The server is draining: reconnect (elsewhere, or after the restart) and resume.
    Reconnect,
    /// The session the stream was opened with was revoked or expired.
    SessionEnded,
}

struct OpenStream {
    ip: Option<IpAddr>,
    session: Option<Arc<str>>,
    notify: Option<Recipient<Notice>>,
    /// A notice that arrived before the stream attached, delivered on `Attach`.
    pending: Option<Notice>,
}

pub struct Streams {
    max_per_ip: usize,
    next_id: u64,
    open: HashMap<u64, OpenStream>,
    per_ip: HashMap<IpAddr, usize>,
    draining: bool,
}

impl Streams {
    pub fn new(max_per_ip: usize) -> Self {
        Streams { max_per_ip, next_id: 1, open: HashMap::new(), per_ip: HashMap::new(), draining: false }
    }

    fn notify(stream: &mut OpenStream, notice: Notice) {
        match &stream.notify {
            Some(r) => r.do_send(notice),
            None => stream.pending = Some(notice),
        }
    }
}

impl Actor for Streams {
    type Context = Context<Self>;
}

/// Why a stream could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// This IP already has `max` streams open.
    TooManyForIp { max: usize },
    /// The server is draining.
    Draining,
}

/// Counts a new stream against its IP and gives it an id, unique for the life of the process.
#[derive(Message)]
#[rtype(result = "Result<u64, Refused>")]
pub struct Reserve {
    pub ip: Option<IpAddr>,
    pub session: Option<Arc<str>>,
}

impl Handler<Reserve> for Streams {
    type Result = Result<u64, Refused>;
    fn handle(&mut self, msg: Reserve, _: &mut Context<Self>) -> Self::Result {
        if self.draining {
            return Err(Refused::Draining);
        }
        if let Some(ip) = msg.ip {
            let open = self.per_ip.entry(ip).or_insert(0);
            if *open >= self.max_per_ip {
                return Err(Refused::TooManyForIp { max: self.max_per_ip });
            }
            *open += 1;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.open.insert(id, OpenStream { ip: msg.ip, session: msg.session, notify: None, pending: None });
        Ok(id)
    }
}

/// The running stream's address, so notices reach it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub id: u64,
    pub notify: Recipient<Notice>,
}

impl Handler<Attach> for Streams {
    type Result = ();
    fn handle(&mut self, msg: Attach, _: &mut Context<Self>) {
        if let Some(stream) = self.open.get_mut(&msg.id) {
            if let Some(notice) = stream.pending.take() {
                msg.notify.do_send(notice);
            }
            stream.notify = Some(msg.notify);
        }
    }
}

/// The stream has closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release {
    pub id: u64,
}

impl Handler<Release> for Streams {
    type Result = ();
    fn handle(&mut self, msg: Release, _: &mut Context<Self>) {
        let Some(stream) = self.open.remove(&msg.id) else { return };
        if let Some(ip) = stream.ip {
            if let Some(n) = self.per_ip.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_ip.remove(&ip);
                }
            }
        }
    }
}

/// Refuses new streams from now on and tells every open one to reconnect.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

impl Handler<Drain> for Streams {
    type Result = ();
    fn handle(&mut self, _: Drain, _: &mut Context<Self>) {
        self.draining = true;
        for stream in self.open.values_mut() {
            Self::notify(stream, Notice::Reconnect);
        }
    }
}

/// Sessions that were revoked or expired: their streams are told and close.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionsEnded {
    pub sessions: Vec<Arc<str>>,
}

impl Handler<SessionsEnded> for Streams {
    type Result = ();
    fn handle(&mut self, msg: SessionsEnded, _: &mut Context<Self>) {
        if msg.sessions.is_empty() {
            return;
        }
        let ended: std::collections::HashSet<&str> = msg.sessions.iter().map(|s| &**s).collect();
        for stream in self.open.values_mut() {
            if stream.session.as_deref().is_some_and(|s| ended.contains(s)) {
                Self::notify(stream, Notice::SessionEnded);
            }
        }
    }
}

/// How many streams are open (for `/metrics` and tests).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct OpenCount;

impl Handler<OpenCount> for Streams {
    type Result = usize;
    fn handle(&mut self, _: OpenCount, _: &mut Context<Self>) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Probe(tokio::sync::mpsc::UnboundedSender<Notice>);
    impl Actor for Probe {
        type Context = Context<Self>;
    }
    impl Handler<Notice> for Probe {
        type Result = ();
        fn handle(&mut self, n: Notice, _: &mut Context<Self>) {
            let _ = self.0.send(n);
        }
    }

    #[actix::test]
    async fn limits_per_ip_and_reaches_streams_of_an_ended_session() {
        let streams = Streams::new(2).start();
        let ip: Option<IpAddr> = Some("10.0.0.1".parse().unwrap());
        let reserve = |session: &str| Reserve { ip, session: Some(session.into()) };
        let a = streams.send(reserve("s1")).await.unwrap().unwrap();
        let b = streams.send(reserve("s2")).await.unwrap().unwrap();
        assert_eq!(streams.send(reserve("s3")).await.unwrap(), Err(Refused::TooManyForIp { max: 2 }));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let probe = Probe(tx).start();
        // Ended before it attached: told as soon as it does.
        streams.send(SessionsEnded { sessions: vec!["s1".into()] }).await.unwrap();
        streams.send(Attach { id: a, notify: probe.clone().recipient() }).await.unwrap();
        assert_eq!(rx.recv().await, Some(Notice::SessionEnded));
        streams.send(Release { id: b }).await.unwrap();
        assert!(streams.send(reserve("s4")).await.unwrap().is_ok(), "a released slot is free again");
        streams.send(Drain).await.unwrap();
        assert_eq!(rx.recv().await, Some(Notice::Reconnect));
        assert_eq!(streams.send(reserve("s5")).await.unwrap(), Err(Refused::Draining));
    }
}
