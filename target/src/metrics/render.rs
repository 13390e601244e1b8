//! The Prometheus text exposition: every family `GET /metrics` answers
//! with, read from the counters where they live.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use zctarget_backends::{HistogramSnapshot, LATENCY_BUCKETS_US};

use crate::daemon::Shared;

/// Writes Prometheus text exposition format.
struct Out(String);

impl Out {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        for (i, count) in h.cumulative.iter().enumerate() {
            let le = LATENCY_BUCKETS_US
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |us| format!("{}", *us as f64 / 1e6));
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &l, count);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum_seconds);
        self.sample(&format!("{name}_count"), labels, h.count);
    }
}

/// The whole exposition.
pub fn render(s: &Shared) -> String {
    let mut o = Out(String::with_capacity(16 << 10));
    let volumes = s.exports.volumes();
    type Counter = fn(&zctarget_backends::VolumeStats) -> &AtomicU64;
    let per_volume: [(&str, &str, Counter); 11] = [
        (
            "zctarget_volume_reads_total",
            "Read operations completed.",
            |v| &v.reads,
        ),
        ("zctarget_volume_read_bytes_total", "Bytes read.", |v| {
            &v.read_bytes
        }),
        (
            "zctarget_volume_writes_total",
            "Write operations completed.",
            |v| &v.writes,
        ),
        ("zctarget_volume_write_bytes_total", "Bytes written.", |v| {
            &v.write_bytes
        }),
        ("zctarget_volume_flushes_total", "Flushes completed.", |v| {
            &v.flushes
        }),
        (
            "zctarget_volume_discards_total",
            "Discard and write-zeroes operations completed.",
            |v| &v.discards,
        ),
        (
            "zctarget_volume_errors_total",
            "Volume operations that failed.",
            |v| &v.errors,
        ),
        (
            "zctarget_volume_offloaded_total",
            "Reads and writes handed to a blocking-pool thread (epoll engine).",
            |v| &v.offloaded,
        ),
        (
            "zctarget_volume_data_syncs_total",
            "Whole-file data syncs issued (flushes, FUA without RWF_DSYNC).",
            |v| &v.data_syncs,
        ),
        (
            "zctarget_volume_ring_fixed_total",
            "Disk reads and writes on io_uring with a registered (fixed) buffer.",
            |v| &v.ring_fixed,
        ),
        (
            "zctarget_volume_ring_unfixed_total",
            "Disk reads and writes on io_uring with a plain buffer.",
            |v| &v.ring_unfixed,
        ),
    ];
    for (name, help, get) in per_volume {
        o.header(name, "counter", help);
        for (_, v) in &volumes {
            o.sample(
                name,
                &[("volume", v.name())],
                get(v.stats()).load(Ordering::Relaxed),
            );
        }
    }
    o.header(
        "zctarget_volume_read_latency_seconds",
        "histogram",
        "Read latency at the volume.",
    );
    for (_, v) in &volumes {
        let h = v.stats().read_latency.snapshot();
        o.histogram(
            "zctarget_volume_read_latency_seconds",
            &[("volume", v.name())],
            &h,
        );
    }
    o.header(
        "zctarget_volume_write_latency_seconds",
        "histogram",
        "Write latency at the volume.",
    );
    for (_, v) in &volumes {
        let h = v.stats().write_latency.snapshot();
        o.histogram(
            "zctarget_volume_write_latency_seconds",
            &[("volume", v.name())],
            &h,
        );
    }
    o.header("zctarget_volume_size_bytes", "gauge", "Volume capacity.");
    for (_, v) in &volumes {
        o.sample(
            "zctarget_volume_size_bytes",
            &[("volume", v.name())],
            v.info().capacity,
        );
    }

    let c = &s.counters;
    o.header("zctarget_connections", "gauge", "Open TCP connections.");
    o.header(
        "zctarget_connections_accepted_total",
        "counter",
        "TCP connections accepted.",
    );
    for (p, i) in [("iscsi", 0), ("nvme_tcp", 1)] {
        o.sample(
            "zctarget_connections",
            &[("protocol", p)],
            c.connections[i].load(Ordering::Relaxed),
        );
        o.sample(
            "zctarget_connections_accepted_total",
            &[("protocol", p)],
            c.connections_accepted[i].load(Ordering::Relaxed),
        );
    }
    o.header(
        "zctarget_reactor_connections",
        "gauge",
        "Open TCP connections per reactor (handed-over ones included).",
    );
    o.header(
        "zctarget_reactor_work",
        "gauge",
        "Work per reactor: connections carrying I/O (NVMe I/O queues, normal iSCSI sessions, connections not yet identified).",
    );
    o.header(
        "zctarget_reactor_busy_work",
        "gauge",
        "Work per reactor that moved commands lately (new connections included): what placement weighs first.",
    );
    for r in 0..s.placement.len() {
        let l = s.placement.load(r);
        let r = r.to_string();
        o.sample(
            "zctarget_reactor_connections",
            &[("reactor", &r)],
            l.connections,
        );
        o.sample("zctarget_reactor_work", &[("reactor", &r)], l.work);
        o.sample("zctarget_reactor_busy_work", &[("reactor", &r)], l.busy);
    }
    let sessions = s.iscsi.sessions.list();
    o.header(
        "zctarget_iscsi_sessions",
        "gauge",
        "Logged-in iSCSI sessions (discovery included).",
    );
    o.sample("zctarget_iscsi_sessions", &[], sessions.len());
    let controllers = s.nvmf.list_controllers();
    o.header(
        "zctarget_nvme_controllers",
        "gauge",
        "Live NVMe controllers (discovery included).",
    );
    o.sample("zctarget_nvme_controllers", &[], controllers.len());
    o.header(
        "zctarget_nvme_queues",
        "gauge",
        "Connected NVMe queues (admin included).",
    );
    o.sample(
        "zctarget_nvme_queues",
        &[],
        controllers.iter().map(|r| u64::from(r.queues)).sum::<u64>(),
    );
    o.header(
        "zctarget_commands_in_flight",
        "gauge",
        "Commands received and not yet completed.",
    );
    o.sample(
        "zctarget_commands_in_flight",
        &[("protocol", "iscsi")],
        sessions.iter().map(|r| u64::from(r.in_flight)).sum::<u64>(),
    );
    o.sample(
        "zctarget_commands_in_flight",
        &[("protocol", "nvme_tcp")],
        controllers
            .iter()
            .map(|r| u64::from(r.in_flight))
            .sum::<u64>(),
    );
    o.header(
        "zctarget_command_workers_started_total",
        "counter",
        "Command-slot workers started (one per slot on first use, not per command).",
    );
    for (p, i) in [("iscsi", 0), ("nvme_tcp", 1)] {
        o.sample(
            "zctarget_command_workers_started_total",
            &[("protocol", p)],
            c.command_workers[i].load(Ordering::Relaxed),
        );
    }
    let (recv_calls, recv_would_block) = crate::sockio::recv_calls();
    o.header(
        "zctarget_socket_recv_calls_total",
        "counter",
        "Receive system calls (recv, readv) on iSCSI and NVMe/TCP connections.",
    );
    o.sample("zctarget_socket_recv_calls_total", &[], recv_calls);
    o.header(
        "zctarget_socket_recv_would_block_total",
        "counter",
        "Receive system calls that found nothing to read (EAGAIN).",
    );
    o.sample(
        "zctarget_socket_recv_would_block_total",
        &[],
        recv_would_block,
    );
    o.header(
        "zctarget_scsi_locked_plans_total",
        "counter",
        "SCSI commands planned under their LUN's lock (plain READ/WRITE plans are lock-free).",
    );
    o.sample(
        "zctarget_scsi_locked_plans_total",
        &[],
        c.scsi_locked_plans.load(Ordering::Relaxed),
    );
    o.header(
        "zctarget_command_lifecycle_errors_total",
        "counter",
        "Command lifecycle transitions refused (a frontend bug if not 0).",
    );
    o.sample(
        "zctarget_command_lifecycle_errors_total",
        &[],
        c.lifecycle_errors.load(Ordering::Relaxed),
    );
    o.header(
        "zctarget_protocol_errors_total",
        "counter",
        "Protocol errors answered (Reject, TermReq, digest errors, refused logins) by kind.",
    );
    for ((p, kind), n) in c
        .protocol_errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        o.sample(
            "zctarget_protocol_errors_total",
            &[("protocol", p), ("kind", kind)],
            n,
        );
    }

    let z = &s.sender_counters;
    let zc: [(&str, &str, &AtomicU64); 15] = [
        (
            "zctarget_zerocopy_sends_total",
            "sendmsg calls with MSG_ZEROCOPY.",
            &z.zerocopy_calls,
        ),
        (
            "zctarget_zerocopy_sent_bytes_total",
            "Bytes sent with MSG_ZEROCOPY.",
            &z.zerocopy_bytes,
        ),
        (
            "zctarget_copy_sends_total",
            "Copying sendmsg calls.",
            &z.copy_calls,
        ),
        (
            "zctarget_copy_sent_bytes_total",
            "Bytes sent by copy.",
            &z.copy_bytes,
        ),
        (
            "zctarget_sendfile_sends_total",
            "sendfile calls sending read data from a memory-backed volume file.",
            &z.sendfile_calls,
        ),
        (
            "zctarget_sendfile_sent_bytes_total",
            "Bytes sent with sendfile.",
            &z.sendfile_bytes,
        ),
        (
            "zctarget_store_queued_bytes_total",
            "Read bytes queued to be sent straight from a memory volume's store (no lease, no userspace copy).",
            &z.store_bytes,
        ),
        (
            "zctarget_zerocopy_notifications_total",
            "Zero-copy completion notifications read.",
            &z.notifications,
        ),
        (
            "zctarget_zerocopy_copied_notifications_total",
            "Notifications saying the kernel copied after all.",
            &z.copied_notifications,
        ),
        (
            "zctarget_zerocopy_abandoned_total",
            "Connections where auto mode stopped using zero-copy (kernel kept copying).",
            &z.zerocopy_abandoned,
        ),
        (
            "zctarget_zerocopy_fallbacks_total",
            "Zero-copy sends retried as copies after ENOBUFS.",
            &z.enobufs_fallbacks,
        ),
        (
            "zctarget_zerocopy_teardown_resets_total",
            "Connections reset because notifications did not arrive in time.",
            &z.teardown_resets,
        ),
        (
            "zctarget_sendmsg_would_block_total",
            "sendmsg calls that found the socket full (EAGAIN).",
            &z.would_block,
        ),
        (
            "zctarget_sendmsg_partial_total",
            "sendmsg calls that wrote less than offered (the socket filled up).",
            &z.partial_writes,
        ),
        (
            "zctarget_zerocopy_room_rearms_total",
            "Writability watches re-registered after a completion notification \
             made the previous one report the socket write-closed.",
            &z.room_rearms,
        ),
    ];
    for (name, help, v) in zc {
        o.header(name, "counter", help);
        o.sample(name, &[], v.load(Ordering::Relaxed));
    }
    o.header(
        "zctarget_zerocopy_quarantined_bytes",
        "gauge",
        "Pool bytes withheld for good: sent zero-copy and never notified after the connection's reset (never reused).",
    );
    o.sample(
        "zctarget_zerocopy_quarantined_bytes",
        &[],
        z.quarantined_bytes.load(Ordering::Relaxed),
    );

    let pool = s.pool.stats();
    o.header("zctarget_pool_chunks", "gauge", "Buffer pool chunks by state (leased chunks hold payloads in flight or pinned by zero-copy sends).");
    o.sample(
        "zctarget_pool_chunks",
        &[("state", "free")],
        pool.free_chunks,
    );
    let leased = pool.total_chunks - pool.free_chunks - pool.quarantined_chunks;
    o.sample("zctarget_pool_chunks", &[("state", "leased")], leased);
    o.sample(
        "zctarget_pool_chunks",
        &[("state", "quarantined")],
        pool.quarantined_chunks,
    );
    o.header(
        "zctarget_pool_chunk_size_bytes",
        "gauge",
        "Size of one pool chunk.",
    );
    o.sample("zctarget_pool_chunk_size_bytes", &[], pool.chunk_size);
    o.header(
        "zctarget_pool_leased_bytes",
        "gauge",
        "Payload bytes leased (pinned) from the pool.",
    );
    o.sample("zctarget_pool_leased_bytes", &[], leased * pool.chunk_size);
    o.header(
        "zctarget_pool_backpressure_waits_total",
        "counter",
        "Lease requests that waited for free pool memory.",
    );
    o.sample(
        "zctarget_pool_backpressure_waits_total",
        &[],
        pool.backpressure_waits,
    );
    cluster(&mut o, s);
    o.0
}

/// `[cluster]` only: ANA state per group, ALUA state of this gateway's
/// port and role per shared volume, failovers and lock transitions.
fn cluster(o: &mut Out, s: &Shared) {
    if s.cluster.is_none() {
        return;
    }
    if let Some(groups) = s.nvmf.ana_groups() {
        o.header(
            "zctarget_ana_group_state",
            "gauge",
            "NVMe ANA state of each group on this gateway (1 for the current state).",
        );
        for (i, st) in groups.states.iter().enumerate() {
            let g = (i + 1).to_string();
            for (name, code) in [
                ("optimized", 1),
                ("non_optimized", 2),
                ("inaccessible", 3),
                ("persistent_loss", 4),
                ("change", 15),
            ] {
                let v = u8::from(st.code() == code);
                o.sample(
                    "zctarget_ana_group_state",
                    &[("group", &g), ("state", name)],
                    v,
                );
            }
        }
    }
    let roles = {
        let cfg = s.live.lock();
        crate::cluster::Roles::new(s.cluster.as_ref(), &cfg).observing(&s.exports)
    };
    o.header(
        "zctarget_alua_port_state",
        "gauge",
        "SCSI ALUA state of this gateway's target port group per volume (1 for the current state).",
    );
    let volumes = s.exports.volumes();
    for (_, v) in &volumes {
        let (_, me, groups) = roles.scsi_ports(v.name());
        if let Some(g) = groups.iter().find(|g| g.id == me) {
            let state = format!("{:?}", g.state);
            o.sample(
                "zctarget_alua_port_state",
                &[("volume", v.name()), ("state", &state)],
                1,
            );
        }
    }
    o.header(
        "zctarget_volume_lock_role",
        "gauge",
        "This gateway's role for a shared rbd volume (1 for the current role).",
    );
    for (_, v) in &volumes {
        if let Some(r) = roles.local_role(v.name()) {
            let role = format!("{r:?}").to_lowercase();
            o.sample(
                "zctarget_volume_lock_role",
                &[("volume", v.name()), ("role", &role)],
                1,
            );
        }
    }
    let c = &s.counters;
    for (name, help, v) in [
        (
            "zctarget_failovers_total",
            "Shared rbd volumes taken over from a dead owner.",
            &c.failovers,
        ),
        (
            "zctarget_lock_acquisitions_total",
            "Exclusive locks acquired after start.",
            &c.lock_acquisitions,
        ),
        (
            "zctarget_lock_losses_total",
            "Exclusive locks lost (fenced).",
            &c.lock_losses,
        ),
        (
            "zctarget_lock_releases_total",
            "Exclusive locks released on request (failback).",
            &c.lock_releases,
        ),
    ] {
        o.header(name, "counter", help);
        o.sample(name, &[], v.load(Ordering::Relaxed));
    }
}
