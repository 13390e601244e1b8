//! Volumes on Ceph RBD images, through librbd's C API loaded at run time.
//!
//! - `ffi`: the hand-written binding (and why no crate fits);
//! - `client`: Ceph clients (`rados_t`), one per conf/user/keyring, shared;
//! - `image`: open/create/size/exclusive lock of an image;
//! - `aio`: operations that own their buffers until librbd's callback ran;
//! - `allocation`: which parts hold data, from the object map.
//!
//! Every client runs with `rbd_cache = false` (a completed write is on the
//! OSDs, so FUA is a plain write and flush is `rbd_aio_flush`) and
//! `rbd_skip_partial_discard = false` (a discard reads back zeroes).

mod aio;
mod allocation;
mod client;
#[cfg(test)]
mod copy_check;
mod ffi;
mod handover;
mod image;
mod ownership;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

pub use client::ClientKey;
pub use handover::HANDOVER_KEY;
pub use image::{Image, Sharing};
pub use ownership::{not_owner, LockView, NotOwner, Role, Takeover};

use crate::backend::{check_range, check_write, Backend, BackendInfo};
use crate::forward::{Forward, ForwardOp};
use crate::SegmentList;
use aio::Op;

/// Where an RBD volume lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbdSpec {
    /// Pool name.
    pub pool: String,
    /// RADOS namespace inside the pool.
    pub namespace: Option<String>,
    /// Image name.
    pub image: String,
    /// ceph.conf (`None`: librados' default search).
    pub ceph_conf: Option<PathBuf>,
    /// cephx user without `client.`; `admin` when `None`.
    pub ceph_user: Option<String>,
    /// Keyring overriding the conf's.
    pub keyring: Option<PathBuf>,
    /// Seconds before librados gives up on the cluster (connect, monitor
    /// and OSD operations fail with ETIMEDOUT); `None`: the conf's.
    pub rados_timeout_secs: Option<u32>,
    /// How a writable image is shared (one gateway, or a cluster's).
    pub sharing: Sharing,
}

impl RbdSpec {
    /// `pool[/namespace]/image`, as `rbd` writes it.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{ns}/{}", self.pool, self.image),
            None => format!("{}/{}", self.pool, self.image),
        }
    }
}

/// Why an RBD image could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RbdError {
    /// librbd/librados could not be loaded.
    #[error("{0}")]
    Library(String),
    /// A client-level call failed.
    #[error("ceph: {what}: {error}")]
    Client {
        /// What we were doing.
        what: String,
        /// The errno.
        error: io::Error,
    },
    /// An image-level call failed.
    #[error("rbd image {image}: {what}: {error}")]
    Image {
        /// `pool/image`.
        image: String,
        /// What we were doing, e.g. "opening".
        what: String,
        /// The errno.
        error: io::Error,
    },
    /// Another client holds the image's exclusive lock.
    #[error(
        "rbd image {image} is locked by {holder}: another zctarget (or rbd client) serves it \
         for writing; an image is written by one daemon only"
    )]
    Locked {
        /// `pool/image`.
        image: String,
        /// Lock owners as librbd names them.
        holder: String,
    },
    /// The specification cannot work.
    #[error("{0}")]
    Invalid(String),
}

/// Opens (creating when missing and `create` is given) an image; writable
/// images hold the exclusive lock until dropped, or, shared by a cluster,
/// are owned or followed (see `ownership`) on a RADOS client of their own.
pub fn open(spec: &RbdSpec, create: Option<u64>, read_only: bool) -> Result<Arc<Image>, RbdError> {
    let key = ClientKey {
        ceph_conf: spec.ceph_conf.clone(),
        user: spec.ceph_user.clone().unwrap_or_else(|| "admin".into()),
        keyring: spec.keyring.clone(),
        timeout_secs: spec.rados_timeout_secs,
    };
    let cluster = match spec.sharing {
        Sharing::Exclusive => client::Cluster::get(&key)?,
        Sharing::Cluster { .. } if read_only => client::Cluster::get(&key)?,
        Sharing::Cluster { .. } => client::Cluster::unshared(&key)?,
    };
    let ioctx = cluster.ioctx(&spec.pool, spec.namespace.as_deref())?;
    Image::open(
        ioctx,
        spec.display(),
        &spec.image,
        create,
        read_only,
        spec.sharing,
    )
    .map(Arc::new)
}

/// One reactor's handle on an RBD volume. Completions come back to the
/// task that submitted, on this reactor, through a oneshot per operation.
#[derive(Debug)]
pub struct RbdBackend {
    /// Facts about the volume.
    pub info: BackendInfo,
    /// The image (shared by the volume's handles).
    pub image: Arc<Image>,
    /// A follower's refused writes go to the owner over the peer link
    /// (false on the owner's side of the link: a forwarded write is never
    /// forwarded again).
    pub forward: bool,
}

impl RbdBackend {
    /// Where this handle's writes go instead of librbd, if anywhere now.
    fn forwarder(&self) -> Option<&Arc<dyn Forward>> {
        if self.forward {
            self.image.forwarder()
        } else {
            None
        }
    }

    /// Runs `op` on the owner through `f`; `None` when no link is up.
    async fn forwarded(&self, f: &Arc<dyn Forward>, op: ForwardOp) -> Option<io::Result<()>> {
        let r = f.forward(op)?.await;
        Some(match r {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(io::Error::other("unexpected miscompare from the owner")),
            Err(e) => Err(e),
        })
    }

    /// COMPARE AND WRITE on the owner, when this handle forwards now:
    /// `Ok(Some(at))` is a miscompare at byte `at`.
    pub async fn forward_compare_and_write(
        &self,
        offset: u64,
        compare: Vec<u8>,
        data: Vec<u8>,
        fua: bool,
    ) -> Option<crate::forward::Forwarded> {
        let f = self.forwarder()?;
        let op = ForwardOp::CompareAndWrite {
            offset,
            compare,
            data,
            fua,
        };
        Some(f.forward(op)?.await)
    }

    async fn data(&self, op: Op, buf: SegmentList, what: &str) -> (SegmentList, io::Result<()>) {
        let (buf, rc) = aio::run(&self.image, op, Some(buf)).await;
        (buf.unwrap_or_default(), aio::result(rc, what, &self.image))
    }

    /// A write-type operation: refused unless this gateway may write; a
    /// blocklisted client fences the gateway (see `ownership`).
    async fn modify(
        &self,
        op: Op,
        buf: Option<SegmentList>,
        what: &str,
    ) -> (SegmentList, io::Result<()>) {
        if let Err(e) = self.image.may_write() {
            return (buf.unwrap_or_default(), Err(e));
        }
        let (buf, rc) = aio::run(&self.image, op, buf).await;
        let r = match self.image.write_outcome(rc) {
            Some(e) => Err(e),
            None => aio::result(rc, what, &self.image),
        };
        (buf.unwrap_or_default(), r)
    }
}

impl Backend for RbdBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    async fn read(&self, offset: u64, buf: SegmentList) -> (SegmentList, io::Result<()>) {
        if let Err(e) = check_range(&self.info, offset, buf.len() as u64) {
            return (buf, Err(e));
        }
        self.data(Op::Read(offset), buf, "read").await
    }

    async fn write(
        &self,
        offset: u64,
        buf: SegmentList,
        fua: bool,
    ) -> (SegmentList, io::Result<()>) {
        // With rbd_cache off a completed write is on the OSDs: FUA needs
        // nothing more.
        if let Err(e) = check_write(&self.info, offset, buf.len() as u64) {
            return (buf, Err(e));
        }
        if let Some(f) = self.forwarder() {
            // A copy: the leased buffers go back as soon as this returns,
            // whatever the link does with the bytes.
            let mut data = vec![0u8; buf.len()];
            buf.copy_to_slice(0, &mut data);
            let op = ForwardOp::Write { offset, data, fua };
            if let Some(r) = self.forwarded(f, op).await {
                return (buf, r);
            }
        }
        self.modify(Op::Write(offset), Some(buf), "write").await
    }

    async fn flush(&self) -> io::Result<()> {
        // A follower never wrote: nothing of its own to flush.
        if self.info.read_only || self.image.role() == Role::Follower {
            return Ok(());
        }
        self.modify(Op::Flush, None, "flush").await.1
    }

    async fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        check_write(&self.info, offset, len)?;
        if let Some(f) = self.forwarder() {
            if let Some(r) = self.forwarded(f, ForwardOp::Discard { offset, len }).await {
                return r;
            }
        }
        self.modify(Op::Discard(offset, len), None, "discard")
            .await
            .1
    }

    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        check_write(&self.info, offset, len)?;
        if let Some(f) = self.forwarder() {
            if let Some(r) = self
                .forwarded(f, ForwardOp::WriteZeroes { offset, len })
                .await
            {
                return r;
            }
        }
        self.modify(Op::WriteZeroes(offset, len), None, "write zeroes")
            .await
            .1
    }
}
