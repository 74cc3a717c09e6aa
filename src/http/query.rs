//! Query-string values, read as text and checked here so that a bad one gets our error format
//! naming its parameter.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::domain::{DEFAULT_PAGE, MAX_PAGE};

/// `limit`: 1 to 100, 50 when absent. A bad value is recorded in `fields`.
pub fn page_limit(fields: &mut BTreeMap<String, String>, raw: Option<&str>) -> i64 {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return DEFAULT_PAGE;
    };
    match raw.parse::<i64>() {
        Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
        _ => {
            fields.insert(
                "limit".to_owned(),
                format!("must be between 1 and {MAX_PAGE}"),
            );
            DEFAULT_PAGE
        }
    }
}

/// An optional id (a cursor): `None` when absent; a bad value is recorded in `fields` as
/// "must be a `what` id".
pub fn optional_id(
    fields: &mut BTreeMap<String, String>,
    name: &str,
    raw: Option<&str>,
    what: &str,
) -> Option<Uuid> {
    let raw = raw.filter(|r| !r.is_empty())?;
    raw.parse()
        .map_err(|_| fields.insert(name.to_owned(), format!("must be a {what} id")))
        .ok()
}
