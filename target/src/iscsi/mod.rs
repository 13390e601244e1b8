//! iSCSI frontend (RFC 7143).
//!
//! Until the full frontend lands (issue #3), a connection is answered
//! cleanly: a Login Request gets a Login Response with status class 3
//! ("target error"), detail 1 ("service unavailable"), then the connection
//! closes.

use std::rc::Rc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::reactor::Reactor;

/// BHS length (RFC 7143 §11.2).
const BHS_LEN: usize = 48;
const OP_LOGIN_REQUEST: u8 = 0x03;
const OP_LOGIN_RESPONSE: u8 = 0x23;

/// Serves one iSCSI connection.
pub async fn serve_connection(_reactor: Rc<Reactor>, mut stream: TcpStream) -> anyhow::Result<()> {
    let mut bhs = [0u8; BHS_LEN];
    stream.read_exact(&mut bhs).await?;
    if bhs[0] & 0x3f != OP_LOGIN_REQUEST {
        anyhow::bail!(
            "first PDU is not a Login Request (opcode {:#04x})",
            bhs[0] & 0x3f
        );
    }
    let mut rsp = [0u8; BHS_LEN];
    rsp[0] = OP_LOGIN_RESPONSE;
    rsp[8..14].copy_from_slice(&bhs[8..14]); // ISID
    rsp[16..20].copy_from_slice(&bhs[16..20]); // ITT
    rsp[24..28].copy_from_slice(&bhs[28..32]); // StatSN = ExpStatSN
    rsp[28..32].copy_from_slice(&bhs[24..28]); // ExpCmdSN = CmdSN
    rsp[32..36].copy_from_slice(&bhs[24..28]); // MaxCmdSN = CmdSN
    rsp[36] = 0x03; // status class: target error
    rsp[37] = 0x01; // status detail: service unavailable
    stream.write_all(&rsp).await?;
    tracing::info!("iSCSI login refused: frontend not available yet");
    Ok(())
}
