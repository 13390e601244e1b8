//! The listening side: authenticates peers and runs what they forward
//! against this gateway's own volumes — refused unless this gateway holds
//! the volume's lock (the backend's gate: forwarding never bypasses
//! fencing).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use zctarget_backends::{Backend, Engine, SegmentList, Volume, VolumeHandle};
use zctarget_protocol::peer::{Frame, SharedUa, Status};

use super::frame_io::{accept_handshake, write_frame, FrameReader, HANDSHAKE_TIMEOUT};
use super::{status_of, Link, FORWARD_TIMEOUT};
use crate::daemon::Shared;

/// Requests of one peer run at once at most (beyond it the connection is
/// not read: the peer's requests wait in its socket, then time out).
const PER_PEER_CONCURRENCY: usize = 64;

/// Accepts peers until the link stops.
pub async fn serve(link: Arc<Link>, shared: Arc<Shared>, listener: std::net::TcpListener) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "peer link: cannot listen");
            return;
        }
    };
    // Ends when the link's runtime is dropped at stop (no timer here).
    while !link.stop.load(Ordering::Acquire) {
        let (stream, from) = match listener.accept().await {
            Err(e) => {
                tracing::warn!(error = %e, "peer link: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Ok(s) => s,
        };
        let (link, shared) = (Arc::clone(&link), Arc::clone(&shared));
        tokio::task::spawn_local(async move {
            if let Err(e) = connection(&link, &shared, stream).await {
                tracing::warn!(%from, error = %e, "peer link: connection ended");
            }
        });
    }
}

async fn connection(
    link: &Arc<Link>,
    shared: &Arc<Shared>,
    stream: tokio::net::TcpStream,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let from = stream.peer_addr()?;
    let (r, mut w) = stream.into_split();
    let mut reader = FrameReader::new(r);
    let known: Vec<String> = shared
        .cluster
        .as_ref()
        .map(|c| c.gateways.clone())
        .unwrap_or_default();
    let peer = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        accept_handshake(&mut reader, &mut w, &link.gateway, &known, &link.secret),
    )
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))
    .and_then(|r| r)
    .map_err(|e| {
        tracing::warn!(%from, error = %e, "peer link: refused a connection");
        e
    })?;
    tracing::info!(peer = %peer, %from, "peer link: peer connected");
    let (tx, mut rx) = mpsc::unbounded_channel::<(u32, Frame)>();
    let writer = tokio::task::spawn_local(async move {
        while let Some((tag, f)) = rx.recv().await {
            if write_frame(&mut w, tag, &f).await.is_err() {
                break;
            }
        }
    });
    let permits = Arc::new(Semaphore::new(PER_PEER_CONCURRENCY));
    let result = loop {
        let (tag, frame) = match reader.next().await {
            Ok(Some(f)) => f,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        if link.stop.load(Ordering::Acquire) {
            break Ok(());
        }
        match frame {
            Frame::Ping => {
                let _ = tx.send((tag, Frame::Pong));
            }
            f if f.is_request() => {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    break Ok(());
                };
                let (tx, shared) = (tx.clone(), Arc::clone(shared));
                tokio::task::spawn_local(async move {
                    let st = tokio::time::timeout(FORWARD_TIMEOUT, execute(&shared, f))
                        .await
                        .unwrap_or(Status::Busy);
                    let _ = tx.send((tag, Frame::Reply(st)));
                    drop(permit);
                });
            }
            other => {
                break Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("unexpected {other:?}"),
                ))
            }
        }
    };
    drop(tx);
    let _ = writer.await;
    tracing::info!(peer = %peer, "peer link: peer disconnected");
    result
}

/// The volume whose identity is `identity`, with its slot.
fn volume_of(shared: &Shared, identity: &str) -> Option<(usize, Arc<Volume>)> {
    let name = {
        let cfg = shared.live.lock();
        cfg.volumes
            .iter()
            .find(|v| cfg.volume_identity(v) == identity)
            .map(|v| v.name.clone())?
    };
    let slot = shared.exports.slot_of(&name)?;
    Some((slot, shared.exports.get(slot)?))
}

/// A handle whose writes are never forwarded again.
fn handle(vol: &Arc<Volume>) -> Option<VolumeHandle> {
    vol.open_handle(Engine::Epoll)
        .ok()
        .map(VolumeHandle::without_forwarding)
}

async fn lease(shared: &Shared, data: &[u8]) -> Option<SegmentList> {
    let mut list = shared.pool.lease(data.len()).await.ok()?;
    list.copy_from_slice(0, data);
    Some(list)
}

fn outcome(r: std::io::Result<()>) -> Status {
    match r {
        Ok(()) => Status::Ok,
        Err(e) => status_of(&e),
    }
}

/// Runs one forwarded request here.
async fn execute(shared: &Arc<Shared>, f: Frame) -> Status {
    let volume = match &f {
        Frame::Write { volume, .. }
        | Frame::WriteZeroes { volume, .. }
        | Frame::Discard { volume, .. }
        | Frame::Flush { volume }
        | Frame::CompareAndWrite { volume, .. }
        | Frame::UnitAttention { volume, .. }
        | Frame::Release { volume } => volume.clone(),
        _ => return Status::Invalid,
    };
    let Some((slot, vol)) = volume_of(shared, &volume) else {
        return Status::NoVolume;
    };
    if let Frame::Release { .. } = f {
        return release(shared, &vol).await;
    }
    if let Frame::UnitAttention { ua, .. } = f {
        raise(shared, slot, ua);
        return Status::Ok;
    }
    let Some(h) = handle(&vol) else {
        return Status::Medium;
    };
    match f {
        Frame::Write {
            offset, fua, data, ..
        } => {
            if data.is_empty() {
                return Status::Ok;
            }
            let Some(list) = lease(shared, &data).await else {
                return Status::Busy;
            };
            outcome(h.write(offset, list, fua).await.1)
        }
        Frame::WriteZeroes { offset, len, .. } => outcome(h.write_zeroes(offset, len).await),
        Frame::Discard { offset, len, .. } => outcome(h.discard(offset, len).await),
        Frame::Flush { .. } => outcome(h.flush().await),
        Frame::CompareAndWrite {
            offset,
            fua,
            compare,
            data,
            ..
        } => compare_and_write(shared, &h, offset, fua, &compare, &data).await,
        _ => Status::Invalid,
    }
}

/// COMPARE AND WRITE under the volume's CAW lock — the one this gateway's
/// own hosts' COMPARE AND WRITE takes — so it is atomic across gateways.
async fn compare_and_write(
    shared: &Shared,
    h: &VolumeHandle,
    offset: u64,
    fua: bool,
    compare: &[u8],
    data: &[u8],
) -> Status {
    if compare.len() != data.len() || compare.is_empty() {
        return Status::Invalid;
    }
    let _guard = h.caw_lock().lock().await;
    // Refused before reading when this gateway may not write: the compare
    // must not pass on a gateway that cannot then write.
    if let Err(e) = h.may_write() {
        return status_of(&e);
    }
    let Ok(medium) = shared.pool.lease(compare.len()).await else {
        return Status::Busy;
    };
    let (medium, r) = h.read(offset, medium).await;
    if let Err(e) = r {
        return status_of(&e);
    }
    let mut current = vec![0u8; compare.len()];
    medium.copy_to_slice(0, &mut current);
    drop(medium);
    if let Some(pos) = compare.iter().zip(&current).position(|(a, b)| a != b) {
        return Status::Miscompare(pos as u64);
    }
    let Some(list) = lease(shared, data).await else {
        return Status::Busy;
    };
    outcome(h.write(offset, list, fua).await.1)
}

/// Releases the volume's lock for a peer's handover, if this gateway owns
/// it (`failover::move_owner`, on the blocking pool: librbd drains the
/// writes in flight first).
async fn release(shared: &Arc<Shared>, vol: &Arc<Volume>) -> Status {
    let owner = vol
        .rbd_image()
        .is_some_and(|i| i.role() == zctarget_backends::rbd::Role::Owner);
    if !owner {
        return Status::NotOwner {
            fenced: false,
            settled: false,
        };
    }
    let (shared, name) = (Arc::clone(shared), vol.name().to_owned());
    let r = tokio::task::spawn_blocking(move || {
        crate::failover::move_owner(&shared, &name, true, None)
    })
    .await;
    match r {
        Ok(Ok(_)) => Status::Ok,
        Ok(Err(e)) => {
            tracing::warn!(error = %format!("{e:#}"), "peer link: release for a handover failed");
            Status::Medium
        }
        Err(_) => Status::Medium,
    }
}

/// Raises `ua` on every logical unit of the volume in `slot`.
fn raise(shared: &Shared, slot: usize, ua: SharedUa) {
    match ua {
        SharedUa::LuReset => {
            for t in shared.iscsi.targets() {
                for lun in t.luns().iter().filter(|l| l.volume == slot) {
                    lun.lock()
                        .reset(zctarget_protocol::scsi::ResetKind::LogicalUnit, None);
                }
            }
            tracing::info!(slot, "peer link: a peer's LOGICAL UNIT RESET raised here");
        }
    }
}
