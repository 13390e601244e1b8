//! The keys the first Login Request declares for the whole login —
//! `InitiatorName`, `TargetName`, `SessionType` (RFC 7143 §6.1, §13.4-
//! §13.6, §13.21) — checked against the caller's policy (target, ACL,
//! whether authentication is required), and their repetition in later
//! requests, accepted only unchanged.

use super::{lookup, Auth, Declared, LoginFsm, LoginPolicy, MAX_NAME_LEN};
use crate::iscsi::login::{LoginRequest, LoginStatus, Stage};
use crate::iscsi::params::SessionType;

impl LoginFsm {
    pub(super) fn first_request(
        &mut self,
        req: &LoginRequest,
        pairs: &[(&str, &str)],
        policy: &dyn LoginPolicy,
        out: &mut Vec<(String, String)>,
    ) -> Result<(), LoginStatus> {
        let get = |key: &str| lookup(pairs, key);
        let initiator_name = get("InitiatorName")
            .filter(|n| !n.is_empty())
            .ok_or(LoginStatus::MISSING_PARAMETER)?;
        if initiator_name.len() > MAX_NAME_LEN {
            return Err(LoginStatus::INITIATOR_ERROR);
        }
        let session_type = match get("SessionType") {
            None => SessionType::Normal,
            Some(v) => SessionType::from_wire(v).ok_or(LoginStatus::SESSION_TYPE_NOT_SUPPORTED)?,
        };
        let target_name = get("TargetName").filter(|n| !n.is_empty());
        if target_name.is_some_and(|n| n.len() > MAX_NAME_LEN) {
            return Err(LoginStatus::INITIATOR_ERROR);
        }
        let auth = match session_type {
            SessionType::Normal => {
                let name = target_name.ok_or(LoginStatus::MISSING_PARAMETER)?;
                let auth = policy.target(name).ok_or(LoginStatus::NOT_FOUND)?;
                if !policy.initiator_allowed(name, initiator_name) {
                    return Err(LoginStatus::AUTHORIZATION_FAILURE);
                }
                auth
            }
            SessionType::Discovery => policy.discovery_auth().unwrap_or_default(),
        };
        if auth.chap.is_none() {
            self.auth = Auth::NoneAgreed;
        } else if req.current_stage != Stage::SecurityNegotiation {
            // The initiator skipped the security stage the target requires.
            return Err(LoginStatus::AUTHENTICATION_FAILURE);
        }
        let params = self.negotiator.params_mut();
        params.session.session_type = session_type;
        params.session.initiator_name = initiator_name.to_owned();
        params.session.target_name = target_name.map(str::to_owned);
        if auth.alias.is_some() {
            params.session.target_alias.clone_from(&auth.alias);
        }
        if session_type == SessionType::Normal {
            // §13.9: sent in the first response of a normal session.
            let tpgt = params.session.target_portal_group_tag;
            out.push(("TargetPortalGroupTag".to_owned(), tpgt.to_string()));
            if let Some(alias) = &params.session.target_alias {
                out.push(("TargetAlias".to_owned(), alias.clone()));
            }
        }
        self.target_auth = auth;
        self.declared = Some(Declared {
            initiator_name: initiator_name.to_owned(),
            target_name: target_name.map(str::to_owned),
            session_type,
            isid: req.isid,
            tsih: req.tsih,
            cid: req.cid,
        });
        Ok(())
    }

    pub(super) fn check_redeclared(&self, pairs: &[(&str, &str)]) -> Result<(), LoginStatus> {
        let get = |key: &str| lookup(pairs, key);
        let Some(d) = &self.declared else {
            return Ok(());
        };
        let same_initiator = get("InitiatorName")
            .filter(|v| *v != d.initiator_name)
            .is_none();
        let same_target = get("TargetName")
            .filter(|v| Some(*v) != d.target_name.as_deref())
            .is_none();
        let same_type = get("SessionType")
            .filter(|v| SessionType::from_wire(v) != Some(d.session_type))
            .is_none();
        if same_initiator && same_target && same_type {
            Ok(())
        } else {
            Err(LoginStatus::INITIATOR_ERROR)
        }
    }
}
