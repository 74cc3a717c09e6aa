-- Names in lowercase as Rust folds them (Unicode-aware on both databases; SQLite's LOWER only
-- folds ASCII), for case-insensitive search. Written by the application with every name.
ALTER TABLE users ADD COLUMN search_name TEXT NOT NULL DEFAULT '';
UPDATE users SET search_name = LOWER(name);
