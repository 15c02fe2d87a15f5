//! `client`: the reference client from the shell.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::Config;

#[derive(Args)]
pub struct ClientArgs {
    /// Daemon URL, e.g. http://127.0.0.1:8080
    #[arg(long)]
    url: String,
    #[arg(long)]
    terminal: String,
    /// File holding the terminal's password (one line).
    #[arg(long)]
    password_file: PathBuf,
    /// The root public key PEM (`cardswitch keys root-public`).
    #[arg(long)]
    root_public: PathBuf,
    /// Operation: query, member, history, register, debit, topup, ...
    op: String,
    #[arg(long)]
    amount: Option<String>,
    #[arg(long)]
    order_no: Option<String>,
    #[arg(long)]
    operator: Option<String>,
    #[arg(long)]
    attr1: Option<String>,
    #[arg(long)]
    attr2: Option<String>,
    #[arg(long)]
    json: bool,
}

pub async fn client_command(a: ClientArgs, config: &Config) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let password = zeroize::Zeroizing::new(
        std::fs::read_to_string(&a.password_file)
            .with_context(|| format!("cannot read {}", a.password_file.display()))?,
    );
    let password = zeroize::Zeroizing::new(password.trim_end_matches(['\r', '\n']).to_owned());
    let pem = std::fs::read_to_string(&a.root_public)
        .with_context(|| format!("cannot read {}", a.root_public.display()))?;
    let root = crate::crypto::rsa::RsaPublic::from_pem(&pem)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.root_public.display()))?;
    let inner = crate::client::inner_form(
        &a.op,
        a.amount.as_deref(),
        a.order_no.as_deref(),
        a.operator.as_deref(),
        a.attr1.as_deref(),
        a.attr2.as_deref(),
    )?;
    let req = crate::client::CliRequest {
        url: a.url,
        terminal: a.terminal,
        password,
        root,
        inner,
        data_dir: config.data_dir.clone(),
    };
    let out = crate::client::run_cli(&req).await?;
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = out
        .rows
        .0
        .iter()
        .map(|r| {
            r.0.iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect()
        })
        .collect();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"errno": out.errno.code(), "errmsg": out.errno.message(),
                "field": out.field, "rows": rows})
        );
    } else if out.errno == crate::protocol::Errno::Ok {
        for (i, r) in out.rows.0.iter().enumerate() {
            if i > 0 {
                println!();
            }
            for (k, v) in &r.0 {
                println!("{k}={v}");
            }
        }
    }
    if out.errno != crate::protocol::Errno::Ok {
        match &out.field {
            Some(f) => eprintln!(
                "errno {}: {} (field {f})",
                out.errno.code(),
                out.errno.message()
            ),
            None => eprintln!("errno {}: {}", out.errno.code(), out.errno.message()),
        }
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}
