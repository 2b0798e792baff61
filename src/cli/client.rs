use reqwest::Method;
use serde_json::Value;

use super::CliError;

/// The longest the CLI waits for one answer: above the longest long poll a command can
/// ask for (`wait`, at most 60 s), with room for a write that waits out an election.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// A client of one peer's HTTP API, carrying `$SWITCHBOARD_ADMIN_TOKEN` when set.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(endpoint: &str) -> Self {
        Self {
            base: endpoint.trim_end_matches('/').to_string(),
            token: std::env::var("SWITCHBOARD_ADMIN_TOKEN").ok().filter(|t| !t.is_empty()),
            http: reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().expect("HTTP client"),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.base
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        let url = format!("{}{}", self.base, path);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| CliError::Unreachable { endpoint: self.base.clone(), reason: e.to_string() })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            Ok(value)
        } else {
            let message = match (&value["message"], &value["field"]) {
                (Value::String(m), Value::String(f)) => format!("{f}: {m}"),
                (Value::String(m), _) => m.clone(),
                _ => value.to_string(),
            };
            Err(CliError::Api { status: status.as_u16(), message })
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call(Method::GET, path, None).await
    }

    /// Every page of a paged list (`?limit`, `?after`, `next`): one answer whose `key`
    /// holds all the items, as the list was before it was paged.
    pub async fn get_all(&self, path: &str, key: &str) -> Result<Value, CliError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items: Vec<Value> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let cursor = after.as_ref().map(|a| format!("&after={a}")).unwrap_or_default();
            let mut page = self.get(&format!("{path}{sep}limit=10000{cursor}")).await?;
            if let Some(Value::Array(got)) = page.get_mut(key).map(Value::take) {
                items.extend(got);
            }
            match page.get("next") {
                Some(Value::String(next)) => after = Some(next.clone()),
                Some(Value::Number(next)) => after = Some(next.to_string()),
                _ => return Ok(serde_json::json!({ key: items })),
            }
        }
    }
}

/// Prints a JSON answer for people and for `jq`. A closed pipe (`| head`) is not an error.
pub fn print(value: &Value) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(value).expect("JSON prints"));
}
