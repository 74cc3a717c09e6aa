//! Engine.IO v4 and Socket.IO v5 packets as they travel over the websocket transport: one
//! Engine.IO packet per websocket text frame (`0` open, `2`/`3` ping/pong, `4` message …), and a
//! Socket.IO packet inside every Engine.IO message (`40` connect, `42` event, `43` ack,
//! `44` connect_error …), with an optional namespace (`/chat,`) and ack id before the JSON.
//!
//! Decoding borrows from the frame's text so a packet the scenario does not care about costs no
//! allocation; [`event_name`] reads an event's name without parsing the rest of its JSON.

use std::fmt;

use serde_json::Value;

/// A frame that is not a valid Engine.IO / Socket.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

fn error(what: impl Into<String>) -> ProtocolError {
    ProtocolError(what.into())
}

/// One Engine.IO packet received over the websocket transport (text frames only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0{…}`: the handshake (session id, ping interval); its JSON.
    Open(&'a str),
    /// `1`: the server closes the session.
    Close,
    /// `2…`: the server's heartbeat; answer with [`pong`] carrying the same data.
    Ping(&'a str),
    /// `3…`
    Pong(&'a str),
    /// `4…`: a Socket.IO packet.
    Socket(SocketPacket<'a>),
    /// `5`
    Upgrade,
    /// `6`
    Noop,
}

/// The Socket.IO packet types of protocol v5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

/// A Socket.IO packet: `<type>[<attachments>-][<namespace>,][<id>][<json>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketPacket<'a> {
    pub kind: Kind,
    /// `/` when the packet names none.
    pub namespace: &'a str,
    /// The ack id of an event that wants an answer, or of the answer itself.
    pub id: Option<u64>,
    /// The JSON that follows (empty when there is none): the connect payload, the event's
    /// `["name", …args]`, the ack's `[…args]`, or the connect_error's `{message}`.
    pub data: &'a str,
}

/// Decodes one websocket text frame.
pub fn decode(frame: &str) -> Result<Packet<'_>, ProtocolError> {
    let mut chars = frame.chars();
    let kind = chars.next().ok_or_else(|| error("empty frame"))?;
    let rest = chars.as_str();
    Ok(match kind {
        '0' => Packet::Open(rest),
        '1' => Packet::Close,
        '2' => Packet::Ping(rest),
        '3' => Packet::Pong(rest),
        '4' => Packet::Socket(decode_socket(rest)?),
        '5' => Packet::Upgrade,
        '6' => Packet::Noop,
        other => return Err(error(format!("unknown Engine.IO packet type {other:?}"))),
    })
}

/// Decodes the Socket.IO packet inside an Engine.IO message.
pub fn decode_socket(payload: &str) -> Result<SocketPacket<'_>, ProtocolError> {
    let mut chars = payload.chars();
    let kind = match chars.next() {
        Some('0') => Kind::Connect,
        Some('1') => Kind::Disconnect,
        Some('2') => Kind::Event,
        Some('3') => Kind::Ack,
        Some('4') => Kind::ConnectError,
        Some('5') => Kind::BinaryEvent,
        Some('6') => Kind::BinaryAck,
        Some(other) => return Err(error(format!("unknown Socket.IO packet type {other:?}"))),
        None => return Err(error("empty Socket.IO packet")),
    };
    let mut rest = chars.as_str();
    if matches!(kind, Kind::BinaryEvent | Kind::BinaryAck) {
        // `<attachments>-` comes first; the attachments follow as binary frames.
        let dash = rest
            .find('-')
            .ok_or_else(|| error("binary packet without an attachment count"))?;
        if dash == 0 || !rest[..dash].bytes().all(|b| b.is_ascii_digit()) {
            return Err(error("bad attachment count"));
        }
        rest = &rest[dash + 1..];
    }
    let mut namespace = "/";
    if rest.starts_with('/') {
        match rest.find(',') {
            Some(comma) => {
                namespace = &rest[..comma];
                rest = &rest[comma + 1..];
            }
            None => {
                namespace = rest;
                rest = "";
            }
        }
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = if digits > 0 {
        let id = rest[..digits]
            .parse()
            .map_err(|_| error("ack id out of range"))?;
        rest = &rest[digits..];
        Some(id)
    } else {
        None
    };
    Ok(SocketPacket {
        kind,
        namespace,
        id,
        data: rest,
    })
}

/// The name of an event packet's data (`["name", …]`), read without parsing the arguments.
/// `None` for anything else, including names with escapes (none of the product's events has one).
pub fn event_name(data: &str) -> Option<&str> {
    let rest = data.strip_prefix('[')?.trim_start().strip_prefix('"')?;
    let end = rest.find(['"', '\\'])?;
    (rest.as_bytes()[end] == b'"').then(|| &rest[..end])
}

/// The arguments of an event (after its name) or of an ack.
pub fn arguments(packet: &SocketPacket<'_>) -> Result<Vec<Value>, ProtocolError> {
    let mut values: Vec<Value> = serde_json::from_str(packet.data)
        .map_err(|e| error(format!("packet data is not a JSON array: {e}")))?;
    if matches!(packet.kind, Kind::Event | Kind::BinaryEvent) {
        if values.is_empty() || !values[0].is_string() {
            return Err(error("event without a name"));
        }
        values.remove(0);
    }
    Ok(values)
}

/// The reason of a `connect_error` packet (`{"message": …}`), as the client would show it.
pub fn connect_error_message(packet: &SocketPacket<'_>) -> String {
    serde_json::from_str::<Value>(packet.data)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| packet.data.to_owned())
}

/// The Engine.IO pong that answers a ping with `data`.
pub fn pong(data: &str) -> String {
    format!("3{data}")
}

/// `4<type>` and, outside the main namespace, `<namespace>,`.
fn header(kind: char, namespace: &str) -> String {
    let mut frame = String::with_capacity(64);
    frame.push('4');
    frame.push(kind);
    if namespace != "/" {
        frame.push_str(namespace);
        frame.push(',');
    }
    frame
}

/// Connects to a namespace with an auth payload (`40{"token":"…"}`).
pub fn connect(namespace: &str, auth: &Value) -> String {
    let mut frame = header('0', namespace);
    frame.push_str(&auth.to_string());
    frame
}

/// An event with its arguments, asking for an ack when `id` is given (`42<id>["name",…]`).
pub fn event(namespace: &str, id: Option<u64>, name: &str, args: &[&Value]) -> String {
    let mut frame = header('2', namespace);
    if let Some(id) = id {
        frame.push_str(&id.to_string());
    }
    frame.push('[');
    frame.push_str(&Value::from(name).to_string());
    for arg in args {
        frame.push(',');
        frame.push_str(&arg.to_string());
    }
    frame.push(']');
    frame
}

/// The answer to an event that asked for an ack (`43<id>[…]`).
pub fn ack(namespace: &str, id: u64, args: &[&Value]) -> String {
    let mut frame = header('3', namespace);
    frame.push_str(&id.to_string());
    frame.push('[');
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            frame.push(',');
        }
        frame.push_str(&arg.to_string());
    }
    frame.push(']');
    frame
}

/// The first argument of an event or ack, or null.
pub fn first_argument(packet: &SocketPacket<'_>) -> Value {
    arguments(packet)
        .ok()
        .and_then(|mut args| (!args.is_empty()).then(|| args.swap_remove(0)))
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn socket(frame: &str) -> SocketPacket<'_> {
        match decode(frame).unwrap() {
            Packet::Socket(packet) => packet,
            other => panic!("not a Socket.IO packet: {other:?}"),
        }
    }

    #[test]
    fn the_open_packet_carries_the_handshake_json() {
        let frame = r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000}"#;
        let Packet::Open(json) = decode(frame).unwrap() else {
            panic!("not an open packet");
        };
        let handshake: Value = serde_json::from_str(json).unwrap();
        assert_eq!(handshake["sid"], "abc");
        assert_eq!(handshake["pingInterval"], 25000);
    }

    #[test]
    fn a_ping_is_answered_with_a_pong_carrying_the_same_data() {
        assert_eq!(decode("2").unwrap(), Packet::Ping(""));
        assert_eq!(pong(""), "3");
        assert_eq!(decode("2probe").unwrap(), Packet::Ping("probe"));
        assert_eq!(pong("probe"), "3probe");
        assert_eq!(decode("3").unwrap(), Packet::Pong(""));
    }

    #[test]
    fn the_other_engine_packets_decode() {
        assert_eq!(decode("1").unwrap(), Packet::Close);
        assert_eq!(decode("5").unwrap(), Packet::Upgrade);
        assert_eq!(decode("6").unwrap(), Packet::Noop);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode("").is_err());
        assert!(decode("9").is_err());
        assert!(decode("4").is_err());
        assert!(decode("47").is_err());
        assert!(decode("45x-[]").is_err());
        assert!(decode("4299999999999999999999[\"x\"]").is_err());
    }

    #[test]
    fn connect_sends_the_auth_payload() {
        let frame = connect("/", &json!({"token": "t.o.k"}));
        assert_eq!(frame, r#"40{"token":"t.o.k"}"#);
        let packet = socket(&frame);
        assert_eq!(packet.kind, Kind::Connect);
        assert_eq!(packet.namespace, "/");
        assert_eq!(packet.id, None);
        assert_eq!(packet.data, r#"{"token":"t.o.k"}"#);
    }

    #[test]
    fn the_servers_connect_answer_carries_the_socket_id() {
        let packet = socket(r#"40{"sid":"wZX3oN0bSVIhsaknAAAI"}"#);
        assert_eq!(packet.kind, Kind::Connect);
        let data: Value = serde_json::from_str(packet.data).unwrap();
        assert_eq!(data["sid"], "wZX3oN0bSVIhsaknAAAI");
    }

    #[test]
    fn a_connect_error_gives_its_reason() {
        let packet = socket(r#"44{"message":"invalid_token"}"#);
        assert_eq!(packet.kind, Kind::ConnectError);
        assert_eq!(connect_error_message(&packet), "invalid_token");
        let packet = socket(r#"44{"message":"too_many_connections","data":{}}"#);
        assert_eq!(connect_error_message(&packet), "too_many_connections");
    }

    #[test]
    fn an_event_without_ack_round_trips() {
        let frame = event(
            "/",
            None,
            "typing",
            &[&json!({"to": "u", "isTyping": true})],
        );
        assert_eq!(frame, r#"42["typing",{"isTyping":true,"to":"u"}]"#);
        let packet = socket(&frame);
        assert_eq!(packet.kind, Kind::Event);
        assert_eq!(packet.id, None);
        assert_eq!(event_name(packet.data), Some("typing"));
        assert_eq!(
            arguments(&packet).unwrap(),
            vec![json!({"to": "u", "isTyping": true})]
        );
    }

    #[test]
    fn an_event_asking_for_an_ack_carries_its_id() {
        let message = json!({"to": "u1", "content": "hi", "clientId": "c1"});
        let frame = event("/", Some(17), "sendMessage", &[&message]);
        assert!(frame.starts_with(r#"4217["sendMessage","#), "{frame}");
        let packet = socket(&frame);
        assert_eq!(packet.kind, Kind::Event);
        assert_eq!(packet.id, Some(17));
        assert_eq!(event_name(packet.data), Some("sendMessage"));
        assert_eq!(arguments(&packet).unwrap(), vec![message]);
    }

    #[test]
    fn an_ack_answers_an_id_with_its_arguments() {
        let frame = ack("/", 3, &[&json!({"ok": true})]);
        assert_eq!(frame, r#"433[{"ok":true}]"#);
        let packet = socket(r#"43120[{"ok":false,"error":{"code":"rate_limited"}}]"#);
        assert_eq!(packet.kind, Kind::Ack);
        assert_eq!(packet.id, Some(120));
        let args = arguments(&packet).unwrap();
        assert_eq!(args[0]["error"]["code"], "rate_limited");
        assert_eq!(ack("/", 9, &[]), "439[]");
    }

    #[test]
    fn a_namespace_prefix_is_read_and_written() {
        let packet = socket(r#"42/messenger,5["newMessage",{"message":{}}]"#);
        assert_eq!(packet.namespace, "/messenger");
        assert_eq!(packet.id, Some(5));
        assert_eq!(event_name(packet.data), Some("newMessage"));

        let packet = socket("40/auth");
        assert_eq!(packet.kind, Kind::Connect);
        assert_eq!(packet.namespace, "/auth");
        assert_eq!(packet.data, "");

        let frame = connect("/auth", &json!({"token": "x"}));
        assert_eq!(frame, r#"40/auth,{"token":"x"}"#);
        assert_eq!(
            event("/messenger", Some(1), "ping", &[]),
            r#"42/messenger,1["ping"]"#
        );
        assert_eq!(ack("/messenger", 2, &[]), "43/messenger,2[]");
        assert_eq!(socket("41/auth,").kind, Kind::Disconnect);
    }

    #[test]
    fn binary_packets_skip_their_attachment_count() {
        let packet = socket(r#"451-/files,7["upload",{"_placeholder":true,"num":0}]"#);
        assert_eq!(packet.kind, Kind::BinaryEvent);
        assert_eq!(packet.namespace, "/files");
        assert_eq!(packet.id, Some(7));
        assert_eq!(event_name(packet.data), Some("upload"));
    }

    #[test]
    fn event_name_needs_a_plain_leading_string() {
        assert_eq!(
            event_name(r#"["newMessage",{"message":{"content":"\"x"}}]"#),
            Some("newMessage")
        );
        assert_eq!(event_name(r#"[ "spaced" ]"#), Some("spaced"));
        assert_eq!(event_name(r#"["esc\"aped"]"#), None);
        assert_eq!(event_name(r#"{"not":"an array"}"#), None);
        assert_eq!(event_name("[1,2]"), None);
        assert_eq!(event_name(""), None);
    }

    #[test]
    fn an_event_without_a_name_is_an_error() {
        let packet = socket("42[]");
        assert!(arguments(&packet).is_err());
        let packet = socket("42[1]");
        assert!(arguments(&packet).is_err());
        let packet = socket("42{}");
        assert!(arguments(&packet).is_err());
    }
}
