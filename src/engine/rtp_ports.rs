//! Local RTP port allocation from a configured range.

use std::net::{IpAddr, SocketAddr};

use tokio::net::UdpSocket;

/// An inclusive range of local UDP ports for RTP. Only even ports are used (RFC 3550 §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPortRange {
    pub min: u16,
    pub max: u16,
}

impl Default for RtpPortRange {
    fn default() -> Self {
        RtpPortRange {
            min: 16384,
            max: 32766,
        }
    }
}

impl RtpPortRange {
    /// Bind an RTP socket on an even port of the range and an RTCP socket on the port after
    /// it (RFC 3550 §11), skipping ports where either is taken.
    pub async fn bind_pair(
        &self,
        ip: IpAddr,
        start_hint: u32,
    ) -> std::io::Result<(UdpSocket, UdpSocket)> {
        let first = self.min + (self.min % 2);
        let slots = if first < self.max {
            u32::from((self.max - first - 1) / 2 + 1)
        } else {
            0
        };
        let mut last_err = None;
        for i in 0..slots {
            let slot = (start_hint.wrapping_add(i)) % slots;
            let port = first + (slot * 2) as u16;
            let rtp = match UdpSocket::bind(SocketAddr::new(ip, port)).await {
                Ok(s) => s,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            match UdpSocket::bind(SocketAddr::new(ip, port + 1)).await {
                Ok(rtcp) => return Ok((rtp, rtcp)),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "no free RTP/RTCP port pair in the range",
            )
        }))
    }

    /// Bind an RTP socket on `ip` at an even port of the range, starting at a position derived
    /// from `start_hint` so that concurrent instances spread out.
    pub async fn bind(&self, ip: IpAddr, start_hint: u32) -> std::io::Result<UdpSocket> {
        let first = self.min + (self.min % 2);
        if first > self.max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "empty RTP port range",
            ));
        }
        let slots = u32::from((self.max - first) / 2 + 1);
        let mut last_err = None;
        for i in 0..slots {
            let slot = (start_hint.wrapping_add(i)) % slots;
            let port = first + (slot * 2) as u16;
            match UdpSocket::bind(SocketAddr::new(ip, port)).await {
                Ok(sock) => return Ok(sock),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free RTP port")
        }))
    }
}
