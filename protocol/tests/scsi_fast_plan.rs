//! The lock-free READ/WRITE planner (`scsi::fast`) agrees with the locked
//! planner: over random sequences of commands from three nexuses, resets,
//! logins, mode changes (SWP, WCE) and reservations (SPC-2 and
//! persistent), whenever `IoPlanner::plan` answers, `LogicalUnit::plan` on
//! the same state answers the same and would not have changed the unit —
//! in particular no unit attention is skipped: each is still reported on
//! the nexus's first command after it was raised.

use proptest::prelude::*;
use zctarget_protocol::scsi::{IoState, LogicalUnit, LunInfo, ParamKind, Plan, ResetKind};

const PORTS: [&str; 3] = ["iqn.a,i,0x1", "iqn.b,i,0x2", "iqn.c,i,0x3"];
const BLOCKS: u64 = 1000;

#[derive(Debug, Clone)]
enum Op {
    /// A command from nexus `n` (index into PORTS).
    Cmd {
        n: usize,
        cdb: [u8; 16],
        edtl: u32,
    },
    Reset {
        n: usize,
        kind: u8,
    },
    Relogin {
        n: usize,
    },
    /// MODE SELECT from `n`: SWP and WCE.
    Mode {
        n: usize,
        swp: bool,
        wce: bool,
    },
    /// PERSISTENT RESERVE OUT from `n`.
    Prout {
        n: usize,
        sa: u8,
        pr_type: u8,
        key: u64,
        sa_key: u64,
    },
}

fn rw_cdb(op: u8, lba: u64, len: u32, byte1: u8, control: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    match op >> 5 {
        0 => {
            let l = (lba as u32) & 0x1F_FFFF;
            c[1] = (l >> 16) as u8;
            c[2] = (l >> 8) as u8;
            c[3] = l as u8;
            c[4] = len as u8;
            c[5] = control;
        }
        1 | 2 => {
            c[1] = byte1;
            c[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
            c[7..9].copy_from_slice(&(len as u16).to_be_bytes());
            c[9] = control;
        }
        5 => {
            c[1] = byte1;
            c[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
            c[6..10].copy_from_slice(&len.to_be_bytes());
            c[11] = control;
        }
        _ => {
            c[1] = byte1;
            c[2..10].copy_from_slice(&lba.to_be_bytes());
            c[10..14].copy_from_slice(&len.to_be_bytes());
            c[15] = control;
        }
    }
    c
}

fn cmd() -> impl Strategy<Value = Op> {
    let rw_op = prop::sample::select(vec![
        0x08u8, 0x0A, 0x28, 0x2A, 0xA8, 0xAA, 0x88, 0x8A, // READ/WRITE 6/10/12/16
        0x00, 0x12, 0x03, 0x16, 0x17, 0x2F, 0x35, 0x41, 0x89, // others
    ]);
    (
        0usize..3,
        rw_op,
        0u64..(BLOCKS + 50),
        0u32..300,
        prop::sample::select(vec![0u8, 0x08, 0x20, 0x02]),
        prop::sample::select(vec![0u8, 0x04]),
        0u32..(300 * 512),
    )
        .prop_map(|(n, op, lba, len, b1, ctl, edtl)| Op::Cmd {
            n,
            cdb: rw_cdb(op, lba, len, b1, ctl),
            edtl,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => cmd(),
        1 => (0usize..3, 0u8..3).prop_map(|(n, kind)| Op::Reset { n, kind }),
        1 => (0usize..3).prop_map(|n| Op::Relogin { n }),
        1 => (0usize..3, any::<bool>(), any::<bool>()).prop_map(|(n, swp, wce)| Op::Mode { n, swp, wce }),
        1 => (0usize..3, 0u8..4, prop::sample::select(vec![1u8, 3, 5, 6]), 0u64..3, 0u64..3)
            .prop_map(|(n, sa, pr_type, key, sa_key)| Op::Prout { n, sa, pr_type, key, sa_key }),
    ]
}

fn data_in(l: &mut LogicalUnit, nexus: usize, cdb: &[u8]) -> Option<Vec<u8>> {
    match l.plan(nexus as u64, PORTS[nexus], cdb, 255) {
        Plan::DataIn(d) => Some(d),
        _ => None,
    }
}

/// MODE SELECT(6) of the current page `page` with `edit` applied.
fn mode_select(l: &mut LogicalUnit, n: usize, page: u8, edit: impl Fn(&mut [u8])) {
    let mut sense = [0u8; 16];
    sense[0] = 0x1A;
    sense[1] = 0x08;
    sense[2] = page;
    sense[4] = 255;
    let Some(cur) = data_in(l, n, &sense) else {
        return;
    };
    if cur.len() < 4 {
        return;
    }
    let mut sel = vec![0u8; 4];
    sel.extend_from_slice(&cur[4..]);
    edit(&mut sel[4..]);
    let kind = ParamKind::ModeSelect {
        ten: false,
        sp: false,
    };
    let _ = l.with_parameter_data(n as u64, kind, &sel);
}

struct Model {
    lu: LogicalUnit,
    planner: zctarget_protocol::scsi::IoPlanner,
    /// What the owner published when it last let go of the unit.
    published: IoState,
    /// Per nexus: the word it last confirmed.
    confirmed: [IoState; 3],
    fast: usize,
}

impl Model {
    fn new() -> Self {
        let lu = LogicalUnit::new(LunInfo::new(0, BLOCKS, 512));
        let planner = lu.io_planner();
        let mut m = Self {
            published: lu.io_state(),
            lu,
            planner,
            confirmed: [IoState::default(); 3],
            fast: 0,
        };
        for (n, port) in PORTS.iter().enumerate() {
            m.lu.nexus_added(n as u64, port);
        }
        m.publish();
        m
    }

    fn publish(&mut self) {
        self.published = self.lu.io_state();
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Cmd { n, cdb, edtl } => {
                let nexus = n as u64;
                match self.planner.plan(self.published, self.confirmed[n], &cdb) {
                    Some(fast) => {
                        self.fast += 1;
                        let mut locked = self.lu.clone();
                        let had_ua = locked.has_unit_attention(nexus);
                        let plan = locked.plan(nexus, PORTS[n], &cdb, edtl);
                        prop_assert!(!had_ua, "lock-free plan with a unit attention pending");
                        prop_assert_eq!(&fast, &plan, "lock-free and locked plans differ");
                        let io =
                            matches!(fast, Plan::Read { .. } | Plan::Write { .. } | Plan::Good);
                        prop_assert!(io, "lock-free planner answered {:?}", fast);
                        prop_assert_eq!(locked.io_state(), self.lu.io_state());
                    }
                    None => {
                        let _ = self.lu.plan(nexus, PORTS[n], &cdb, edtl);
                        self.confirmed[n] = self.lu.confirmed_state(nexus, PORTS[n]);
                    }
                }
            }
            Op::Reset { n, kind } => {
                let kind = match kind {
                    0 => ResetKind::LogicalUnit,
                    1 => ResetKind::TargetWarm,
                    _ => ResetKind::TargetCold,
                };
                let issuer = (kind != ResetKind::LogicalUnit).then_some(n as u64);
                self.lu.reset(kind, issuer);
            }
            Op::Relogin { n } => {
                self.lu.nexus_lost(n as u64);
                self.lu.nexus_added(n as u64, PORTS[n]);
            }
            Op::Mode { n, swp, wce } => {
                mode_select(&mut self.lu, n, 0x0A, |p| {
                    p[4] = (p[4] & !0x08) | if swp { 0x08 } else { 0 };
                });
                mode_select(&mut self.lu, n, 0x08, |p| {
                    p[2] = (p[2] & !0x04) | if wce { 0x04 } else { 0 };
                });
            }
            Op::Prout {
                n,
                sa,
                pr_type,
                key,
                sa_key,
            } => {
                let mut cdb = [0u8; 16];
                cdb[0] = 0x5F;
                cdb[1] = sa;
                cdb[2] = pr_type;
                cdb[8] = 24;
                if let Plan::NeedParameterData { then, .. } =
                    self.lu.plan(n as u64, PORTS[n], &cdb, 24)
                {
                    let mut d = [0u8; 24];
                    d[..8].copy_from_slice(&key.to_be_bytes());
                    d[8..16].copy_from_slice(&sa_key.to_be_bytes());
                    let _ = self.lu.with_parameter_data(n as u64, then, &d);
                }
            }
        }
        // The owner publishes whenever it lets go of the lock.
        self.publish();
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn lock_free_plans_agree_with_locked(ops in prop::collection::vec(op(), 1..120)) {
        let mut m = Model::new();
        for op in &ops {
            m.apply(op)?;
        }
    }
}

/// The lock-free path is taken at all, and gives up as soon as a unit
/// attention is raised for the nexus, which its next command then gets.
#[test]
fn unit_attention_after_fast_plans_is_reported_first() {
    let mut m = Model::new();
    let read = rw_cdb(0x28, 8, 8, 0, 0);
    // First command: the power-on UA, through the lock, which confirms
    // that nothing more is pending; the next READs go lock-free.
    m.apply(&Op::Cmd {
        n: 0,
        cdb: read,
        edtl: 4096,
    })
    .unwrap();
    assert_eq!(m.fast, 0);
    for _ in 0..3 {
        m.apply(&Op::Cmd {
            n: 0,
            cdb: read,
            edtl: 4096,
        })
        .unwrap();
    }
    assert_eq!(m.fast, 3);
    // Nexus 2 resets the LU: nexus 0's next READ takes the lock and gets
    // the BUS DEVICE RESET unit attention.
    m.apply(&Op::Reset { n: 2, kind: 0 }).unwrap();
    assert!(m.planner.plan(m.published, m.confirmed[0], &read).is_none());
    let p = m.lu.plan(0, PORTS[0], &read, 4096);
    assert!(matches!(p, Plan::Check(s) if s.asc == 0x29), "{p:?}");
    // A persistent reservation stops the lock-free path for everyone.
    m.confirmed[0] = m.lu.confirmed_state(0, PORTS[0]);
    m.publish();
    assert!(m.planner.plan(m.published, m.confirmed[0], &read).is_some());
    for _ in 0..2 {
        // Nexus 1's power-on and reset unit attentions.
        m.apply(&Op::Cmd {
            n: 1,
            cdb: [0; 16],
            edtl: 0,
        })
        .unwrap();
    }
    m.apply(&Op::Prout {
        n: 1,
        sa: 0,
        pr_type: 0,
        key: 0,
        sa_key: 7,
    })
    .unwrap();
    m.apply(&Op::Prout {
        n: 1,
        sa: 1,
        pr_type: 3,
        key: 7,
        sa_key: 0,
    })
    .unwrap();
    assert!(!m.lu.io_state().eligible());
    assert!(m
        .planner
        .plan(m.published, m.lu.io_state(), &read)
        .is_none());
}

/// A failover moves this port's ALUA state at run time while the
/// planner's copy of the unit's info keeps the old groups: once the port
/// is Standby, the published word is not eligible and every READ/WRITE
/// goes to the locked planner, which refuses it (04/0B) — even for a nexus
/// that has consumed the ASYMMETRIC ACCESS STATE CHANGED unit attention
/// and confirmed the new word.
#[test]
fn a_port_moved_to_standby_plans_nothing_lock_free() {
    use zctarget_protocol::scsi::{AluaState, PortGroup};
    let group = |state| {
        vec![PortGroup {
            id: 1,
            state,
            preferred: false,
            relative_ports: vec![1],
        }]
    };
    let mut info = LunInfo::new(0, BLOCKS, 512);
    info.relative_port = 1;
    info.target_port_group = 1;
    info.target_port_groups = group(AluaState::ActiveOptimized);
    let mut lu = LogicalUnit::new(info);
    let planner = lu.io_planner();
    let read = rw_cdb(0x28, 0, 1, 0, 0);
    // Login, consume the power-on unit attention, confirm the word.
    let _ = lu.plan(1, PORTS[0], &read, 512);
    let _ = lu.plan(1, PORTS[0], &read, 512);
    let confirmed = lu.confirmed_state(1, PORTS[0]);
    assert!(
        planner.plan(lu.io_state(), confirmed, &read).is_some(),
        "Active/optimized: planned lock-free"
    );
    assert!(lu.set_port_groups(group(AluaState::Standby)));
    // The unit attention first, under the lock; then the nexus confirms.
    let _ = lu.plan(1, PORTS[0], &read, 512);
    let confirmed = lu.confirmed_state(1, PORTS[0]);
    assert_eq!(
        planner.plan(lu.io_state(), confirmed, &read),
        None,
        "Standby: never planned lock-free"
    );
    match lu.plan(1, PORTS[0], &read, 512) {
        Plan::Check(sense) => {
            assert_eq!((sense.key, sense.asc, sense.ascq), (0x02, 0x04, 0x0B));
        }
        other => panic!("Standby READ planned {other:?}"),
    }
}
