//! Choosing the I/O engine: `auto` uses io_uring when the kernel (and any
//! seccomp profile around us) allows it, else falls back to epoll.

use zctarget_backends::Engine;
use zctarget_config::IoEngine;

/// Why io_uring is not usable, if it is not.
pub fn probe_io_uring() -> Result<(), std::io::Error> {
    io_uring::IoUring::new(2).map(drop)
}

/// Resolves the configured engine. `uring` is an error when unavailable;
/// `auto` falls back with one clear log line.
pub fn resolve(configured: IoEngine) -> anyhow::Result<Engine> {
    match configured {
        IoEngine::Epoll => Ok(Engine::Epoll),
        IoEngine::Uring => {
            probe_io_uring().map_err(|e| {
                anyhow::anyhow!("io_engine = \"uring\" but io_uring is unavailable: {e}")
            })?;
            Ok(Engine::Uring)
        }
        IoEngine::Auto => match probe_io_uring() {
            Ok(()) => Ok(Engine::Uring),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "io_uring unavailable (seccomp or kernel); using the epoll engine — \
                     deploy/seccomp-io_uring.json allows io_uring in containers"
                );
                Ok(Engine::Epoll)
            }
        },
    }
}
