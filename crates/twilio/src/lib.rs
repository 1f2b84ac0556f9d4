//! Twilio's side of the wire: request signatures (`X-Twilio-Signature`), TwiML for messaging, and
//! the identifiers Twilio hands out (`AC…`, `SM…`, E.164 numbers) as types that parse.
//!
//! - [`signature`]: compute and validate `X-Twilio-Signature` (form, `bodySHA256`, HMAC-SHA256),
//!   and sign requests the way Twilio does for tests.
//! - [`twiml`]: the `MessagingResponse` builder and the strict TwiML parser.
//! - [`ids`]: `AccountSid`, `MessageSid`, `MessagingServiceSid`, `E164`.
//! - [`segments`]: GSM-7 / UCS-2 detection and SMS segment counts.
//! - [`errors`]: REST API error bodies and whether to retry them.
//! - [`opt_out`]: the standard STOP / START keywords of inbound messages.
//! - [`client`]: the REST client (Messages, Lookup v1/v2), its error taxonomy and retry backoff.

pub mod client;
pub mod errors;
pub mod ids;
pub mod opt_out;
pub mod segments;
pub mod signature;
pub mod twiml;

pub use errors::{ApiError, ErrorKind};
pub use ids::{AccountSid, E164, IdError, MessageSid, MessagingServiceSid};
pub use twiml::{MessagingResponse, TwimlError, TwimlResponse};
