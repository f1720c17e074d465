//! A local webhook receiver for the tests: it records every request and
//! answers each with the next scripted reply (then its default).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

#[derive(Clone, Debug)]
pub enum Reply {
    Status(u16),
    Redirect(String),
    /// Read the request, never answer.
    Hang,
}

#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// What it was answered (`None`: nothing, it hung).
    pub replied: Option<u16>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }

    /// Checks the Standard Webhooks signature with `secret`, written here
    /// apart from the service's own signing code.
    pub fn signed_with(&self, secret: &str) -> bool {
        let key = STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        let signed = format!(
            "{}.{}.{}",
            self.headers["webhook-id"],
            self.headers["webhook-timestamp"],
            String::from_utf8(self.body.clone()).unwrap()
        );
        mac.update(signed.as_bytes());
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        self.headers["webhook-signature"]
            .split(' ')
            .any(|signature| signature == expected)
    }
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    script: VecDeque<Reply>,
}

pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<State>>,
    default: Arc<Mutex<Reply>>,
    arrived: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(default: Reply) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let default = Arc::new(Mutex::new(default));
        let arrived = Arc::new(Notify::new());
        let task = tokio::spawn({
            let (state, default, arrived) = (state.clone(), default.clone(), arrived.clone());
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (state, default, arrived) =
                        (state.clone(), default.clone(), arrived.clone());
                    tokio::spawn(async move {
                        serve(stream, state, default, arrived).await;
                    });
                }
            }
        });
        Receiver {
            url,
            state,
            default,
            arrived,
            task,
        }
    }

    /// The next requests get these replies, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    pub fn answer_by_default(&self, reply: Reply) {
        *self.default.lock().unwrap() = reply;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Waits until `count` requests came in (panics after `limit`).
    pub async fn wait_for(&self, count: usize, limit: Duration) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let arrived = self.arrived.notified();
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{} of {count} requests within {limit:?}",
                received.len()
            );
            let _ = tokio::time::timeout(left, arrived).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    state: Arc<Mutex<State>>,
    default: Arc<Mutex<Reply>>,
    arrived: Arc<Notify>,
) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|length| length.parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
    let reply = {
        let mut state = state.lock().unwrap();
        let reply = state
            .script
            .pop_front()
            .unwrap_or_else(|| default.lock().unwrap().clone());
        state.received.push(Received {
            at: Instant::now(),
            headers,
            body: buffer[head_end..head_end + length].to_vec(),
            replied: match &reply {
                Reply::Status(status) => Some(*status),
                Reply::Redirect(_) => Some(302),
                Reply::Hang => None,
            },
        });
        reply
    };
    arrived.notify_waiters();
    let answer = match reply {
        Reply::Status(status) => {
            format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        }
        Reply::Redirect(location) => format!(
            "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
    };
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}
