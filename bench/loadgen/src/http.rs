//! A keep-alive HTTP/1.1 connection for the REST calls (hyper's low-level client: one
//! connection, one request at a time, no pool and no TLS).

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One HTTP/1.1 connection to the server.
pub struct HttpConnection {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

impl HttpConnection {
    pub async fn open(addr: SocketAddr) -> io::Result<HttpConnection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes; either is fine here.
            let _ = connection.await;
        });
        Ok(HttpConnection { addr, sender })
    }

    /// `POST path` with a JSON body and a bearer token; answers the status and the body.
    pub async fn post_json(
        &mut self,
        path: &str,
        bearer: &str,
        body: String,
    ) -> io::Result<(StatusCode, Bytes)> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, self.addr.to_string())
            .header(AUTHORIZATION, format!("Bearer {bearer}"))
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(io::Error::other)?;
        self.sender.ready().await.map_err(io::Error::other)?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(io::Error::other)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(io::Error::other)?
            .to_bytes();
        Ok((status, body))
    }
}
