//! The admin socket: a thread accepting on a Unix socket, a thread per
//! client (administration is rare and small), JSON-RPC 2.0 framing.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use anyhow::Context;
use serde_json::{json, Value};

use super::methods;
use super::RpcError;
use crate::daemon::Shared;

/// Longest request line accepted (a config never needs more).
const MAX_REQUEST: usize = 1 << 20;

/// The running admin socket; removes the socket file when dropped.
pub struct AdminServer {
    path: PathBuf,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path` (creating its folder, mode 0600) and serves it on a
/// background thread. An existing socket file that nobody answers on is
/// replaced; one a live daemon answers on is an error.
pub fn start(path: &Path, shared: &Arc<Shared>) -> anyhow::Result<AdminServer> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "{} is in use: another zctarget is running with this admin socket",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    // Bind with a restrictive umask so the socket is never reachable by
    // others, even between bind and chmod.
    // SAFETY: umask only swaps the process's file mode mask; no memory is
    // involved. Other threads creating files meanwhile get 0177 at worst
    // (stricter), and the old mask is restored right after.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound.with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    let weak = Arc::downgrade(shared);
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || accept_loop(listener, weak))
        .context("spawning the admin thread")?;
    tracing::info!(socket = %path.display(), "admin API listening");
    Ok(AdminServer {
        path: path.to_path_buf(),
    })
}

fn accept_loop(listener: UnixListener, shared: Weak<Shared>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let shared = shared.clone();
        let _ = std::thread::Builder::new()
            .name("admin-client".into())
            .spawn(move || {
                if let Err(e) = serve_client(stream, &shared) {
                    tracing::debug!(error = %e, "admin client ended");
                }
            });
    }
}

fn serve_client(stream: UnixStream, shared: &Weak<Shared>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?).take(MAX_REQUEST as u64);
    let mut out = stream;
    let mut line = String::new();
    loop {
        line.clear();
        reader.set_limit(MAX_REQUEST as u64);
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        let Some(shared) = shared.upgrade() else {
            return Ok(());
        };
        let response = handle_line(&shared, &line, &mut |v| {
            let _ = writeln!(out, "{v}");
        });
        if let Some(r) = response {
            writeln!(out, "{r}")?;
        }
    }
}

/// Handles one request line; None for a notification (no id).
pub fn handle_line(shared: &Shared, line: &str, notify: &mut dyn FnMut(Value)) -> Option<Value> {
    let request: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            return Some(error_response(
                Value::Null,
                &RpcError::new(RpcError::PARSE, format!("not JSON: {e}")),
            ))
        }
    };
    let id = request.get("id").cloned();
    let method = request.get("method").and_then(Value::as_str);
    let (Some(method), Some("2.0")) = (method, request.get("jsonrpc").and_then(Value::as_str))
    else {
        return Some(error_response(
            id.unwrap_or(Value::Null),
            &RpcError::new(
                RpcError::INVALID_REQUEST,
                "a request needs \"jsonrpc\": \"2.0\" and a \"method\"",
            ),
        ));
    };
    let params = request.get("params").cloned().unwrap_or(json!({}));
    let span = tracing::info_span!("admin", method);
    let _enter = span.enter();
    let result = methods::call(shared, method, &params, notify);
    match &result {
        Ok(_) => tracing::debug!("done"),
        Err(e) => tracing::info!(code = e.code, error = %e.message, "refused"),
    }
    let id = id?;
    Some(match result {
        Ok(v) => json!({"jsonrpc": "2.0", "id": id, "result": v}),
        Err(e) => error_response(id, &e),
    })
}

fn error_response(id: Value, e: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": e.code, "message": e.message}})
}
