//! Syntax checks for iSCSI names (IQN/EUI/NAA) and NVMe Qualified Names.
//!
//! Both return `Err(reason)` with a sentence fragment meant to follow the
//! quoted name, e.g. "`iqn.foo` is not a valid iSCSI name: REASON".

/// Longest iSCSI name (RFC 7143 §4.2.7.1) and NQN (NVMe Base Spec §4.7), in bytes.
pub const MAX_NAME_LEN: usize = 223;

/// The well-known discovery NQN, which cannot name a regular subsystem.
pub const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";

/// Check an iSCSI name: `iqn.YYYY-MM.reversed.domain[:anything]`, `eui.` +
/// 16 hex digits, or `naa.` + 16 or 32 hex digits (RFC 7143 §4.2.7).
///
/// `iqn.` names are compared after stringprep lowercasing (RFC 3722), so
/// upper-case letters are rejected rather than silently normalised; only the
/// ASCII subset `a-z 0-9 - . :` is supported.
pub fn check_iscsi_name(name: &str) -> Result<(), String> {
    check_len(name)?;
    if let Some(rest) = name.strip_prefix("iqn.") {
        check_iqn(rest)
    } else if let Some(hex) = name.strip_prefix("eui.") {
        check_hex(hex, &[16], "`eui.` must be followed by 16 hex digits")
    } else if let Some(hex) = name.strip_prefix("naa.") {
        check_hex(
            hex,
            &[16, 32],
            "`naa.` must be followed by 16 or 32 hex digits",
        )
    } else {
        Err(
            "must start with `iqn.`, `eui.` or `naa.` (e.g. `iqn.2026-11.com.example:disk1`)"
                .into(),
        )
    }
}

/// Check an NVMe Qualified Name: `nqn.YYYY-MM.reverse.domain:user-string`, or
/// the UUID form `nqn.2014-08.org.nvmexpress:uuid:xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
/// At most 223 bytes; the discovery NQN is rejected.
pub fn check_nqn(name: &str) -> Result<(), String> {
    check_len(name)?;
    if name == DISCOVERY_NQN {
        return Err("is the well-known discovery NQN and cannot name a subsystem or host".into());
    }
    let Some(rest) = name.strip_prefix("nqn.") else {
        return Err("must start with `nqn.` (e.g. `nqn.2026-11.com.example:disk1`)".into());
    };
    let after_date = check_date(rest)?;
    let Some((domain, user)) = after_date.split_once(':') else {
        return Err(
            "needs `:` and a string chosen by the naming authority after the domain \
                    (e.g. `nqn.2026-11.com.example:disk1`)"
                .into(),
        );
    };
    check_domain(domain, |c| c.is_ascii_alphanumeric() || c == '-')?;
    if user.is_empty() {
        return Err("nothing follows the `:`".into());
    }
    if let Some(c) = user.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "contains {c:?}; whitespace and control characters are not allowed"
        ));
    }
    if &rest[..7] == "2014-08" && domain == "org.nvmexpress" {
        let uuid = user.strip_prefix("uuid:").ok_or(
            "the `nqn.2014-08.org.nvmexpress` authority is reserved for the \
             `nqn.2014-08.org.nvmexpress:uuid:<UUID>` form",
        )?;
        check_uuid(uuid)?;
    }
    Ok(())
}

fn check_len(name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "is {} bytes long; the limit is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    Ok(())
}

fn check_iqn(rest: &str) -> Result<(), String> {
    if let Some(c) = rest.chars().find(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "contains upper-case `{c}`; iSCSI names are case-insensitive and must be written in lower case"
        ));
    }
    if let Some(c) = rest
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':')))
    {
        return Err(format!(
            "contains {c:?}; only a-z, 0-9, `-`, `.` and `:` are allowed"
        ));
    }
    let after_date = check_date(rest)?;
    let (domain, suffix) = match after_date.split_once(':') {
        Some((d, s)) => (d, Some(s)),
        None => (after_date, None),
    };
    check_domain(domain, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
    })?;
    if suffix == Some("") {
        return Err("nothing follows the `:`".into());
    }
    Ok(())
}

/// Check the `YYYY-MM.` part and return what follows the dot.
fn check_date(rest: &str) -> Result<&str, String> {
    let b = rest.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let well_formed = b.len() >= 8 && digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'.';
    // Indexing below is in bounds and on char boundaries: all 8 bytes are ASCII.
    if !well_formed || !matches!(rest[5..7].parse::<u8>(), Ok(1..=12)) {
        return Err("the type prefix must be followed by a date `YYYY-MM.` (month 01-12)".into());
    }
    Ok(&rest[8..])
}

fn check_domain(domain: &str, allowed: impl Fn(char) -> bool) -> Result<(), String> {
    if domain.is_empty() {
        return Err(
            "the date must be followed by the naming authority's reversed domain name".into(),
        );
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(format!(
                "reversed domain name `{domain}` has an empty label"
            ));
        }
        if let Some(c) = label.chars().find(|&c| !allowed(c)) {
            return Err(format!("reversed domain name `{domain}` contains {c:?}"));
        }
    }
    Ok(())
}

fn check_hex(hex: &str, lens: &[usize], why: &str) -> Result<(), String> {
    if lens.contains(&hex.len()) && hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(why.into())
    }
}

fn check_uuid(uuid: &str) -> Result<(), String> {
    let groups: Vec<&str> = uuid.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lens == [8, 4, 4, 4, 12]
        && groups
            .iter()
            .all(|g| g.bytes().all(|c| c.is_ascii_hexdigit()))
    {
        Ok(())
    } else {
        Err(format!(
            "`{uuid}` is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iscsi_names() {
        for ok in [
            "iqn.2026-11.io.zctarget:vol0",
            "iqn.2026-11.io.zctarget",
            "iqn.1991-05.com.microsoft:host-1.example.com",
            "iqn.2001-04.com.example:storage:diskarrays-sn-a8675309",
            "eui.02004567A425678D",
            "naa.52004567ba64678d",
            "naa.62004567BA64678D0123456789ABCDEF",
        ] {
            assert_eq!(check_iscsi_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "iqn",
            "iqn.2026-13.io.zctarget",
            "iqn.26-11.io.zctarget",
            "iqn.2026-11",
            "iqn.2026-11.",
            "iqn.2026-11.io..zctarget",
            "iqn.2026-11.io.zctarget:",
            "iqn.2026-11.IO.zctarget",
            "iqn.2026-11.io.zctarget:vol 0",
            "iqn.2026-11.io.zc_target",
            "IQN.2026-11.io.zctarget",
            "eui.0200",
            "eui.02004567A425678G",
            "naa.0123",
            "foo.bar",
        ] {
            assert!(check_iscsi_name(bad).is_err(), "{bad} should be rejected");
        }
        let long = format!("iqn.2026-11.io.zctarget:{}", "a".repeat(200));
        assert!(check_iscsi_name(&long)
            .unwrap_err()
            .contains("limit is 223"));
    }

    #[test]
    fn nvme_names() {
        for ok in [
            "nqn.2026-11.io.zctarget:vol0",
            "nqn.2014-08.org.nvmexpress:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
            "nqn.2014-08.com.example:nvme:nvm-subsystem-sn-d78432",
            "nqn.2026-11.io.ZcTarget:Vol_0",
        ] {
            assert_eq!(check_nqn(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "nqn.2026-11.io.zctarget",
            "nqn.2026-11.io.zctarget:",
            "nqn.2026-00.io.zctarget:x",
            "nqn.2026-11..io:x",
            "nqn.2026-11.io.zctarget:a b",
            "nqn.2014-08.org.nvmexpress:uuid:not-a-uuid",
            "nqn.2014-08.org.nvmexpress:foo",
            DISCOVERY_NQN,
            "iqn.2026-11.io.zctarget:vol0",
        ] {
            assert!(check_nqn(bad).is_err(), "{bad} should be rejected");
        }
        let long = format!("nqn.2026-11.io.zctarget:{}", "a".repeat(200));
        assert!(check_nqn(&long).is_err());
        let max = format!("nqn.2026-11.io.zctarget:{}", "a".repeat(223 - 24));
        assert_eq!(max.len(), 223);
        assert_eq!(check_nqn(&max), Ok(()));
    }
}
