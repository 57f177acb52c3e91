//! `latchkey explain`: why a credential is allowed or denied, from a running
//! server's `CheckService/Explain`, as a table. The credential is read from
//! stdin and the admin token from `LATCHKEY_ADMIN_TOKEN` or a file, never
//! from the command line (where `ps` and shell histories would show them).

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::fail;
use crate::crypto::secret::Secret;
use crate::pb;

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The server's gRPC address, e.g. `http://127.0.0.1:50051` (plaintext h2c).
    #[arg(long, env = "LATCHKEY_SERVER")]
    pub server: String,
    /// Read the credential to explain from the first line of stdin.
    /// Required: a credential is never taken from the command line.
    #[arg(long, required = true)]
    pub credential_stdin: bool,
    /// The permission the call needs; repeat to ask for several at once
    /// (allowed only if every one is granted). None: authentication only.
    #[arg(long = "permission")]
    pub permissions: Vec<String>,
    /// The mode the call requires: `test` or `live`.
    #[arg(long)]
    pub mode: Option<String>,
    /// The client address the call comes from.
    #[arg(long)]
    pub client_ip: Option<String>,
    /// The browser Origin of the call.
    #[arg(long)]
    pub origin: Option<String>,
    /// A file holding the admin token (`admin.check.explain`) [default:
    /// the `LATCHKEY_ADMIN_TOKEN` variable].
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
}

/// The one line read, without its line ending; nothing else is trimmed
/// (Check never cleans a credential into working either).
fn first_line(mut input: impl BufRead) -> Result<Secret<String>, String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| format!("--credential-stdin: cannot read stdin: {e}"))?;
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(Secret::new(line))
}

fn admin_token(file: Option<&PathBuf>) -> Result<Secret<String>, String> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("--admin-token-file: cannot read {}: {e}", path.display()))?
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
        None => std::env::var("LATCHKEY_ADMIN_TOKEN").unwrap_or_default(),
    };
    if token.is_empty() {
        return Err(
            "an admin token is needed: set LATCHKEY_ADMIN_TOKEN or pass --admin-token-file".into(),
        );
    }
    Ok(Secret::new(token))
}

fn request(args: &ExplainArgs, credential: &Secret<String>) -> Result<pb::ExplainRequest, String> {
    let mode = match args.mode.as_deref() {
        None => pb::Mode::Unspecified,
        Some("test") => pb::Mode::Test,
        Some("live") => pb::Mode::Live,
        Some(other) => return Err(format!("--mode: `{other}` is neither `test` nor `live`")),
    };
    Ok(pb::ExplainRequest {
        request: Some(pb::CheckRequest {
            credential: credential.expose().clone(),
            permission: args.permissions.first().cloned().unwrap_or_default(),
            mode: mode.into(),
            context: Some(pb::RequestContext {
                client_ip: args.client_ip.clone().unwrap_or_default(),
                origin: args.origin.clone().unwrap_or_default(),
                ..Default::default()
            }),
        }),
        what_if: (args.permissions.len() > 1).then(|| pb::WhatIf {
            permissions: args.permissions.clone(),
            ..Default::default()
        }),
    })
}

fn outcome(o: i32) -> &'static str {
    match pb::StepOutcome::try_from(o) {
        Ok(pb::StepOutcome::Passed) => "passed",
        Ok(pb::StepOutcome::Failed) => "FAILED",
        Ok(pb::StepOutcome::Skipped) => "skipped",
        _ => "?",
    }
}

fn reason(r: i32) -> &'static str {
    pb::Reason::try_from(r).map_or("?", |r| {
        r.as_str_name()
            .strip_prefix("REASON_")
            .unwrap_or(r.as_str_name())
    })
}

/// The answer as a table, then the decision and the cache's view.
pub fn table(r: &pb::ExplainResponse) -> String {
    let width = r
        .steps
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!("{:width$}  {:7}  DETAIL\n", "STEP", "OUTCOME");
    for s in &r.steps {
        out.push_str(&format!(
            "{:width$}  {:7}  {}\n",
            s.name,
            outcome(s.outcome),
            s.detail
        ));
    }
    if let Some(d) = &r.decision {
        let verdict = if d.allowed { "ALLOWED" } else { "DENIED" };
        out.push_str(&format!("\ndecision: {verdict} ({})", reason(d.reason)));
        if !d.message.is_empty() {
            out.push_str(&format!(": {}", d.message));
        }
        out.push('\n');
    }
    if let Some(c) = &r.cache {
        let state = match (c.cached, c.differs) {
            (false, _) => "not cached".to_owned(),
            (true, true) => format!("STALE, answers {}", reason(c.reason)),
            (true, false) => format!("same answer ({})", reason(c.reason)),
        };
        out.push_str(&format!("cache:    {state}: {}\n", c.detail));
    }
    out
}

/// Exit 0 when the credential would be allowed, 1 when denied, 2 on error.
pub async fn run(args: ExplainArgs) -> ExitCode {
    let credential = match first_line(std::io::stdin().lock()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let token = match admin_token(args.admin_token_file.as_ref()) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let req = match request(&args, &credential) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let mut req = tonic::Request::new(req);
    match format!("Bearer {}", token.expose()).parse() {
        Ok(value) => {
            req.metadata_mut().insert("authorization", value);
        }
        Err(_) => return fail("the admin token contains characters no token has"),
    }
    let channel = match tonic::transport::Endpoint::from_shared(args.server.clone()) {
        Ok(e) => e,
        Err(e) => return fail(format!("--server: {e}")),
    };
    let channel = match channel.connect().await {
        Ok(c) => c,
        Err(e) => return fail(format!("--server: cannot connect to {}: {e}", args.server)),
    };
    let mut client = pb::check_service_client::CheckServiceClient::new(channel);
    match client.explain(req).await {
        Ok(r) => {
            let r = r.into_inner();
            print!("{}", table(&r));
            if r.decision.is_some_and(|d| d.allowed) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(status) => fail(format!(
            "Explain failed: {:?}: {}",
            status.code(),
            status.message()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_line_ending_is_removed() {
        for (input, want) in [
            ("lk_test_sk_x\n", "lk_test_sk_x"),
            ("lk_test_sk_x\r\n", "lk_test_sk_x"),
            ("lk_test_sk_x", "lk_test_sk_x"),
            (" lk_test_sk_x \n", " lk_test_sk_x "),
        ] {
            assert_eq!(first_line(input.as_bytes()).unwrap().expose(), want);
        }
    }
}
