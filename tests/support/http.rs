//! A static file server on 127.0.0.1 for source downloads: `GET /<name>` answers the file's bytes with
//! an `ETag`, `304 Not Modified` to a matching `If-None-Match`, a `302` to where [`FileServer::redirect`]
//! sends it, and `404` otherwise. It records every request, so tests can tell a download from a
//! re-validation.
#![allow(dead_code)] // each test binary uses a different part of this helper

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The path asked for.
    pub path: String,
    /// The status answered.
    pub status: u16,
}

/// The running server; it stops with the test process.
pub struct FileServer {
    port: u16,
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    redirects: Arc<Mutex<BTreeMap<String, String>>>,
    hits: Arc<Mutex<Vec<Hit>>>,
}

fn etag(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("\"{}\"", hex::encode(&sha2::Sha256::digest(bytes)[..8]))
}

impl FileServer {
    /// Start serving `files` (path without the leading `/` → bytes).
    pub fn start(files: BTreeMap<String, Vec<u8>>) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let files = Arc::new(Mutex::new(files));
        let redirects = Arc::new(Mutex::new(BTreeMap::new()));
        let hits = Arc::new(Mutex::new(Vec::new()));
        let (f, r, h) = (files.clone(), redirects.clone(), hits.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (f, r, h) = (f.clone(), r.clone(), h.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("/").trim_start_matches('/').to_string();
                    let mut if_none_match = None;
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = header.split_once(':')
                            && k.eq_ignore_ascii_case("if-none-match")
                        {
                            if_none_match = Some(v.trim().to_string());
                        }
                    }
                    let body = f.lock().unwrap().get(&path).cloned();
                    let moved = r.lock().unwrap().get(&path).cloned();
                    let (status, head, body) = match (body, moved) {
                        (_, Some(to)) => (302, format!("Location: {to}\r\nContent-Length: 0\r\n"), Vec::new()),
                        (body, None) => match body {
                            Some(b) if if_none_match.as_deref() == Some(etag(&b).as_str()) => {
                                (304, format!("ETag: {}\r\n", etag(&b)), Vec::new())
                            }
                            Some(b) => (200, format!("ETag: {}\r\nContent-Length: {}\r\n", etag(&b), b.len()), b),
                            None => (404, "Content-Length: 0\r\n".to_string(), Vec::new()),
                        },
                    };
                    h.lock().unwrap().push(Hit { path, status });
                    let reason = match status {
                        200 => "OK",
                        304 => "Not Modified",
                        302 => "Found",
                        _ => "Not Found",
                    };
                    let _ = write!(conn, "HTTP/1.1 {status} {reason}\r\n{head}Connection: close\r\n\r\n");
                    let _ = conn.write_all(&body);
                });
            }
        });
        FileServer { port, files, redirects, hits }
    }

    /// Answer `GET /<name>` with `302 Found` to `location`.
    pub fn redirect(&self, name: &str, location: &str) {
        self.redirects.lock().unwrap().insert(name.to_string(), location.to_string());
    }

    /// `http://127.0.0.1:<port>/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// Serve new bytes under `name`.
    pub fn put(&self, name: &str, bytes: Vec<u8>) {
        self.files.lock().unwrap().insert(name.to_string(), bytes);
    }

    /// Every request so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Forget the requests so far.
    pub fn clear(&self) {
        self.hits.lock().unwrap().clear();
    }
}
