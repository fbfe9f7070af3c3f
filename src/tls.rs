//! TLS termination: certificates from PEM files chosen by SNI, TLS 1.2 and
//! 1.3 with rustls' modern cipher suites (aws-lc-rs), ALPN `h2` and
//! `http/1.1`, optional client certificates (mTLS). Built at compile time,
//! so a reload picks up rotated certificate files.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::FieldErrors;
use crate::config::{ListenerTlsConfig, LoadedConfig};

/// What a verified client certificate says (for mTLS policies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject distinguished name, e.g. `CN=svc-a,O=Example`.
    pub subject: String,
    /// DNS, URI and email subject alternative names, typed as OpenSSL
    /// prints them (`DNS:a.example`, `URI:spiffe://…`, `email:a@b`).
    pub sans: Vec<String>,
    /// The chain the client sent, leaf first: for a provider that trusts
    /// only some CAs ([`TrustedCa`]), whatever CA the listener trusts.
    pub chain: Vec<CertificateDer<'static>>,
    /// Which [`TrustedCa`]s (by id) the chain leads to: a connection's
    /// chain is verified once per such CA, not once per request.
    anchored: Anchored,
}

impl ClientIdentity {
    #[cfg(test)]
    pub fn new(subject: &str, sans: &[&str]) -> ClientIdentity {
        let sans = sans.iter().map(|s| s.to_string()).collect();
        ClientIdentity { subject: subject.into(), sans, chain: Vec::new(), anchored: Anchored::default() }
    }

    /// Whether the chain leads to one of `ca`'s certificates.
    pub fn issued_by(&self, ca: &TrustedCa) -> bool {
        let mut known = self.anchored.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, yes)) = known.iter().find(|(id, _)| *id == ca.id) {
            return *yes;
        }
        let yes = ca.admits(&self.chain);
        // Bounded: a connection meets few CAs (one per provider and reload).
        if known.len() >= 16 {
            known.remove(0);
        }
        known.push((ca.id, yes));
        yes
    }
}

/// A connection's verdicts per [`TrustedCa`]; a copy starts empty, and
/// two are always equal (a cache, not part of what the certificate says).
#[derive(Debug, Default)]
struct Anchored(std::sync::Mutex<Vec<(u64, bool)>>);

impl Clone for Anchored {
    fn clone(&self) -> Anchored {
        Anchored::default()
    }
}
impl PartialEq for Anchored {
    fn eq(&self, _: &Anchored) -> bool {
        true
    }
}
impl Eq for Anchored {}

/// The CAs an mTLS provider trusts (its `ca`), apart from those of the
/// listener that verified the handshake: a certificate from another
/// listener's CA (a partner's) with the same subject or SAN must not pass
/// for an internal consumer (Kong's `mtls-auth` has `ca_certificates`).
#[derive(Debug)]
pub struct TrustedCa {
    /// Unique per compiled provider (a connection's verdicts are kept by it).
    id: u64,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl TrustedCa {
    /// The CA bundle at `path`; errors name the file.
    pub fn load(path: &Path) -> Result<TrustedCa, String> {
        let roots = load_roots(path)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("cannot use `{}` as a CA: {e}", path.display()))?;
        Ok(TrustedCa::with(verifier))
    }

    /// The CAs a verifier trusts (a listener's `client_auth`, built with it).
    fn with(verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>) -> TrustedCa {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        TrustedCa { id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed), verifier }
    }

    /// Whether `chain` (leaf first) is a client certificate these CAs
    /// issued, valid now: the same checks as a handshake's.
    fn admits(&self, chain: &[CertificateDer<'static>]) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else { return false };
        let now = rustls_pki_types::UnixTime::now();
        self.verifier.verify_client_cert(leaf, intermediates, now).is_ok()
    }
}

/// A name SNI can match: a host name (labels of letters, digits and `-`),
/// or `*.` followed by one with at least two labels (one wildcard label,
/// leftmost, as certificates have them).
fn sni_pattern(name: &str) -> bool {
    let host = name.strip_prefix("*.").unwrap_or(name);
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            // `_` too: not a host name's letter, but in DNS names
            // (`_acme.internal`), which clients send as SNI and match.
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let labels: Vec<&str> = host.split('.').collect();
    // An IP address is never sent as SNI (RFC 6066 §3): a client that
    // connects by address sends none, and gets the first certificate.
    // A host whose last label is a number (`127.0.0.1`, `127.1`,
    // `0x7f.1`) is an address to URL parsers (WHATWG "ends in a number").
    let last = labels.last().copied().unwrap_or_default();
    let address = last.bytes().all(|b| b.is_ascii_digit())
        || last
            .strip_prefix("0x")
            .or(last.strip_prefix("0X"))
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    !address && labels.iter().all(|l| label(l)) && (host.len() == name.len() || labels.len() >= 2)
}

/// A listener's `client_auth` as each request checks its connection
/// against it: a reload that changes it (a CA rotated out) must not leave
/// the connections its old CAs verified trusted. NGINX ends an old
/// worker's keep-alive connections at a reload, Envoy drains a changed
/// listener; here such a connection's certificate is checked again once
/// (see `still_trusted`).
#[derive(Debug)]
pub struct ClientAuth {
    /// Equal for equal settings (the CA file's bytes, `required`): a reload
    /// that keeps them leaves connections as they are.
    pub id: u64,
    pub required: bool,
    cas: TrustedCa,
}

/// What a TLS connection's requests have seen of its listener's
/// `client_auth`: the settings its certificate (or its lack of one) was
/// last found good under, and whether it no longer is.
#[derive(Debug, Default)]
pub struct ClientAuthSeen {
    id: std::sync::atomic::AtomicU64,
    stale: std::sync::atomic::AtomicBool,
    /// Told when `stale` is set: an HTTP/2 connection sends GOAWAY then
    /// (each of its requests would get 421 until it idled out).
    went_stale: tokio::sync::Notify,
}

impl ClientAuthSeen {
    /// As of the handshake, under `auth`.
    pub fn at_handshake(auth: Option<&ClientAuth>) -> ClientAuthSeen {
        ClientAuthSeen { id: auth.map_or(0, |a| a.id).into(), stale: false.into(), went_stale: Default::default() }
    }

    /// Completes once the connection's certificate is found no longer good.
    pub async fn gone_stale(&self) {
        if !self.is_stale() {
            self.went_stale.notified().await;
        }
    }

    /// The connection's certificate is no longer good on its listener:
    /// it must close.
    pub fn is_stale(&self) -> bool {
        self.stale.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the connection may go on under the listener's `client_auth`
    /// now: the same settings (one comparison), or its certificate verified
    /// by the new ones (once; a reload that removed `client_auth` vouches
    /// for no certificate), or none sent where none is required.
    pub fn still_trusted(&self, cert: Option<&ClientIdentity>, now: Option<&ClientAuth>) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let current = now.map_or(0, |a| a.id);
        if self.id.load(Relaxed) == current {
            return !self.is_stale();
        }
        let trusted = !self.is_stale()
            && match (cert, now) {
                (Some(cert), Some(auth)) => auth.cas.admits(&cert.chain),
                (Some(_), None) => false,
                (None, Some(auth)) => !auth.required,
                (None, None) => true,
            };
        if trusted {
            self.id.store(current, Relaxed);
        } else {
            self.stale.store(true, Relaxed);
            self.went_stale.notify_one();
        }
        trusted
    }
}

/// Builds the listener's rustls config, and its `client_auth` as requests
/// check it. Errors are `(path under tls, message)`.
pub fn build(
    cfg: &ListenerTlsConfig,
    loaded: &LoadedConfig,
) -> Result<(Arc<ServerConfig>, Option<Arc<ClientAuth>>), FieldErrors> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut errors = FieldErrors::new();
    let mut resolver = SniResolver::default();
    if cfg.certificates.is_empty() {
        errors.push(("certificates".to_string(), "a TLS listener needs at least one certificate".to_string()));
    }
    for (i, c) in cfg.certificates.iter().enumerate() {
        let at = format!("certificates[{i}]");
        match load_certified_key(&provider, &loaded.resolve_file(&c.cert), &loaded.resolve_file(&c.key)) {
            Ok((key, cert_names)) => {
                let key = Arc::new(key);
                // A name SNI can never carry would silently serve nothing.
                for (j, name) in c.server_names.iter().enumerate() {
                    if !sni_pattern(name) {
                        errors.push((
                            format!("{at}.server_names[{j}]"),
                            format!(
                                "`{name}` is not a host name or `*.` and one (`api.example.com`, `*.example.com`): \
                                 no client's SNI would match it (a client connecting by IP address sends no SNI \
                                 and gets the listener's first certificate)"
                            ),
                        ));
                    }
                }
                let names = if c.server_names.is_empty() { cert_names } else { c.server_names.clone() };
                for name in names {
                    resolver.add(&name, key.clone());
                }
                resolver.default.get_or_insert(key);
            }
            Err((field, msg)) => errors.push((format!("{at}.{field}"), msg)),
        }
    }
    let verifier = match &cfg.client_auth {
        None => None,
        // Read once: the bytes hashed into the id are the ones trusted (a
        // file replaced between two reads would give the old CAs the new
        // file's id, and a later reload would not re-check connections).
        Some(ca) => match crate::config::read_file(&loaded.resolve_file(&ca.ca))
            .map_err(|e| format!("cannot read `{}`: {e}", loaded.resolve_file(&ca.ca).display()))
            .and_then(|pem| Ok((roots_of(&pem, &loaded.resolve_file(&ca.ca))?, pem)))
        {
            Ok((roots, pem)) => {
                let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let builder = if ca.required { builder } else { builder.allow_unauthenticated() };
                match builder.build() {
                    Ok(v) => {
                        use std::hash::{Hash, Hasher};
                        let mut id = std::hash::DefaultHasher::new();
                        pem.hash(&mut id);
                        ca.required.hash(&mut id);
                        // 0 stands for "no client_auth".
                        let id = id.finish().max(1);
                        Some((v, id, ca.required))
                    }
                    Err(e) => {
                        errors.push(("client_auth.ca".into(), format!("cannot use the client CA: {e}")));
                        None
                    }
                }
            }
            Err(msg) => {
                errors.push(("client_auth.ca".into(), msg));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| FieldErrors::one("".to_string(), format!("TLS setup failed: {e}")))?;
    let (builder, client_auth) = match verifier {
        Some((v, id, required)) => {
            let auth = ClientAuth { id, required, cas: TrustedCa::with(v.clone()) };
            (builder.with_client_cert_verifier(v), Some(Arc::new(auth)))
        }
        None => (builder.with_no_client_auth(), None),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), client_auth))
}

/// Loads a chain and key, checks that they belong together, and returns the
/// DNS names of the leaf certificate. Errors name the field (`cert`/`key`).
fn load_certified_key(
    provider: &CryptoProvider,
    cert: &Path,
    key: &Path,
) -> Result<(CertifiedKey, Vec<String>), (&'static str, String)> {
    let shown = cert.display();
    let cert_pem = crate::config::read_file(cert).map_err(|e| ("cert", format!("cannot read `{shown}`: {e}")))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ("cert", format!("`{shown}` is not valid PEM: {}", pem_error(&e))))?;
    if chain.is_empty() {
        return Err(("cert", format!("`{shown}` holds no certificate{}", hint(cert, "x509"))));
    }
    let key_pem =
        crate::config::read_file(key).map_err(|e| ("key", format!("cannot read `{}`: {e}", key.display())))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        let why = format!("{}{}", pem_error(&e), hint(key, "pkey"));
        ("key", format!("cannot read a private key from `{}`: {why}", key.display()))
    })?;
    let signing = provider.key_provider.load_private_key(key_der).map_err(|e| {
        let supported = "RSA of 2048 bits or more, ECDSA P-256, P-384 or P-521, or Ed25519";
        ("key", format!("`{}` is not a usable private key ({e}): the gateway takes {supported}", key.display()))
    })?;
    let names = leaf_dns_names(&chain[0]).map_err(|e| ("cert", format!("`{shown}`: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| {
        // The key of a later certificate in the file: the chain is upside down.
        let later = certified.cert.iter().skip(1).position(|c| {
            let one = CertifiedKey::new(vec![c.clone()], certified.key.clone());
            one.keys_match().is_ok()
        });
        let why = match later {
            Some(i) => format!(
                "`{}` belongs to certificate {} in `{shown}`, not the first: the server's own certificate comes \
                 first, then the intermediates",
                key.display(),
                i + 2
            ),
            None => format!("`{}` does not belong to the certificate in `{shown}`", key.display()),
        };
        ("key", why)
    })?;
    Ok((certified, names))
}

/// What to do about a file that holds no usable PEM section, when its
/// bytes say: an encrypted key (the gateway has no passphrase), or DER
/// (binary) where PEM is read. `tool`: `openssl`'s command for the kind.
fn hint(path: &Path, tool: &str) -> String {
    let Ok(bytes) = crate::config::read_file(path) else { return String::new() };
    let text = String::from_utf8_lossy(&bytes);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || text.contains("Proc-Type: 4,ENCRYPTED") {
        return format!(
            "; it is encrypted, and the gateway has no passphrase: decrypt it \
             (`openssl {tool} -in {0} -out {0}.plain`)",
            path.display()
        );
    }
    // DER: an ASN.1 SEQUENCE with a long-form length.
    if bytes.starts_with(&[0x30, 0x82]) {
        return format!(
            "; it looks like DER (binary): convert it to PEM (`openssl {tool} -inform der -in {0} -out {0}.pem`)",
            path.display()
        );
    }
    String::new()
}

/// A PEM error in words (the library's own prints the marker lines as byte
/// arrays: `missing section end marker: [67, 69, 82, …]`).
fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { end_marker } => {
            let kind = String::from_utf8_lossy(end_marker);
            let kind = kind.trim();
            format!("a `-----BEGIN {kind}-----` section has no `-----END {kind}-----` line")
        }
        Error::IllegalSectionStart { line } => {
            format!("a `-----BEGIN` line is malformed: `{}`", String::from_utf8_lossy(line).trim())
        }
        Error::Base64Decode(why) => format!("a section's base64 does not decode ({why})"),
        Error::NoItemsFound => "no PEM section of the expected kind (`-----BEGIN …-----`)".into(),
        other => other.to_string(),
    }
}

fn leaf_dns_names(cert: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = name {
                names.push(d.to_string());
            }
        }
    }
    Ok(names)
}

/// A CA bundle (PEM) as a root store; errors name the file.
pub fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let pem = crate::config::read_file(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    roots_of(&pem, path)
}

/// The certificates of a PEM bundle read from `path` (named in errors).
fn roots_of(pem: &[u8], path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("`{shown}` is not valid PEM: {}", pem_error(&e)))?;
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| format!("`{shown}` has a bad certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("`{shown}` holds no certificate{}", hint(path, "x509")));
    }
    Ok(roots)
}

/// Reads the identity out of a verified client certificate.
/// Whether a client's certificate (the first of the chain it sent: the
/// identity) is within its validity period at `unix_secs`. A resumed TLS
/// session carries the chain of the handshake that made it, checked then
/// and not since: each resumption hands out a new ticket, so without this
/// check an expired (short-lived, SPIFFE-style) certificate's identity
/// lasted for ever. Only the leaf: the rest of what a client sends may
/// hold certificates the verifier never used (a stale cross-signed
/// intermediate, an expired root), which a handshake ignores too.
pub fn client_cert_valid_at(chain: &[CertificateDer<'_>], unix_secs: i64) -> bool {
    let Ok(at) = x509_parser::time::ASN1Time::from_timestamp(unix_secs) else { return false };
    chain
        .first()
        .is_some_and(|c| x509_parser::parse_x509_certificate(c).is_ok_and(|(_, p)| p.validity().is_valid_at(at)))
}

pub fn client_identity(chain: &[CertificateDer<'_>]) -> Option<ClientIdentity> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(chain.first()?).ok()?;
    let mut sans = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                // Typed as OpenSSL prints them: a consumer's DNS name must
                // not be met by an email or URI SAN of the same text.
                GeneralName::DNSName(d) => sans.push(format!("DNS:{d}")),
                GeneralName::URI(d) => sans.push(format!("URI:{d}")),
                GeneralName::RFC822Name(d) => sans.push(format!("email:{d}")),
                _ => {}
            }
        }
    }
    let chain = chain.iter().map(|c| c.clone().into_owned()).collect();
    Some(ClientIdentity { subject: subject_text(parsed.subject())?, sans, chain, anchored: Anchored::default() })
}

/// The subject as `KEY=value, KEY=value`, in the certificate's order, with
/// each value escaped as RFC 4514 says (`,` `+` `"` `\` `<` `>` `;`, and a
/// leading `#` or space and a trailing space, as `\` and the character):
/// unescaped, `O=Example, CN=svc-billing` inside one value read as two
/// attributes, and a certificate could pass for another consumer's subject.
/// OpenSSL's short name of a subject attribute where x509-parser's differs
/// (`Email`, `streetAddress`, `givenName`…): the docs tell users to copy
/// the subject from `openssl x509 -subject`, and NGINX's `$ssl_client_s_dn`
/// spells it so too.
fn openssl_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "1.2.840.113549.1.9.1" => "emailAddress",
        "2.5.4.9" => "street",
        "2.5.4.42" => "GN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.12" => "title",
        "2.5.4.17" => "postalCode",
        "2.5.4.43" => "initials",
        "2.5.4.44" => "generationQualifier",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "2.5.4.13" => "description",
        "2.5.4.15" => "businessCategory",
        "2.5.4.16" => "postalAddress",
        "2.5.4.41" => "name",
        "2.5.4.45" => "x500UniqueIdentifier",
        "2.5.4.97" => "organizationIdentifier",
        "1.3.6.1.4.1.311.60.2.1.1" => "jurisdictionL",
        "1.3.6.1.4.1.311.60.2.1.2" => "jurisdictionST",
        "1.3.6.1.4.1.311.60.2.1.3" => "jurisdictionC",
        _ => return None,
    })
}

fn subject_text(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    let registry = x509_parser::objects::oid_registry();
    let mut out = String::new();
    for (i, rdn) in name.iter_rdn().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push_str(" + ");
            }
            let oid = attr.attr_type().to_id_string();
            match (openssl_name(&oid), x509_parser::objects::oid2abbrev(attr.attr_type(), registry)) {
                (Some(name), _) | (None, Ok(name)) => out.push_str(name),
                (None, Err(_)) => out.push_str(&oid),
            }
            out.push('=');
            // A value without a string reading (binary, or a T61String
            // with bytes past ASCII) is written as RFC 4514 says: `#` and
            // the hex of its DER (it took the whole identity away, SANs
            // included: a valid certificate named no consumer).
            let Ok(value) = attr.as_str() else {
                use x509_parser::der_parser::asn1_rs::ToDer;
                out.push('#');
                for b in attr.attr_value().to_der_vec().ok()? {
                    out.push_str(&format!("{b:02x}"));
                }
                continue;
            };
            let last = value.chars().count().saturating_sub(1);
            for (k, c) in value.chars().enumerate() {
                let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
                    || (k == 0 && matches!(c, '#' | ' '))
                    || (k == last && c == ' ');
                if special {
                    out.push('\\');
                }
                out.push(c);
            }
        }
    }
    Some(out)
}

/// Certificate choice by SNI: exact names, then `*.domain` wildcards (one
/// label, as in certificates), then the default (the first certificate).
#[derive(Debug, Default)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    fn add(&mut self, name: &str, key: Arc<CertifiedKey>) {
        let name = name.to_ascii_lowercase();
        match name.strip_prefix("*.") {
            Some(domain) => self.wildcard.entry(domain.to_string()).or_insert(key),
            None => self.exact.entry(name).or_insert(key),
        };
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(sni) = hello.server_name() {
            let sni = sni.to_ascii_lowercase();
            if let Some(k) = self.exact.get(&sni) {
                return Some(k.clone());
            }
            if let Some((_, domain)) = sni.split_once('.')
                && let Some(k) = self.wildcard.get(domain)
            {
                return Some(k.clone());
            }
        }
        self.default.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_certificate_is_valid_only_within_its_period() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["svc.internal".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2026, 1, 1);
        params.not_after = rcgen::date_time_ymd(2026, 2, 1);
        let cert = CertificateDer::from(params.self_signed(&key).unwrap().der().to_vec());
        let day = |y, m, d| rcgen::date_time_ymd(y, m, d).unix_timestamp();
        assert!(client_cert_valid_at(std::slice::from_ref(&cert), day(2026, 1, 15)));
        assert!(!client_cert_valid_at(std::slice::from_ref(&cert), day(2026, 2, 2)), "expired");
        assert!(!client_cert_valid_at(std::slice::from_ref(&cert), day(2025, 12, 31)), "not valid yet");
        let garbage = CertificateDer::from(vec![0u8; 8]);
        assert!(
            client_cert_valid_at(&[cert.clone(), garbage.clone()], day(2026, 1, 15)),
            "what else the client sent is not the identity"
        );
        assert!(!client_cert_valid_at(&[garbage, cert], day(2026, 1, 15)), "an unreadable leaf is no identity");
    }

    /// A subject value without a string reading (a T61String with bytes
    /// past ASCII, as OpenSSL writes non-ASCII under `string_mask=default`)
    /// is written as RFC 4514's `#` and hex: the certificate keeps its
    /// identity and its SANs (it had none, and named no consumer).
    #[test]
    fn a_subject_value_without_a_string_reading_keeps_the_identity() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["svc-a.internal".to_string()]).unwrap();
        // T61String, tag 0x14, holding 0xE9 (not read as text by x509-parser).
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Acme");
        let der = params.self_signed(&key).unwrap().der().to_vec();
        // Rewrite the PrintableString/UTF8String `Acme` as a T61String `Acm\xe9`.
        // The subject (after the issuer, which is the same name).
        let at = der.windows(4).rposition(|w| w == b"Acme").unwrap();
        let mut der = der;
        der[at - 2] = 0x14;
        der[at + 3] = 0xe9;
        let cert = CertificateDer::from(der);
        let id = client_identity(std::slice::from_ref(&cert)).expect("an identity");
        assert_eq!(id.subject, "O=#140441636de9");
        assert_eq!(id.sans, ["DNS:svc-a.internal"]);
    }

    #[test]
    fn server_names_sni_can_match() {
        for good in ["api.example.com", "*.example.com", "localhost", "a-b.test", "a_b.test", "_acme.example.com"] {
            assert!(sni_pattern(good), "{good}");
        }
        for bad in [
            "*",
            "*.*.test",
            "a.*.test",
            "",
            "bad name",
            "x.test.",
            "*.com",
            "-a.test",
            "127.0.0.1",
            "10.1.2.3",
            "127.1",
            "010.0.0.1",
            "0x7f.1",
        ] {
            assert!(!sni_pattern(bad), "{bad}");
        }
    }

    #[test]
    fn der_certificates_and_encrypted_keys_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["gw.example".to_string()]).unwrap().self_signed(&key).unwrap();
        let [der, pem, plain_key, locked_key] = ["c.der", "c.pem", "k.pem", "locked.pem"].map(|n| dir.path().join(n));
        std::fs::write(&der, cert.der()).unwrap();
        std::fs::write(&pem, cert.pem()).unwrap();
        std::fs::write(&plain_key, key.serialize_pem()).unwrap();
        std::fs::write(
            &locked_key,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap();
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let Err((field, why)) = load_certified_key(&provider, &der, &plain_key) else { panic!("DER loaded") };
        assert_eq!(field, "cert");
        assert!(why.contains("looks like DER"), "{why}");
        let Err((field, why)) = load_certified_key(&provider, &pem, &locked_key) else { panic!("locked key loaded") };
        assert_eq!(field, "key");
        assert!(why.contains("it is encrypted"), "{why}");
        assert!(load_certified_key(&provider, &pem, &plain_key).is_ok());
    }
}
