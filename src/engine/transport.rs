//! Connection transports for SIP: TCP, TLS (rustls), WebSocket and secure WebSocket
//! (RFC 7118). UDP stays in the actor (one socket). Each connection is a task that opens the
//! connection (connect, TLS handshake with SNI, WebSocket upgrade with the `sip` subprotocol),
//! cuts what it reads into SIP messages and hands them to the actor, writes what the actor
//! sends, and pings with CRLF (RFC 5626 §4.4.1) or a WebSocket ping when asked to. The
//! actor addresses a connection by (transport, peer address) and reuses it for every request
//! and response to that peer (RFC 3261 §18).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tracing::debug;

use crate::sip::msg::{parse_datagram, Datagram, ParseError, StreamFramer, MAX_MESSAGE_SIZE};
use crate::sip::transport::Transport;

/// How long opening a connection may take (TCP connect, TLS and WebSocket handshakes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages waiting to be written on one connection; beyond this they are dropped (SIP's
/// own retransmission and timeouts take over), so a stuck peer never blocks the engine.
const QUEUE: usize = 256;

/// What a connection tells the actor.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A message (or keepalive, or a message that did not parse) from `peer`.
    Framed {
        transport: Transport,
        peer: SocketAddr,
        framed: Result<Datagram, ParseError>,
    },
    /// The connection could not be opened, or it closed; `reason` is for the user.
    Failed {
        transport: Transport,
        peer: SocketAddr,
        reason: String,
    },
}

/// How to open a connection to one peer: the name for TLS (SNI, certificate check) and the
/// WebSocket URL, the TLS trust, the keepalive.
#[derive(Clone)]
pub(crate) struct PeerProfile {
    /// Host name (or IP literal) the certificate must be valid for, and the WebSocket Host.
    pub server_name: String,
    /// TLS settings (TLS and WSS only).
    pub tls: Option<Arc<ClientConfig>>,
    /// HTTP path of the WebSocket endpoint.
    pub ws_path: String,
    /// Ping interval, `None` = no keepalive.
    pub keepalive: Option<Duration>,
}

impl PeerProfile {
    /// A profile for a peer known only by address (system roots, no keepalive).
    pub fn plain(peer: SocketAddr) -> PeerProfile {
        PeerProfile {
            server_name: peer.ip().to_string(),
            tls: None,
            ws_path: "/".into(),
            keepalive: None,
        }
    }
}

/// TLS client settings: the system's root certificates plus the CAs in `ca_file` (PEM).
pub(crate) fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
        let mut added = 0;
        for cert in certs {
            let cert =
                cert.map_err(|e| format!("bad certificate in CA file {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("unusable CA certificate in {}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("no certificate in the CA file {}", path.display()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The open connections, by (transport, peer).
pub(crate) struct Connections {
    conns: HashMap<(Transport, SocketAddr), mpsc::Sender<Vec<u8>>>,
    profiles: HashMap<(Transport, SocketAddr), PeerProfile>,
    inbound: mpsc::Sender<Inbound>,
}

impl Connections {
    pub fn new(inbound: mpsc::Sender<Inbound>) -> Connections {
        Connections {
            conns: HashMap::new(),
            profiles: HashMap::new(),
            inbound,
        }
    }

    /// How to open connections to `peer` over `transport` from now on.
    pub fn set_profile(&mut self, transport: Transport, peer: SocketAddr, profile: PeerProfile) {
        self.profiles.insert((transport, peer), profile);
    }

    /// Send `bytes` to `peer` over `transport`, opening the connection first when there is
    /// none (the bytes wait for it). A failure to open comes back as [`Inbound::Failed`].
    pub fn send(&mut self, transport: Transport, peer: SocketAddr, bytes: Vec<u8>) {
        let key = (transport, peer);
        if let Some(tx) = self.conns.get(&key) {
            match tx.try_send(bytes) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    debug!(%peer, %transport, "connection queue full: message dropped");
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(bytes)) => {
                    self.conns.remove(&key);
                    return self.send(transport, peer, bytes);
                }
            }
        }
        let profile = self
            .profiles
            .get(&key)
            .cloned()
            .unwrap_or_else(|| PeerProfile::plain(peer));
        let (tx, rx) = mpsc::channel(QUEUE);
        let _ = tx.try_send(bytes);
        self.conns.insert(key, tx);
        let inbound = self.inbound.clone();
        tokio::spawn(async move {
            let result = tokio::time::timeout(
                CONNECT_TIMEOUT,
                open_and_run(transport, peer, profile, rx, inbound.clone()),
            )
            .await;
            // The timeout covers only the opening: open_and_run returns Ok(()) at once after
            // handing the open connection to its own task.
            let reason = match result {
                Ok(Ok(())) => return,
                Ok(Err(reason)) => reason,
                Err(_) => format!(
                    "no connection to {peer} ({transport}) within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ),
            };
            let _ = inbound
                .send(Inbound::Failed {
                    transport,
                    peer,
                    reason,
                })
                .await;
        });
    }

    /// A TCP connection a peer opened to our listener.
    pub fn accepted(&mut self, stream: TcpStream, peer: SocketAddr) {
        let (tx, rx) = mpsc::channel(QUEUE);
        self.conns.insert((Transport::Tcp, peer), tx);
        let inbound = self.inbound.clone();
        tokio::spawn(run_bytes(stream, Transport::Tcp, peer, None, rx, inbound));
    }

    /// Forget a connection that failed or closed (the next send opens a new one).
    pub fn remove(&mut self, transport: Transport, peer: SocketAddr) {
        self.conns.remove(&(transport, peer));
    }
}

/// Open the connection; on success spawn its reader/writer and return.
async fn open_and_run(
    transport: Transport,
    peer: SocketAddr,
    profile: PeerProfile,
    rx: mpsc::Receiver<Vec<u8>>,
    inbound: mpsc::Sender<Inbound>,
) -> Result<(), String> {
    let tcp = TcpStream::connect(peer)
        .await
        .map_err(|e| connect_error(&e, peer, transport))?;
    let _ = tcp.set_nodelay(true);
    let keepalive = profile.keepalive;
    match transport {
        Transport::Udp => Err("UDP is not a connection".into()),
        Transport::Tcp => {
            tokio::spawn(run_bytes(tcp, transport, peer, keepalive, rx, inbound));
            Ok(())
        }
        Transport::Tls => {
            let tls = tls_handshake(tcp, peer, &profile).await?;
            tokio::spawn(run_bytes(tls, transport, peer, keepalive, rx, inbound));
            Ok(())
        }
        Transport::Ws => {
            let ws = ws_handshake(tcp, transport, peer, &profile).await?;
            tokio::spawn(run_ws(ws, transport, peer, keepalive, rx, inbound));
            Ok(())
        }
        Transport::Wss => {
            let tls = tls_handshake(tcp, peer, &profile).await?;
            let ws = ws_handshake(tls, transport, peer, &profile).await?;
            tokio::spawn(run_ws(ws, transport, peer, keepalive, rx, inbound));
            Ok(())
        }
    }
}

fn connect_error(e: &std::io::Error, peer: SocketAddr, transport: Transport) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused by {peer} ({transport})")
        }
        _ => format!("cannot connect to {peer} ({transport}): {e}"),
    }
}

async fn tls_handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    profile: &PeerProfile,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let config = match &profile.tls {
        Some(c) => c.clone(),
        None => tls_config(None)?,
    };
    let name = ServerName::try_from(profile.server_name.clone())
        .map_err(|_| format!("{:?} is not a valid TLS server name", profile.server_name))?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| tls_error(&e, peer, &profile.server_name))
}

/// A TLS failure in words a user can act on, naming the certificate problem.
fn tls_error(e: &std::io::Error, peer: SocketAddr, name: &str) -> String {
    use rustls::CertificateError as C;
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    let what = match inner {
        Some(rustls::Error::InvalidCertificate(cert)) => match cert {
            C::UnknownIssuer => {
                "certificate not trusted: unknown issuer (self-signed or from a CA \
                                 that is not trusted; give the CA with tls_ca_file)"
                    .to_string()
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                format!("certificate is not valid for the name {name:?}")
            }
            C::Expired | C::ExpiredContext { .. } => "certificate has expired".to_string(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "certificate is not valid yet (check the clock)".to_string()
            }
            C::Revoked => "certificate has been revoked".to_string(),
            C::BadSignature => "certificate has a bad signature".to_string(),
            C::BadEncoding => "certificate is malformed".to_string(),
            other => format!("certificate rejected: {other:?}"),
        },
        Some(other) => format!("TLS error: {other}"),
        None => format!("TLS handshake failed: {e}"),
    };
    format!("TLS with {peer} ({name}): {what}")
}

async fn ws_handshake<S>(
    stream: S,
    transport: Transport,
    peer: SocketAddr,
    profile: &PeerProfile,
) -> Result<tokio_tungstenite::WebSocketStream<S>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let scheme = if transport == Transport::Wss {
        "wss"
    } else {
        "ws"
    };
    let host = if profile.server_name.contains(':') {
        format!("[{}]", profile.server_name)
    } else {
        profile.server_name.clone()
    };
    let url = format!("{scheme}://{host}:{}{}", peer.port(), profile.ws_path);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad WebSocket URL {url}: {e}"))?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
    let (ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|e| format!("WebSocket handshake with {url} failed: {e}"))?;
    let protocol = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok());
    if !protocol.is_some_and(|p| p.eq_ignore_ascii_case("sip")) {
        return Err(format!(
            "WebSocket server at {url} did not accept the \"sip\" subprotocol"
        ));
    }
    Ok(ws)
}

/// Reader and writer of a byte-stream connection (TCP, TLS): Content-Length framing.
async fn run_bytes<S>(
    stream: S,
    transport: Transport,
    peer: SocketAddr,
    keepalive: Option<Duration>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    inbound: mpsc::Sender<Inbound>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut framer = StreamFramer::new(MAX_MESSAGE_SIZE);
    let mut buf = vec![0u8; 16 * 1024];
    let mut ping = keepalive.map(|d| tokio::time::interval_at(tokio::time::Instant::now() + d, d));
    let reason = loop {
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) => break format!("connection to {peer} ({transport}) closed by the peer"),
                Ok(n) => {
                    framer.push(&buf[..n]);
                    // A message that does not parse is passed on (the UA answers 400 when it
                    // can); after an error that loses the framing the framer starts afresh.
                    while let Some(framed) = framer.next().transpose() {
                        send_framed(&inbound, transport, peer, framed).await;
                    }
                }
                Err(e) => break format!("connection to {peer} ({transport}) failed: {e}"),
            },
            out = rx.recv() => match out {
                Some(bytes) => {
                    if let Err(e) = writer.write_all(&bytes).await {
                        break format!("cannot write to {peer} ({transport}): {e}");
                    }
                }
                None => { let _ = writer.shutdown().await; return; }
            },
            _ = tick(&mut ping) => {
                if let Err(e) = writer.write_all(b"\r\n\r\n").await {
                    break format!("keepalive to {peer} ({transport}) failed: {e}");
                }
            }
        }
    };
    let _ = inbound
        .send(Inbound::Failed {
            transport,
            peer,
            reason,
        })
        .await;
}

/// Reader and writer of a WebSocket connection: one SIP message per WebSocket message.
async fn run_ws<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    transport: Transport,
    peer: SocketAddr,
    keepalive: Option<Duration>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    inbound: mpsc::Sender<Inbound>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let mut ping = keepalive.map(|d| tokio::time::interval_at(tokio::time::Instant::now() + d, d));
    let reason = loop {
        tokio::select! {
            msg = stream.next() => match msg {
                None => break format!("connection to {peer} ({transport}) closed by the peer"),
                Some(Err(e)) => break format!("connection to {peer} ({transport}) failed: {e}"),
                Some(Ok(WsMessage::Text(t))) => {
                    send_framed(&inbound, transport, peer, parse_datagram(t.as_bytes())).await
                }
                Some(Ok(WsMessage::Binary(b))) => {
                    send_framed(&inbound, transport, peer, parse_datagram(&b)).await
                }
                Some(Ok(WsMessage::Close(_))) => {
                    break format!("connection to {peer} ({transport}) closed by the peer")
                }
                Some(Ok(_)) => {} // ping/pong are answered by tungstenite
            },
            out = rx.recv() => match out {
                Some(bytes) => {
                    let msg = match String::from_utf8(bytes) {
                        Ok(text) => WsMessage::text(text),
                        Err(e) => WsMessage::binary(e.into_bytes()),
                    };
                    if let Err(e) = sink.send(msg).await {
                        break format!("cannot write to {peer} ({transport}): {e}");
                    }
                }
                None => { let _ = sink.close().await; return; }
            },
            _ = tick(&mut ping) => {
                if let Err(e) = sink.send(WsMessage::Ping(Vec::new().into())).await {
                    break format!("keepalive to {peer} ({transport}) failed: {e}");
                }
            }
        }
    };
    let _ = inbound
        .send(Inbound::Failed {
            transport,
            peer,
            reason,
        })
        .await;
}

async fn tick(ping: &mut Option<tokio::time::Interval>) {
    match ping {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn send_framed(
    inbound: &mpsc::Sender<Inbound>,
    transport: Transport,
    peer: SocketAddr,
    framed: Result<Datagram, ParseError>,
) {
    let _ = inbound
        .send(Inbound::Framed {
            transport,
            peer,
            framed,
        })
        .await;
}
