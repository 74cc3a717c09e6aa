//! Values validated at the edge: once one of these exists, it is valid. REST and socket handlers
//! parse into them before they call the feature modules, which never check again. Each `parse`
//! answers the message that goes into a `validation_failed` field; an id that names nothing
//! answers its kind's 404.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::timestamp::Timestamp;

/// The page size of every list when the client does not say.
pub const DEFAULT_PAGE: i64 = 50;
/// The largest page any list answers.
pub const MAX_PAGE: i64 = 100;
/// Longest message, in characters after trimming.
pub const MAX_CONTENT_CHARS: usize = 4000;
/// Longest `clientId` a client may choose.
pub const MAX_CLIENT_ID_CHARS: usize = 128;

/// A user named by a path, a body or an event: text that is not an id names no user.
pub fn user_id(raw: &str) -> ApiResult<Uuid> {
    raw.parse().map_err(|_| ApiError::user_not_found())
}

/// How many items a page holds: 1 to 100, 50 when the client does not say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageLimit(i64);

impl PageLimit {
    const INVALID: &str = "must be between 1 and 100";

    /// A `limit` from a query string (absent or empty: the default).
    pub fn parse(raw: Option<&str>) -> Result<Self, &'static str> {
        match raw.filter(|r| !r.is_empty()) {
            None => Ok(Self::default()),
            Some(raw) => raw.parse().map_err(|_| Self::INVALID).and_then(Self::of),
        }
    }

    /// A `limit` from a socket payload, answered as the `limit` field's error.
    pub fn from_payload(limit: Option<i64>) -> ApiResult<Self> {
        limit
            .map_or(Ok(Self::default()), Self::of)
            .map_err(|message| ApiError::invalid_field("limit", message))
    }

    fn of(n: i64) -> Result<Self, &'static str> {
        if (1..=MAX_PAGE).contains(&n) {
            Ok(Self(n))
        } else {
            Err(Self::INVALID)
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl Default for PageLimit {
    fn default() -> Self {
        Self(DEFAULT_PAGE)
    }
}

/// The most members one message may mention.
pub const MAX_MENTIONS: usize = 100;

/// Mentions as ids; 400 `invalid_mention` for text that is not one (it names no member).
pub fn mention_ids(raw: Option<&[String]>) -> ApiResult<Vec<Uuid>> {
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_MENTIONS {
        return Err(ApiError::invalid_field(
            "mentions",
            "must list at most 100 members",
        ));
    }
    raw.iter()
        .map(|id| {
            id.parse().map_err(|_| {
                ApiError::bad_request(
                    ErrorCode::InvalidMention,
                    "only members of the conversation can be mentioned",
                )
            })
        })
        .collect()
}

/// A group's title: 1 to 100 characters after trimming, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupTitle(String);

impl GroupTitle {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        Name::parse(raw).map(|name| Self(name.into_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The text of a message: trimmed, 1 to 4,000 characters, no NUL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content(String);

impl Content {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let content = raw.trim();
        let chars = content.chars().count();
        if chars == 0 {
            Err("must not be empty")
        } else if content.contains('\0') {
            Err("must not contain NUL characters")
        } else if chars > MAX_CONTENT_CHARS {
            Err("must be at most 4000 characters")
        } else {
            Ok(Self(content.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id a client chose for a send, so that retrying it stores one message: up to 128
/// characters, no NUL. An empty one is none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(raw: Option<&str>) -> Result<Option<Self>, &'static str> {
        match raw.filter(|c| !c.is_empty()) {
            None => Ok(None),
            Some(c) if c.chars().count() > MAX_CLIENT_ID_CHARS || c.contains('\0') => {
                Err("must be at most 128 characters")
            }
            Some(c) => Ok(Some(Self(c.to_owned()))),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A message to send: its content, the optional client id (each bad one named in one
/// `validation_failed`), the message it replies to and the uploads it carries.
pub struct Outgoing {
    pub content: Content,
    pub client_id: Option<ClientId>,
    pub reply_to: Option<Uuid>,
    /// Completed uploads of the sender's (§12), in order; none for a plain message.
    pub attachments: Vec<Uuid>,
}

/// The most attachments one message may carry.
pub const MAX_ATTACHMENTS: usize = 10;

/// 400 `invalid_attachment`.
pub fn invalid_attachment(why: &str) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidAttachment, why)
}

/// `attachmentIds` of a send: 1 to 10 distinct upload ids (absent or empty: none).
pub fn attachment_ids(raw: Option<&[String]>) -> ApiResult<Vec<Uuid>> {
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_ATTACHMENTS {
        return Err(invalid_attachment(
            "a message carries at most 10 attachments",
        ));
    }
    let mut ids = Vec::with_capacity(raw.len());
    for id in raw {
        let id: Uuid = id
            .parse()
            .map_err(|_| invalid_attachment("`attachmentIds` must name uploads of yours"))?;
        if ids.contains(&id) {
            return Err(invalid_attachment("an upload can be attached once"));
        }
        ids.push(id);
    }
    Ok(ids)
}

impl Outgoing {
    /// A send that replies to nothing; see [`Outgoing::replying_to`]. With attachments the
    /// content may be empty (or absent).
    pub fn parse(
        content: Option<&str>,
        client_id: Option<&str>,
        attachments: Vec<Uuid>,
    ) -> ApiResult<Self> {
        let mut fields = BTreeMap::new();
        let content = match content {
            Some(text) if !attachments.is_empty() && text.trim().is_empty() => {
                Ok(Content(String::new()))
            }
            None if !attachments.is_empty() => Ok(Content(String::new())),
            Some(text) => Content::parse(text),
            None => Err("is required"),
        };
        let content = content
            .map_err(|m| fields.insert("content".to_owned(), m.to_owned()))
            .ok();
        let client_id = ClientId::parse(client_id)
            .map_err(|m| fields.insert("clientId".to_owned(), m.to_owned()))
            .ok();
        match (content, client_id) {
            (Some(content), Some(client_id)) => Ok(Self {
                content,
                client_id,
                reply_to: None,
                attachments,
            }),
            _ => Err(ApiError::validation(fields)),
        }
    }

    /// The send as a reply to `reply_to_id` (absent or empty: to nothing); text that is not an
    /// id names no message of the conversation: 400 `invalid_reply`.
    pub fn replying_to(mut self, reply_to_id: Option<&str>) -> ApiResult<Self> {
        self.reply_to = reply_to_id
            .filter(|r| !r.is_empty())
            .map(|r| r.parse().map_err(|_| invalid_reply()))
            .transpose()?;
        Ok(self)
    }
}

/// 400 `invalid_reply`: a reply must name a message of its own conversation.
pub fn invalid_reply() -> ApiError {
    ApiError::bad_request(
        ErrorCode::InvalidReply,
        "`replyToId` must name a message of this conversation",
    )
}

/// The smallest UUIDv7 of the millisecond `millis`: every id made at or after it is greater.
pub fn uuid_v7_floor(millis: i64) -> Uuid {
    uuid::Builder::from_unix_timestamp_millis(millis.max(0) as u64, &[0; 10]).into_uuid()
}

/// Where a `sync` left off in the changes since its `since` (the `changedCursor` it answered):
/// the time of the last change it answered and that message's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChangeCursor {
    pub changed_at: Timestamp,
    pub message_id: Uuid,
}

impl ChangeCursor {
    /// Changes from the millisecond `since` was sent on (a UUIDv7 holds its time): one made in
    /// that same millisecond may come before or after it, so it is told rather than missed.
    pub fn since_message(since: Uuid) -> Self {
        let millis = since.get_timestamp().map_or(0, |ts| {
            let (secs, nanos) = ts.to_unix();
            secs as i64 * 1000 + i64::from(nanos / 1_000_000)
        });
        Self {
            changed_at: Timestamp::from_millis(millis),
            message_id: Uuid::nil(),
        }
    }

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        const INVALID: &str = "must be the `changedCursor` of an earlier sync";
        let (at, id) = raw.split_once('.').ok_or(INVALID)?;
        Ok(Self {
            changed_at: Timestamp::from_millis(at.parse().map_err(|_| INVALID)?),
            message_id: id.parse().map_err(|_| INVALID)?,
        })
    }

    pub fn encode(self) -> String {
        format!(
            "{}.{}",
            self.changed_at.as_millis(),
            self.message_id.simple()
        )
    }
}

/// 400 `invalid_emoji`.
pub fn invalid_emoji() -> ApiError {
    ApiError::bad_request(
        ErrorCode::InvalidEmoji,
        "a reaction is one emoji or a shortcode such as :thumbsup:",
    )
}

/// The most different emoji one message may carry.
pub const MAX_EMOJI_PER_MESSAGE: usize = 50;

/// A reaction: one emoji (a single extended grapheme cluster made of emoji characters, shown
/// as emoji) or a shortcode `:name:` of 2 to 32 of `a-z 0-9 _ + -`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emoji(String);

impl Emoji {
    /// The longest emoji sequence taken, in bytes; the longest standard ones (families with
    /// skin tones, subdivision flags) take about 35.
    const MAX_BYTES: usize = 64;

    pub fn parse(raw: &str) -> ApiResult<Self> {
        if Self::is_shortcode(raw) || Self::is_one_emoji(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(invalid_emoji())
        }
    }

    fn is_shortcode(raw: &str) -> bool {
        let Some(name) = raw.strip_prefix(':').and_then(|r| r.strip_suffix(':')) else {
            return false;
        };
        (2..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_+-".contains(&b))
    }

    /// One grapheme, every character of it an emoji or an emoji component (joiners, variation
    /// selectors, skin tones, keycaps, tags), and shown as an emoji: one of its characters is
    /// presented as emoji by default, or it asks for that with U+FE0F. Digits, `#` and `*` are
    /// emoji characters too, but alone they are text.
    fn is_one_emoji(raw: &str) -> bool {
        use unicode_properties::{EmojiStatus, UnicodeEmoji, emoji};
        use unicode_segmentation::UnicodeSegmentation;
        let presented = |c: char| {
            emoji::is_emoji_presentation_selector(c)
                || matches!(
                    c.emoji_status(),
                    EmojiStatus::EmojiPresentation
                        | EmojiStatus::EmojiPresentationAndModifierBase
                        | EmojiStatus::EmojiPresentationAndEmojiComponent
                        | EmojiStatus::EmojiPresentationAndModifierAndEmojiComponent
                )
        };
        !raw.is_empty()
            && raw.len() <= Self::MAX_BYTES
            && raw.graphemes(true).count() == 1
            && raw
                .chars()
                .all(UnicodeEmoji::is_emoji_char_or_emoji_component)
            && raw.chars().any(UnicodeEmoji::is_emoji_char)
            && raw.chars().any(presented)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address in the basic RFC 5322 `local@domain` form, trimmed and lowercased so that
/// comparisons are case-insensitive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        const INVALID: &str = "must be a valid address";
        let email = raw.trim().to_lowercase();
        if email.len() > 254 {
            return Err("must be at most 254 characters");
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err(INVALID);
        };
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let domain_ok = domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if local_ok && domain_ok {
            Ok(Self(email))
        } else {
            Err(INVALID)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A display name: 1 to 100 characters after trimming, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let name = raw.trim();
        if name.is_empty() {
            return Err("must not be empty");
        }
        if name.chars().count() > 100 {
            return Err("must be at most 100 characters");
        }
        if name.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A new password: 8 to 1,024 characters (the upper bound keeps hashing cheap to refuse).
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let count = raw.chars().count();
        if count < 8 {
            return Err("must be at least 8 characters");
        }
        if count > 1024 {
            return Err("must be at most 1024 characters");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_compared_in_lowercase() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "ada@@example.com",
            "a da@example.com",
            "ada@exa mple.com",
            "ada@-example.com",
            "ada.@example.com",
            "'; DROP TABLE users; --@x.com",
            "ada@例え.jp",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded_in_characters_not_bytes() {
        assert_eq!(Name::parse("  Zoë  ").unwrap().as_str(), "Zoë");
        assert!(Name::parse(&"é".repeat(100)).is_ok());
        assert!(Name::parse(&"é".repeat(101)).is_err());
        assert!(Name::parse("   ").is_err());
        assert!(Name::parse("bell\u{7}").is_err());
    }

    #[test]
    fn page_limits_are_one_to_a_hundred() {
        assert_eq!(PageLimit::parse(None).unwrap().get(), DEFAULT_PAGE);
        assert_eq!(PageLimit::parse(Some("")).unwrap().get(), DEFAULT_PAGE);
        assert_eq!(PageLimit::parse(Some("100")).unwrap().get(), 100);
        for bad in ["0", "101", "-1", "1.5", "x", "99999999999999999999"] {
            assert!(PageLimit::parse(Some(bad)).is_err(), "{bad:?} was accepted");
        }
        assert!(PageLimit::from_payload(Some(0)).is_err());
        assert_eq!(PageLimit::from_payload(None).unwrap().get(), DEFAULT_PAGE);
    }

    #[test]
    fn message_content_is_trimmed_and_bounded_in_characters() {
        assert_eq!(Content::parse("  hi  ").unwrap().as_str(), "hi");
        assert!(Content::parse(" \n ").is_err());
        assert!(Content::parse("a\0b").is_err());
        assert!(Content::parse(&"é".repeat(MAX_CONTENT_CHARS)).is_ok());
        assert!(Content::parse(&"é".repeat(MAX_CONTENT_CHARS + 1)).is_err());
    }

    #[test]
    fn an_empty_client_id_is_none_and_a_long_one_is_refused() {
        assert_eq!(ClientId::parse(Some("")).unwrap(), None);
        assert!(ClientId::parse(Some(&"x".repeat(MAX_CLIENT_ID_CHARS))).is_ok());
        assert!(ClientId::parse(Some(&"x".repeat(MAX_CLIENT_ID_CHARS + 1))).is_err());
        let both = Outgoing::parse(Some(""), Some(&"x".repeat(200)), Vec::new())
            .err()
            .unwrap();
        let fields = both.fields.unwrap();
        assert!(fields.contains_key("content") && fields.contains_key("clientId"));
    }

    #[test]
    fn attachments_allow_an_empty_content_and_are_bounded() {
        let id = Uuid::now_v7();
        assert_eq!(
            Outgoing::parse(None, None, vec![id])
                .unwrap()
                .content
                .as_str(),
            ""
        );
        assert_eq!(
            Outgoing::parse(Some("  "), None, vec![id])
                .unwrap()
                .content
                .as_str(),
            ""
        );
        assert!(Outgoing::parse(None, None, Vec::new()).is_err());
        let eleven: Vec<String> = (0..11).map(|_| Uuid::now_v7().to_string()).collect();
        for bad in [
            eleven,
            vec!["not-an-id".to_owned()],
            vec![id.to_string(), id.to_string()],
        ] {
            let err = attachment_ids(Some(&bad)).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidAttachment);
        }
        assert_eq!(attachment_ids(Some(&[])).unwrap(), Vec::<Uuid>::new());
    }

    #[test]
    fn a_reaction_is_one_emoji_or_a_shortcode() {
        for good in [
            "👍",
            "👍🏽",
            "❤️",
            "🇫🇷",
            "👩‍👩‍👧‍👦",
            "🏴‍☠️",
            "1️⃣",
            "🏴\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}",
            ":thumbsup:",
            ":+1:",
            ":a_b-c:",
            &format!(":{}:", "x".repeat(32)),
        ] {
            assert!(Emoji::parse(good).is_ok(), "{good:?} was refused");
        }
        for bad in [
            "",
            " ",
            " 👍",
            "👍 ",
            "👍👍",
            "a",
            "1",
            "#",
            "©",
            "\u{200d}",
            "\u{7}",
            "👍\u{7}",
            "::",
            ":a:",
            ":Thumbs:",
            ":thumbs up:",
            "thumbsup",
            ":thumbsup",
            &"x".repeat(40),
            &format!(":{}:", "x".repeat(33)),
            "\u{fe0f}",
            "❤\u{fe0e}",
        ] {
            assert!(Emoji::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_change_cursor_reads_back_what_it_wrote() {
        let cursor = ChangeCursor {
            changed_at: Timestamp::from_millis(1_764_800_000_123),
            message_id: Uuid::now_v7(),
        };
        assert_eq!(ChangeCursor::parse(&cursor.encode()), Ok(cursor));
        for bad in ["", ".", "12", "x.y", "12.not-an-id", "1.2.3"] {
            assert!(ChangeCursor::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let id = Uuid::now_v7();
        let after = ChangeCursor::since_message(id);
        let ms = Timestamp::now().as_millis() - after.changed_at.as_millis();
        assert!((0..1000).contains(&ms));
    }

    #[test]
    fn passwords_need_eight_characters() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse(&"x".repeat(1025)).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Every value a REST body or socket payload carries is accepted within its rules or
        /// refused with a message, never a panic.
        #[test]
        fn any_text_is_a_valid_value_or_refused(raw in "\\PC{0,300}|.{0,300}") {
            if let Ok(content) = Content::parse(&raw) {
                let text = content.as_str();
                proptest::prop_assert!(!text.is_empty() && text == text.trim() && !text.contains('\0'));
                proptest::prop_assert!(text.chars().count() <= MAX_CONTENT_CHARS);
            }
            if let Ok(Some(id)) = ClientId::parse(Some(&raw)) {
                proptest::prop_assert!(id.as_str().chars().count() <= MAX_CLIENT_ID_CHARS);
            }
            if let Ok(title) = GroupTitle::parse(&raw) {
                proptest::prop_assert!(!title.as_str().chars().any(char::is_control));
            }
            if let Ok(email) = Email::parse(&raw) {
                proptest::prop_assert!(email.as_str().contains('@') && email.as_str().len() <= 254);
            }
            let _ = Name::parse(&raw);
            let _ = Password::parse(&raw);
            let _ = Emoji::parse(&raw);
            let _ = PageLimit::parse(Some(&raw));
            let _ = ChangeCursor::parse(&raw);
            let _ = mention_ids(Some(std::slice::from_ref(&raw)));
        }

        /// A cursor the server wrote reads back as it was.
        #[test]
        fn a_change_cursor_reads_back(millis in 0i64..4_000_000_000_000, id in proptest::prelude::any::<u128>()) {
            let cursor = ChangeCursor {
                changed_at: crate::timestamp::Timestamp::from_millis(millis),
                message_id: Uuid::from_u128(id),
            };
            proptest::prop_assert_eq!(ChangeCursor::parse(&cursor.encode()), Ok(cursor));
        }

        /// Any list of attachment ids: 0 to 10 distinct ids, or `invalid_attachment`.
        #[test]
        fn any_attachment_list_is_ten_distinct_ids_or_refused(
            raw in proptest::collection::vec("[0-9a-f-]{0,40}|0190c0de-0000-7000-8000-00000000000[0-3]", 0..14)
        ) {
            match attachment_ids(Some(&raw)) {
                Ok(ids) => {
                    proptest::prop_assert!(ids.len() <= MAX_ATTACHMENTS);
                    let unique: std::collections::HashSet<_> = ids.iter().collect();
                    proptest::prop_assert_eq!(unique.len(), ids.len());
                }
                Err(e) => proptest::prop_assert_eq!(e.code, ErrorCode::InvalidAttachment),
            }
        }
    }
}
