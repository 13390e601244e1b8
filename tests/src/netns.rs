//! Running the current test binary again inside a private network
//! namespace (`unshare --net`), where a test may change what it must not
//! change on the host: `optmem_max`, a qdisc on loopback.

/// Runs this test binary as `<exe> <args>` in a fresh network namespace
/// after `ip link set lo up && <setup>`, with `env=1` in its environment
/// (the inner tests' guard). Returns the inner run's stdout; `None`, after
/// printing why, when no such namespace can be had (`needs` says what the
/// namespace was for). Panics when the inner run failed.
pub fn rerun_in_netns(setup: &str, args: &str, env: &str, needs: &str) -> Option<String> {
    let exe = std::env::current_exe().expect("test binary");
    let script = format!(
        "ip link set lo up && {setup} && exec {} {args}",
        exe.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .env(env, "1")
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIPPED: cannot run unshare: {e}");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() && text.is_empty() {
        eprintln!(
            "SKIPPED: no private network namespace with {needs}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    assert!(
        out.status.success(),
        "inner tests failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(text)
}
