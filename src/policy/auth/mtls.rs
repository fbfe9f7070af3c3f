//! Mutual TLS as an authentication provider: the listener verified the
//! client certificate; this maps its subject or a SAN to a consumer.

use std::sync::Arc;

use super::config::MtlsConfig;
use super::consumers::{normalize_dn, san_key};
use super::{Consumers, Failure, Identity};
use crate::config::FieldErrors;
use crate::policy::compile::CompileCtx;
use crate::tls::{ClientIdentity, TrustedCa};

#[derive(Debug)]
pub struct Mtls {
    name: Arc<str>,
    consumers: Arc<Consumers>,
    /// `ca`: only certificates these CAs issued name a consumer.
    ca: Option<TrustedCa>,
}

impl Mtls {
    pub fn compile(cfg: &MtlsConfig, cx: &mut CompileCtx<'_>) -> Result<Mtls, FieldErrors> {
        let ca = match &cfg.ca {
            None => None,
            Some(file) => {
                Some(TrustedCa::load(&cx.loaded.resolve_file(file)).map_err(|e| FieldErrors::one("mtls.ca", e))?)
            }
        };
        Ok(Mtls { name: cx.name.into(), consumers: super::consumers_of(cx), ca })
    }

    /// Whether `cert` is one this provider reads: any, or one of its `ca`'s.
    pub fn takes(&self, cert: &ClientIdentity) -> bool {
        self.ca.as_ref().is_none_or(|ca| cert.issued_by(ca))
    }

    pub fn authenticate(&self, cert: Option<&ClientIdentity>) -> Result<Arc<Identity>, Failure> {
        let cert = cert.ok_or(Failure::Invalid)?;
        // Another CA's certificate (one a listener trusts for someone
        // else) names no consumer here, whatever its subject says.
        if self.ca.as_ref().is_some_and(|ca| !cert.issued_by(ca)) {
            return Err(Failure::Invalid);
        }
        // By subject, else by the first SAN a consumer lists; either only
        // from a certificate its `ca` (if any) issued.
        let consumer = self
            .consumers
            .by_subject
            .get(&normalize_dn(&cert.subject))
            .filter(|c| c.admits(cert))
            .or_else(|| {
                cert.sans.iter().find_map(|s| self.consumers.by_san.get(&san_key(s)).filter(|c| c.admits(cert)))
            })
            .map(|c| &c.consumer)
            // A certificate our CA signed but that no consumer claims: not known here.
            .ok_or(Failure::Invalid)?;
        Ok(Arc::new(Identity {
            provider: self.name.clone(),
            subject: cert.subject.clone(),
            scopes: consumer.scopes.clone(),
            consumer: Some(consumer.clone()),
            claims: None,
            bearer: false,
            rendered: Default::default(),
        }))
    }
}
