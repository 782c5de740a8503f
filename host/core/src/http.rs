//! The process's one HTTP server: a small HTTP/1.1 responder on std threads in front of
//! a [`Router`]: the Prometheus endpoint (`/metrics`) of `eddy run` and of workers, which
//! keeps the engine core free of an async runtime (the coordinator's REST API is served
//! by `eddy-rest`). Connections are short (one request, then close), bounded in size,
//! time and number, since the port may face a network.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest request line and headers accepted, in bytes.
const MAX_HEAD: usize = 16 << 10;

/// Largest request body accepted, in bytes.
const MAX_BODY: usize = 1 << 20;

/// Most requests served at once; more are answered 503 at once.
const MAX_CONNECTIONS: usize = 32;

/// How long a client may take to send its request or read the response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A request as the routes see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, … as sent.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// What follows `?` in the target (empty when none).
    pub query: String,
    /// The body (empty without `Content-Length`).
    pub body: Vec<u8>,
}

impl Request {
    /// A `GET` of `path` without a body, to call a router in-process.
    pub fn get(path: &str) -> Self {
        Request {
            method: "GET".into(),
            path: path.into(),
            query: String::new(),
            body: Vec::new(),
        }
    }

    /// Parses a request head (request line and headers, without the blank line);
    /// returns the request without its body and the body's announced length.
    fn parse_head(head: &str) -> Option<(Request, usize)> {
        let mut lines = head.split("\r\n");
        let mut parts = lines.next()?.split(' ');
        let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !version.starts_with("HTTP/1.") || method.is_empty() {
            return None;
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        if !path.starts_with('/') {
            return None;
        }
        let mut length = 0;
        for line in lines {
            let (name, value) = line.split_once(':')?;
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
        let request = Request {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            body: Vec::new(),
        };
        Some((request, length))
    }
}

/// A response of a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body's media type.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A 200 response with `body` of type `content_type`.
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status: 200,
            content_type: content_type.to_owned(),
            body: body.into(),
        }
    }

    /// A response with status `status` and a one-line plain text `message`.
    pub fn error(status: u16, message: &str) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            body: format!("{message}\n").into_bytes(),
        }
    }

    fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            413 => "Content Too Large",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            s if s < 400 => "OK",
            s if s < 500 => "Client Error",
            _ => "Server Error",
        }
    }

    fn write_to(&self, stream: &mut impl Write, with_body: bool) -> std::io::Result<()> {
        write!(
            stream,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            self.reason(),
            self.content_type,
            self.body.len()
        )?;
        if with_body {
            stream.write_all(&self.body)?;
        }
        stream.flush()
    }
}

/// What answers requests to one route.
type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

struct Route {
    method: &'static str,
    path: String,
    handler: Handler,
}

/// Routes by method and exact path; what the server hands every request to.
#[derive(Clone, Default)]
pub struct Router {
    routes: Vec<Arc<Route>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.routes
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.path)),
            )
            .finish()
    }
}

impl Router {
    /// The router with `handler` answering `method` requests to `path`.
    pub fn route(
        mut self,
        method: &'static str,
        path: &str,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> Self {
        self.routes.push(Arc::new(Route {
            method,
            path: path.to_owned(),
            handler: Arc::new(handler),
        }));
        self
    }

    /// The router with `handler` answering `GET` (and `HEAD`) requests to `path`.
    pub fn get(
        self,
        path: &str,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> Self {
        self.route("GET", path, handler)
    }

    /// Answers `request`: 404 for an unknown path, 405 for a method the path lacks.
    pub fn handle(&self, request: &Request) -> Response {
        let method = match request.method.as_str() {
            "HEAD" => "GET",
            m => m,
        };
        let mut known_path = false;
        for route in &self.routes {
            if route.path == request.path {
                if route.method == method {
                    return (route.handler)(request);
                }
                known_path = true;
            }
        }
        if known_path {
            Response::error(405, "method not allowed")
        } else {
            Response::error(404, "not found")
        }
    }
}

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// An address could not be bound.
    #[error("cannot serve HTTP on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The listening thread could not be started.
    #[error("cannot start the HTTP thread: {0}")]
    Thread(std::io::Error),
}

/// A running HTTP server; it stops listening when dropped.
#[derive(Debug)]
pub struct Server {
    /// Requested and bound address of each listener.
    addrs: Vec<(SocketAddr, SocketAddr)>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Listens on every address of `addrs` (port 0 picks a free port) and answers each
    /// request with `router`, from background threads.
    pub fn bind(addrs: &[SocketAddr], router: Router) -> Result<Server, HttpError> {
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let mut server = Server {
            addrs: Vec::new(),
            stop: stop.clone(),
            threads: Vec::new(),
        };
        for &addr in addrs {
            let bind_err = |source| HttpError::Bind { addr, source };
            let listener = TcpListener::bind(addr).map_err(bind_err)?;
            let bound = listener.local_addr().map_err(bind_err)?;
            let (router, stop, active) = (router.clone(), stop.clone(), active.clone());
            let thread = std::thread::Builder::new()
                .name("eddy-http".into())
                .spawn(move || accept(listener, router, stop, active))
                .map_err(HttpError::Thread)?;
            server.addrs.push((addr, bound));
            server.threads.push(thread);
        }
        Ok(server)
    }

    /// The bound address of every listener, in the order they were asked for.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.iter().map(|(_, bound)| *bound).collect()
    }

    /// Where the listener asked for at `requested` is bound (its port when 0 was asked).
    pub fn local_addr(&self, requested: SocketAddr) -> Option<SocketAddr> {
        self.addrs
            .iter()
            .find(|(asked, _)| *asked == requested)
            .map(|(_, bound)| *bound)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for (_, bound) in &self.addrs {
            // Wake the accepting thread so that it sees the flag.
            let mut wake = *bound;
            if wake.ip().is_unspecified() {
                wake.set_ip(match wake.ip() {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                });
            }
            let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Accepts connections until `stop`, serving each on its own thread.
fn accept(listener: TcpListener, router: Router, stop: Arc<AtomicBool>, active: Arc<AtomicUsize>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Out of file descriptors and the like: do not spin.
                tracing::debug!("HTTP accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = Response::error(503, "too many requests").write_to(&mut stream, true);
            continue;
        }
        let (router, done) = (router.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("eddy-http-conn".into())
            .spawn(move || {
                serve(stream, &router);
                done.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!("cannot start an HTTP connection thread: {e}");
        }
    }
}

/// Reads one request from `stream`, answers it and closes the connection.
fn serve(mut stream: TcpStream, router: &Router) {
    let (response, with_body) = match read_request(&mut stream) {
        Ok(request) => (router.handle(&request), request.method != "HEAD"),
        Err(response) => (response, true),
    };
    if let Err(e) = response.write_to(&mut stream, with_body) {
        tracing::debug!("HTTP response not sent: {e}");
        return;
    }
    // Closing with unread input would reset the connection and could lose the response:
    // say we are done, then read what the client still sends (bounded) until it closes.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = std::io::copy(&mut (&stream).take(MAX_BODY as u64), &mut std::io::sink());
}

/// Reads a request, or says why it cannot be answered.
fn read_request(stream: &mut impl Read) -> Result<Request, Response> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(Response::error(431, "request head too large"));
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(Response::error(400, "incomplete request")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    if head_end > MAX_HEAD {
        return Err(Response::error(431, "request head too large"));
    }
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| Response::error(400, "request head is not UTF-8"))?;
    let (mut request, length) =
        Request::parse_head(head).ok_or_else(|| Response::error(400, "malformed request"))?;
    if length > MAX_BODY {
        return Err(Response::error(413, "request body too large"));
    }
    let mut body = buf.split_off(head_end + 4);
    while body.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(Response::error(400, "incomplete request body")),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(length);
    request.body = body;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(addr: SocketAddr, request: &str) -> String {
        let mut conn = TcpStream::connect(addr).expect("connect");
        conn.write_all(request.as_bytes()).expect("send");
        let mut response = String::new();
        conn.read_to_string(&mut response).expect("receive");
        response
    }

    fn router() -> Router {
        Router::default()
            .get("/hello", |r| {
                Response::ok("text/plain", format!("hi {}", r.query))
            })
            .route("POST", "/echo", |r| {
                Response::ok("application/octet-stream", r.body.clone())
            })
    }

    #[test]
    fn routes_by_method_and_path() {
        let router = router();
        assert_eq!(router.handle(&Request::get("/hello")).body, b"hi ");
        assert_eq!(router.handle(&Request::get("/nope")).status, 404);
        assert_eq!(router.handle(&Request::get("/echo")).status, 405);
    }

    #[test]
    fn serves_requests_until_dropped() {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let server = Server::bind(&[any], router()).expect("bind");
        let addr = server.local_addr(any).expect("bound");
        assert_eq!(server.local_addrs(), [addr]);
        assert_ne!(addr.port(), 0);

        let hello = fetch(addr, "GET /hello?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(hello.starts_with("HTTP/1.1 200 OK\r\n"), "{hello}");
        assert!(hello.contains("Content-Length: 6\r\n"), "{hello}");
        assert!(hello.ends_with("\r\n\r\nhi x=1"), "{hello}");

        let head = fetch(addr, "HEAD /hello HTTP/1.0\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");

        let echo = fetch(
            addr,
            "POST /echo HTTP/1.1\r\ncontent-length: 5\r\n\r\nabcde",
        );
        assert!(echo.ends_with("\r\n\r\nabcde"), "{echo}");

        assert!(fetch(addr, "GET /missing HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert!(fetch(addr, "nonsense\r\n\r\n").starts_with("HTTP/1.1 400 "));
        let big = format!("GET /hello HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(fetch(addr, &big).starts_with("HTTP/1.1 431 "));
        let huge = format!(
            "POST /echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(fetch(addr, &huge).starts_with("HTTP/1.1 413 "));

        drop(server);
        assert!(
            TcpStream::connect(addr).is_err(),
            "still listening after drop"
        );
    }

    #[test]
    fn a_taken_address_is_an_error() {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let first = Server::bind(&[any], Router::default()).expect("bind");
        let taken = first.local_addrs()[0];
        let err = Server::bind(&[taken], Router::default()).expect_err("port in use");
        assert!(err.to_string().contains(&taken.to_string()), "{err}");
    }
}
