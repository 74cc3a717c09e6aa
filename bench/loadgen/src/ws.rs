//! The client side of a websocket (RFC 6455) over one TCP connection, written for many thousand
//! sockets in one process: a fixed 4 KiB read buffer per socket, and frames longer than
//! [`KEEP_MAX`] streamed past instead of buffered.
//!
//! Why not tokio-tungstenite: its read buffer keeps the capacity of the largest frame a socket
//! ever received, and the servers under test send every new socket the whole online list
//! (`getOnlineUsers`, about 60 bytes per online user). At 19,000 sockets that would hold
//! gigabytes in the load generator and measure it instead of the server. tungstenite still
//! provides the handshake's key and accept hash.
//!
//! [`WsClient::recv`] is cancel-safe (its only await point is one `read`, and all parsing state
//! lives in the struct), so a socket's task can race it against a timer in `select!`.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Frames up to this size are handed over; longer ones are skipped (the scenarios need none).
pub const KEEP_MAX: usize = 16 * 1024;
/// Bytes read from the kernel at a time, per socket.
const READ_BUFFER: usize = 4096;
/// A response to the upgrade request longer than this is refused.
const MAX_RESPONSE_HEAD: usize = READ_BUFFER;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// What the server sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A complete text message of at most [`KEEP_MAX`] bytes.
    Text(String),
    /// A message longer than [`KEEP_MAX`] (or a binary one), not kept; its length.
    Skipped(u64),
    /// A websocket ping; answer with [`WsClient::send_pong`].
    Ping(Vec<u8>),
    /// The server closed the websocket or the connection.
    Closed,
}

/// The frame being read.
#[derive(Debug, Clone, Copy)]
struct Frame {
    opcode: u8,
    fin: bool,
    /// Payload bytes still to come.
    remaining: u64,
}

/// Frame parsing, separate from the socket so it can be tested on byte strings.
#[derive(Debug, Default)]
struct Decoder {
    frame: Option<Frame>,
    /// Whether the data message in progress is kept (else skipped).
    keeping: bool,
    /// Length of the data message in progress so far.
    message_len: u64,
    /// The kept data message in progress, or the control frame's payload.
    message: Vec<u8>,
    control: Vec<u8>,
    /// A data message is in progress (between its first frame and the one with FIN).
    in_message: bool,
}

/// A frame header: (header length, fin, opcode, payload length), or `None` if incomplete.
fn parse_header(bytes: &[u8]) -> io::Result<Option<(usize, bool, u8, u64)>> {
    if bytes.len() < 2 {
        return Ok(None);
    }
    let fin = bytes[0] & 0x80 != 0;
    if bytes[0] & 0x70 != 0 {
        return Err(invalid("reserved bits set: no extension was negotiated"));
    }
    let opcode = bytes[0] & 0x0F;
    if bytes[1] & 0x80 != 0 {
        return Err(invalid("a server frame must not be masked"));
    }
    let (header, len) = match bytes[1] & 0x7F {
        126 if bytes.len() < 4 => return Ok(None),
        126 => (4, u64::from(u16::from_be_bytes([bytes[2], bytes[3]]))),
        127 if bytes.len() < 10 => return Ok(None),
        127 => {
            let mut len = [0u8; 8];
            len.copy_from_slice(&bytes[2..10]);
            (10, u64::from_be_bytes(len))
        }
        len => (2, u64::from(len)),
    };
    Ok(Some((header, fin, opcode, len)))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

impl Decoder {
    /// Consumes what it can of `input`; answers how many bytes it used and the next complete
    /// message, if one ended.
    fn feed(&mut self, input: &[u8]) -> io::Result<(usize, Option<Incoming>)> {
        let mut used = 0;
        loop {
            let frame = match self.frame {
                Some(frame) => frame,
                None => {
                    let Some((header, fin, opcode, len)) = parse_header(&input[used..])? else {
                        return Ok((used, None));
                    };
                    used += header;
                    self.start_frame(fin, opcode, len)?
                }
            };
            let available = (input.len() - used) as u64;
            let take = frame.remaining.min(available) as usize;
            let chunk = &input[used..used + take];
            used += take;
            let control = frame.opcode & 0x8 != 0;
            if control {
                self.control.extend_from_slice(chunk);
            } else if self.keeping {
                self.message.extend_from_slice(chunk);
            }
            let remaining = frame.remaining - take as u64;
            if remaining > 0 {
                self.frame = Some(Frame { remaining, ..frame });
                return Ok((used, None));
            }
            self.frame = None;
            if control {
                let payload = std::mem::take(&mut self.control);
                let incoming = match frame.opcode {
                    OP_PING => Some(Incoming::Ping(payload)),
                    OP_CLOSE => Some(Incoming::Closed),
                    _ => None, // a pong
                };
                if incoming.is_some() {
                    return Ok((used, incoming));
                }
            } else if frame.fin {
                self.in_message = false;
                let incoming = if self.keeping {
                    let text = String::from_utf8(std::mem::take(&mut self.message))
                        .map_err(|_| invalid("a text frame is not UTF-8"))?;
                    Incoming::Text(text)
                } else {
                    Incoming::Skipped(self.message_len)
                };
                return Ok((used, Some(incoming)));
            }
        }
    }

    fn start_frame(&mut self, fin: bool, opcode: u8, len: u64) -> io::Result<Frame> {
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if len > 125 || !fin {
                    return Err(invalid("bad control frame"));
                }
            }
            OP_TEXT | OP_BINARY => {
                if self.in_message {
                    return Err(invalid("a new message started inside a fragmented one"));
                }
                self.in_message = true;
                self.message_len = len;
                self.keeping = opcode == OP_TEXT && len <= KEEP_MAX as u64;
                self.message.clear();
            }
            OP_CONTINUATION => {
                if !self.in_message {
                    return Err(invalid("a continuation frame outside a message"));
                }
                self.message_len += len;
                if self.message_len > KEEP_MAX as u64 && self.keeping {
                    self.keeping = false;
                    self.message = Vec::new();
                }
            }
            _ => return Err(invalid("unknown opcode")),
        }
        Ok(Frame {
            opcode,
            fin,
            remaining: len,
        })
    }
}

/// One websocket connection, client side.
pub struct WsClient {
    stream: TcpStream,
    /// Bytes read and not yet decoded are `buf[start..end]`.
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    decoder: Decoder,
    /// State of the masking keys' generator (any key is valid; they need not be secret here).
    mask_state: u32,
    /// Bytes received, frames included.
    pub rx_bytes: u64,
}

impl WsClient {
    /// Opens a TCP connection and upgrades it to a websocket on `path_and_query`.
    pub async fn connect(addr: SocketAddr, path_and_query: &str) -> io::Result<WsClient> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let key = tungstenite::handshake::client::generate_key();
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        let mut client = WsClient {
            stream,
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            decoder: Decoder::default(),
            mask_state: 0x9E37_79B9 ^ (addr.port() as u32) ^ (key.len() as u32),
            rx_bytes: 0,
        };
        for b in key.bytes() {
            client.mask_state = client.mask_state.rotate_left(5) ^ u32::from(b);
        }
        client.stream.write_all(request.as_bytes()).await?;
        let head_len = loop {
            if let Some(at) = find(&client.buf[..client.end], b"\r\n\r\n") {
                break at + 4;
            }
            if client.end == MAX_RESPONSE_HEAD {
                return Err(invalid("the upgrade response is too long"));
            }
            let n = client.stream.read(&mut client.buf[client.end..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            client.end += n;
            client.rx_bytes += n as u64;
        };
        let head = String::from_utf8_lossy(&client.buf[..head_len]).into_owned();
        check_upgrade(&head, &key)?;
        client.start = head_len;
        Ok(client)
    }

    /// The next message from the server. Cancel-safe.
    pub async fn recv(&mut self) -> io::Result<Incoming> {
        loop {
            let (used, incoming) = self.decoder.feed(&self.buf[self.start..self.end])?;
            self.start += used;
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
            }
            if let Some(incoming) = incoming {
                return Ok(incoming);
            }
            if self.start > 0 {
                // Only an incomplete header is left: move it to the front.
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = self.stream.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return Ok(Incoming::Closed);
            }
            self.end += n;
            self.rx_bytes += n as u64;
        }
    }

    /// Sends one text message (a masked frame, as a client must).
    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        let frame = self.frame(OP_TEXT, text.as_bytes());
        self.stream.write_all(&frame).await
    }

    /// Answers a websocket ping.
    pub async fn send_pong(&mut self, payload: &[u8]) -> io::Result<()> {
        let frame = self.frame(OP_PONG, payload);
        self.stream.write_all(&frame).await
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift32
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_state = x;
        x.to_be_bytes()
    }

    fn frame(&mut self, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = self.next_mask();
        encode_frame(opcode, payload, mask)
    }
}

/// A final, masked frame.
fn encode_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x80 | opcode);
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Checks the server's answer to the upgrade request: `101` and the right accept hash.
fn check_upgrade(head: &str, key: &str) -> io::Result<()> {
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split(' ').nth(1).unwrap_or_default();
    if code != "101" {
        return Err(io::Error::other(format!("http_{code}")));
    }
    let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let accepted = lines
        .filter_map(|l| l.split_once(':'))
        .any(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == expected
        });
    if accepted {
        Ok(())
    } else {
        Err(invalid("wrong Sec-WebSocket-Accept"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unmasked frame as a server sends it.
    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            len @ 0..=125 => frame.push(len as u8),
            len @ 126..=0xFFFF => {
                frame.push(126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frame.push(127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(payload);
        frame
    }

    /// Feeds `bytes` in pieces of `step`, collecting the messages, as the socket would.
    fn decode_all(bytes: &[u8], step: usize) -> Vec<Incoming> {
        let mut decoder = Decoder::default();
        let mut pending: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        for piece in bytes.chunks(step) {
            pending.extend_from_slice(piece);
            loop {
                let (used, incoming) = decoder.feed(&pending).unwrap();
                pending.drain(..used);
                match incoming {
                    Some(m) => out.push(m),
                    None => break,
                }
            }
        }
        assert!(pending.is_empty(), "bytes left over: {pending:?}");
        out
    }

    #[test]
    fn text_frames_are_handed_over_whole_however_the_bytes_arrive() {
        let mut bytes = server_frame(true, OP_TEXT, b"2");
        bytes.extend(server_frame(true, OP_TEXT, "42[\"x\",\"é\"]".as_bytes()));
        bytes.extend(server_frame(true, OP_TEXT, &[b'a'; 300]));
        for step in [1, 2, 3, 7, 4096] {
            let out = decode_all(&bytes, step);
            assert_eq!(out.len(), 3, "step {step}");
            assert_eq!(out[0], Incoming::Text("2".into()));
            assert_eq!(out[1], Incoming::Text("42[\"x\",\"é\"]".into()));
            assert_eq!(out[2], Incoming::Text("a".repeat(300)));
        }
    }

    #[test]
    fn a_large_frame_is_skipped_without_being_kept() {
        let big = vec![b'x'; KEEP_MAX + 1];
        let mut bytes = server_frame(true, OP_TEXT, &big);
        bytes.extend(server_frame(true, OP_TEXT, b"3"));
        for step in [5, 4096, 100_000] {
            let out = decode_all(&bytes, step);
            assert_eq!(
                out,
                vec![
                    Incoming::Skipped(KEEP_MAX as u64 + 1),
                    Incoming::Text("3".into())
                ]
            );
        }
        let huge = vec![b'y'; 70_000];
        let out = decode_all(&server_frame(true, OP_TEXT, &huge), 4096);
        assert_eq!(out, vec![Incoming::Skipped(70_000)]);
    }

    #[test]
    fn fragmented_messages_are_joined_and_interleaved_pings_answered() {
        let mut bytes = server_frame(false, OP_TEXT, b"42[\"a\",");
        bytes.extend(server_frame(true, OP_PING, b"hb"));
        bytes.extend(server_frame(true, OP_CONTINUATION, b"1]"));
        let out = decode_all(&bytes, 3);
        assert_eq!(
            out,
            vec![
                Incoming::Ping(b"hb".to_vec()),
                Incoming::Text("42[\"a\",1]".into())
            ]
        );
    }

    #[test]
    fn a_close_frame_ends_the_socket_and_pongs_are_ignored() {
        let mut bytes = server_frame(true, OP_PONG, b"");
        bytes.extend(server_frame(true, OP_CLOSE, &[0x03, 0xE8]));
        assert_eq!(decode_all(&bytes, 1), vec![Incoming::Closed]);
    }

    #[test]
    fn masked_or_malformed_server_frames_are_errors() {
        let mut decoder = Decoder::default();
        assert!(decoder.feed(&[0x81, 0x81, 0, 0, 0, 0, b'x']).is_err());
        let mut decoder = Decoder::default();
        assert!(decoder.feed(&[0x80, 0x01, b'x']).is_err());
        let mut decoder = Decoder::default();
        assert!(decoder.feed(&[0xC1, 0x01, b'x']).is_err());
        let mut decoder = Decoder::default();
        assert!(
            decoder
                .feed(&server_frame(true, OP_TEXT, &[0xFF, 0xFE]))
                .is_err()
        );
    }

    #[test]
    fn client_frames_are_masked_with_the_right_length_encoding() {
        let mask = [1, 2, 3, 4];
        let frame = encode_frame(OP_TEXT, b"40", mask);
        assert_eq!(frame[..2], [0x81, 0x82]);
        assert_eq!(frame[2..6], mask);
        assert_eq!(frame[6..], [b'4' ^ 1, b'0' ^ 2]);
        let frame = encode_frame(OP_TEXT, &[0; 200], mask);
        assert_eq!(frame[..4], [0x81, 0xFE, 0, 200]);
        assert_eq!(frame.len(), 4 + 4 + 200);
        let frame = encode_frame(OP_TEXT, &[0; 70_000], mask);
        assert_eq!(frame[1], 0xFF);
        assert_eq!(frame[2..10], 70_000u64.to_be_bytes());
    }

    #[test]
    fn the_upgrade_answer_must_be_101_with_the_accept_hash() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                  sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert!(check_upgrade(ok, key).is_ok());
        let refused = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            check_upgrade(refused, key).unwrap_err().to_string(),
            "http_400"
        );
        let wrong = "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        assert!(check_upgrade(wrong, key).is_err());
    }
}
