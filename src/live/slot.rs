//! A stream's place in the Streams registry, held for the stream's life: reserved before the
//! stream starts (the per-IP limit answers before any handshake), released when it is dropped.

use std::net::IpAddr;

use actix::prelude::*;
use actix_web::web;
use plaza_actors::model::policy::AuthContext;
use plaza_actors::streams::{Attach, Notice, Refused, Release, Reserve, Streams};
use plaza_actors::PlazaError;

use crate::error::ApiError;
use crate::AppState;

pub struct StreamSlot {
    id: u64,
    streams: Addr<Streams>,
    state: web::Data<AppState>,
}

impl StreamSlot {
    pub async fn reserve(state: &web::Data<AppState>, ip: Option<IpAddr>, auth: &AuthContext) -> Result<StreamSlot, ApiError> {
        let streams = state.plaza.streams.clone();
        let id = match streams.send(Reserve { ip, session: auth.session.clone() }).await? {
            Ok(id) => id,
            Err(Refused::TooManyForIp { max }) => return Err(ApiError::TooManyStreams(max)),
            Err(Refused::Draining) => return Err(PlazaError::Unavailable("server is draining; reconnect shortly".into()).into()),
        };
        state.metrics.streams_open.inc();
        Ok(StreamSlot { id, streams, state: state.clone() })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The running stream, so drain and session notices reach it.
    pub fn attach(&self, notify: Recipient<Notice>) {
        self.streams.do_send(Attach { id: self.id, notify });
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.state.metrics.streams_open.dec();
        self.streams.do_send(Release { id: self.id });
    }
}
