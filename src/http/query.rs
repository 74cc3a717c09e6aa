//! Query-string values, read as text and checked here so that a bad one gets our error format
//! naming its parameter. Each helper records what is wrong in `fields`, so one answer names every
//! bad parameter.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::domain::PageLimit;

/// `limit`: 1 to 100, 50 when absent. A bad value is recorded in `fields`.
pub fn page_limit(fields: &mut BTreeMap<String, String>, raw: Option<&str>) -> PageLimit {
    PageLimit::parse(raw).unwrap_or_else(|message| {
        fields.insert("limit".to_owned(), message.to_owned());
        PageLimit::default()
    })
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
