//! Sockets: where to connect, from which local address, and the process's
//! open-file limit.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use anyhow::{Context, bail};
use tokio::net::{TcpSocket, TcpStream};

/// The server to load: its socket address and how the `Host` header names it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Where to connect.
    pub addr: SocketAddr,
    /// `host:port` as written in the URL.
    pub host: String,
}

impl Endpoint {
    /// Parses `http://host:port` (a path after it is ignored); loopback only,
    /// since this tool's load must stay on the machine it runs on.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("ws://"))
            .with_context(|| format!("{url}: expected http://host:port"))?;
        let host = rest.split('/').next().unwrap_or_default().to_owned();
        let with_port = if host.contains(':') {
            host.clone()
        } else {
            format!("{host}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .with_context(|| format!("resolving {host}"))?
            .find(SocketAddr::is_ipv4)
            .with_context(|| format!("{host} has no IPv4 address"))?;
        if !addr.ip().is_loopback() {
            bail!("{addr} is not a loopback address: hearth-bench only loads this machine");
        }
        Ok(Self { addr, host })
    }
}

/// Connects to `to` from `source` (port chosen by the kernel). Each source
/// address has its own ~28k ephemeral ports, so spreading connections over
/// 127.0.0.x passes the limit of one. Closing sends RST (zero linger) so a
/// run leaves no TIME_WAIT behind to starve the next one of ports.
pub async fn connect_from(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.set_zero_linger()?;
    let stream = socket.connect(to).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Raises the soft open-file limit to the hard one; returns the new soft limit.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_loopback_only() {
        let e = Endpoint::parse("http://127.0.0.1:3000/anything").unwrap();
        assert_eq!(e.addr, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(e.host, "127.0.0.1:3000");
        assert!(Endpoint::parse("http://10.1.2.3:3000").is_err());
        assert!(Endpoint::parse("127.0.0.1:3000").is_err(), "needs a scheme");
    }

    #[tokio::test]
    async fn connects_from_a_chosen_loopback_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = listener.local_addr().unwrap();
        let source: IpAddr = "127.0.0.3".parse().unwrap();
        let (client, accepted) = tokio::join!(connect_from(source, to), listener.accept());
        let client = client.unwrap();
        assert_eq!(client.local_addr().unwrap().ip(), source);
        assert_eq!(accepted.unwrap().1.ip(), source);
    }
}
