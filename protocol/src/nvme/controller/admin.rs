//! Admin command planning (Base 2.0 §5): Identify, Get Log Page, features,
//! asynchronous event requests, keep-alive, and the Fabrics commands on the
//! admin queue.

use super::*;

impl Controller {
    // ----- Admin commands --------------------------------------------------

    /// Plans an admin-queue command. `data_out` is the host-to-controller
    /// data the command carried (in-capsule or fetched with R2T), empty for
    /// commands without data.
    pub fn plan_admin(&mut self, sqe: &Sqe, data_out: &[u8]) -> AdminPlan {
        if let Err(s) = sqe.check_flags() {
            return AdminPlan::status(s);
        }
        let dp = match sqe.data_pointer(self.in_capsule_limit(0)) {
            Ok(dp) => dp,
            Err(s) => return AdminPlan::status(s),
        };
        if sqe.is_fabrics() {
            return self.plan_fabrics(sqe, dp);
        }
        if self.host.is_none() || !self.is_ready() {
            return AdminPlan::status(Status::CMD_SEQ_ERROR.dnr());
        }
        let disc = self.cfg.is_discovery;
        match sqe.opcode {
            admin_opcode::IDENTIFY => self.identify(sqe, dp),
            admin_opcode::GET_LOG_PAGE => self.get_log_page(sqe, dp),
            admin_opcode::SET_FEATURES | admin_opcode::GET_FEATURES => {
                self.features_cmd(sqe, dp, data_out)
            }
            admin_opcode::ASYNC_EVENT => self.async_event(sqe, dp),
            admin_opcode::KEEP_ALIVE => {
                if !dp.is_empty() {
                    return AdminPlan::status(Status::SGL_INVALID_DATA.dnr());
                }
                self.keep_alive();
                AdminPlan::ok(0)
            }
            // Abort: report "not aborted" (DW0 bit 0 = 1), as Base 2.0
            // §5.1 allows.
            admin_opcode::ABORT if !disc => {
                if !dp.is_empty() {
                    return AdminPlan::status(Status::SGL_INVALID_DATA.dnr());
                }
                AdminPlan::ok(1)
            }
            _ => AdminPlan::status(Status::INVALID_OPCODE.dnr()),
        }
    }

    fn plan_fabrics(&mut self, sqe: &Sqe, dp: DataPointer) -> AdminPlan {
        match FabricsCommand::parse(sqe) {
            FabricsCommand::PropertyGet { size8, offset } => {
                match self.property_get(size8, offset) {
                    Ok(v) => AdminPlan::Complete {
                        completion: Completion::success64(v),
                        data: None,
                    },
                    Err(s) => AdminPlan::status(s),
                }
            }
            FabricsCommand::PropertySet {
                size8,
                offset,
                value,
            } => {
                if self.host.is_none() {
                    return AdminPlan::status(Status::CMD_SEQ_ERROR.dnr());
                }
                if !dp.is_empty() {
                    return AdminPlan::status(Status::SGL_INVALID_DATA.dnr());
                }
                match self.property_set(size8, offset, value) {
                    Ok(()) => AdminPlan::ok(0),
                    Err(s) => AdminPlan::status(s),
                }
            }
            // A second Connect on a connected admin queue.
            FabricsCommand::Connect(_) => AdminPlan::status(Status::CMD_SEQ_ERROR.dnr()),
            // Disconnect applies to I/O queues only.
            FabricsCommand::Disconnect { .. } => AdminPlan::status(Status::INVALID_FIELD.dnr()),
            // AUTH_Send / AUTH_Receive are handled by the frontend before
            // planning (target/src/nvmf/auth.rs, protocol `nvme::auth`); a
            // controller used without it does not support authentication.
            FabricsCommand::AuthSend | FabricsCommand::AuthReceive | FabricsCommand::Unknown(_) => {
                AdminPlan::status(Status::INVALID_OPCODE.dnr())
            }
        }
    }

    /// Checks that a controller-to-host transfer is exactly `len` bytes
    /// (Linux checks the same: Data SGL Length Invalid otherwise).
    fn expect_in(dp: DataPointer, len: usize) -> Result<(), Status> {
        if dp.len() as usize != len || matches!(dp, DataPointer::InCapsule { .. }) {
            return Err(Status::SGL_INVALID_DATA.dnr());
        }
        Ok(())
    }

    fn identify(&self, sqe: &Sqe, dp: DataPointer) -> AdminPlan {
        if let Err(s) = Self::expect_in(dp, IDENTIFY_DATA_LEN) {
            return AdminPlan::status(s);
        }
        let cns_v = sqe.cdw10 as u8;
        let csi = (sqe.cdw11 >> 24) as u8;
        if self.cfg.is_discovery && cns_v != cns::CONTROLLER {
            return AdminPlan::status(Status::INVALID_FIELD.dnr());
        }
        let nsid = sqe.nsid;
        let zeroed = || vec![0u8; IDENTIFY_DATA_LEN];
        let r: Result<Vec<u8>, Status> = match cns_v {
            cns::CONTROLLER => Ok(identify::controller(&self.cfg, self.nn(), self.vs())),
            cns::NAMESPACE => self
                .ns_or_zero(nsid)
                .map(|ns| ns.map_or_else(zeroed, identify::namespace)),
            cns::ACTIVE_NS_LIST | cns::CS_ACTIVE_NS_LIST => {
                if cns_v == cns::CS_ACTIVE_NS_LIST && csi != CSI_NVM {
                    Err(Status::INVALID_FIELD.dnr())
                } else if nsid >= 0xFFFF_FFFE {
                    Err(Status::INVALID_NS.dnr())
                } else {
                    Ok(identify::active_ns_list(
                        self.cfg.namespaces.iter().map(|n| n.nsid),
                        nsid,
                    ))
                }
            }
            cns::NS_DESC_LIST => self
                .namespace(nsid)
                .map(identify::ns_descriptors)
                .ok_or(Status::INVALID_NS.dnr()),
            cns::CS_NAMESPACE => {
                if csi != CSI_NVM {
                    Err(Status::INVALID_FIELD.dnr())
                } else {
                    // NVM-specific namespace data: nothing beyond defaults.
                    self.ns_or_zero(nsid).map(|_| zeroed())
                }
            }
            cns::CS_CONTROLLER => {
                if csi != CSI_NVM {
                    Err(Status::INVALID_FIELD.dnr())
                } else {
                    // Identify Controller, NVM: VSL/WZSL/WUSL/DMRL 0 = no limit.
                    Ok(zeroed())
                }
            }
            cns::CS_INDEPENDENT_NS => self
                .ns_or_zero(nsid)
                .map(|ns| ns.map_or_else(zeroed, identify::ns_cs_independent)),
            cns::IO_COMMAND_SETS => Ok(identify::io_command_sets()),
            _ => Err(Status::INVALID_FIELD.dnr()),
        };
        match r {
            Ok(d) => AdminPlan::data(d),
            Err(s) => AdminPlan::status(s),
        }
    }

    /// Base 2.0 §3.2.1.4: an active NSID gives its namespace, an allocated
    /// but inactive one (≤ NN) a zero-filled structure, anything else
    /// Invalid Namespace or Format.
    fn ns_or_zero(&self, nsid: u32) -> Result<Option<&NamespaceInfo>, Status> {
        if nsid == 0 || nsid == NSID_ALL {
            return Err(Status::INVALID_NS.dnr());
        }
        match self.namespace(nsid) {
            Some(ns) => Ok(Some(ns)),
            None if nsid <= self.nn() => Ok(None),
            None => Err(Status::INVALID_NS.dnr()),
        }
    }

    fn get_log_page(&mut self, sqe: &Sqe, dp: DataPointer) -> AdminPlan {
        let g = GetLogPage::from_sqe(sqe);
        let cap = self
            .cfg
            .max_transfer()
            .unwrap_or(ADMIN_DATA_CAP)
            .min(ADMIN_DATA_CAP);
        if g.len_bytes() > cap {
            return AdminPlan::status(Status::INVALID_FIELD.dnr());
        }
        let len = g.len_bytes() as usize;
        if let Err(s) = Self::expect_in(dp, len) {
            return AdminPlan::status(s);
        }
        let disc = self.cfg.is_discovery;
        let log = match (g.lid, disc) {
            (lid::DISCOVERY, true) => {
                let log = discovery::log_page(self.genctr, &self.discovery_entries);
                if !g.rae {
                    self.unmask(Aen::Discovery);
                }
                log
            }
            (lid::ERROR, false) => log_page::error_info(1),
            (lid::SMART, false) => {
                if sqe.nsid != 0 && sqe.nsid != NSID_ALL && self.namespace(sqe.nsid).is_none() {
                    return AdminPlan::status(Status::INVALID_FIELD.dnr());
                }
                log_page::smart(&self.health)
            }
            (lid::FW_SLOT, false) => log_page::firmware_slot(&self.cfg.firmware_rev),
            (lid::CHANGED_NS, false) => {
                let log = log_page::changed_ns(&self.changed_ns, self.changed_overflow);
                self.changed_ns.clear();
                self.changed_overflow = false;
                if !g.rae {
                    self.unmask(Aen::NsAttr);
                }
                log
            }
            (lid::CMD_EFFECTS, false) => log_page::command_effects(),
            (lid::ANA, false) => {
                let log = match &self.cfg.ana {
                    Some(a) => a.log_page(&self.cfg.namespaces, g.lsp & LSP_RGO != 0),
                    None => return AdminPlan::status(Status::INVALID_LOG_PAGE.dnr()),
                };
                if !g.rae {
                    self.unmask(Aen::AnaChange);
                }
                log
            }
            _ => return AdminPlan::status(Status::INVALID_LOG_PAGE.dnr()),
        };
        match log_page::window(&log, g.offset, len) {
            Ok(d) => AdminPlan::data(d),
            Err(s) => AdminPlan::status(s),
        }
    }

    fn features_cmd(&mut self, sqe: &Sqe, dp: DataPointer, _data_out: &[u8]) -> AdminPlan {
        // None of the supported features transfers data.
        if !dp.is_empty() {
            return AdminPlan::status(Status::INVALID_FIELD.dnr());
        }
        let lim = self.limits();
        let r = if sqe.opcode == admin_opcode::SET_FEATURES {
            self.features.set(sqe.cdw10, sqe.cdw11, &lim)
        } else {
            self.features.get(sqe.cdw10, &lim, self.cfg.kato_ms)
        };
        if r.is_ok() && sqe.opcode == admin_opcode::SET_FEATURES && sqe.cdw10 as u8 == fid::KATO {
            self.keep_alive();
        }
        match r {
            Ok(dw0) => AdminPlan::ok(dw0),
            Err(s) => AdminPlan::status(s),
        }
    }

    fn async_event(&mut self, sqe: &Sqe, dp: DataPointer) -> AdminPlan {
        if !dp.is_empty() {
            return AdminPlan::status(Status::SGL_INVALID_DATA.dnr());
        }
        if let Some(ev) = self.pending_events.pop_front() {
            return AdminPlan::ok(ev.dw0());
        }
        if self.parked_aers.len() >= usize::from(AER_LIMIT) {
            return AdminPlan::status(Status::ASYNC_LIMIT.dnr());
        }
        self.parked_aers.push_back(sqe.cid);
        AdminPlan::Park
    }
}
