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

/// A query string read into `T`; one that cannot be (a parameter given twice, bad
/// percent-encoding) is 400 `validation_failed` naming `query`, in the §2 error body rather than
/// axum's plain-text rejection.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for Query<T>
{
    type Rejection = crate::error::ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| {
                let message = rejection.body_text();
                let message = message
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&message)
                    .to_owned();
                crate::error::ApiError::validation(BTreeMap::from([("query".to_owned(), message)]))
            })
    }
}
