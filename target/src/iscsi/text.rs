//! Text requests in full feature phase: SendTargets discovery and key
//! redeclaration.

use zctarget_protocol::iscsi::login_fsm::{self, TargetPortals};

use super::connection::Connection;
use super::login::initiator_allowed;

/// The Text Response data for `request`: targets visible to this initiator
/// with every portal (`address:port,tpgt`).
pub fn text_response(conn: &Connection, request: &[u8], initiator: &str) -> Vec<u8> {
    let shared = &conn.reactor.shared;
    let local = conn.out.stream().local_addr().ok();
    let tpgt = shared
        .cluster
        .as_ref()
        .map_or(1, zctarget_config::Cluster::number);
    let portals: Vec<String> = shared
        .iscsi_portals
        .iter()
        .map(|p| crate::listener::advertised(*p, local))
        .map(|p| match p {
            std::net::SocketAddr::V4(a) => format!("{}:{},{tpgt}", a.ip(), a.port()),
            std::net::SocketAddr::V6(a) => format!("[{}]:{},{tpgt}", a.ip(), a.port()),
        })
        .collect();
    let targets: Vec<TargetPortals> = shared
        .iscsi
        .targets()
        .iter()
        .filter(|t| initiator_allowed(&t.config().initiators, initiator))
        .map(|t| (t.iqn.clone(), portals.clone()))
        .collect();
    let mut params = conn.login_params.borrow_mut();
    login_fsm::text_response(&mut params, request, &targets).unwrap_or_default()
}
