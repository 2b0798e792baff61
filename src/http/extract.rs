//! Request parsing: a size-limited JSON body, its fields one by one (so that an error can
//! name the field), and the query flags every resource understands.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde_json::{Map, Value};

use super::{ApiError, AppState};
use crate::peer::Consistency;

/// A JSON object body of at most `http.max_body_bytes`, read field by field.
pub struct JsonBody(pub Fields);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError {
            field: Some("body".into()),
            ..ApiError::invalid("body", format!("not valid JSON: {e}"))
        })?;
        match value {
            Value::Object(map) => Ok(JsonBody(Fields { map })),
            _ => Err(ApiError::invalid("body", "must be a JSON object")),
        }
    }
}

/// A JSON object body of at most `http.max_body_bytes`, as one of the API's documents
/// (`crate::api`); a refusal names the field at fault.
pub struct Typed<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<AppState> for Typed<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        Ok(Typed(crate::api::parse(&bytes)?))
    }
}

/// The body, once it has all arrived within `http.body_timeout_ms` and under
/// `http.max_body_bytes`.
async fn read_body(req: Request<Body>, state: &AppState) -> Result<axum::body::Bytes, ApiError> {
    let limit = state.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is over the limit of {limit} bytes"),
        )
    };
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let body_timeout = state.limits.body_timeout;
    tokio::time::timeout(body_timeout, axum::body::to_bytes(req.into_body(), limit))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the request body did not arrive within {} ms", body_timeout.as_millis()),
            )
        })?
        .map_err(|_| too_large())
}

/// The fields of a JSON object, taken one at a time; [`Fields::finish`] rejects any left.
pub struct Fields {
    map: Map<String, Value>,
}

impl Fields {
    pub fn string(&mut self, name: &str) -> Result<String, ApiError> {
        match self.map.remove(name) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(ApiError::invalid(name, "must be a string")),
            None => Err(ApiError::invalid(name, "is required")),
        }
    }

    pub fn u64(&mut self, name: &str) -> Result<u64, ApiError> {
        match self.map.remove(name) {
            Some(Value::Number(n)) => {
                n.as_u64().ok_or_else(|| ApiError::invalid(name, format!("{n} is not a whole number ≥ 0")))
            }
            Some(_) => Err(ApiError::invalid(name, "must be a number")),
            None => Err(ApiError::invalid(name, "is required")),
        }
    }

    pub fn opt_string(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        match self.map.get(name) {
            None | Some(Value::Null) => {
                self.map.remove(name);
                Ok(None)
            }
            Some(_) => self.string(name).map(Some),
        }
    }

    pub fn opt_u64(&mut self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.map.get(name) {
            None | Some(Value::Null) => {
                self.map.remove(name);
                Ok(None)
            }
            Some(_) => self.u64(name).map(Some),
        }
    }

    /// A finite number; absent means `None`.
    pub fn f64(&mut self, name: &str) -> Result<Option<f64>, ApiError> {
        match self.map.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(Some)
                .ok_or_else(|| ApiError::invalid(name, "must be a finite number")),
            Some(_) => Err(ApiError::invalid(name, "must be a number")),
        }
    }

    pub fn bool(&mut self, name: &str) -> Result<bool, ApiError> {
        match self.map.remove(name) {
            Some(Value::Bool(b)) => Ok(b),
            Some(_) => Err(ApiError::invalid(name, "must be true or false")),
            None => Err(ApiError::invalid(name, "is required")),
        }
    }

    /// A list of strings; absent means empty.
    pub fn strings(&mut self, name: &str) -> Result<Vec<String>, ApiError> {
        match self.map.remove(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(ApiError::invalid(format!("{name}[{i}]"), "must be a string")),
                })
                .collect(),
            Some(_) => Err(ApiError::invalid(name, "must be a list of strings")),
        }
    }

    /// A JSON object; absent means `None`.
    pub fn object(&mut self, name: &str) -> Result<Option<Map<String, Value>>, ApiError> {
        match self.map.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(ApiError::invalid(name, "must be a JSON object")),
        }
    }

    /// One of the names a serde enum takes (`allowed` lists them for the error); absent
    /// means `None`.
    pub fn one_of<T: serde::de::DeserializeOwned>(&mut self, name: &str, allowed: &str) -> Result<Option<T>, ApiError> {
        match self.value(name) {
            None => Ok(None),
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|_| ApiError::invalid(name, format!("must be one of {allowed}"))),
        }
    }

    /// Whatever JSON value the field holds, if any.
    pub fn value(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|v| !v.is_null())
    }

    /// A list of whole numbers; absent means empty.
    pub fn u64s(&mut self, name: &str) -> Result<Vec<u64>, ApiError> {
        match self.map.remove(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_u64().ok_or_else(|| ApiError::invalid(format!("{name}[{i}]"), "must be a whole number ≥ 0"))
                })
                .collect(),
            Some(_) => Err(ApiError::invalid(name, "must be a list of numbers")),
        }
    }

    /// Wraps a JSON object taken from another field, to read its fields the same way.
    pub fn from_map(map: Map<String, Value>) -> Self {
        Fields { map }
    }

    /// Fails on the first field nobody asked for: a typo must not pass silently.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.map.keys().next() {
            Some(k) => Err(ApiError::invalid(k.clone(), "unknown field")),
            None => Ok(()),
        }
    }
}

/// Items on one page of a list (`GET /v1/dispatch`, `/v1/actions`, `/v1/anomalies`,
/// `/v1/repairs`) when `?limit=` is not given, and the most it may ask for. A page that is
/// not the last carries `next`: give it as `?after=` for the following page.
pub const LIST_PAGE: usize = 1000;
pub const MAX_LIST_PAGE: usize = 10_000;

/// `?limit=` of a list (0 is read as 1).
pub fn page_limit(params: &Params) -> Result<usize, ApiError> {
    Ok(params.u64("limit", LIST_PAGE as u64, MAX_LIST_PAGE as u64)?.max(1) as usize)
}

/// Cuts `items`, read as `limit + 1` so that one more shows whether there is a next page,
/// to the page: `Some(cursor of its last item)`, the `next` to answer, when more follow.
pub fn cut_page<T, C>(items: &mut Vec<T>, limit: usize, cursor: impl FnOnce(&T) -> C) -> Option<C> {
    if items.len() <= limit {
        return None;
    }
    items.truncate(limit);
    items.last().map(cursor)
}

/// `?after=` of a list of numbered items.
pub fn after_id(params: &Params) -> Result<u64, ApiError> {
    params.u64("after", 0, u64::MAX)
}

/// An error about a field of a nested object, named by its path (`outer.field`).
pub fn prefix(outer: &str, mut e: ApiError) -> ApiError {
    e.field = Some(match e.field {
        Some(f) => format!("{outer}.{f}"),
        None => outer.to_string(),
    });
    e
}

/// The query string's parameters, percent-decoded.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: Option<&str>) -> Self {
        let pairs = query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect();
        Params(pairs)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A whole number, `default` when absent, 400 naming the parameter when malformed or
    /// above `max`.
    pub fn u64(&self, name: &str, default: u64, max: u64) -> Result<u64, ApiError> {
        let Some(raw) = self.get(name) else { return Ok(default) };
        let v: u64 = raw.parse().map_err(|_| ApiError::invalid(name, format!("'{raw}' is not a whole number")))?;
        if v > max {
            return Err(ApiError::invalid(name, format!("{v} is above the limit of {max}")));
        }
        Ok(v)
    }

    /// A comma-separated list; absent means empty.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get(name).map(|v| v.split(',').filter(|s| !s.is_empty()).map(String::from).collect()).unwrap_or_default()
    }
}

fn decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi * 16 + lo);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `?stale` and `?cas=REV`.
#[derive(Debug, Default)]
pub struct Flags {
    pub stale: bool,
    pub cas: Option<u64>,
}

impl Flags {
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut flags = Flags::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "stale" => flags.stale = value != "false",
                "cas" => {
                    flags.cas = Some(
                        value
                            .parse()
                            .map_err(|_| ApiError::invalid("cas", format!("'{value}' is not a revision number")))?,
                    )
                }
                _ => {}
            }
        }
        Ok(flags)
    }

    pub fn consistency(&self) -> Consistency {
        if self.stale {
            Consistency::Stale
        } else {
            Consistency::Linearizable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let f = Flags::parse(Some("stale&cas=7")).unwrap();
        assert!(f.stale);
        assert_eq!(f.cas, Some(7));
        assert!(!Flags::parse(Some("stale=false")).unwrap().stale);
        assert_eq!(Flags::parse(Some("cas=x")).unwrap_err().field.as_deref(), Some("cas"));
        assert!(Flags::parse(None).unwrap().cas.is_none());
    }

    #[test]
    fn params_decode_and_name_the_offender() {
        let p = Params::parse(Some("ids=a%3Ab,c&wait=5&x=%zz%e2%82%ac"));
        assert_eq!(p.list("ids"), vec!["a:b", "c"]);
        assert_eq!(p.u64("wait", 0, 60).unwrap(), 5);
        assert_eq!(p.u64("wait", 0, 4).unwrap_err().field.as_deref(), Some("wait"));
        assert_eq!(p.u64("since", 7, 60).unwrap(), 7);
        assert_eq!(p.get("x"), Some("%zz€"));
    }

    #[test]
    fn fields_name_the_offender() {
        let Value::Object(map) = serde_json::json!({"ip": 3, "extra": true}) else { panic!() };
        let mut f = Fields { map };
        assert_eq!(f.string("ip").unwrap_err().field.as_deref(), Some("ip"));
        assert_eq!(f.string("region").unwrap_err().message, "is required");
        assert_eq!(f.finish().unwrap_err().field.as_deref(), Some("extra"));
    }
}
