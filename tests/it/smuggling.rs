//! The smuggling and desync regression suite: one row per probe, sent as
//! raw bytes to the real gateway in front of an upstream that records
//! every byte it receives and reads requests as a lenient backend would
//! (`support::recorder`). For every row:
//!
//! - the client gets exactly the responses the row names, and nothing after;
//! - a row refused for its framing (`cut!`) sees the connection closed;
//! - the upstream reads exactly as many requests as the row says, each
//!   framed by one line the gateway wrote that matches its body, none of
//!   them for a path the gateway never routed (`/admin…`);
//! - a next request, on a new client connection (and so, most likely, on
//!   the pooled upstream connection the probe used), gets its own answer.
//!
//! The rows come from RFC 9112 (§2.2, §3, §6, §7.1), the request smuggling
//! literature (CL.TE, TE.CL, TE.TE obfuscations), the HTTP Garden's
//! published parser discrepancies, and the review of December 2026
//! (framing headers listed in `Connection`, Host forms, upgrades, path
//! parameters, unasked `101`s). Each gateway fix to the HTTP/1.1 paths
//! adds a row here.

use std::net::SocketAddr;
use std::path::Path;

use portcullis::Handle;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::support::load;
use crate::support::pki::{Pki, tls_connect};
use crate::support::recorder::Recorder;
use crate::support::wire::{RawConn, exchange};

/// A request probe: bytes sent on one connection, the statuses the client
/// must get (in order), and how many requests the upstream must read.
struct Row {
    name: &'static str,
    send: &'static [u8],
    statuses: &'static [u16],
    forwarded: usize,
    /// The gateway must close the connection after its answers (the
    /// request's framing is in doubt: nothing after it may be read).
    closes: bool,
    /// The request is a HEAD: its answer has no body, whatever its length says.
    head: bool,
}

const fn row(name: &'static str, send: &'static [u8], statuses: &'static [u16], forwarded: usize) -> Row {
    Row { name, send, statuses, forwarded, closes: false, head: false }
}

/// Refused by the gateway with one status; the upstream reads nothing; the
/// connection may stay open (the framing was sound: a target refused).
macro_rules! refused {
    ($name:expr, $send:expr, $status:literal) => {
        Row { name: $name, send: $send, statuses: &[$status], forwarded: 0, closes: false, head: false }
    };
}

/// Refused with one status and the connection closed: a framing error,
/// after which the bytes that follow (here a request for `/admin…`) must
/// never be read as a request.
macro_rules! cut {
    ($name:expr, $send:expr, $status:literal) => {
        Row { name: $name, send: $send, statuses: &[$status], forwarded: 0, closes: true, head: false }
    };
}

/// A HEAD refused as its head is read: one status, no body (a body would be
/// read as the next answer), and the connection closed.
macro_rules! cut_head {
    ($name:expr, $send:expr, $status:literal) => {
        Row { name: $name, send: $send, statuses: &[$status], forwarded: 0, closes: true, head: true }
    };
}

/// Forwarded once, answered 200.
const fn passed(name: &'static str, send: &'static [u8]) -> Row {
    Row { name, send, statuses: &[200], forwarded: 1, closes: false, head: false }
}

const SMUGGLED: &str = "GET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

/// `\r\nHEAD /aaa…` past the head's size (431): refused before its line is whole.
static HEAD_LINE_TOO_LONG: [u8; 40_000] = {
    let mut bytes = [b'a'; 40_000];
    let start = b"\r\nHEAD /";
    let mut i = 0;
    while i < start.len() {
        bytes[i] = start[i];
        i += 1;
    }
    bytes
};

#[rustfmt::skip]
const REQUESTS: &[Row] = &[
    // -- Framing headers that a client tries to remove or double (review class 1, 2).
    passed("connection lists content-length",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nConnection: Content-Length\r\nContent-Length: 41\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
    passed("connection: close, content-length (lower case)",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nconnection: close, content-length\r\ncontent-length: 41\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
    passed("connection lists host",
        b"GET /public/a HTTP/1.1\r\nHost: x\r\nConnection: host\r\n\r\n"),
    passed("connection lists transfer-encoding",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n29\r\nGET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n"),
    passed("connection: keep-alive, upgrade, content-length with upgrade to a plain route",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade, Content-Length\r\nUpgrade: websocket\r\nContent-Length: 41\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
    passed("content-length list of equal values",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5,5\r\n\r\nhello"),
    passed("content-length list with spaces",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello"),
    passed("two equal content-length lines",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
    passed("leading zeros",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 005\r\n\r\nhello"),
    cut!("conflicting content-length lines",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    cut!("conflicting content-length list",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!", 400),
    cut!("content-length with a plus", b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400),
    cut!("negative content-length", b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\nhello", 400),
    cut!("hex content-length", b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello", 400),
    cut!("content-length with a space inside", b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5 5\r\n\r\nhello", 400),
    cut!("content-length with a trailing comma", b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5,\r\n\r\nhello", 400),
    cut!("empty content-length", b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\nhello", 400),
    cut!("content-length over 64 bits", b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
    cut!("content-length over the body limit", b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", 413),
    // HEAD refused at its head: the answer's head alone, then the connection closes.
    cut_head!("a HEAD with a bad version", b"HEAD /public/a HTTP/1.2\r\nHost: x\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    cut_head!("a HEAD with a coding other than chunked", b"HEAD /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    cut_head!("a HEAD after a blank line, its head too large", &HEAD_LINE_TOO_LONG, 431),
    // A chunk announced over the body limit: refused at its first bytes, none forwarded.
    cut!("a chunk over the body limit", b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\nSMUGGLED-DATA", 413),

    // -- CL.TE, TE.CL and TE.TE.
    cut!("CL.TE", b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 400),
    cut!("TE.CL", b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", 400),
    cut!("TE.TE: second TE line", b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n", 400),
    cut!("TE.TE: xchunked", b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
    cut!("TE.TE: quoted", b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n", 400),
    cut!("TE.TE: chunked twice", b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    cut!("TE.TE: chunked then identity", b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400),
    cut!("TE.TE: parameter", b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n", 400),
    cut!("TE.TE: space before the colon", b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    cut!("TE.TE: obs-fold", b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400),
    cut!("TE.TE: bare LF before the field", b"POST /public/a HTTP/1.1\r\nHost: x\r\nX: y\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    cut!("TE.TE: vertical tab", b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n", 400),
    cut!("TE on HTTP/1.0", b"POST /public/a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    cut!("another coding before chunked", b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    passed("chunked in capitals", b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    passed("chunked with a tab before it", b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),

    // -- Chunked bodies read to the letter (review class 3).
    passed("chunk extensions and a trailer",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b;c=\"d\"\r\nhello\r\n0\r\nx-t: 1\r\n\r\n"),
    cut!("chunk size followed by garbage",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 xyz\r\nhello\r\n0\r\n\r\n", 400),
    cut!("chunk size with trailing space",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", 400),
    cut!("bare CR in a chunk extension",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a\rb\r\nhello\r\n0\r\n\r\n", 400),
    cut!("bare LF after a chunk size",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400),
    cut!("chunk data longer than its size",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", 400),
    cut!("NUL in a trailer",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx: a\0b\r\n\r\n", 400),
    cut!("trailer line without a colon",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nnot a field\r\n\r\n", 400),
    cut!("chunk size over 64 bits",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n", 400),
    // A line that fails leaves the body unfinished for good: the review of
    // December 2026 (second round) had a body's end, and the request behind
    // it, read after the refused line when they came in the same packet.
    cut!("two Authorization headers", b"GET /public/a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer checked\r\nAuthorization: Bearer other\r\n\r\n", 400),
    cut!("two Content-Type headers",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}", 400),
    cut!("HTTP/2.0 in an HTTP/1 request line", b"GET /public/a HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    cut!("HTTP/3.0 in an HTTP/1 request line", b"GET /public/a HTTP/3.0\r\nHost: x\r\n\r\n", 505),
    cut!("HTTP/1.x with a letter", b"GET /public/a HTTP/1.x\r\nHost: x\r\n\r\n", 400),
    passed("underscored names, which a CGI backend reads as identity and framing headers",
        b"GET /public/a HTTP/1.1\r\nHost: x\r\nX_Consumer_Id: admin\r\nX_Forwarded_For: 10.0.0.1\r\nX_Request_Id: evil\r\nTransfer_Encoding: chunked\r\nContent_Length: 5\r\n\r\n"),
    passed("dotted and other non-alphanumeric names, which PHP's server reads as `_` and so as `-`",
        b"GET /public/a HTTP/1.1\r\nHost: x\r\nX.Consumer.Id: admin\r\nX.Forwarded.For: 10.0.0.1\r\nTransfer.Encoding: chunked\r\nContent.Length: 5\r\nX~Tenant: a\r\nX'Tenant: b\r\n\r\n"),
    cut!("garbage chunk size, a request behind",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n0\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    cut!("chunk size of 20 digits, a request behind",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000000028\r\n0\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n", 400),
    cut!("unterminated quoted extension, a request behind",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"x\r\n0\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    cut!("obs-fold in a trailer, a request behind",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    cut!("bare CR in a trailer, a request behind",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: a\rb\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    cut!("NUL in a trailer, a request behind",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx: a\0b\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    cut!("trailer without a colon, a request behind",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nnotafield\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    cut!("space before a trailer's colon, a request behind",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX : a\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400),

    // -- Host (review class 4).
    cut!("no Host", b"GET /public/a HTTP/1.1\r\n\r\n", 400),
    cut!("two Hosts", b"GET /public/a HTTP/1.1\r\nHost: x\r\nHost: internal.example\r\n\r\n", 400),
    cut!("an IPv6 Host without brackets", b"GET /public/a HTTP/1.1\r\nHost: ::1\r\n\r\n", 400),
    cut!("two spaces before the version", b"GET /public/a  HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    cut!("empty Host", b"GET /public/a HTTP/1.1\r\nHost: \r\n\r\n", 400),
    cut!("Host list", b"GET /public/a HTTP/1.1\r\nHost: x, internal.example\r\n\r\n", 400),
    cut!("Host with userinfo", b"GET /public/a HTTP/1.1\r\nHost: x@internal.example\r\n\r\n", 400),
    cut!("Host with whitespace", b"GET /public/a HTTP/1.1\r\nHost: x internal.example\r\n\r\n", 400),
    cut!("Host with a tab", b"GET /public/a HTTP/1.1\r\nHost: x\tinternal.example\r\n\r\n", 400),
    cut!("Host with a path", b"GET /public/a HTTP/1.1\r\nHost: internal.example/admin\r\n\r\n", 400),
    cut!("Host with two ports", b"GET /public/a HTTP/1.1\r\nHost: x:80:80\r\n\r\n", 400),
    cut!("Host with percent-encoding", b"GET /public/a HTTP/1.1\r\nHost: internal%2eexample\r\n\r\n", 400),
    cut!("Host with an empty port", b"GET /public/a HTTP/1.1\r\nHost: x:\r\n\r\n", 400),
    cut!("absolute-form with userinfo", b"GET http://internal.example@x/public/a HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    cut!("absolute-form naming another host", b"GET http://internal.example/public/a HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    cut!("absolute-form without Host", b"GET http://x/public/a HTTP/1.1\r\n\r\n", 400),
    cut!("absolute-form of another scheme", b"GET ftp://x/public/a HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    passed("absolute-form agreeing with Host", b"GET http://x/public/a HTTP/1.1\r\nHost: X:80\r\n\r\n"),
    passed("HTTP/1.0 without Host", b"GET /public/a HTTP/1.0\r\n\r\n"),

    // -- Upgrades where the route allows none (review class 5).
    row("websocket upgrade to a plain route, then a request in the would-be tunnel",
        b"GET /public/a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nGET /admin/tunneled HTTP/1.1\r\nHost: x\r\n\r\n",
        &[200, 404], 1),
    row("h2c upgrade, then a request in the would-be tunnel",
        b"GET /public/a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nGET /admin/tunneled HTTP/1.1\r\nHost: x\r\n\r\n",
        &[200, 404], 1),
    // A websocket route: a handshake the gateway could not check the
    // answer to (two keys, none) never reaches the target.
    row("websocket handshake with two keys, then a request",
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: YW5vdGhlciBzYW1wbGUgbm9uY2U=\r\nSec-WebSocket-Version: 13\r\n\r\nGET /admin/tunneled HTTP/1.1\r\nHost: x\r\n\r\n",
        &[400, 404], 0),
    row("websocket handshake without a key, then a request",
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\nGET /admin/tunneled HTTP/1.1\r\nHost: x\r\n\r\n",
        &[400, 404], 0),
    cut!("CONNECT", b"CONNECT internal.example:443 HTTP/1.1\r\nHost: internal.example:443\r\n\r\n", 501),
    cut!("TRACE (cross-site tracing)", b"TRACE /public/a HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\n\r\n", 501),
    cut!("trace, lower case (a service may ignore case)", b"trace /public/a HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    cut!("TRACK (IIS's TRACE)", b"TRACK /public/a HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    cut!("TRACE whose body is a request (the refused head is logged as read)",
        b"TRACE /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 41\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    cut!("two Hosts, a User-Agent and a request as body (the refused head is kept whole for its log line)",
        b"GET /public/a HTTP/1.1\r\nHost: a\r\nHost: b\r\nUser-Agent: x\r\nContent-Length: 41\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    cut!("a method in lower case (services upper-case it: past a route's method list)",
        b"delete /public/a HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    cut!("a method in mixed case", b"gEt /public/a HTTP/1.1\r\nHost: x\r\n\r\n", 400),

    // -- Path parameters (review class 7), and other path forms.
    refused!("segment parameter", b"GET /public;x/../admin HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    refused!("jsessionid", b"GET /public/a;jsessionid=1 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    refused!("dot-semicolon", b"GET /public/..;/admin HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    cut!("fragment in the target", b"GET /admin#/public/a HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    refused!("encoded dot segments to a route that does not exist", b"GET /public/%2e%2e/admin HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    refused!("encoded slash", b"GET /public%2f..%2fadmin HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    refused!("double encoding spelt with escapes", b"GET /public/%25%32%65%25%32%65/admin HTTP/1.1\r\nHost: x\r\n\r\n", 400),

    // -- Line and field grammar.
    cut!("bare LF line ends", b"GET /public/a HTTP/1.1\nHost: x\n\n", 400),
    cut!("bare LF ending the head", b"GET /public/a HTTP/1.1\r\nHost: x\r\n\n", 400),
    cut!("bare CR in a value", b"GET /public/a HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", 400),
    cut!("NUL in a value", b"GET /public/a HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n", 400),
    cut!("control byte in a value", b"GET /public/a HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n", 400),
    cut!("DEL in a value", b"GET /public/a HTTP/1.1\r\nHost: x\r\nX: a\x7fb\r\n\r\n", 400),
    cut!("NUL in a name", b"GET /public/a HTTP/1.1\r\nHost: x\r\nX\0Y: a\r\n\r\n", 400),
    cut!("space in a name", b"GET /public/a HTTP/1.1\r\nHost: x\r\nX Y: a\r\n\r\n", 400),
    cut!("whitespace before a colon", b"GET /public/a HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello", 400),
    cut!("obs-fold", b"GET /public/a HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),
    cut!("line starting with whitespace after the request line", b"GET /public/a HTTP/1.1\r\n Host: x\r\n\r\n", 400),
    cut!("two spaces in the request line", b"GET  /public/a HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    cut!("HTTP/2.0 on an HTTP/1 line", b"GET /public/a HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    cut!("lower-case version", b"GET /public/a http/1.1\r\nHost: x\r\n\r\n", 400),
    cut!("control byte in the target", b"GET /public/\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    refused!("non-ASCII target", b"GET /public/\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    refused!("asterisk-form", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 400),

    // -- Keep-alive, pipelining, Expect.
    row("pipelining after a body",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /public/b HTTP/1.1\r\nHost: x\r\n\r\n",
        &[200, 200], 2),
    row("pipelining after a chunked body",
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /public/b HTTP/1.1\r\nHost: x\r\n\r\n",
        &[200, 200], 2),
    row("HTTP/1.0 keep-alive",
        b"GET /public/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /public/b HTTP/1.0\r\n\r\n",
        &[200, 200], 2),
    passed("expect 100-continue on HTTP/1.0",
        b"POST /public/a HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello"),
    passed("GET with a body", b"GET /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"),
    passed("empty POST", b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
];

/// The gateway every row runs against, with a plain listener (`addr`,
/// HTTP/1.1 by the own codec and h2c) and a TLS one (`tls`, hyper's
/// HTTP/1.1): `/public` goes upstream, the host `internal.example` has a
/// route of its own, nothing else is routed.
struct Probed {
    _handle: Handle,
    addr: SocketAddr,
    tls: SocketAddr,
    pki: Pki,
}

impl Probed {
    async fn tls_conn(&self) -> RawConn<impl AsyncRead + AsyncWrite + Unpin> {
        RawConn::over(tls_connect(self.tls, "x", &self.pki.ca_path(), None, &[b"http/1.1"]).await.unwrap())
    }
}

async fn gateway_for(rec: &Recorder) -> Probed {
    let pki = Pki::new();
    let (cert, key) = pki.issue("gw", "gw", &["x"]);
    let yaml = format!(
        r#"listeners:
  - {{ name: plain, bind: "127.0.0.1:0" }}
  - {{ name: tls, bind: "127.0.0.1:0", tls: {{ certificates: [ {{ cert: "{}", key: "{}" }} ] }} }}
upstreams:
  rec: {{ targets: [ "{}" ] }}
routes:
  - {{ name: public, match: {{ path_prefix: /public }}, upstream: rec }}
  - {{ name: ws, match: {{ path_prefix: /ws }}, upstream: rec, websocket: true }}
  - {{ name: internal, match: {{ host: internal.example, path_prefix: / }}, static: {{ status: 200, body: internal }} }}
"#,
        cert.display(),
        key.display(),
        rec.url()
    );
    let handle = portcullis::Gateway::start(&load(&yaml, Path::new("."))).await.expect("gateway starts");
    let (addr, tls) = (handle.addr("plain").unwrap(), handle.addr("tls").unwrap());
    Probed { _handle: handle, addr, tls, pki }
}

/// The upstream's pooled connection still answers the right request.
async fn next_request_gets_its_own_answer(addr: SocketAddr, rec: &Recorder, after: &str) {
    let target = format!("/public/after-{}", after.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
    let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
    let resp = exchange(addr, request.as_bytes()).await.expect("an answer");
    assert_eq!(
        (resp.status, resp.text()),
        (200, format!("GET {target}")),
        "after {after:?}: the next request got another's answer\n{}",
        rec.transcript()
    );
}

/// Runs every row of `REQUESTS` on connections from `open`.
async fn run_request_probes<S, F>(gw: &Probed, rec: &Recorder, open: impl Fn() -> F)
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = RawConn<S>>,
{
    for (i, r) in REQUESTS.iter().enumerate() {
        let before = rec.count();
        let mut conn = open().await;
        conn.send(r.send).await;
        let mut got = Vec::new();
        for _ in r.statuses {
            match conn.response(r.head).await {
                Some(resp) => {
                    assert!(resp.status != 100, "{}: a 100 Continue: {}", r.name, resp.head);
                    got.push(resp.status);
                }
                None => break,
            }
        }
        assert_eq!(got, r.statuses, "{}: the statuses answered", r.name);
        // A HEAD's answer ends with its head: nothing follows it before the close.
        if r.head {
            assert!(
                conn.closes().await,
                "{}: bytes after a HEAD's answer: {:?}",
                r.name,
                String::from_utf8_lossy(conn.unread())
            );
        }
        // Nothing more comes on this connection but the answer to the next
        // request on it, if the gateway kept it open.
        let end = format!("/public/end-{i}");
        conn.send(format!("GET {end} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await;
        if let Some(resp) = conn.response(false).await {
            assert!(!r.closes, "{}: the connection stayed open: {} {}", r.name, resp.status, resp.text());
            assert_eq!((resp.status, resp.text()), (200, format!("GET {end}")), "{}: an extra answer", r.name);
        }
        drop(conn);
        next_request_gets_its_own_answer(gw.addr, rec, r.name).await;
        upstream_read_what_the_gateway_framed(rec, before, r.forwarded, r.name);
    }
}

/// What reached the upstream since `before` (the rows' follow-up requests
/// aside): `forwarded` requests, each framed by one line of the gateway's,
/// none of them smuggled, none carrying what the gateway must not pass on.
fn upstream_read_what_the_gateway_framed(rec: &Recorder, before: usize, forwarded: usize, name: &str) {
    let probe: Vec<_> = rec.requests()[before..]
        .iter()
        .filter(|q| !q.target.starts_with("/public/end-") && !q.target.starts_with("/public/after-"))
        .cloned()
        .collect();
    assert_eq!(probe.len(), forwarded, "{name}: requests upstream\n{}", rec.transcript());
    for req in &probe {
        assert!(!req.target.starts_with("/admin"), "{name}: smuggled {req:?}");
        assert!(req.framed_by_one_line(), "{name}: framing {req:?}");
        assert!(req.header("expect").is_none(), "{name}: {req:?}");
        assert!(req.header("upgrade").is_none(), "{name}: {req:?}");
        // CGI-style backends read `_` as `-`: `X_Consumer_Id` would pass for
        // an identity header (review of December 2026, second round).
        assert!(req.headers.iter().all(|(n, _)| !n.contains('_')), "{name}: an underscored name {req:?}");
        // And PHP's built-in server reads `.` as `_`: only letters, digits and `-`.
        assert!(
            req.headers.iter().all(|(n, _)| n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')),
            "{name}: a name NGINX would drop {req:?}"
        );
    }
}

#[tokio::test]
async fn request_probes() {
    let rec = Recorder::start().await;
    let gw = gateway_for(&rec).await;
    run_request_probes(&gw, &rec, || RawConn::connect(gw.addr)).await;
}

/// The same rows over TLS, where hyper reads HTTP/1.1: the same answers.
#[tokio::test]
async fn request_probes_over_tls() {
    let rec = Recorder::start().await;
    let gw = gateway_for(&rec).await;
    run_request_probes(&gw, &rec, || gw.tls_conn()).await;
}

#[tokio::test]
async fn what_the_upstream_reads_is_what_the_gateway_framed() {
    let rec = Recorder::start().await;
    let gw = gateway_for(&rec).await;
    // The review's first finding: Content-Length named in Connection.
    let probe = format!(
        "POST /public/a HTTP/1.1\r\nHost: x\r\nConnection: Content-Length\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    );
    let resp = exchange(gw.addr, probe.as_bytes()).await.unwrap();
    assert_eq!((resp.status, resp.text()), (200, "POST /public/a".to_string()));
    rec.wait_for("/public/a").await;
    let req = &rec.requests()[0];
    assert_eq!(req.all("content-length"), [SMUGGLED.len().to_string()]);
    assert_eq!(req.body, SMUGGLED.as_bytes());
    // The head the upstream got has one framing line, the gateway's.
    let raw = String::from_utf8_lossy(&rec.bytes(req.connection)).into_owned();
    let head = raw.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert_eq!(head.matches("content-length").count(), 1, "{raw}");

    // Equal lengths twice become one line; a chunked body goes on chunked.
    let resp = exchange(
        gw.addr,
        b"POST /public/b HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(resp.unwrap().status, 200);
    let resp = exchange(gw.addr, b"POST /public/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3;x=y\r\nllo\r\n0\r\nx-trailer: 1\r\n\r\n").await;
    assert_eq!(resp.unwrap().status, 200);
    let seen = rec.requests();
    let b = seen.iter().find(|r| r.target == "/public/b").unwrap();
    assert_eq!((b.all("content-length"), &b.body[..]), (vec!["5"], &b"hello"[..]));
    let c = seen.iter().find(|r| r.target == "/public/c").unwrap();
    assert_eq!((c.all("transfer-encoding"), &c.body[..]), (vec!["chunked"], &b"hello"[..]));
    assert!(c.header("x-trailer").is_none() && c.header("content-length").is_none(), "{c:?}");
}

/// Heads that arrive in pieces (a slow client; the connection loop notes
/// when such a head began, for its logged duration) are framed as whole
/// ones: a body and a pipelined request in the last piece stay a body and
/// a request of their own, answered in order, and a conflict of framing
/// split across pieces is still refused, the connection closed.
#[tokio::test]
async fn heads_in_pieces_are_framed_like_whole_ones() {
    let rec = Recorder::start().await;
    let gw = gateway_for(&rec).await;
    let before = rec.count();
    let mut conn = RawConn::connect(gw.addr).await;
    let pieces: [&[u8]; 3] = [
        b"POST /public/slow HTTP/1.1\r\nHo",
        b"st: x\r\nContent-Length: 5\r\n",
        b"\r\nhelloGET /public/next HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for piece in pieces {
        conn.send(piece).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for target in ["/public/slow", "/public/next"] {
        let resp = conn.response(false).await.unwrap_or_else(|| panic!("{target}: closed"));
        let method = if target == "/public/slow" { "POST" } else { "GET" };
        assert_eq!((resp.status, resp.text()), (200, format!("{method} {target}")));
    }
    rec.wait_for("/public/next").await;
    upstream_read_what_the_gateway_framed(&rec, before, 2, "head in pieces");
    let slow = rec.requests().into_iter().find(|r| r.target == "/public/slow").unwrap();
    assert_eq!(&slow.body[..], b"hello");

    // Two framings, one per piece: refused, and what follows is never read.
    let before = rec.count();
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"POST /public/two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    conn.send(format!("Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}").as_bytes()).await;
    assert_eq!(conn.response(false).await.map(|r| r.status), Some(400));
    assert!(conn.response(false).await.is_none(), "the connection stays open after a framing conflict");
    next_request_gets_its_own_answer(gw.addr, &rec, "head in pieces").await;
    upstream_read_what_the_gateway_framed(&rec, before, 0, "framing split across pieces");
}

/// A body on a method some servers read without one (`GET`, `DELETE`,
/// `OPTIONS`, `HEAD`: the "CL.0" desync, review of December 2026): it goes
/// upstream framed as sent, with `Connection: close`, and its connection is
/// never reused, so a server that read the body as a second request cannot
/// answer it to the next client. A `POST`'s connection is reused as before.
#[tokio::test]
async fn a_body_on_a_bodiless_method_never_shares_its_upstream_connection() {
    let rec = Recorder::start().await;
    let gw = gateway_for(&rec).await;
    let inner = "GET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    for method in ["GET", "DELETE", "OPTIONS"] {
        let probe =
            format!("{method} /public/{method} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{inner}", inner.len());
        assert_eq!(exchange(gw.addr, probe.as_bytes()).await.unwrap().status, 200, "{method}");
        let path = format!("/public/{method}");
        rec.wait_for(&path).await;
        let next = format!("/public/after-{method}");
        assert_eq!(
            exchange(gw.addr, format!("GET {next} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap().status,
            200
        );
        rec.wait_for(&next).await;
        let seen = rec.requests();
        let probe = seen.iter().find(|r| r.target == path).unwrap();
        assert_eq!((probe.header("connection"), &probe.body[..]), (Some("close"), inner.as_bytes()), "{method}");
        let after = seen.iter().find(|r| r.target == next).unwrap();
        assert_ne!(after.connection, probe.connection, "{method}: its connection was reused");
    }
    // A POST's body is expected: its connection serves the next request.
    let post = format!("POST /public/post HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{inner}", inner.len());
    assert_eq!(exchange(gw.addr, post.as_bytes()).await.unwrap().status, 200);
    rec.wait_for("/public/post").await;
    assert_eq!(exchange(gw.addr, b"GET /public/after-post HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap().status, 200);
    rec.wait_for("/public/after-post").await;
    let seen = rec.requests();
    let (post, after) = (
        seen.iter().find(|r| r.target == "/public/post").unwrap(),
        seen.iter().find(|r| r.target == "/public/after-post").unwrap(),
    );
    assert_eq!((post.header("connection"), after.connection), (None, post.connection));
}

/// A config that names a request header the gateway reads with a name
/// every protocol path drops (`_`, `.`): refused with where and why, since
/// the setting could never see one (an API key always missing, a route
/// that never matches, one rate-limit bucket for every client).
#[test]
fn a_config_reading_a_dropped_header_name_is_refused() {
    let yaml = r#"
listeners: [ { name: gw, bind: "127.0.0.1:0" } ]
upstreams: { u: { targets: [ "http://127.0.0.1:9" ], balance: { consistent_hash: { header: X_Tenant } } } }
auth: { keys: { api_key: { header: X_Api_Key } } }
identity_headers: { consumer: X_Consumer }
routes:
  - name: a
    match: { path: /a, headers: [ { name: X.Beta, value: "1" } ] }
    upstream: u
    authenticate: [ keys ]
  - name: b
    match: { path: /b, version: { header: X_Api_Version, value: "2" } }
    upstream: u
    rate_limit: [ { key: { header: X_Client }, rate: 1/s } ]
    cors: { allow_origins: [ "https://app.example" ], allow_headers: [ X_Custom ] }
    validate: { headers: { X_Trace: { type: string, required: true }, X_Optional: { type: string } } }
  - { name: c, match: { path: /c }, upstream: u, request_headers: { set: { X-Ok: "1" } } }
"#;
    let errors = portcullis::check(&load(yaml, Path::new("."))).unwrap_err().to_string();
    for want in [
        "upstreams.u.balance.consistent_hash.header: `X_Tenant`: request headers named with other characters",
        "auth.keys.api_key.header: `X_Api_Key`",
        "routes[0].match.headers[0].name: `X.Beta`",
        "routes[1].match.version.header: `X_Api_Version`",
        "routes[1].rate_limit[0]",
        "routes[1].cors.allow_headers[0]: `X_Custom`",
        "routes[1].validate.headers.X_Trace: `X_Trace`",
        "identity_headers.consumer: `X_Consumer`",
        "write `X-Api-Key`",
    ] {
        assert!(errors.contains(want), "{want} not in:\n{errors}");
    }
    // An optional one (a third-party document's) checks nothing: not refused.
    assert!(!errors.contains("X_Optional"), "{errors}");
}

#[tokio::test]
async fn oversized_heads_are_refused_before_the_upstream() {
    let rec = Recorder::start().await;
    let gw = gateway_for(&rec).await;
    let long_target = format!("GET /public/{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    let long_field = format!("GET /public/a HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(70_000));
    let many_fields: String = (0..200).map(|i| format!("x-{i}: v\r\n")).collect();
    let many_fields = format!("GET /public/a HTTP/1.1\r\nHost: x\r\n{many_fields}\r\n");
    // The whole head in one write, as the line's start alone: 414 either way.
    let long_target_whole =
        format!("GET /public/{} HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "a".repeat(40_000), "b".repeat(100));
    for (request, status) in [(long_target, 414), (long_target_whole, 414), (long_field, 431), (many_fields, 431)] {
        let resp = exchange(gw.addr, request.as_bytes()).await.expect("an answer");
        assert_eq!(resp.status, status, "{}", &request[..40]);
    }
    next_request_gets_its_own_answer(gw.addr, &rec, "oversized").await;
    assert_eq!(rec.count(), 1, "{}", rec.transcript());
}

#[tokio::test]
async fn a_trailing_dot_names_the_same_host() {
    let rec = Recorder::start().await;
    let gw = gateway_for(&rec).await;
    for host in ["internal.example", "INTERNAL.example.", "internal.example.:80"] {
        let request = format!("GET /x HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let resp = exchange(gw.addr, request.as_bytes()).await.unwrap();
        assert_eq!((resp.status, resp.text()), (200, "internal".to_string()), "{host}");
    }
    assert_eq!(rec.count(), 0);
}

/// An upstream that writes a HEAD, 204 or 304 answer's body late (a
/// second write, as buggy applications do) must not have it read as the
/// answer of the request that takes the connection next: such a
/// connection is not reused. (The `a body on a HEAD answer` row catches bytes that come with
/// the head; these come after it.)
#[tokio::test]
async fn a_late_body_after_a_head_answer_reaches_nobody() {
    // What the upstream answers first, each without a body by RFC 9112
    // §6.3: a HEAD's (whose length is the GET's), a 204, a 304.
    let cases = [
        (&b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n"[..], &b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n"[..]),
        (b"GET /h HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 204 No Content\r\n\r\n"),
        (b"GET /h HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n"),
    ];
    let dir = tempfile::tempdir().unwrap();
    // Over the own codec (`http://`) and hyper's pool (`https://`).
    for https in [false, true] {
        for (request, first) in cases {
            let upstream = if https {
                let up =
                    crate::support::tls::TlsUpstream::serve(&[b"http/1.1"], move |tls| late_writer(tls, first)).await;
                let ca = dir.path().join("ca.pem");
                std::fs::write(&ca, &up.ca_pem).unwrap();
                format!("{{ targets: [ \"https://{}\" ], tls: {{ ca: \"{}\" }} }}", up.addr, ca.display())
            } else {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                tokio::spawn(async move {
                    while let Ok((conn, _)) = listener.accept().await {
                        tokio::spawn(late_writer(conn, first));
                    }
                });
                format!("{{ targets: [ \"http://{addr}\" ] }}")
            };
            let gw = crate::support::gateway(&format!(
                "upstreams:\n  up: {upstream}\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: up }}\n"
            ))
            .await;
            let answer = exchange(gw.addr, request).await.unwrap();
            assert!([200, 204, 304].contains(&answer.status), "{}", answer.status);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let victim = exchange(gw.addr, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
            let first = String::from_utf8_lossy(first);
            assert_eq!((victim.status, victim.text()), (200, "victim".to_string()), "after {first} (https: {https})");
        }
    }
}

/// A body the gateway stops sending after an early answer ends there: the
/// upstream reads the end of the stream (FIN), never the body's later bytes
/// (a request smuggled in them) on that connection or as another request.
#[tokio::test]
async fn the_rest_of_a_body_after_an_early_answer_reaches_nobody() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(Vec<u8>, bool)>();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut answered = false;
                // Everything the connection brings, until its end (`true`) or 3 s.
                let ended = tokio::time::timeout(std::time::Duration::from_secs(3), async {
                    loop {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&chunk[..n]),
                        }
                        if !answered && got.windows(4).any(|w| w == b"\r\n\r\n") {
                            answered = true;
                            let _ = conn.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n").await;
                        }
                    }
                })
                .await
                .is_ok();
                let _ = seen_tx.send((got, ended));
            });
        }
    });
    let gw = crate::support::gateway(&format!(
        "upstreams:\n  up: {{ targets: [ \"http://{addr}\" ] }}\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: up }}\n"
    ))
    .await;
    let mut client = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let later = format!("xxxx{SMUGGLED}");
    let head = format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\nfirst", 5 + later.len());
    client.write_all(head.as_bytes()).await.unwrap();
    let mut answer = [0u8; 12];
    client.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 401");
    let _ = client.write_all(later.as_bytes()).await;
    let (got, ended) = seen_rx.recv().await.unwrap();
    let got = String::from_utf8_lossy(&got);
    assert!(ended, "the upstream waited for the rest of the body: {got}");
    assert!(!got.contains("smuggled"), "{got}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(seen_rx.try_recv().is_err(), "a second upstream connection");
}

/// An upstream connection that answers `/h` with `first`, then 300 ms
/// later with a whole response nobody asked for; anything else, after
/// 500 ms, with `victim`.
async fn late_writer(mut conn: impl AsyncRead + AsyncWrite + Unpin, first: &'static [u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let Ok(n @ 1..) = conn.read(&mut chunk).await else { return };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            if head.windows(3).any(|w| w == b"/h ") {
                let _ = conn.write_all(first).await;
                let _ = conn.flush().await;
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned").await;
                let _ = conn.flush().await;
            } else {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nvictim").await;
                let _ = conn.flush().await;
            }
        }
    }
}

/// A response probe: what the upstream answers to `GET /public/<name>`
/// (or `HEAD`), and the status the client must get.
struct Reply {
    name: &'static str,
    reply: &'static [u8],
    status: u16,
    head: bool,
}

const fn bad(name: &'static str, reply: &'static [u8]) -> Reply {
    Reply { name, reply, status: 502, head: false }
}

#[rustfmt::skip]
const RESPONSES: &[Reply] = &[
    bad("unasked 101 then a poisoned answer",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned"),
    bad("bare LF inside a field", b"HTTP/1.1 200 OK\r\nX-A: b\nX-Injected: 1\r\nContent-Length: 2\r\n\r\nok"),
    bad("bare LF line ends", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"),
    bad("bare CR in a value", b"HTTP/1.1 200 OK\r\nX-A: b\rX-Injected: 1\r\nContent-Length: 2\r\n\r\nok"),
    bad("NUL in a value", b"HTTP/1.1 200 OK\r\nX-A: b\0c\r\nContent-Length: 2\r\n\r\nok"),
    bad("obs-fold", b"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 2\r\n\r\nok"),
    bad("space before a colon", b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok"),
    bad("two equal lengths", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"),
    bad("conflicting lengths", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 10\r\n\r\nok"),
    bad("a length list", b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok"),
    bad("a bad length", b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok"),
    bad("length and chunked", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    bad("chunked and length", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    bad("a coding other than chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok"),
    bad("chunked twice", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    bad("chunked then an empty coding", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked ,\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    bad("only empty codings", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\n\r\nok"),
    bad("chunked on two lines", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    Reply { name: "empty codings before chunked", reply: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: , ,chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", status: 200, head: false },
    bad("chunked on HTTP/1.0", b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    bad("a body on 204", b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned"),
    bad("a body on 304", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 8\r\n\r\npoisoned"),
    Reply { name: "a body on a HEAD answer", reply: b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned", status: 502, head: true },
    bad("more bytes than its length", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned"),
    bad("garbage", b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
    bad("a bad status", b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok"),
    bad("a status above 599", b"HTTP/1.1 600 Big\r\nContent-Length: 2\r\n\r\nok"),
    bad("status 999", b"HTTP/1.1 999 Big\r\nContent-Length: 2\r\n\r\nok"),
    bad("endless interim answers", b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    Reply { name: "an interim 100 Continue, skipped", reply: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", status: 200, head: false },
    Reply { name: "chunked with extensions", reply: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a=b\r\nok\r\n0\r\n\r\n", status: 200, head: false },
    Reply { name: "a body until close", reply: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nok", status: 200, head: false },
    Reply { name: "the gateway's own headers", reply: b"HTTP/1.1 200 OK\r\nPortcullis-Tries: 7\r\nPortcullis-Upstream-Health: fake\r\nPortcullis-Aggregate: partial\r\nContent-Length: 2\r\n\r\nok", status: 200, head: false },
];

#[tokio::test]
async fn response_probes() {
    let rec = Recorder::with_replies(|req| {
        let name = req.target.strip_prefix("/public/reply/")?;
        RESPONSES.iter().find(|r| r.name.replace(' ', "-") == name).map(|r| r.reply.to_vec())
    })
    .await;
    let gw = gateway_for(&rec).await;
    for r in RESPONSES {
        let method = if r.head { "HEAD" } else { "GET" };
        let request = format!("{method} /public/reply/{} HTTP/1.1\r\nHost: x\r\n\r\n", r.name.replace(' ', "-"));
        let mut conn = RawConn::connect(gw.addr).await;
        conn.send(request.as_bytes()).await;
        let resp = conn.response(r.head).await.unwrap_or_else(|| panic!("{}: no answer", r.name));
        assert_eq!(resp.status, r.status, "{}: {} {}", r.name, resp.head, resp.text());
        assert!(resp.header("x-injected").is_none(), "{}: {}", r.name, resp.head);
        assert!(!resp.text().contains("poisoned"), "{}: {}", r.name, resp.text());
        // The gateway's own word is never an upstream's.
        assert!(!resp.head.to_ascii_lowercase().contains("portcullis-"), "{}: {}", r.name, resp.head);
        if r.status == 200 && !r.head {
            assert_eq!(resp.text(), "ok", "{}", r.name);
        }
        // Reached, and answered nonsense: said so, not "could not be reached".
        if r.status == 502 && !r.head {
            let detail = serde_json::from_slice::<serde_json::Value>(&resp.body).unwrap()["detail"].clone();
            assert_eq!(detail, "the upstream service sent an invalid response", "{}", r.name);
        }
        drop(conn);
        next_request_gets_its_own_answer(gw.addr, &rec, r.name).await;
    }
}

/// The framing rows again, from an `https://` target, whose HTTP/1.1
/// responses hyper's client reads (leniently: a length beside chunked
/// went on to the client short, a coding besides chunked went on decoded
/// of its chunks and still gzip, without its `Content-Encoding`).
#[tokio::test]
async fn response_framing_probes_from_an_https_upstream() {
    let dir = tempfile::tempdir().unwrap();
    // The gateway's answer to a GET through an `https://` target that answers `reply`.
    let through = async |reply: &'static [u8]| {
        let up = crate::support::tls::TlsUpstream::raw(reply).await;
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &up.ca_pem).unwrap();
        let gw = crate::support::gateway(&format!(
            "upstreams:\n  tls: {{ targets: [ \"https://{}\" ], tls: {{ ca: \"{}\" }} }}\n\
             routes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: tls }}\n",
            up.addr,
            ca.display()
        ))
        .await;
        let mut conn = RawConn::connect(gw.addr).await;
        conn.send(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").await;
        conn.response(false).await
    };
    let rows = [
        "two equal lengths",
        "conflicting lengths",
        "a length list",
        "a bad length",
        "length and chunked",
        "chunked and length",
        "a coding other than chunked",
        "chunked twice",
        "chunked then an empty coding",
        "only empty codings",
        "chunked on two lines",
    ];
    for name in rows {
        let row = RESPONSES.iter().find(|r| r.name == name).expect("a response row");
        let resp = through(row.reply).await.unwrap_or_else(|| panic!("{name}: no answer"));
        assert_eq!(resp.status, 502, "{name}: {} {}", resp.head, resp.text());
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&resp.body).unwrap()["detail"],
            "the upstream service sent an invalid response",
            "{name}"
        );
    }
    // A sound chunked answer still goes through, with empty codings before it too.
    let sound = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
    let resp = through(sound).await.expect("an answer");
    assert_eq!((resp.status, resp.text()), (200, "ok".to_string()));
    let listed = RESPONSES.iter().find(|r| r.name == "empty codings before chunked").expect("a response row");
    let resp = through(listed.reply).await.expect("an answer");
    assert_eq!((resp.status, resp.text()), (200, "ok".to_string()));
    // Without the upstream's word for the gateway's own headers.
    let own = RESPONSES.iter().find(|r| r.name == "the gateway's own headers").expect("a response row");
    let resp = through(own.reply).await.expect("an answer");
    assert_eq!(resp.status, 200);
    assert!(!resp.head.to_ascii_lowercase().contains("portcullis-"), "{}", resp.head);
}

/// An aggregate call to an `https://` target (hyper's client) is held to
/// the same framing rules: an answer that cannot be framed alone was
/// merged (a length beside chunked, a coding besides chunked) or hung the
/// call until its budget (`chunked ,`), and a status over 599 was passed
/// on as the upstream's answer.
#[tokio::test]
async fn an_aggregate_call_to_an_https_target_refuses_what_cannot_be_framed() {
    let dir = tempfile::tempdir().unwrap();
    for reply in [
        &b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n{\"id\":1}\r\n0\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\n\r\n8\r\n{\"id\":1}\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked ,\r\n\r\n8\r\n{\"id\":1}\r\n0\r\n\r\n",
        b"HTTP/1.1 700 Odd\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n{\"id\":1}",
    ] {
        let up = crate::support::tls::TlsUpstream::raw(reply).await;
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &up.ca_pem).unwrap();
        let gw = crate::support::gateway(&format!(
            "upstreams:\n  tls: {{ targets: [ \"https://{}\" ], tls: {{ ca: \"{}\" }} }}\n\
             routes:\n  - name: agg\n    match: {{ path: /agg }}\n    \
             aggregate: {{ timeout: 3s, calls: {{ it: {{ upstream: tls, path: /x, required: true }} }} }}\n",
            up.addr,
            ca.display()
        ))
        .await;
        let resp = exchange(gw.addr, b"GET /agg HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("an answer");
        let said = String::from_utf8_lossy(reply.split(|&b| b == b'\n').nth(2).unwrap_or_default()).into_owned();
        assert_eq!(resp.status, 502, "{said}: {}", resp.text());
        let errors = serde_json::from_slice::<serde_json::Value>(&resp.body).unwrap()["errors"].clone();
        assert_eq!(errors[0]["detail"], "the upstream sent an invalid response", "{said}: {errors}");
    }
}

/// An HTTP/2 probe (h2c with prior knowledge): the request's fields and
/// DATA, whether the gateway must answer it, and how many requests the
/// upstream must read.
struct H2Row {
    name: &'static str,
    fields: &'static [(&'static [u8], &'static [u8])],
    data: Option<&'static [u8]>,
    /// The status the client must get; 0: the stream is refused (400, or reset).
    status: u16,
    forwarded: usize,
}

const fn h2_refused(
    name: &'static str,
    fields: &'static [(&'static [u8], &'static [u8])],
    data: Option<&'static [u8]>,
) -> H2Row {
    H2Row { name, fields, data, status: 0, forwarded: 0 }
}

macro_rules! h2_get {
    ($($extra:expr),* $(,)?) => {
        &[(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/public/h2"), $($extra),*]
    };
}

macro_rules! h2_post {
    ($($extra:expr),* $(,)?) => {
        &[(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/public/h2"), $($extra),*]
    };
}

/// A field value that alone makes a field section larger than the default `max_header_size`.
const OVER_32K: &[u8] = &[b'a'; 32 << 10];

#[rustfmt::skip]
const H2_REQUESTS: &[H2Row] = &[
    H2Row { name: "a plain GET", fields: h2_get!(), data: None, status: 200, forwarded: 1 },
    H2Row { name: "a POST whose content-length matches", fields: h2_post!((b"content-length", b"5")), data: Some(b"hello"), status: 200, forwarded: 1 },
    H2Row { name: "a POST without content-length", fields: h2_post!(), data: Some(b"hello"), status: 200, forwarded: 1 },
    H2Row { name: "Host agreeing with :authority", fields: h2_get!((b"host", b"X:80")), data: None, status: 200, forwarded: 1 },
    h2_refused("two authorization fields", h2_get!((b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")), None),
    H2Row { name: "underscored names", fields: h2_get!((b"x_consumer_id", b"admin"), (b"x_forwarded_for", b"10.0.0.1")), data: None, status: 200, forwarded: 1 },
    H2Row { name: "dotted names", fields: h2_get!((b"x.consumer.id", b"admin"), (b"x.forwarded.for", b"10.0.0.1"), (b"x~tenant", b"a")), data: None, status: 200, forwarded: 1 },
    h2_refused("H2.CL: DATA longer than content-length", h2_post!((b"content-length", b"5")), Some(b"helloGET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n")),
    h2_refused("H2.CL: DATA shorter than content-length", h2_post!((b"content-length", b"50")), Some(b"hello")),
    h2_refused("H2.CL: DATA after content-length 0", h2_post!((b"content-length", b"0")), Some(b"GET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n")),
    h2_refused("H2.CL: a content-length list", h2_post!((b"content-length", b"5, 5")), Some(b"hello")),
    h2_refused("H2.TE: transfer-encoding", h2_post!((b"transfer-encoding", b"chunked")), Some(b"0\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n")),
    h2_refused("connection", h2_get!((b"connection", b"keep-alive")), None),
    h2_refused("keep-alive", h2_get!((b"keep-alive", b"timeout=5")), None),
    h2_refused("upgrade", h2_get!((b"upgrade", b"h2c")), None),
    h2_refused("te other than trailers", h2_get!((b"te", b"gzip")), None),
    h2_refused("CRLF in a value", h2_get!((b"x-a", b"b\r\nx-injected: 1")), None),
    h2_refused("LF in a value", h2_get!((b"x-a", b"b\nx-injected: 1")), None),
    h2_refused("NUL in a value", h2_get!((b"x-a", b"b\0c")), None),
    h2_refused("whitespace around a value", h2_get!((b"x-a", b" b ")), None),
    h2_refused("a tab ending a value", h2_get!((b"x-a", b"b\t")), None),
    h2_refused("CRLF in :path", &[(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/public/h2 HTTP/1.1\r\nHost: x\r\n\r\nGET /admin/x")], None),
    h2_refused("upper case in a name", h2_get!((b"X-A", b"b")), None),
    h2_refused("a colon in a name", h2_get!((b"x:a", b"b")), None),
    // The h2 crate takes `"` in a name; HTTP/1.1 does not (not a token): admission refuses it.
    H2Row { name: "a quote in a name", fields: h2_get!((b"x\"a", b"b")), data: None, status: 400, forwarded: 0 },
    h2_refused("Host disagreeing with :authority", h2_get!((b"host", b"internal.example")), None),
    h2_refused("two Hosts", &[(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/public/h2"), (b"host", b"x"), (b"host", b"x")], None),
    h2_refused("neither :authority nor Host", &[(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/public/h2")], None),
    h2_refused(":authority with userinfo", &[(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x@internal.example"), (b":path", b"/public/h2")], None),
    h2_refused("a Host with a path", &[(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/public/h2"), (b"host", b"x/admin")], None),
    h2_refused("a pseudo-header after a field", &[(b":method", b"GET"), (b":scheme", b"http"), (b"x-a", b"b"), (b":authority", b"x"), (b":path", b"/public/h2")], None),
    // RFC 9113 §8.3.1: `:path` is an absolute path; HTTP/1.1 refuses `GET ?a=1` (400).
    H2Row { name: "a :path without its leading slash", fields: &[(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"?a=1")], data: None, status: 400, forwarded: 0 },
    h2_refused("a :path that is a name", &[(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"public/h2")], None),
    // HTTP/1.1 refuses `GET ftp://x/...` (400). (With `Host` and no
    // `:authority` the HTTP/2 library drops `:scheme` unread: nothing reads it.)
    H2Row { name: "an ftp :scheme with :authority", fields: &[(b":method", b"GET"), (b":scheme", b"ftp"), (b":authority", b"x"), (b":path", b"/public/h2")], data: None, status: 400, forwarded: 0 },
    h2_refused("a segment parameter", &[(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/public;x/../../admin")], None),
    H2Row { name: "a field section over max_header_size (32KiB)", fields: h2_get!((b"x-big", OVER_32K)), data: None, status: 431, forwarded: 0 },
    H2Row { name: "CONNECT", fields: &[(b":method", b"CONNECT"), (b":authority", b"internal.example:443")], data: None, status: 501, forwarded: 0 },
    H2Row { name: "lower-case method", fields: &[(b":method", b"delete"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/public/h2")], data: None, status: 400, forwarded: 0 },
    H2Row { name: "TRACE", fields: &[(b":method", b"TRACE"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/public/h2")], data: None, status: 501, forwarded: 0 },
    // Its fields are taken for the log line; nothing of it goes upstream.
    H2Row { name: "TRACE with a User-Agent and a body", fields: &[(b":method", b"TRACE"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/public/h2"), (b"user-agent", b"x")], data: Some(b"GET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"), status: 501, forwarded: 0 },
];

#[tokio::test]
async fn http2_probes() {
    use crate::support::h2raw::{H2Conn, Outcome};
    let rec = Recorder::start().await;
    let gw = gateway_for(&rec).await;
    for r in H2_REQUESTS {
        let before = rec.count();
        let mut conn = H2Conn::connect(gw.addr).await;
        conn.headers(1, r.fields, r.data.is_none()).await;
        if let Some(data) = r.data {
            conn.data(1, data, true).await;
        }
        let outcome = conn.outcome(1).await;
        if r.status == 0 {
            assert!(outcome.is_refusal(), "{}: {outcome:?}", r.name);
        } else {
            assert_eq!(outcome, Outcome::Status(r.status), "{}", r.name);
        }
        drop(conn);
        next_request_gets_its_own_answer(gw.addr, &rec, r.name).await;
        upstream_read_what_the_gateway_framed(&rec, before, r.forwarded, r.name);
    }
}

/// An HTTP/2 body that goes on past its `content-length` in a later DATA
/// frame is malformed (RFC 9113 §8.1.1): the upstream must not have been
/// sent a whole request by the time that shows, so the body's last byte
/// waits for END_STREAM.
#[tokio::test]
async fn an_http2_body_longer_than_its_length_never_reaches_the_upstream_whole() {
    use crate::support::h2raw::H2Conn;
    let rec = Recorder::start().await;
    let gw = gateway_for(&rec).await;
    let before = rec.count();
    let mut conn = H2Conn::connect(gw.addr).await;
    conn.headers(1, h2_post!((b"content-length", b"5")), false).await;
    conn.data(1, b"hello", false).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    conn.data(1, b"GET /admin/x HTTP/1.1\r\nHost: x\r\n\r\n", true).await;
    let outcome = conn.outcome(1).await;
    assert!(outcome.is_refusal() || matches!(outcome, crate::support::h2raw::Outcome::Status(400..)), "{outcome:?}");
    drop(conn);
    next_request_gets_its_own_answer(gw.addr, &rec, "h2 body past its length").await;
    upstream_read_what_the_gateway_framed(&rec, before, 0, "h2 body past its length");
    // A client that ends the stream with an empty DATA frame after the
    // body's last byte is served as usual.
    let before = rec.count();
    let mut conn = H2Conn::connect(gw.addr).await;
    conn.headers(1, h2_post!((b"content-length", b"5")), false).await;
    conn.data(1, b"hello", false).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    conn.data(1, b"", true).await;
    assert_eq!(conn.outcome(1).await, crate::support::h2raw::Outcome::Status(200));
    upstream_read_what_the_gateway_framed(&rec, before, 1, "h2 body ended by an empty DATA frame");
    // `content-length: 0` has no last byte to hold: the head's own waits.
    let before = rec.count();
    let mut conn = H2Conn::connect(gw.addr).await;
    conn.headers(1, h2_post!((b"content-length", b"0")), false).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    conn.data(1, b"GET /admin/x HTTP/1.1\r\nHost: x\r\n\r\n", true).await;
    let outcome = conn.outcome(1).await;
    assert!(outcome.is_refusal() || matches!(outcome, crate::support::h2raw::Outcome::Status(400..)), "{outcome:?}");
    drop(conn);
    next_request_gets_its_own_answer(gw.addr, &rec, "h2 DATA after content-length 0").await;
    upstream_read_what_the_gateway_framed(&rec, before, 0, "h2 DATA after content-length 0");
    let before = rec.count();
    let mut conn = H2Conn::connect(gw.addr).await;
    conn.headers(1, h2_post!((b"content-length", b"0")), false).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    conn.data(1, b"", true).await;
    assert_eq!(conn.outcome(1).await, crate::support::h2raw::Outcome::Status(200));
    upstream_read_what_the_gateway_framed(&rec, before, 1, "h2 content-length 0 ended by an empty DATA frame");
}

/// What a client sends after its body while the upstream works (read by
/// the gateway watching for the client to leave) is the next request in
/// its turn, never more of the body: each request reaches the upstream
/// framed by the gateway, the smuggled-looking one as its own.
#[tokio::test]
async fn bytes_sent_after_a_body_while_the_upstream_works_are_the_next_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rec = Recorder::start().await;
    let gw = gateway_for(&rec).await;
    for (name, body) in [
        ("length", "Content-Length: 5\r\n\r\nhello"),
        ("chunked", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ] {
        let before = rec.count();
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(format!("POST /public/slow/{name} HTTP/1.1\r\nHost: x\r\n{body}").as_bytes()).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        s.write_all(b"GET /public/second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut all = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut all)).await.unwrap().unwrap();
        let all = String::from_utf8_lossy(&all);
        assert_eq!(all.matches("HTTP/1.1 200").count(), 2, "{name}: {all}");
        let targets: Vec<String> = rec.requests()[before..].iter().map(|q| q.target.clone()).collect();
        assert_eq!(targets, [format!("/public/slow/{name}"), "/public/second".to_string()], "{name}");
        upstream_read_what_the_gateway_framed(&rec, before, 2, name);
    }
}

/// A pipeline longer than a head may be, sent while the upstream works:
/// the watcher stops reading at the head limit (and then only looks for
/// the client's end of file), and every request is still read whole in its
/// turn, framed by the gateway, with no stall on the unread bytes.
#[tokio::test]
async fn a_pipeline_past_the_head_limit_while_the_upstream_works_is_served_in_turn() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rec = Recorder::start().await;
    let gw = gateway_for(&rec).await;
    let before = rec.count();
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /public/slow/first HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    // Four heads of 20 KiB each: 80 KiB behind a 32 KiB limit.
    let pad = "p".repeat(20 << 10);
    let mut pipeline = String::new();
    for i in 0..4 {
        let close = if i == 3 { "Connection: close\r\n" } else { "" };
        pipeline += &format!("GET /public/n{i} HTTP/1.1\r\nHost: x\r\nX-Pad: {pad}\r\n{close}\r\n");
    }
    s.write_all(pipeline.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut all)).await.unwrap().unwrap();
    let all = String::from_utf8_lossy(&all);
    assert_eq!(all.matches("HTTP/1.1 200").count(), 5, "{all}");
    let targets: Vec<String> = rec.requests()[before..].iter().map(|q| q.target.clone()).collect();
    assert_eq!(targets, ["/public/slow/first", "/public/n0", "/public/n1", "/public/n2", "/public/n3"]);
    upstream_read_what_the_gateway_framed(&rec, before, 5, "pipeline past the head limit");
}

/// An HTTP/2 body reset by its client before its `content-length`
/// (`RST_STREAM` with `NO_ERROR`, which hyper reads as the body's end, or
/// `CANCEL`) never reaches the upstream as a whole request, and the next
/// request on the connection is its own.
#[tokio::test]
async fn an_http2_body_reset_before_its_length_never_reaches_the_upstream_whole() {
    use crate::support::h2raw::H2Conn;
    let rec = Recorder::start().await;
    let gw = gateway_for(&rec).await;
    for code in [0u32, 8] {
        let before = rec.count();
        let mut conn = H2Conn::connect(gw.addr).await;
        conn.headers(1, h2_post!((b"content-length", b"60")), false).await;
        conn.data(1, b"0\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n", false).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        conn.reset(1, code).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        drop(conn);
        let name = format!("h2 body reset with code {code}");
        next_request_gets_its_own_answer(gw.addr, &rec, &name).await;
        upstream_read_what_the_gateway_framed(&rec, before, 0, &name);
    }
}

/// A client behind a trusted proxy cannot make its forwarding headers
/// vanish through `Connection` and pass as the proxy itself.
#[tokio::test]
async fn connection_cannot_remove_the_forwarding_headers() {
    let rec = Recorder::start().await;
    let gw = crate::support::gateway(&format!(
        r#"trusted_proxies: [ 127.0.0.0/8 ]
upstreams:
  rec: {{ targets: [ "{}" ] }}
routes:
  - {{ name: internal, match: {{ path_prefix: /public }}, upstream: rec, ip: {{ allow: [ 127.0.0.0/8 ] }} }}
"#,
        rec.url()
    ))
    .await;
    for connection in ["X-Forwarded-For", "x-forwarded-for, forwarded", "close, X-Forwarded-For"] {
        let probe = format!(
            "GET /public/a HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\nConnection: {connection}\r\n\r\n"
        );
        let resp = exchange(gw.addr, probe.as_bytes()).await.unwrap();
        assert_eq!(resp.status, 403, "{connection}: {}", resp.text());
    }
    let proxied = exchange(gw.addr, b"GET /public/b HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 127.0.0.9\r\n\r\n").await;
    assert_eq!(proxied.unwrap().status, 200);
    assert_eq!(rec.count(), 1);
}

/// A gateway with one `/public` route to a recorder, believing `trusted` as proxies.
async fn public_route(trusted: &str) -> (Recorder, crate::support::Gateway1) {
    let rec = Recorder::start().await;
    let gw = crate::support::gateway(&format!(
        "trusted_proxies: [ {trusted} ]\nupstreams:\n  rec: {{ targets: [ \"{}\" ] }}\n\
         routes:\n  - {{ name: public, match: {{ path_prefix: /public }}, upstream: rec }}\n",
        rec.url()
    ))
    .await;
    (rec, gw)
}

/// What frameworks read a client's address, scheme, URL or certificate
/// from besides the `X-Forwarded-*` lines (a TLS proxy's `X-SSL-Cert`,
/// Envoy's `X-Forwarded-Client-Cert`) never reaches an upstream from a client that is
/// not a trusted proxy (removed before the route's phases), nor `Proxy` (httpoxy)
/// from anyone, nor `HTTP2-Settings` (an `h2c` upgrade's, connection-specific
/// even when `Connection` does not list it).
#[tokio::test]
async fn client_claims_and_proxy_lines_are_not_written_upstream() {
    let (rec, gw) = public_route("10.0.0.0/8").await;
    let probe = b"GET /public/a HTTP/1.1\r\nHost: x\r\nX-Real-IP: 10.0.0.1\r\nx-forwarded-SSL: on\r\n\
        X-Original-URL: /admin\r\nProxy: http://127.0.0.1:9/\r\nX-Rewrite-URL: /admin\r\n\
        HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nX-Forwarded-Client-Cert: Subject=\"CN=root\"\r\n\
        x-SSL-cert: -----BEGIN\r\nClient-Cert: :MIIB:\r\nX-Amzn-Mtls-Clientcert-Subject: CN=root\r\n\
        Client-IP: 10.0.0.1\r\nCF-Connecting-IP: 10.0.0.1\r\nX-Forwarded-Uri: /admin\r\nX-Host: internal\r\n\
        X-Consumer-Username: admin\r\nX-Authenticated-Userid: admin\r\nX-Forwarded-User: admin\r\n\
        X-Auth-Request-Email: root@x\r\nRemote-User: admin\r\nX-Envoy-Internal: true\r\n\
        X-Goog-Authenticated-User-Email: accounts.google.com:root@x\r\nX-Amzn-Oidc-Identity: root\r\n\
        Fly-Client-IP: 10.0.0.1\r\nX-Userinfo: e30\r\nX-MS-TOKEN-AAD-ID-TOKEN: e30\r\n\
        X-Authentik-Username: akadmin\r\nX-Vouch-User: root@x\r\nTailscale-User-Login: root@x\r\n\
        Cf-Access-Client-Id: x\r\nTeleport-Jwt-Assertion: e30\r\n\r\n";
    assert_eq!(exchange(gw.addr, probe).await.unwrap().status, 200);
    rec.wait_for("/public/a").await;
    let seen = &rec.requests()[0];
    for name in [
        "x-real-ip",
        "x-forwarded-ssl",
        "x-original-url",
        "proxy",
        "x-rewrite-url",
        "http2-settings",
        "x-forwarded-client-cert",
        "x-ssl-cert",
        "client-cert",
        "x-amzn-mtls-clientcert-subject",
        "client-ip",
        "cf-connecting-ip",
        "x-forwarded-uri",
        "x-host",
        "x-consumer-username",
        "x-authenticated-userid",
        "x-forwarded-user",
        "x-auth-request-email",
        "remote-user",
        "x-envoy-internal",
        "x-goog-authenticated-user-email",
        "x-amzn-oidc-identity",
        "fly-client-ip",
        "x-userinfo",
        "x-ms-token-aad-id-token",
        "x-authentik-username",
        "x-vouch-user",
        "tailscale-user-login",
        "cf-access-client-id",
        "teleport-jwt-assertion",
    ] {
        assert!(seen.header(name).is_none(), "{name} reached the upstream: {seen:?}");
    }
}

/// A method override (`X-HTTP-Method-Override: DELETE` on a `POST`) that
/// a service would run as another method than the one routed: refused with
/// 400 before the upstream, from a trusted proxy too, over HTTP/1.1 and
/// HTTP/2; one that names the request's own method passes.
#[tokio::test]
async fn method_overrides_are_refused_before_the_upstream() {
    let (rec, gw) = public_route("127.0.0.1/32").await;
    for header in ["X-HTTP-Method-Override: DELETE", "x-http-method: delete", "X-Method-Override: PUT"] {
        let probe = format!("POST /public/a HTTP/1.1\r\nHost: x\r\n{header}\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(exchange(gw.addr, probe.as_bytes()).await.unwrap().status, 400, "{header}");
    }
    {
        use crate::support::h2raw::{H2Conn, Outcome};
        let mut conn = H2Conn::connect(gw.addr).await;
        let fields: [(&[u8], &[u8]); 5] = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", b"x"),
            (b":path", b"/public/h2"),
            (b"x-http-method-override", b"DELETE"),
        ];
        conn.headers(1, &fields, true).await;
        assert_eq!(conn.outcome(1).await, Outcome::Status(400));
    }
    // Symfony and Laravel read `_method` from a POST's query too (PHP: `.method` is `_method`).
    // And PHP ends a name at a NUL: `_method%00` is its `_method`.
    for query in [
        "_method=DELETE",
        "a=1&%5Fmethod=delete",
        ".method=PUT",
        "_method%00=DELETE",
        "%20_method%00x[]=PUT",
        "_METHOD=PUT",
    ] {
        let probe = format!("POST /public/q?{query} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(exchange(gw.addr, probe.as_bytes()).await.unwrap().status, 400, "{query}");
    }
    assert_eq!(rec.count(), 0, "nothing reached the upstream");
    let same = b"POST /public/same HTTP/1.1\r\nHost: x\r\nX-HTTP-Method-Override: post\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(exchange(gw.addr, same).await.unwrap().status, 200);
    rec.wait_for("/public/same").await;
    // An empty override asks for nothing; a GET's `_method` is no override to the frameworks.
    let empty =
        b"POST /public/empty?_method= HTTP/1.1\r\nHost: x\r\nX-HTTP-Method-Override:\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(exchange(gw.addr, empty).await.unwrap().status, 200);
    rec.wait_for("/public/empty?_method=").await;
    let get = b"GET /public/get?_method=DELETE HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(exchange(gw.addr, get).await.unwrap().status, 200);
}

/// Request bodies written in pieces, on many connections at once, all
/// arrive whole and in time. The codec once cleared a socket's readiness
/// with a second look after a short read: a piece landing between the read
/// and the clearing was never woken for, and when the client then waited
/// (a full window behind a slow upstream, or its body's end sent) the body stalled until its 408
/// (seen in CI). Liveness of the read path, so a row of this suite: every
/// gap between pieces is a chance for that race, and the gateway runs as
/// its own process so that client and gateway really run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_written_in_pieces_never_stall() {
    let up = crate::support::Upstream::start("count").await;
    let config = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  up: {{ targets: [ \"{}\" ] }}\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: up, max_body_size: 1GiB }}\n",
        up.url()
    );
    let (_gw, addr) = crate::support::process::spawn_gateway(&config);
    let clients = (0..24u64).map(|seed| {
        tokio::spawn(async move {
            let mut conn = RawConn::connect(addr).await;
            let mut random = seed * 7919 + 1;
            let mut next = move |below: usize| {
                random = random.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (random >> 33) as usize % below
            };
            for request in 0..12 {
                conn.send(b"POST /count-slowly HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").await;
                let mut sent = 0;
                for _ in 0..(8 + next(24)) {
                    let size = 1 + next(100_000);
                    let mut chunk = format!("{size:x}\r\n").into_bytes();
                    chunk.resize(chunk.len() + size, b'p');
                    chunk.extend_from_slice(b"\r\n");
                    // Each chunk in a few writes, split anywhere.
                    let mut at = 0;
                    while at < chunk.len() {
                        let step = [1, 7, 500, 70_000, chunk.len()][next(5)];
                        let end = (at + step).min(chunk.len());
                        conn.send(&chunk[at..end]).await;
                        at = end;
                    }
                    sent += size;
                    tokio::task::yield_now().await;
                }
                conn.send(b"0\r\n\r\n").await;
                let resp =
                    conn.response(false).await.unwrap_or_else(|| panic!("client {seed}, request {request}: closed"));
                assert_eq!(resp.status, 200, "client {seed}, request {request}: {}", resp.text());
                assert_eq!(resp.text(), format!("{{\"received\":{sent}}}"), "client {seed}, request {request}");
            }
        })
    });
    for client in clients.collect::<Vec<_>>() {
        client.await.unwrap();
    }
}

/// A retried request is framed anew by the gateway: the second target
/// reads exactly one request, framed by one line that matches the body the
/// client sent (chunked, with extensions and a trailer, or with a length),
/// and nothing else on its connection.
#[tokio::test]
async fn retried_requests_are_framed_anew() {
    use crate::support::flaky::{Flaky, Mode};
    let resetter = Flaky::start("a").await;
    resetter.set(Mode::Reset);
    let rec = Recorder::start().await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  two:\n    targets: [ \"{}\", \"{}\" ]\n    \
         retry: {{ attempts: 2, on: [ reset ], methods: [ PUT ], backoff: {{ base: 1ms, max: 1ms }} }}\n\
         routes:\n  - {{ name: all, match: {{ path_prefix: /public }}, upstream: two }}\n",
        resetter.url(),
        rec.url()
    );
    let gw = portcullis::Gateway::start(&load(&yaml, Path::new("."))).await.expect("starts");
    let addr = gw.addr("gw").unwrap();
    let probes: [(&str, &[u8], &[u8]); 3] = [
        (
            "chunked, extensions, trailer",
            b"PUT /public/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
            b"hello world",
        ),
        ("length", b"PUT /public/l HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world", b"hello world"),
        ("no body", b"PUT /public/n HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", b""),
    ];
    let mut retried = 0;
    for (name, bytes, body) in probes {
        let before = rec.count();
        let mut conn = RawConn::connect(addr).await;
        conn.send(bytes).await;
        let resp = conn.response(false).await.unwrap_or_else(|| panic!("{name}: no answer"));
        assert_eq!(resp.status, 200, "{name}: {}", resp.text());
        if resp.head.to_ascii_lowercase().contains("portcullis-tries: 2") {
            retried += 1;
        }
        let got = rec.requests()[before..].to_vec();
        assert_eq!(got.len(), 1, "{name}: {}", rec.transcript());
        assert!(got[0].framed_by_one_line(), "{name}: {:?}", got[0]);
        assert_eq!(got[0].body, body, "{name}");
        assert!(got[0].header("x-trailer").is_none(), "{name}: a trailer became a header");
    }
    assert!(retried >= 1, "round robin sent at least one probe to the resetting target first");
}

/// An aggregate call's answer is judged by its one `Content-Type`: a field
/// sent twice is ambiguous (readers that take the first or the last one
/// disagree), so such an answer is not merged as JSON, whichever comes first.
#[tokio::test]
async fn an_aggregated_answer_with_two_content_types_is_not_json() {
    let rec = Recorder::with_replies(|req| {
        let body = r#"{"id":1}"#;
        let (first, second) = match req.target.as_str() {
            "/json-first" => ("application/json", "text/html"),
            "/html-first" => ("text/html", "application/json"),
            "/one" => ("application/json", ""),
            "/two-lengths" => {
                return Some(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 8\r\nContent-Length: 9\r\n\r\n{\"id\":1}".to_vec());
            }
            _ => return None,
        };
        let mut reply = format!("HTTP/1.1 200 OK\r\nContent-Type: {first}\r\n");
        if !second.is_empty() {
            reply.push_str(&format!("Content-Type: {second}\r\n"));
        }
        reply.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        Some(reply.into_bytes())
    })
    .await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  rec: {{ targets: [ \"{}\" ] }}\n\
         routes:\n  - name: agg\n    match: {{ path: \"/agg/{{which}}\" }}\n    \
         aggregate: {{ calls: {{ it: {{ upstream: rec, path: \"/{{which}}\", required: true }} }} }}\n",
        rec.url()
    );
    let gw = portcullis::Gateway::start(&load(&yaml, Path::new("."))).await.expect("starts");
    let addr = gw.addr("gw").unwrap();
    let ask = |which: &'static str| async move {
        let request = format!("GET /agg/{which} HTTP/1.1\r\nHost: x\r\n\r\n");
        exchange(addr, request.as_bytes()).await.expect("an answer")
    };
    let one = ask("one").await;
    assert_eq!(one.status, 200, "{}", one.text());
    assert!(one.text().contains(r#""it":{"id":1}"#), "{}", one.text());
    for which in ["json-first", "html-first"] {
        let resp = ask(which).await;
        assert_eq!(resp.status, 502, "{which}: {}", resp.text());
        assert!(resp.text().contains("more than one Content-Type"), "{which}: {}", resp.text());
        assert!(!resp.text().contains(r#""id":1"#), "{which}: the answer was merged: {}", resp.text());
    }
    // An answer that cannot be framed: the call's error says so.
    let resp = ask("two-lengths").await;
    assert_eq!(resp.status, 502, "{}", resp.text());
    let errors = serde_json::from_slice::<serde_json::Value>(&resp.body).unwrap()["errors"].clone();
    assert_eq!(errors[0]["detail"], "the upstream sent an invalid response", "{errors}");
}

/// An HTTP/2 client's trailers never reach an HTTP/2 target: no admission
/// rule reads them, and a service that merges trailers into its headers
/// took `x-consumer-id: admin` there as the gateway's word (only 20
/// names were removed). Dropped as NGINX drops a request's trailers, and
/// as the own HTTP/1.1 codec drops a chunked body's (the smuggling
/// suite's trailer rows).
#[tokio::test]
async fn an_http2_clients_trailers_never_reach_the_target() {
    let addr = crate::support::h2target::start(|_, req, mut respond| async move {
        let mut body = req.into_body();
        let mut bytes = 0;
        while let Some(Ok(data)) = body.data().await {
            bytes += data.len();
            let _ = body.flow_control().release_capacity(data.len());
        }
        let trailers = body.trailers().await.ok().flatten();
        let names: Vec<String> = trailers.iter().flat_map(|t| t.keys()).map(|k| k.to_string()).collect();
        let answer = format!("{bytes} bytes, trailers: {names:?}");
        let mut send = respond.send_response(http::Response::new(()), false).unwrap();
        send.send_data(bytes::Bytes::from(answer), true).unwrap();
    })
    .await;
    let gw = crate::support::gateway(&format!(
        "upstreams:\n  h2: {{ targets: [ \"http://{addr}\" ], protocol: http2 }}\n\
         routes:\n  - {{ name: h2, match: {{ path_prefix: / }}, upstream: h2 }}\n"
    ))
    .await;
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::post(gw.url("/upload")).header("content-type", "text/plain").body(()).unwrap();
    let (resp, mut stream) = client.send_request(req, false).unwrap();
    stream.send_data(bytes::Bytes::from_static(b"hello"), false).unwrap();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-consumer-id", http::HeaderValue::from_static("admin"));
    trailers.insert("x-api-key", http::HeaderValue::from_static("k-shop"));
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    stream.send_trailers(trailers).unwrap();
    let resp = tokio::time::timeout(std::time::Duration::from_secs(5), resp).await.expect("answered").unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut text = Vec::new();
    while let Some(Ok(data)) = body.data().await {
        text.extend_from_slice(&data);
    }
    assert_eq!(String::from_utf8_lossy(&text), "5 bytes, trailers: []");
}

/// HTTP/2's split `cookie` fields reach an HTTP/1.1 upstream as one
/// `Cookie` line, joined with `; ` (RFC 9113 §8.2.3): several lines are read
/// differently by different servers (the first, the last, joined with `,`).
#[tokio::test]
async fn http2_split_cookies_reach_the_upstream_as_one_line() {
    use crate::support::h2raw::{H2Conn, Outcome};
    let rec = Recorder::start().await;
    let gw = gateway_for(&rec).await;
    let mut conn = H2Conn::connect(gw.addr).await;
    conn.headers(1, h2_get!((b"cookie", b"a=1"), (b"cookie", b"sess=x")), true).await;
    assert_eq!(conn.outcome(1).await, Outcome::Status(200));
    let seen = rec.requests().pop().expect("forwarded");
    assert_eq!(seen.all("cookie"), ["a=1; sess=x"], "{seen:?}");
    // An empty field (valid HTTP/2) adds nothing: joined, a last empty one
    // left `a=1; `, refused as a value ending in whitespace.
    conn.headers(3, h2_get!((b"cookie", b"a=1"), (b"cookie", b"")), true).await;
    assert_eq!(conn.outcome(3).await, Outcome::Status(200));
    let seen = rec.requests().pop().expect("forwarded");
    assert_eq!(seen.all("cookie"), ["a=1"], "{seen:?}");
    // Only empty fields: no `Cookie` line at all.
    conn.headers(5, h2_get!((b"cookie", b""), (b"cookie", b"")), true).await;
    assert_eq!(conn.outcome(5).await, Outcome::Status(200));
    let seen = rec.requests().pop().expect("forwarded");
    assert!(seen.all("cookie").is_empty(), "{seen:?}");
}

/// A head its client cut (the write side closed before the blank line,
/// also inside a field, or after a request line only): nothing is
/// answered or forwarded, the half head never meets later bytes, and the
/// next connection gets its own answer (the own codec logs it, 499).
#[tokio::test]
async fn a_head_cut_by_its_client_reaches_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rec = Recorder::start().await;
    let gw = gateway_for(&rec).await;
    for (i, half) in [
        &b"GET /public/cut HTTP/1.1\r\nHost: x\r\n"[..],
        b"POST /public/cut HTTP/1.1\r\nHost: x\r\nContent-Len",
        b"GET /admin/cut HTTP/1.1",
    ]
    .into_iter()
    .enumerate()
    {
        let before = rec.count();
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(half).await.unwrap();
        s.shutdown().await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut answer)).await;
        assert!(answer.is_empty(), "row {i}: answered {:?}", String::from_utf8_lossy(&answer));
        next_request_gets_its_own_answer(gw.addr, &rec, &format!("cut head {i}")).await;
        upstream_read_what_the_gateway_framed(&rec, before, 0, "a cut head");
    }
}

/// A body of one-byte chunks reaches the upstream whole, its pieces joined
/// into larger chunks (each went out a chunk and a `writev` apiece: ~1 s
/// of CPU per MB a client sent), and the connection stays in step.
#[tokio::test]
async fn a_body_of_tiny_chunks_is_sent_on_in_larger_ones() {
    let rec = Recorder::start().await;
    let gw = gateway_for(&rec).await;
    let mut send = b"POST /public/tiny HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3000 {
        send.extend_from_slice(b"1\r\nq\r\n");
    }
    send.extend_from_slice(b"0\r\n\r\n");
    let mut conn = crate::support::wire::RawConn::connect(gw.addr).await;
    conn.send(&send).await;
    assert_eq!(conn.response(false).await.map(|r| r.status), Some(200));
    let upstream = rec.requests().into_iter().find(|r| r.target == "/public/tiny").expect("forwarded");
    assert_eq!(upstream.body, vec![b'q'; 3000]);
    assert!(!rec.transcript().contains("1\r\nq\r\n1\r\nq\r\n"), "one-byte chunks went on one by one");
    next_request_gets_its_own_answer(gw.addr, &rec, "tiny chunks").await;
}
