//! The documents of the API, as types: the bodies the HTTP handlers parse and the CLI
//! builds, so that both sides agree on every field by construction.
//!
//! Every body refuses fields it does not know (`deny_unknown_fields`): a typo must be an
//! error, not a setting silently left out. [`parse`] names the field that is wrong, as a
//! path (`cidrs[3]`, `weights.latency`), so that a `400` still says where to look. Range
//! checks are not here: they live once, in `state::validate`, which every command passes
//! where it is received and again where it is applied.
//!
//! A body may carry the fields a `GET` of the same resource answers and a `PUT` does not
//! set (`revision`, the key of the path, state set through endpoints of its own), so that
//! a document read from the API can be written back as it is ([`ReadOnly`]).

pub mod registry;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer};

use crate::state::Error;

/// Parses a JSON object body into `T`, naming the field at fault.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    // serde reads a struct from a JSON array too (by position); the API takes objects only.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return match serde_json::from_slice::<serde_json::Value>(bytes) {
            Err(e) => Err(Error::invalid("body", format!("not valid JSON: {e}"))),
            Ok(_) => Err(Error::invalid("body", "must be a JSON object")),
        };
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = match e.path().to_string() {
            p if p == "." => "body".to_string(),
            p => p,
        };
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return Error::invalid("body", format!("not valid JSON: {inner}"));
        }
        let message = without_position(&inner.to_string());
        // A missing field is reported at its object: name the field itself.
        if let Some(name) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
            let field = if field == "body" { name.to_string() } else { format!("{field}.{name}") };
            return Error::invalid(field, "is required");
        }
        Error::invalid(field, message)
    })?;
    de.end().map_err(|e| Error::invalid("body", format!("not valid JSON: {e}")))?;
    Ok(value)
}

/// serde_json's message without its " at line L column C": the field names the place.
fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// A list that may be given as `null` or left out: both mean empty.
pub fn nullable_list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// A field of a `GET` answer that a `PUT` of the same resource accepts and ignores
/// (`revision`, and state set through endpoints of its own, such as a site's pin).
pub type ReadOnly = Option<IgnoredAny>;

/// The key of the path, if the body gives it too: it must be the same.
pub fn same_key(field: &str, given: Option<&str>, path: &str) -> Result<(), Error> {
    match given {
        Some(g) if g != path => {
            Err(Error::invalid(field, format!("is '{path}' in the path; leave it out of the body or give the same")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read by serde only
    struct Doc {
        #[serde(default, deserialize_with = "nullable_list")]
        list: Vec<String>,
        count: Option<u32>,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read by serde only
    struct Inner {
        weight: f64,
    }

    fn field_of(body: &str) -> String {
        match parse::<Doc>(body.as_bytes()).unwrap_err() {
            Error::Invalid { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refusal_names_the_field_as_a_path() {
        assert_eq!(field_of(r#"{"list": ["a", 3]}"#), "list[1]");
        assert_eq!(field_of(r#"{"count": -1}"#), "count");
        assert_eq!(field_of(r#"{"count": 1.5}"#), "count");
        assert_eq!(field_of(r#"{"inner": {"weight": "x"}}"#), "inner.weight");
        assert_eq!(field_of(r#"{"zz": 1}"#), "zz");
        assert_eq!(field_of(r#"{"inner": {"zz": 1}}"#), "inner.zz");
        assert_eq!(field_of(r#"{"inner": {}}"#), "inner.weight");
        for not_an_object in ["[1]", "\"x\"", "null", "", "{", "{\"list\":", "{} {}"] {
            assert_eq!(field_of(not_an_object), "body", "{not_an_object:?}");
        }
        let e = parse::<Doc>(br#"{"count": "x"}"#).unwrap_err().to_string();
        assert!(!e.contains("line 1"), "{e}");
    }

    #[test]
    fn a_list_may_be_null_or_absent() {
        assert!(parse::<Doc>(br#"{"list": null}"#).unwrap().list.is_empty());
        assert!(parse::<Doc>(b"{}").unwrap().list.is_empty());
    }
}
