//! A minimal HTTP/1.1 keep-alive client: enough to sign up, find rooms and
//! post messages, at a few microseconds of client CPU per request.

use std::net::IpAddr;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::net::{Endpoint, connect_from};

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// One answer.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of cookie `name` from the `Set-Cookie` headers.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(_, v)| v.split(';').next()?.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}

/// One keep-alive connection to the server; reopened when the server has
/// closed it while idle (Hearth closes keep-alives idle past its
/// `--header-read-timeout`), as browsers do.
pub struct HttpConn {
    stream: TcpStream,
    host: String,
    buf: Vec<u8>,
    endpoint: Endpoint,
    source: IpAddr,
    /// Whether a request was answered on this connection: only a reused
    /// connection may have been closed for idling.
    reused: bool,
    /// Bytes of the current response read so far.
    received: usize,
}

/// What to send.
pub struct Request<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The path and query.
    pub path: &'a str,
    /// Extra headers.
    pub headers: &'a [(&'a str, &'a str)],
    /// A form body, sent as `application/x-www-form-urlencoded`.
    pub form: Option<&'a [(&'a str, &'a str)]>,
}

impl HttpConn {
    /// Opens a connection from `source`.
    pub async fn connect(endpoint: &Endpoint, source: IpAddr) -> anyhow::Result<Self> {
        let stream = connect_from(source, endpoint.addr)
            .await
            .with_context(|| format!("connecting to {}", endpoint.addr))?;
        Ok(Self {
            stream,
            host: endpoint.host.clone(),
            buf: Vec::with_capacity(4096),
            endpoint: endpoint.clone(),
            source,
            reused: false,
            received: 0,
        })
    }

    /// Sends one request and reads its whole response. If a reused
    /// connection fails before a byte of the answer arrives, the server
    /// closed it while idle and never read the request: it is sent again,
    /// once, on a fresh connection.
    pub async fn send(&mut self, request: &Request<'_>) -> anyhow::Result<Response> {
        self.received = 0;
        match self.send_once(request).await {
            Err(_) if self.reused && self.received == 0 => {
                *self = Self::connect(&self.endpoint, self.source).await?;
                let response = self.send_once(request).await?;
                self.reused = true;
                Ok(response)
            }
            result => {
                self.reused = true;
                result
            }
        }
    }

    async fn send_once(&mut self, request: &Request<'_>) -> anyhow::Result<Response> {
        let body = request.form.map(form_encode).unwrap_or_default();
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            request.method,
            request.path,
            self.host,
            body.len()
        );
        if request.form.is_some() {
            head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        for (name, value) in request.headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        head.push_str(&body);
        self.stream.write_all(head.as_bytes()).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> anyhow::Result<Response> {
        let (status, headers, head_len) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut slots);
            if let httparse::Status::Complete(len) = parsed.parse(&self.buf)? {
                let headers = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect::<Vec<_>>();
                break (parsed.code.unwrap_or(0), headers, len);
            }
            if self.buf.len() > MAX_HEAD {
                bail!("response head over {MAX_HEAD} bytes");
            }
            self.fill().await?;
        };
        self.buf.drain(..head_len);
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if chunked {
            response.body = self.read_chunked().await?;
        } else if let Some(len) = response.header("content-length") {
            let len: usize = len.trim().parse().context("bad Content-Length")?;
            while self.buf.len() < len {
                self.fill().await?;
            }
            response.body = self.buf.drain(..len).collect();
        } else if !(status == 204 || status == 304 || (100..200).contains(&status)) {
            // No length: the body runs to the end of the connection.
            while self.stream.read_buf(&mut self.buf).await? > 0 {}
            response.body = std::mem::take(&mut self.buf);
        }
        Ok(response)
    }

    async fn read_chunked(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                self.fill().await?;
            };
            let size_text = String::from_utf8_lossy(&self.buf[..line_end]);
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).context("bad chunk size")?;
            self.buf.drain(..line_end + 2);
            while self.buf.len() < size + 2 {
                self.fill().await?;
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
            if size == 0 {
                return Ok(body);
            }
        }
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        self.buf.reserve(4096);
        let read = self.stream.read_buf(&mut self.buf).await?;
        if read == 0 {
            bail!("the server closed the connection mid-response");
        }
        self.received += read;
        Ok(())
    }
}

/// `a=1&b=x%20y`: each pair percent-encoded.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_into(&mut out, name);
        out.push('=');
        encode_into(&mut out, value);
    }
    out
}

fn encode_into(out: &mut String, text: &str) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn forms_are_percent_encoded() {
        assert_eq!(
            form_encode(&[("email", "a+b@x.test"), ("content", "bench:1 2&3")]),
            "email=a%2Bb%40x.test&content=bench%3A1%202%263"
        );
    }

    /// A server that answers each request with the next canned response.
    async fn canned(responses: Vec<&'static str>) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 8192];
            for response in responses {
                let _ = socket.read(&mut buf).await.unwrap();
                socket.write_all(response.as_bytes()).await.unwrap();
            }
        });
        Endpoint {
            addr,
            host: addr.to_string(),
        }
    }

    #[tokio::test]
    async fn a_keep_alive_the_server_closed_while_idle_is_reopened() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for body in ["one", "two"] {
                // One answer per connection, then the server closes it.
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = vec![0; 8192];
                let _ = socket.read(&mut buf).await.unwrap();
                let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{body}");
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let endpoint = Endpoint {
            addr,
            host: addr.to_string(),
        };
        let mut conn = HttpConn::connect(&endpoint, "127.0.0.1".parse().unwrap())
            .await
            .unwrap();
        let get = Request {
            method: "GET",
            path: "/",
            headers: &[],
            form: None,
        };
        assert_eq!(conn.send(&get).await.unwrap().body, b"one");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(conn.send(&get).await.unwrap().body, b"two");
    }

    #[tokio::test]
    async fn reads_lengths_chunks_and_cookies_over_one_connection() {
        let endpoint = canned(vec![
            "HTTP/1.1 303 See Other\r\nlocation: /chatrooms/1\r\nset-cookie: other=1; Path=/\r\nset-cookie: hearth_session=abc_DEF; HttpOnly\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        ])
        .await;
        let mut conn = HttpConn::connect(&endpoint, "127.0.0.1".parse().unwrap())
            .await
            .unwrap();
        let get = |path| Request {
            method: "GET",
            path,
            headers: &[],
            form: None,
        };
        let r = conn.send(&get("/")).await.unwrap();
        assert_eq!(r.status, 303);
        assert_eq!(r.header("Location"), Some("/chatrooms/1"));
        assert_eq!(r.cookie("hearth_session"), Some("abc_DEF"));
        let r = conn.send(&get("/x")).await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, &b"{\"a\":1}"[..]));
        let r = conn.send(&get("/y")).await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
    }
}
