//! A small HTTP/1 client for JSON POSTs, with a timeout and a verdict on retrying.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use thiserror::Error;

/// Why a POST did not go through.
#[derive(Debug, Error)]
pub enum DeliveryError {
    /// The URL does not parse or is not `http://`.
    #[error("invalid URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection, or the connection broke.
    #[error("{url} unreachable: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// The client's error.
        reason: String,
    },
    /// No answer within the timeout.
    #[error("{url} did not answer within {timeout_ms} ms")]
    Timeout {
        /// The URL.
        url: String,
        /// The timeout.
        timeout_ms: u128,
    },
    /// The server answered with an error status.
    #[error("{url} answered {status}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
}

impl DeliveryError {
    /// Whether trying again later may succeed: outages, timeouts, 5xx and 429. A 4xx means
    /// the receiver refuses this payload, and would refuse it again.
    pub fn is_transient(&self) -> bool {
        match self {
            DeliveryError::Unreachable { .. } | DeliveryError::Timeout { .. } => true,
            DeliveryError::Status { status, .. } => *status >= 500 || *status == 429,
            DeliveryError::InvalidUrl { .. } => false,
        }
    }
}

/// JSON POSTs over HTTP/1 with one connection pool.
#[derive(Clone)]
pub struct JsonPoster {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl JsonPoster {
    /// A client whose requests give up after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        }
    }

    /// POSTs `body` (JSON) to `url`; `Ok` on a 2xx answer.
    pub async fn post(&self, url: &str, body: Vec<u8>) -> Result<(), DeliveryError> {
        let uri: Uri = url.parse().map_err(|e| DeliveryError::InvalidUrl {
            url: url.to_string(),
            reason: format!("{e}"),
        })?;
        if uri.scheme_str() != Some("http") {
            return Err(DeliveryError::InvalidUrl {
                url: url.to_string(),
                reason: "only http:// is supported".into(),
            });
        }
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("llmopt-notifier/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| DeliveryError::InvalidUrl {
                url: url.to_string(),
                reason: format!("{e}"),
            })?;
        let exchange = async {
            let response =
                self.client
                    .request(request)
                    .await
                    .map_err(|e| DeliveryError::Unreachable {
                        url: url.to_string(),
                        reason: format!("{e}"),
                    })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if status.is_success() {
                Ok(())
            } else {
                Err(DeliveryError::Status {
                    url: url.to_string(),
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
                })
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| DeliveryError::Timeout {
                url: url.to_string(),
                timeout_ms: self.timeout.as_millis(),
            })?
    }
}
