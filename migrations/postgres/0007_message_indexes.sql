-- Every query that read the sender/recipient indexes now goes through the conversation (direct
-- history and read receipts by conversation_id): dropped, they no longer cost page writes with
-- every message.
DROP INDEX messages_sender_recipient;
DROP INDEX messages_recipient;
