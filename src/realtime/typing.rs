//! Who is typing to whom on this node, so that a typing "start" the client stops refreshing ends
//! by itself, and a stale timer does not end a fresher "start".

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use uuid::Uuid;

/// A typing indicator the client stops refreshing ends after this.
pub const TIMEOUT: Duration = Duration::from_secs(6);

/// The latest typing "start" per (from, to), numbered.
#[derive(Default)]
pub struct Typing {
    latest: Mutex<HashMap<(Uuid, Uuid), u64>>,
    generation: AtomicU64,
}

impl Typing {
    /// Records a typing "start" and answers its generation; see [`Typing::ended`].
    pub fn started(&self, from: Uuid, to: Uuid) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest.insert((from, to), generation);
        generation
    }

    /// Forgets a typing indicator; with a generation, only if no newer "start" replaced it.
    /// Answers whether it was still on.
    pub fn ended(&self, from: Uuid, to: Uuid, generation: Option<u64>) -> bool {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        match (latest.get(&(from, to)), generation) {
            (Some(current), Some(g)) if *current != g => false,
            (Some(_), _) => {
                latest.remove(&(from, to));
                true
            }
            (None, _) => false,
        }
    }
}
