//! `hosts` of `[[nvme_subsystems]]` with DH-HMAC-CHAP secrets: an entry
//! is a host NQN or `"*"`, or a table `{ nqn = "...", dhchap_key =
//! "DHHC-1:...", dhchap_ctrl_key = "...", dhchap_hashes = [...],
//! dhchap_dhgroups = [...] }`; `[[nvme_subsystems.host_keys]]` tables
//! (what the daemon writes back) hold the same.

use toml::Spanned;

use super::Checker;
use crate::dhchap::{check_secret, DHGROUPS, HASHES};
use crate::model::{NvmeHostKey, ANY};
use crate::names::check_nqn;
use crate::raw::{Names, RawHost, RawHostKey};

impl Checker<'_> {
    /// The subsystem's `hosts` names (defaults to `["*"]`) and the keyed
    /// hosts, from `hosts` entries and `host_keys` tables of `p`.
    pub(super) fn nvme_hosts(
        &mut self,
        hosts: Option<Vec<Spanned<RawHost>>>,
        host_keys: Option<Vec<Spanned<RawHostKey>>>,
        p: &str,
    ) -> (Vec<String>, Vec<NvmeHostKey>) {
        let mut names = Vec::new();
        let mut keys: Vec<NvmeHostKey> = Vec::new();
        let mut keyed = Vec::new();
        match hosts {
            None => names.push(ANY.to_owned()),
            Some(list) => {
                for (j, h) in list.into_iter().enumerate() {
                    let span = h.span();
                    let path = format!("{p}.hosts[{j}]");
                    match h.into_inner() {
                        RawHost::Name(n) => {
                            if n != ANY {
                                if let Err(why) = check_nqn(&n) {
                                    let msg = format!("`{n}` is not a valid host NQN (use \"*\" to allow any): {why}");
                                    self.err(span.clone(), &path, msg);
                                }
                            }
                            names.push(n);
                        }
                        RawHost::Keyed(k) => {
                            names.push(k.nqn.get_ref().clone());
                            keyed.push((span, path, k));
                        }
                    }
                }
            }
        }
        for (j, k) in host_keys.into_iter().flatten().enumerate() {
            let span = k.span();
            keyed.push((span, format!("{p}.host_keys[{j}]"), k.into_inner()));
        }
        for (span, path, k) in keyed {
            let nqn = k.nqn.get_ref().clone();
            if let Err(why) = check_nqn(&nqn) {
                let msg = format!("`{nqn}` is not a valid host NQN: {why}");
                self.err(k.nqn.span(), &format!("{path}.nqn"), msg);
            }
            if keys.iter().any(|o| o.nqn == nqn) {
                let msg = format!("host `{nqn}` has secrets twice");
                self.err(k.nqn.span(), &format!("{path}.nqn"), msg);
            }
            let Some(key) = k.dhchap_key else {
                self.err(
                    span,
                    &format!("{path}.dhchap_key"),
                    "a host table needs `dhchap_key` (a plain NQN string needs no table)".into(),
                );
                continue;
            };
            for (field, secret) in [
                ("dhchap_key", Some(&key)),
                ("dhchap_ctrl_key", k.dhchap_ctrl_key.as_ref()),
            ] {
                if let Some(Err(why)) = secret.map(|s| check_secret(s.get_ref())) {
                    let at = secret.map_or(span.clone(), Spanned::span);
                    self.err(
                        at,
                        &format!("{path}.{field}"),
                        format!("not a DH-HMAC-CHAP secret: {why}"),
                    );
                }
            }
            if let Some(c) = k
                .dhchap_ctrl_key
                .as_ref()
                .filter(|c| c.get_ref() == key.get_ref())
            {
                self.err(c.span(), &format!("{path}.dhchap_ctrl_key"), "must differ from `dhchap_key`: a secret that authenticates hosts must not authenticate the controller".into());
            }
            let dhchap_hashes = self.dhchap_names(k.dhchap_hashes, &path, "dhchap_hashes");
            let dhchap_dhgroups = self.dhchap_names(k.dhchap_dhgroups, &path, "dhchap_dhgroups");
            keys.push(NvmeHostKey {
                nqn,
                dhchap_key: key.into_inner(),
                dhchap_ctrl_key: k.dhchap_ctrl_key.map(Spanned::into_inner),
                dhchap_hashes,
                dhchap_dhgroups,
            });
        }
        (names, keys)
    }

    /// `dhchap_hashes` / `dhchap_dhgroups` of a subsystem.
    pub(super) fn dhchap_names(
        &mut self,
        list: Option<Names>,
        p: &str,
        field: &str,
    ) -> Vec<String> {
        let known: &[&str] = if field == "dhchap_hashes" {
            &HASHES
        } else {
            &DHGROUPS
        };
        list.into_iter()
            .flatten()
            .enumerate()
            .map(|(j, v)| {
                if !known.contains(&v.get_ref().as_str()) {
                    let msg = format!("unknown `{}` (one of {})", v.get_ref(), known.join(", "));
                    self.err(v.span(), &format!("{p}.{field}[{j}]"), msg);
                }
                v.into_inner()
            })
            .collect()
    }
}
