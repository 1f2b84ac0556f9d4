//! Twilio's side of the wire: request signatures (`X-Twilio-Signature`), TwiML for messaging, and
//! the identifiers Twilio hands out (`AC…`, `SM…`, E.164 numbers) as types that parse.

pub mod signature;
pub mod twiml;
