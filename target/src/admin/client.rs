//! Calling the admin API (used by `zctarget ctl` and tests).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};

use super::RpcError;

/// How long a call may take (volume preallocation can be long).
const CALL_TIMEOUT: Duration = Duration::from_secs(3600);

/// Calls `method` on the daemon at `socket`. Progress notifications go to
/// `progress`. Returns the result, or the daemon's error.
pub fn call(
    socket: &Path,
    method: &str,
    params: Value,
    progress: &mut dyn FnMut(&Value),
) -> anyhow::Result<Result<Value, RpcError>> {
    let stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "connecting to {} (is zctarget running? --socket selects another admin socket)",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(CALL_TIMEOUT))?;
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    (&stream).write_all(format!("{request}\n").as_bytes())?;
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            anyhow::bail!("the daemon closed the admin connection without answering");
        }
        let msg: Value = serde_json::from_str(&line).context("malformed answer")?;
        if msg.get("id").is_none() {
            if let Some(p) = msg.get("params") {
                progress(p);
            }
            continue;
        }
        if let Some(e) = msg.get("error") {
            return Ok(Err(RpcError {
                code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            }));
        }
        return Ok(Ok(msg.get("result").cloned().unwrap_or(Value::Null)));
    }
}
