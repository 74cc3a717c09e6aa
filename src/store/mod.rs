//! Every SQL statement of the product, behind one `Store` that runs on SQLite (embedded default)
//! or PostgreSQL. Statements are written once in the dialect both accept (`$n` parameters,
//! `RETURNING`, `ON CONFLICT`) and run on whichever pool is configured; migrations are kept per
//! database under `migrations/`.

mod calls;
mod conversations;
mod database;
mod messages;
mod notifications;
mod oauth;
mod push;
mod seed;
mod sessions;
mod uploads;
mod users;
mod writer;

pub use calls::{CallDevice, CallRow, NewCall, Started};
pub use conversations::{Added, ConversationRow, DIRECT, MemberRow, Membership};
pub use database::{DatabaseKind, Store, StoreError};
pub use messages::{
    Attachment, CallRecord, Message, MessageKind, Outgoing as OutgoingMessage, Reacted, Reaction,
    SystemEvent, SystemType,
};
pub use notifications::{NewNotification, Notification};
pub use oauth::{NewOAuthState, OAuthIdentity, OAuthState};
pub use push::{ClaimedPush, NewPush, PushCandidate, Subscription};
pub use seed::Seeded;
pub use sessions::{NewSession, RefreshOutcome, Session};
pub use uploads::{Measured, NewUpload, Part, Upload, WithAttachments};
pub use users::{NewUser, User, UserChanges, UserFlags, UserUpdate, UserWithSessions};
