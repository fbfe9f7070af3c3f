//! The `admin` section, checked: where the admin API listens and the
//! token that guards it.

use std::net::SocketAddr;

use crate::config::{AdminConfig, ConfigError, LoadedConfig};

/// The admin settings, checked.
#[derive(Debug, Clone)]
pub struct AdminPlan {
    pub addr: SocketAddr,
    /// SHA-256 of the token: compared in constant time, never kept in clear.
    token: Option<[u8; 32]>,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    d.as_ref().try_into().expect("32 bytes")
}

impl AdminPlan {
    pub fn compile(cfg: &AdminConfig, loaded: &LoadedConfig) -> Result<AdminPlan, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let addr = match cfg.bind.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                errors.push(loaded.error("admin.bind", format!("`{}` is not an `IP:PORT` address", cfg.bind)));
                None
            }
        };
        if let Some(t) = &cfg.token {
            if t.is_empty() {
                errors.push(loaded.error(
                    "admin.token",
                    "the token is empty (a `${VAR}` set to nothing?): set one of at least 16 characters, or \
                     remove the key to serve the admin API without one on loopback",
                ));
            } else if t.len() < 16 {
                errors.push(loaded.error("admin.token", "a token needs at least 16 characters"));
            }
            // What an `Authorization: Bearer` line can carry: whitespace at
            // either end would be trimmed off every request's header.
            if !t.bytes().all(|b| b.is_ascii_graphic()) {
                errors.push(loaded.error(
                    "admin.token",
                    "a token is printable ASCII without spaces (it is sent as `Authorization: Bearer <token>`)",
                ));
            }
        }
        if let Some(a) = addr
            && !a.ip().is_loopback()
            && cfg.token.is_none()
        {
            errors.push(loaded.error(
                "admin.bind",
                format!(
                    "`{a}` is not a loopback address: set `admin.token` (the admin API shows the config and metrics)"
                ),
            ));
        }
        match addr {
            Some(addr) if errors.is_empty() => {
                Ok(AdminPlan { addr, token: cfg.token.as_deref().map(|t| sha256(t.as_bytes())) })
            }
            _ => Err(errors),
        }
    }

    /// Whether the admin API asks for a token.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether an `Authorization` value opens the admin API: the `Bearer`
    /// scheme (any case, RFC 9110 §11.1), one or more spaces, the token.
    pub fn authorized(&self, authorization: Option<&[u8]>) -> bool {
        let Some(want) = &self.token else { return true };
        let Some(value) = authorization else { return false };
        let Some((scheme, rest)) = value.split_at_checked(6) else { return false };
        if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
            return false;
        }
        let given = rest.trim_ascii_start();
        aws_lc_rs::constant_time::verify_slices_are_equal(&sha256(given), want).is_ok()
    }
}
