//! Points in time as the product stores and shows them: Unix milliseconds in the database (the
//! same `BIGINT` on SQLite and PostgreSQL, so ordering and comparisons agree on both), RFC 3339
//! UTC strings with milliseconds on the wire.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Serialize, Serializer};

/// A UTC instant with millisecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time, truncated to the millisecond so that what is stored is what is shown.
    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis())
    }

    pub fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// Seconds since the Unix epoch, as JWT `iat`/`exp` claims carry them.
    pub fn as_unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    pub fn from_unix_seconds(secs: i64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    pub fn plus(self, duration: std::time::Duration) -> Self {
        let ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(ms))
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::milliseconds(self.0)
    }

    /// `2026-11-25T18:30:53.123Z`
    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::DateTime,
            )))
            .description(Some(
                "RFC 3339 UTC with milliseconds, e.g. 2026-11-25T18:30:53.123Z",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_still_show_milliseconds() {
        let t = Timestamp::from_millis(1_795_631_453_000);
        assert_eq!(t.to_rfc3339(), "2026-11-25T18:30:53.000Z");
    }

    #[test]
    fn serializes_as_an_rfc3339_string() {
        let t = Timestamp::from_millis(1_795_631_453_123);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2026-11-25T18:30:53.123Z\""
        );
    }
}
