//! NVMe/TCP frontend (NVMe-oF TCP transport).
//!
//! Until the full frontend lands (issue #4), a connection is closed after
//! its ICReq, with a log line saying why.

use std::rc::Rc;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::reactor::Reactor;

/// Serves one NVMe/TCP connection.
pub async fn serve_connection(_reactor: Rc<Reactor>, mut stream: TcpStream) -> anyhow::Result<()> {
    let mut icreq = [0u8; 128];
    stream.read_exact(&mut icreq).await?;
    tracing::info!("NVMe/TCP connection refused: frontend not available yet");
    Ok(())
}
