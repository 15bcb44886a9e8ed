//! The `webhook` commands: operators list, show, disable, enable and replay endpoints, and
//! re-encrypt every secret under the current key (the key rotation path). They work on the
//! database directly (`DATABASE_URL`), like the `tenant` commands; a running replica notices a
//! change at its next renewal of the endpoint's lease (a fifth of the lease, 5 s by default).

use chrono::SecondsFormat;

use super::Endpoints;
use super::store::EndpointRecord;
use crate::store::Store;

fn db_error(e: &crate::store::StoreError) -> String {
    format!("database: {}", crate::error::error_chain(e))
}

fn not_found(id: &str) -> String {
    format!(
        "webhook endpoint {} does not exist",
        crate::cli::terminal_safe(id)
    )
}

fn when(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map_or_else(
        || "-".to_owned(),
        |at| at.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

/// The endpoint as the API shows it (no secret), with its owner.
fn json_of(e: &EndpointRecord, head: i64) -> serde_json::Value {
    let mut v = serde_json::to_value(crate::routes::webhooks::Endpoint::of(e, head)).unwrap_or_default();
    v["client_id"] = serde_json::Value::from(e.client_id.clone());
    v
}

fn print_json(value: &serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| format!("could not write JSON: {e}"))?;
    // Line by line: a line break is not text a terminal must be kept from.
    for line in text.lines() {
        println!("{}", crate::cli::terminal_safe(line));
    }
    Ok(())
}

/// `webhook list`: every endpoint, of every integration.
pub async fn list(store: Store, json: bool) -> Result<(), String> {
    let endpoints = Endpoints::new(store.clone());
    let head = store.change_head().await.map_err(|e| db_error(&e))?;
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = endpoints
            .list(None, after.as_deref(), 500)
            .await
            .map_err(|e| db_error(&e))?;
        let more = page.len() == 500;
        after = page.last().map(|e| e.id.clone());
        all.extend(page);
        if !more {
            break;
        }
    }
    if json {
        return print_json(&serde_json::Value::Array(
            all.iter().map(|e| json_of(e, head)).collect(),
        ));
    }
    let say = |line: String| println!("{}", crate::cli::terminal_safe(&line));
    say(format!(
        "{:<36} {:<20} {:<9} {:>8} {:>8}  URL",
        "ID", "CLIENT", "STATUS", "POSITION", "PENDING"
    ));
    for e in &all {
        say(format!(
            "{:<36} {:<20} {:<9} {:>8} {:>8}  {}",
            e.id,
            e.client_id,
            e.status,
            e.position,
            (head - e.position).max(0),
            e.url
        ));
    }
    Ok(())
}

/// `webhook show <id>`.
pub async fn show(store: Store, id: &str, json: bool) -> Result<(), String> {
    let head = store.change_head().await.map_err(|e| db_error(&e))?;
    let e = Endpoints::new(store)
        .get(id)
        .await
        .map_err(|e| db_error(&e))?
        .ok_or_else(|| not_found(id))?;
    if json {
        return print_json(&json_of(&e, head));
    }
    let say = |line: String| println!("{}", crate::cli::terminal_safe(&line));
    say(format!("endpoint      {}", e.id));
    say(format!("client        {}", e.client_id));
    say(format!("url           {}", e.url));
    say(format!("status        {}", e.status));
    say(format!(
        "position      {} ({} pending)",
        e.position,
        (head - e.position).max(0)
    ));
    say(format!("failures      {}", e.failures));
    say(format!(
        "last attempt  {} status {} {}",
        when(e.last_attempt_at),
        e.last_status_code
            .map_or_else(|| "-".to_owned(), |c| c.to_string()),
        e.last_error.as_deref().unwrap_or("")
    ));
    say(format!("next attempt  {}", when(e.next_attempt_at)));
    if let Some(reason) = &e.disabled_reason {
        say(format!("disabled      {reason}"));
    }
    say(format!(
        "lease         {} until {}",
        e.lease_owner.as_deref().unwrap_or("-"),
        when(e.lease_until)
    ));
    say(format!("created       {}", when(Some(e.created_at))));
    Ok(())
}

/// `webhook disable <id>`.
pub async fn disable(store: Store, id: &str) -> Result<(), String> {
    let by = crate::cli::operator(None);
    let e = Endpoints::new(store)
        .disable(id, &format!("disabled by {by}"))
        .await
        .map_err(|e| db_error(&e))?
        .ok_or_else(|| not_found(id))?;
    println!("{} is disabled (position {})", e.id, e.position);
    Ok(())
}

/// `webhook enable <id>`.
pub async fn enable(store: Store, id: &str) -> Result<(), String> {
    let e = Endpoints::new(store)
        .enable(id)
        .await
        .map_err(|e| db_error(&e))?
        .ok_or_else(|| not_found(id))?;
    println!(
        "{} is active: delivery resumes after position {}",
        e.id, e.position
    );
    Ok(())
}

/// `webhook replay <id> --after <position>`.
pub async fn replay(store: Store, id: &str, after: i64) -> Result<(), String> {
    let head = store.change_head().await.map_err(|e| db_error(&e))?;
    if after < 0 || after > head {
        return Err(format!(
            "position {after} is not one of this feed (its head is {head})"
        ));
    }
    let e = Endpoints::new(store)
        .replay(id, after)
        .await
        .map_err(|e| db_error(&e))?
        .ok_or_else(|| not_found(id))?;
    println!(
        "{}: delivery goes on after position {} ({})",
        e.id, e.position, e.status
    );
    Ok(())
}

/// `webhook reencrypt`: every secret not under the current key (`CCC_WEBHOOK_KEY`) is decrypted
/// (with a key of `CCC_WEBHOOK_PREVIOUS_KEYS`) and encrypted under it.
pub async fn reencrypt(store: Store, secrets: &super::SecretBox) -> Result<(), String> {
    let endpoints = Endpoints::new(store);
    let (mut renewed, mut current) = (0usize, 0usize);
    let mut after: Option<String> = None;
    loop {
        let page = endpoints
            .list(None, after.as_deref(), 500)
            .await
            .map_err(|e| db_error(&e))?;
        let more = page.len() == 500;
        after = page.last().map(|e| e.id.clone());
        for e in &page {
            let stale = |s: &str| !secrets.is_current(s);
            if !stale(&e.secret) && e.previous_secret.as_deref().is_none_or(|p| !stale(p)) {
                current += 1;
                continue;
            }
            let open = |s: &str| secrets.open(&e.id, s).map_err(|err| format!("{}: {err}", e.id));
            let secret = secrets.seal(&e.id, &open(&e.secret)?);
            let previous = match &e.previous_secret {
                Some(p) => Some(secrets.seal(&e.id, &open(p)?)),
                None => None,
            };
            if endpoints
                .reseal(
                    &e.id,
                    (&e.secret, e.previous_secret.as_deref()),
                    (secret, previous),
                )
                .await
                .map_err(|e| db_error(&e))?
            {
                renewed += 1;
            } else {
                return Err(format!(
                    "{}: its secret changed meanwhile; run the command again",
                    e.id
                ));
            }
        }
        if !more {
            break;
        }
    }
    println!("{renewed} endpoint(s) re-encrypted under the current key, {current} already were");
    Ok(())
}
