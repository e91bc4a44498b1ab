//! SSH transport on russh. (Placeholder until the ssh branch lands.)
use std::sync::Arc;

use async_trait::async_trait;

use super::{Output, Stdin, Stream, Transport, TransportError};
use crate::config::SshTarget;

pub struct SshContext;
impl SshContext {
    pub fn new(_interactive: bool) -> Arc<SshContext> {
        Arc::new(SshContext)
    }
}
pub struct SshHost;
impl SshHost {
    pub async fn connect(t: &SshTarget, _ctx: &Arc<SshContext>) -> Result<SshHost, TransportError> {
        Err(TransportError::Unreachable {
            host: t.name.clone(),
            reason: "ssh not built yet".into(),
        })
    }
}
#[async_trait]
impl Transport for SshHost {
    async fn exec(
        &self,
        _: &str,
        _: Option<Stdin>,
        _: std::time::Duration,
    ) -> Result<Output, TransportError> {
        unreachable!()
    }
    async fn open_tcp(&self, _: &str, _: u16) -> Result<Box<dyn Stream>, TransportError> {
        unreachable!()
    }
    async fn close(&self) {}
}
