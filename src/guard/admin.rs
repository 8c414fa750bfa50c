//! `rtb safe --list`, `--show ID`, `--forget ID`: what the guard holds, as
//! text for people or JSON for programs. Read-only except `--forget`.

use serde_json::{json, Value};

use super::{fmt_ms, rfc3339_ms, Forgot, Record, State, Store};
use crate::error::{code, Error, Outcome};

/// running, expired (its owner lost it) or done.
fn state_name(r: &Record) -> &'static str {
    match r.state {
        State::Running if !r.live => "expired",
        s => s.as_str(),
    }
}

fn to_json(r: &Record) -> Value {
    let mut v = json!({
        "id": r.id,
        "state": state_name(r),
        "fence": r.fence,
        "host": r.host,
        "pid": r.pid,
        "since": rfc3339_ms(r.started_ms),
        "updated": rfc3339_ms(r.updated_ms),
        "lease_until": (r.state == State::Running).then(|| rfc3339_ms(r.lease_until_ms)),
        "command": r.command,
        "exit_status": r.exit_status,
        "output_bytes": r.output_len,
        "output_cut": r.output_cut,
    });
    if let Some(out) = &r.output {
        v["output"] = Value::String(String::from_utf8_lossy(out).into_owned());
    }
    v
}

fn print(text: &str) -> Result<(), Error> {
    crate::write_stdout(text.as_bytes())
}

pub async fn list<S: Store>(store: &S, json: bool) -> Outcome {
    let recs = store.list().await?;
    if json {
        let all: Vec<Value> = recs.iter().map(to_json).collect();
        print(&format!("{}\n", Value::Array(all)))?;
        return Ok(code::OK);
    }
    let rows: Vec<[String; 7]> = recs
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                state_name(r).to_string(),
                fmt_ms(r.started_ms),
                r.host.clone(),
                r.pid.to_string(),
                r.exit_status.map(|c| c.to_string()).unwrap_or("-".into()),
                r.command.clone(),
            ]
        })
        .collect();
    let head = ["ID", "STATE", "SINCE", "HOST", "PID", "EXIT", "COMMAND"].map(String::from);
    let mut width = [0usize; 7];
    for row in std::iter::once(&head).chain(&rows) {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&head).chain(&rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = width[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    print(&out)?;
    Ok(code::OK)
}

pub async fn show<S: Store>(store: &S, id: &str, json: bool) -> Outcome {
    let Some(r) = store.get(id).await? else {
        return Err(Error::Failed(format!("{id} is not recorded")));
    };
    if json {
        print(&format!("{}\n", to_json(&r)))?;
        return Ok(code::OK);
    }
    let mut out = format!(
        "id:      {}\nstate:   {}\nfence:   {}\nsince:   {}\nupdated: {}\nhost:    {}\npid:     {}\n",
        r.id,
        state_name(&r),
        r.fence,
        fmt_ms(r.started_ms),
        fmt_ms(r.updated_ms),
        r.host,
        r.pid
    );
    if r.state == State::Running {
        out.push_str(&format!("lease:   until {}\n", fmt_ms(r.lease_until_ms)));
    }
    out.push_str(&format!(
        "command: {}\n",
        if r.command.is_empty() {
            "(none)"
        } else {
            &r.command
        }
    ));
    if let Some(c) = r.exit_status {
        out.push_str(&format!("exit:    {c}\n"));
    }
    if r.output_len > 0 {
        out.push_str(&format!(
            "output:  {} bytes stored{}\n",
            r.output_len,
            if r.output_cut { " (cut at 1 MiB)" } else { "" }
        ));
    }
    print(&out)?;
    Ok(code::OK)
}

pub async fn forget<S: Store>(store: &S, id: &str) -> Outcome {
    match store.forget(id).await? {
        Forgot::Forgotten => {
            tracing::info!(id, "Forgot {id}: it can be done again");
            Ok(code::OK)
        }
        Forgot::NotRecorded => {
            tracing::info!(id, "{id} is not recorded (nothing to forget)");
            Ok(code::OK)
        }
        Forgot::Busy(r) => Err(Error::InProgress(format!(
            "{id} is in progress elsewhere ({}): not forgetting it",
            r.whereabouts()
        ))),
    }
}
