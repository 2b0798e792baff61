//! Running the system tools (`ip`, `iptables`, `tc`) with errors that show the command line
//! and what the tool said.

use std::process::Command;

/// Runs `program args...`; `Err` names the command and carries its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program).args(args).output().map_err(|e| {
        format!("cannot run `{program}`: {e} (is it installed and on PATH? the runner needs iproute2 and iptables)")
    })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Runs a command inside a network namespace.
pub fn in_netns(ns: &str, program: &str, args: &[&str]) -> Result<String, String> {
    let mut full = vec!["netns", "exec", ns, program];
    full.extend_from_slice(args);
    run("ip", &full)
}
