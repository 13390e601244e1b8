//! Text Requests in full feature phase (RFC 7143 §6.2, §12.3, Appendix
//! C): SendTargets and the keys that may or may not be renegotiated after
//! login.

use super::params::{
    classify, encode_pairs, split_pairs, KeyClass, LoginParams, SessionType, MAX_LENGTH,
    MIN_LENGTH, NOT_UNDERSTOOD, REJECT,
};
use super::text::TextError;

/// A target as SendTargets reports it: its name and its portals, each
/// `address:port,tpgt` (IPv6 addresses in brackets).
pub type TargetPortals = (String, Vec<String>);

/// Answers a Text Request in full feature phase (RFC 7143 §6.2, §12.3,
/// Appendix C): `SendTargets=All` (discovery sessions only) lists every
/// target in `targets`, `SendTargets=<name>` that target, `SendTargets=`
/// (empty, normal sessions) the session's own target; each as
/// `TargetName=` followed by its `TargetAddress=` lines. The caller passes
/// only the targets the initiator may see.
///
/// MaxRecvDataSegmentLength may be redeclared (it updates `params`);
/// other known keys are answered `Reject` (they cannot change in full
/// feature phase), unknown keys `NotUnderstood`. Malformed text is an
/// error: the caller rejects the PDU. The caller splits an answer longer
/// than the initiator's MaxRecvDataSegmentLength over several Text
/// Responses.
pub fn text_response(
    params: &mut LoginParams,
    request_text: &[u8],
    targets: &[TargetPortals],
) -> Result<Vec<u8>, TextError> {
    let pairs = split_pairs(request_text)?;
    let mut out: Vec<(String, String)> = Vec::new();
    for (key, value) in pairs {
        match key {
            "SendTargets" => send_targets(params, value, targets, &mut out),
            "MaxRecvDataSegmentLength" => {
                match super::chap::parse_number(value)
                    .filter(|n| (u64::from(MIN_LENGTH)..=u64::from(MAX_LENGTH)).contains(n))
                    .and_then(|n| u32::try_from(n).ok())
                {
                    Some(n) => params.connection.initiator_mrdsl = n,
                    None => out.push((key.to_owned(), REJECT.to_owned())),
                }
            }
            // Answers to keys we never offered need no answer.
            _ if matches!(value, "NotUnderstood" | "Irrelevant" | "Reject") => {}
            _ => {
                let answer = match classify(key) {
                    KeyClass::Operational if is_known_key(key) => REJECT,
                    KeyClass::Operational => NOT_UNDERSTOOD,
                    KeyClass::TargetOnly | KeyClass::Declaration | KeyClass::Security => REJECT,
                };
                out.push((key.to_owned(), answer.to_owned()));
            }
        }
    }
    Ok(encode_pairs(&out))
}

fn is_known_key(key: &str) -> bool {
    matches!(
        key,
        "HeaderDigest"
            | "DataDigest"
            | "MaxConnections"
            | "InitialR2T"
            | "ImmediateData"
            | "MaxBurstLength"
            | "FirstBurstLength"
            | "DefaultTime2Wait"
            | "DefaultTime2Retain"
            | "MaxOutstandingR2T"
            | "DataPDUInOrder"
            | "DataSequenceInOrder"
            | "ErrorRecoveryLevel"
            | "IFMarker"
            | "OFMarker"
            | "IFMarkInt"
            | "OFMarkInt"
            | "TaskReporting"
            | "iSCSIProtocolLevel"
            | "RDMAExtensions"
    )
}

fn send_targets(
    params: &LoginParams,
    value: &str,
    targets: &[TargetPortals],
    out: &mut Vec<(String, String)>,
) {
    let discovery = params.session.session_type == SessionType::Discovery;
    let selected: Vec<&TargetPortals> = match value {
        "All" if discovery => targets.iter().collect(),
        "All" => {
            out.push(("SendTargets".to_owned(), REJECT.to_owned()));
            return;
        }
        "" => match (&params.session.target_name, discovery) {
            (Some(own), false) => targets.iter().filter(|(n, _)| n == own).collect(),
            _ => {
                out.push(("SendTargets".to_owned(), REJECT.to_owned()));
                return;
            }
        },
        name => targets.iter().filter(|(n, _)| n == name).collect(),
    };
    for (name, portals) in selected {
        if name.contains('\0') {
            continue;
        }
        out.push(("TargetName".to_owned(), name.clone()));
        for p in portals.iter().filter(|p| !p.contains('\0')) {
            out.push(("TargetAddress".to_owned(), p.clone()));
        }
    }
}
