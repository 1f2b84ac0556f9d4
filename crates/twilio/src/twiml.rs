//! TwiML for Messaging: a [`MessagingResponse`] builder whose output is byte-identical to
//! twilio-python 9.13.0, and a strict [`parse`] that refuses what Twilio refuses, with Twilio's
//! error codes.

mod parse;

pub use parse::{
    ParsedMessage, ParsedRedirect, ParsedVerb, TwimlError, TwimlErrorKind, TwimlResponse, parse,
};

use std::collections::BTreeMap;
use std::fmt;

/// The XML declaration twilio-python writes in front of every document.
pub const XML_DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// Largest response body Twilio accepts (error 11750).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Longest message body, in characters.
pub const MAX_BODY_CHARS: usize = 1600;

/// Most `<Media>` nouns in one `<Message>`.
pub const MAX_MEDIA: usize = 10;

/// A messaging TwiML document under construction.
///
/// ```
/// use switchboard_twilio::twiml::MessagingResponse;
/// let mut r = MessagingResponse::new();
/// r.message("Hi").media("https://example.com/cat.jpg");
/// assert_eq!(
///     r.to_xml(),
///     r#"<?xml version="1.0" encoding="UTF-8"?><Response><Message>Hi<Media>https://example.com/cat.jpg</Media></Message></Response>"#
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessagingResponse {
    verbs: Vec<Verb>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verb {
    Message(Message),
    Redirect(Redirect),
}

/// A `<Message>` verb: its text, then `<Body>`/`<Media>` nouns in the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Attributes by name; a `BTreeMap` because twilio-python writes them sorted.
    attributes: BTreeMap<&'static str, String>,
    text: String,
    nouns: Vec<Noun>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Noun {
    Body(String),
    Media(String),
}

/// A `<Redirect>` verb: fetch new TwiML from a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    url: String,
    method: Option<String>,
}

impl MessagingResponse {
    /// An empty response, which sends no reply: `<Response />`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a `<Message>` whose text is `body` (empty for a message built from nouns) and
    /// returns it for attributes and nouns.
    pub fn message(&mut self, body: impl Into<String>) -> &mut Message {
        self.push_message(Message::new(body))
    }

    /// Appends a message built separately.
    pub fn push_message(&mut self, message: Message) -> &mut Message {
        self.verbs.push(Verb::Message(message));
        match self.verbs.last_mut() {
            Some(Verb::Message(m)) => m,
            _ => unreachable!("a message was just pushed"),
        }
    }

    /// Appends a `<Redirect>` to `url`.
    pub fn redirect(&mut self, url: impl Into<String>) -> &mut Redirect {
        self.verbs.push(Verb::Redirect(Redirect {
            url: url.into(),
            method: None,
        }));
        match self.verbs.last_mut() {
            Some(Verb::Redirect(r)) => r,
            _ => unreachable!("a redirect was just pushed"),
        }
    }

    /// The document with its XML declaration, as `str(MessagingResponse())` in twilio-python.
    pub fn to_xml(&self) -> String {
        let mut out = String::from(XML_DECLARATION);
        self.write_response(&mut out);
        out
    }

    /// The document without the declaration (`to_xml(xml_declaration=False)`).
    pub fn to_xml_without_declaration(&self) -> String {
        let mut out = String::new();
        self.write_response(&mut out);
        out
    }

    fn write_response(&self, out: &mut String) {
        if self.verbs.is_empty() {
            out.push_str("<Response />");
            return;
        }
        out.push_str("<Response>");
        for verb in &self.verbs {
            match verb {
                Verb::Message(m) => m.write(out),
                Verb::Redirect(r) => r.write(out),
            }
        }
        out.push_str("</Response>");
    }
}

impl fmt::Display for MessagingResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_xml())
    }
}

impl Message {
    /// A message whose text is `body`.
    ///
    /// Like twilio-python, the builder escapes but does not filter: control characters XML
    /// cannot carry (anything below U+0020 but tab, LF and CR) are written as given, and Twilio
    /// refuses such a document (12100). [`parse`] catches that before Twilio does.
    pub fn new(body: impl Into<String>) -> Self {
        Message {
            text: body.into(),
            ..Message::default()
        }
    }

    /// Adds a `<Body>` noun.
    pub fn body(&mut self, text: impl Into<String>) -> &mut Self {
        self.nouns.push(Noun::Body(text.into()));
        self
    }

    /// Adds a `<Media>` noun (a URL of an image or other media to send).
    pub fn media(&mut self, url: impl Into<String>) -> &mut Self {
        self.nouns.push(Noun::Media(url.into()));
        self
    }

    /// `to`: the recipient; defaults to the sender of the inbound message.
    pub fn to(&mut self, to: impl Into<String>) -> &mut Self {
        self.attribute("to", to)
    }

    /// `from`: the sender; defaults to the number that received the inbound message.
    pub fn from(&mut self, from: impl Into<String>) -> &mut Self {
        self.attribute("from", from)
    }

    /// `action`: URL that receives the status callbacks of the message.
    pub fn action(&mut self, url: impl Into<String>) -> &mut Self {
        self.attribute("action", url)
    }

    /// `method`: `GET` or `POST` for `action`.
    pub fn method(&mut self, method: impl Into<String>) -> &mut Self {
        self.attribute("method", method)
    }

    /// `statusCallback`: deprecated by Twilio in favour of [`Message::action`].
    pub fn status_callback(&mut self, url: impl Into<String>) -> &mut Self {
        self.attribute("statusCallback", url)
    }

    fn attribute(&mut self, name: &'static str, value: impl Into<String>) -> &mut Self {
        self.attributes.insert(name, value.into());
        self
    }

    fn write(&self, out: &mut String) {
        out.push_str("<Message");
        for (name, value) in &self.attributes {
            write_attribute(out, name, value);
        }
        if self.text.is_empty() && self.nouns.is_empty() {
            out.push_str(" />");
            return;
        }
        out.push('>');
        escape_text(out, &self.text);
        for noun in &self.nouns {
            match noun {
                Noun::Body(text) => write_text_element(out, "Body", text),
                Noun::Media(url) => write_text_element(out, "Media", url),
            }
        }
        out.push_str("</Message>");
    }
}

impl Redirect {
    /// `method`: `GET` or `POST` for fetching the URL.
    pub fn method(&mut self, method: impl Into<String>) -> &mut Self {
        self.method = Some(method.into());
        self
    }

    fn write(&self, out: &mut String) {
        out.push_str("<Redirect");
        if let Some(method) = &self.method {
            write_attribute(out, "method", method);
        }
        if self.url.is_empty() {
            out.push_str(" />");
            return;
        }
        out.push('>');
        escape_text(out, &self.url);
        out.push_str("</Redirect>");
    }
}

fn write_text_element(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    if text.is_empty() {
        out.push_str(" />");
        return;
    }
    out.push('>');
    escape_text(out, text);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn write_attribute(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    escape_attribute(out, value);
    out.push('"');
}

/// Text content, escaped as Python's ElementTree does: `&`, `<`, `>` only.
fn escape_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

/// Attribute values, escaped as Python's ElementTree does: also `"`, and CR/LF/TAB as character
/// references so that they survive attribute-value normalisation.
fn escape_attribute(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#09;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests;
