//! A fault-injecting HTTP/1.1 server on 127.0.0.1:0, in-process, for the
//! URL-mode tests. Each request path names a step:
//!
//! - `/s/STEP` — always STEP;
//! - `/seq/NAME?s=STEP,STEP,...` — request n of NAME gets step n (the last
//!   step repeats), so `/seq/a?s=503,503,200` is "fails twice, then 200".
//!
//! Steps: `200`..`599` (that status, small body), `429:ra=V` / `503:ra=V`
//! (with `Retry-After: V`; in dates `_` stands for a space, `~` for a comma), `delay=MS` (then 200),
//! `drip=N:MS` (headers, then N body bytes one every MS ms), `cut=N:M`
//! (Content-Length N, M bytes sent, then close), `chunkcut` (chunked, then
//! close mid-body), `reset` (close with RST before answering), `big=N` (N
//! bytes of body), `echo` (200 with the method, headers and body back).
//!
//! Every loop is bounded: at most MAX_CONNS connections, drips of at most
//! MAX_DRIP bytes, reads that time out. Requests are counted per path (the
//! query left off), and a panic in a handler fails the test on drop.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const MAX_CONNS: usize = 2_000;
const MAX_DRIP: usize = 100_000;
const MAX_BIG: usize = 1 << 30;

#[derive(Default)]
struct State {
    hits: HashMap<String, usize>,
    panicked: Vec<String>,
}

pub struct Server {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming().take(MAX_CONNS) {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        handle(stream, &st)
                    }));
                    if let Err(p) = r {
                        let msg = p
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        st.lock().unwrap().panicked.push(msg);
                    }
                });
            }
        });
        Server {
            addr,
            state,
            stop,
            accept: Some(accept),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests reached `path` (without its query).
    pub fn hits(&self, path: &str) -> usize {
        let p = path.split('?').next().unwrap();
        self.state.lock().unwrap().hits.get(p).copied().unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        let panicked = std::mem::take(&mut self.state.lock().unwrap().panicked);
        if !panicked.is_empty() && !std::thread::panicking() {
            panic!("test server handler panicked: {panicked:?}");
        }
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut r = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    let mut headers = Vec::new();
    for _ in 0..200 {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(16 << 20);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        query,
        headers,
        body,
    })
}

fn handle(mut stream: TcpStream, state: &Mutex<State>) {
    let Some(req) = read_request(&stream) else {
        return;
    };
    let n = {
        let mut s = state.lock().unwrap();
        let c = s.hits.entry(req.path.clone()).or_insert(0);
        *c += 1;
        *c - 1
    };
    let step = if let Some(tok) = req.path.strip_prefix("/s/") {
        tok.to_string()
    } else if req.path.starts_with("/seq/") {
        let list = req
            .query
            .split('&')
            .find_map(|kv| kv.strip_prefix("s="))
            .unwrap_or("200");
        let steps: Vec<&str> = list.split(',').collect();
        steps[n.min(steps.len() - 1)].to_string()
    } else {
        "404".to_string()
    };
    serve(&mut stream, &step, &req);
}

fn respond(stream: &mut TcpStream, status: u16, extra: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn num(s: &str) -> u64 {
    s.parse().expect("a number in the step")
}

fn serve(stream: &mut TcpStream, step: &str, req: &Request) {
    let (kind, arg) = step.split_once(['=', ':']).unwrap_or((step, ""));
    match kind {
        "reset" => {
            // SO_LINGER 0 turns close into a TCP RST: "connection reset".
            let _ = socket2::SockRef::from(&*stream).set_linger(Some(Duration::ZERO));
            let _ = stream.shutdown(Shutdown::Read);
        }
        "delay" => {
            std::thread::sleep(Duration::from_millis(num(arg)));
            respond(stream, 200, "", b"ok after delay\n");
        }
        "drip" => {
            let (n, ms) = arg.split_once(':').expect("drip=N:MS");
            let n = (num(n) as usize).min(MAX_DRIP);
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(head.as_bytes());
            for _ in 0..n {
                std::thread::sleep(Duration::from_millis(num(ms)));
                if stream.write_all(b"x").is_err() {
                    return;
                }
            }
        }
        "cut" => {
            let (claimed, sent) = arg.split_once(':').expect("cut=N:M");
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {claimed}\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&vec![b'p'; num(sent) as usize]);
            let _ = stream.flush();
        }
        "chunkcut" => {
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\npart",
            );
            let _ = stream.flush();
        }
        "big" => {
            let n = (num(arg) as usize).min(MAX_BIG);
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(head.as_bytes());
            let chunk = vec![b'b'; 64 * 1024];
            let mut left = n;
            while left > 0 {
                let k = left.min(chunk.len());
                if stream.write_all(&chunk[..k]).is_err() {
                    return;
                }
                left -= k;
            }
        }
        "echo" => {
            let mut body = format!("{} {}\n", req.method, req.path);
            for (k, v) in &req.headers {
                body.push_str(&format!("{k}: {v}\n"));
            }
            body.push('\n');
            let mut bytes = body.into_bytes();
            bytes.extend_from_slice(&req.body);
            respond(stream, 200, "", &bytes);
        }
        code => {
            let status: u16 = code.parse().expect("a status step");
            let extra = match arg.strip_prefix("ra=") {
                Some(v) => format!("Retry-After: {}\r\n", v.replace('_', " ").replace('~', ",")),
                None => String::new(),
            };
            let body = format!("status {status}\n");
            respond(stream, status, &extra, body.as_bytes());
        }
    }
}
