//! The strict TwiML reader: what a bot returns is checked the way Twilio checks it, so a reply
//! that Twilio would refuse fails here first, with the code Twilio's debugger would show.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::{MAX_BODY_CHARS, MAX_MEDIA, MAX_RESPONSE_BYTES};

/// What class of failure a [`TwimlError`] is, each mapping to one Twilio error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwimlErrorKind {
    /// 12100 Document parse failure: not well-formed XML, something before `<?xml`, a BOM, an
    /// unescaped `&` or `<`, mismatched (or differently cased) end tags, an empty document.
    DocumentParse,
    /// 12102 The root element must be `Response`.
    RootNotResponse,
    /// 12200 Schema validation: an unknown verb, noun or attribute, or content where none fits.
    Schema,
    /// 14103 Invalid Body: a message with no body and no media, or a body over 1600 characters.
    InvalidBody,
    /// 21620 Invalid media URL.
    InvalidMedia,
    /// 21623 More than 10 `<Media>` in one message.
    TooManyMedia,
    /// 11750 Response body over 64 kB.
    TooLarge,
}

impl TwimlErrorKind {
    /// Twilio's error code for this kind.
    pub fn code(self) -> u32 {
        match self {
            TwimlErrorKind::DocumentParse => 12100,
            TwimlErrorKind::RootNotResponse => 12102,
            TwimlErrorKind::Schema => 12200,
            TwimlErrorKind::InvalidBody => 14103,
            TwimlErrorKind::InvalidMedia => 21620,
            TwimlErrorKind::TooManyMedia => 21623,
            TwimlErrorKind::TooLarge => 11750,
        }
    }
}

/// Why Twilio would refuse a TwiML document (or, in [`TwimlResponse::warnings`], complain).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TwiML error {}: {message}", .kind.code())]
pub struct TwimlError {
    pub kind: TwimlErrorKind,
    /// What is wrong, for a person; names the element and, where known, the byte offset.
    pub message: String,
}

impl TwimlError {
    /// Twilio's error code (12100, 12102, 12200, 14103, 21620, 21623, 11750).
    pub fn code(&self) -> u32 {
        self.kind.code()
    }

    fn new(kind: TwimlErrorKind, message: impl Into<String>) -> Self {
        TwimlError {
            kind,
            message: message.into(),
        }
    }
}

/// A parsed messaging TwiML document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TwimlResponse {
    /// Every verb in document order, including any after the first `<Redirect>`.
    pub verbs: Vec<ParsedVerb>,
    /// Problems Twilio reports as warnings without refusing the document (14103 for a message
    /// with neither body nor media: Twilio sends nothing for it).
    pub warnings: Vec<TwimlError>,
}

/// One verb of a [`TwimlResponse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedVerb {
    Message(ParsedMessage),
    Redirect(ParsedRedirect),
}

/// A `<Message>` as Twilio reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedMessage {
    /// All text of the message (direct text and `<Body>` nouns, in order), unescaped, line ends
    /// normalised to `\n` as XML requires, whitespace kept. [`ParsedMessage::body`] trims it.
    pub text: String,
    /// `<Media>` URLs, trimmed.
    pub media: Vec<String>,
    pub to: Option<String>,
    pub from: Option<String>,
    pub action: Option<String>,
    pub method: Option<String>,
    pub status_callback: Option<String>,
}

impl ParsedMessage {
    /// The text that is sent: [`ParsedMessage::text`] without leading and trailing whitespace.
    pub fn body(&self) -> &str {
        self.text.trim()
    }

    /// True when there is nothing to send (no body, no media).
    pub fn is_empty(&self) -> bool {
        self.body().is_empty() && self.media.is_empty()
    }
}

/// A `<Redirect>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRedirect {
    /// The URL, trimmed.
    pub url: String,
    pub method: Option<String>,
}

impl TwimlResponse {
    /// The verbs Twilio executes: everything up to and including the first `<Redirect>`.
    pub fn effective_verbs(&self) -> &[ParsedVerb] {
        let end = self
            .verbs
            .iter()
            .position(|v| matches!(v, ParsedVerb::Redirect(_)))
            .map_or(self.verbs.len(), |i| i + 1);
        &self.verbs[..end]
    }

    /// The messages Twilio sends (those before the first `<Redirect>`), empty ones included.
    pub fn messages(&self) -> impl Iterator<Item = &ParsedMessage> {
        self.effective_verbs().iter().filter_map(|v| match v {
            ParsedVerb::Message(m) => Some(m),
            ParsedVerb::Redirect(_) => None,
        })
    }

    /// The `<Redirect>` Twilio follows, if any.
    pub fn redirect(&self) -> Option<&ParsedRedirect> {
        self.verbs.iter().find_map(|v| match v {
            ParsedVerb::Redirect(r) => Some(r),
            ParsedVerb::Message(_) => None,
        })
    }
}

/// Parses a messaging TwiML document the way Twilio does, refusing what Twilio refuses.
///
/// Enforced: size ≤ 64 kB (11750); nothing before `<?xml` and no BOM (12100); well-formed XML
/// with `&`/`<` escaped and end tags matching exactly (12100); root `Response`, case-sensitive
/// (12102); verbs `Message` and `Redirect` only, nouns `Body` and `Media` only, known attributes
/// only, `method` GET or POST (12200); ≤ 10 media (21623), no empty media URL (21620), body ≤
/// 1600 characters (14103).
pub fn parse(xml: &str) -> Result<TwimlResponse, TwimlError> {
    use TwimlErrorKind::*;

    if xml.len() > MAX_RESPONSE_BYTES {
        return Err(TwimlError::new(
            TooLarge,
            format!(
                "response is {} bytes; Twilio accepts at most {MAX_RESPONSE_BYTES}",
                xml.len()
            ),
        ));
    }
    if xml.starts_with('\u{feff}') {
        return Err(TwimlError::new(
            DocumentParse,
            "byte-order mark before the document",
        ));
    }
    if xml.trim().is_empty() {
        return Err(TwimlError::new(DocumentParse, "empty document"));
    }
    let trimmed = xml.trim_start();
    if trimmed.starts_with("<?xml") && trimmed.len() != xml.len() {
        return Err(TwimlError::new(
            DocumentParse,
            format!(
                "{} whitespace character(s) before the XML declaration; nothing may precede <?xml",
                xml.len() - trimmed.len()
            ),
        ));
    }

    let mut reader = Reader::from_str(xml);
    let config = reader.config_mut();
    config.check_comments = true;
    config.check_end_names = true;
    config.expand_empty_elements = false;
    config.trim_text(false);

    let mut state = State::BeforeRoot;
    let mut response = TwimlResponse::default();
    let mut first_event = true;

    loop {
        let offset = reader.buffer_position();
        let event = reader.read_event().map_err(|e| {
            TwimlError::new(
                DocumentParse,
                format!(
                    "not well-formed XML near byte {}: {e}",
                    reader.error_position()
                ),
            )
        })?;
        let was_first = std::mem::replace(&mut first_event, false);
        match event {
            Event::Decl(decl) => {
                if !was_first {
                    return Err(TwimlError::new(
                        DocumentParse,
                        format!("XML declaration at byte {offset}; it may only open the document"),
                    ));
                }
                check_declaration(&decl)?;
            }
            Event::DocType(_) => {
                return Err(TwimlError::new(
                    DocumentParse,
                    format!("DOCTYPE at byte {offset} is not allowed in TwiML"),
                ));
            }
            Event::PI(pi) => {
                let target = pi.target();
                if target.eq_ignore_ascii_case(b"xml") {
                    return Err(TwimlError::new(
                        DocumentParse,
                        format!("misplaced XML declaration at byte {offset}"),
                    ));
                }
            }
            Event::Comment(_) => {}
            Event::Text(text) => {
                let text = unescape_text(&text, offset)?;
                state.text(&text, offset)?;
            }
            Event::CData(data) => {
                let raw = std::str::from_utf8(&data).map_err(|_| {
                    TwimlError::new(
                        DocumentParse,
                        format!("invalid UTF-8 in CDATA at byte {offset}"),
                    )
                })?;
                if let Some(c) = raw.chars().find(|&c| !is_xml_char(c)) {
                    return Err(TwimlError::new(
                        DocumentParse,
                        format!(
                            "character U+{:04X} in CDATA at byte {offset} is not allowed in XML",
                            c as u32
                        ),
                    ));
                }
                let text = normalize_line_ends(raw);
                state.text(&text, offset)?;
            }
            Event::Start(start) => {
                let name = element_name(&start, offset)?;
                state = state.start(name, &start, offset, &mut response, false)?;
            }
            Event::Empty(start) => {
                let name = element_name(&start, offset)?;
                state = state.start(name, &start, offset, &mut response, true)?;
            }
            Event::End(_) => {
                state = state.end(&mut response)?;
            }
            Event::Eof => {
                return match state {
                    State::AfterRoot => Ok(response),
                    State::BeforeRoot => Err(TwimlError::new(DocumentParse, "no root element")),
                    _ => Err(TwimlError::new(
                        DocumentParse,
                        "document ends inside an element",
                    )),
                };
            }
        }
    }
}

/// Where the reader is in the document; the grammar is shallow, so no stack is needed.
enum State {
    BeforeRoot,
    InResponse,
    InMessage(ParsedMessage),
    InBody(ParsedMessage),
    InMedia(ParsedMessage, String),
    InRedirect(ParsedRedirect),
    AfterRoot,
}

impl State {
    fn text(&mut self, text: &str, offset: u64) -> Result<(), TwimlError> {
        let blank = text.chars().all(is_xml_space);
        match self {
            State::InMessage(m) | State::InBody(m) => m.text.push_str(text),
            State::InMedia(_, url) => url.push_str(text),
            State::InRedirect(r) => r.url.push_str(text),
            State::BeforeRoot | State::AfterRoot if !blank => {
                return Err(TwimlError::new(
                    TwimlErrorKind::DocumentParse,
                    format!("text outside the root element at byte {offset}"),
                ));
            }
            State::InResponse if !blank => {
                return Err(TwimlError::new(
                    TwimlErrorKind::Schema,
                    format!(
                        "text directly inside <Response> at byte {offset}; wrap it in <Message>"
                    ),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    fn start(
        self,
        name: &str,
        start: &BytesStart<'_>,
        offset: u64,
        response: &mut TwimlResponse,
        empty: bool,
    ) -> Result<State, TwimlError> {
        use TwimlErrorKind::*;
        let schema = |msg: String| Err(TwimlError::new(Schema, msg));
        match self {
            State::BeforeRoot => {
                if name != "Response" {
                    return Err(TwimlError::new(
                        RootNotResponse,
                        format!("the root element must be <Response>, found <{name}>"),
                    ));
                }
                let attrs = attributes(start, offset, &[])?;
                debug_assert!(attrs.is_empty());
                Ok(if empty {
                    State::AfterRoot
                } else {
                    State::InResponse
                })
            }
            State::InResponse => match name {
                "Message" => {
                    let mut attrs = attributes(
                        start,
                        offset,
                        &["to", "from", "action", "method", "statusCallback"],
                    )?;
                    let mut take = |n: &str| {
                        attrs
                            .iter()
                            .position(|(k, _)| k == n)
                            .map(|i| attrs.remove(i).1)
                    };
                    let message = ParsedMessage {
                        to: take("to"),
                        from: take("from"),
                        action: take("action"),
                        method: take("method"),
                        status_callback: take("statusCallback"),
                        ..ParsedMessage::default()
                    };
                    check_method(message.method.as_deref(), "Message")?;
                    if empty {
                        finish_message(message, response)?;
                        Ok(State::InResponse)
                    } else {
                        Ok(State::InMessage(message))
                    }
                }
                "Redirect" => {
                    let attrs = attributes(start, offset, &["method"])?;
                    let method = attrs.into_iter().next().map(|(_, v)| v);
                    check_method(method.as_deref(), "Redirect")?;
                    let redirect = ParsedRedirect {
                        url: String::new(),
                        method,
                    };
                    if empty {
                        finish_redirect(redirect, response)?;
                        Ok(State::InResponse)
                    } else {
                        Ok(State::InRedirect(redirect))
                    }
                }
                "Body" | "Media" => schema(format!(
                    "<{name}> at byte {offset} must be inside <Message>"
                )),
                _ => schema(format!(
                    "unknown verb <{name}> at byte {offset}; messaging TwiML knows <Message> and <Redirect>"
                )),
            },
            State::InMessage(mut message) => match name {
                "Body" => {
                    attributes(start, offset, &[])?;
                    Ok(if empty {
                        State::InMessage(message)
                    } else {
                        State::InBody(message)
                    })
                }
                "Media" => {
                    attributes(start, offset, &[])?;
                    if empty {
                        message.media.push(String::new());
                        check_media(&message)?;
                        Ok(State::InMessage(message))
                    } else {
                        Ok(State::InMedia(message, String::new()))
                    }
                }
                _ => schema(format!(
                    "unknown noun <{name}> in <Message> at byte {offset}; <Message> holds text, <Body> and <Media>"
                )),
            },
            State::InBody(_) | State::InMedia(..) | State::InRedirect(_) => schema(format!(
                "element <{name}> at byte {offset} inside an element that holds only text"
            )),
            State::AfterRoot => Err(TwimlError::new(
                DocumentParse,
                format!("second root element <{name}> at byte {offset}; a document has one root"),
            )),
        }
    }

    fn end(self, response: &mut TwimlResponse) -> Result<State, TwimlError> {
        Ok(match self {
            State::InResponse => State::AfterRoot,
            State::InMessage(message) => {
                finish_message(message, response)?;
                State::InResponse
            }
            State::InBody(message) => State::InMessage(message),
            State::InMedia(mut message, url) => {
                message.media.push(url.trim().to_owned());
                check_media(&message)?;
                State::InMessage(message)
            }
            State::InRedirect(redirect) => {
                finish_redirect(redirect, response)?;
                State::InResponse
            }
            // The reader refuses an end tag without a matching start, so these cannot happen.
            State::BeforeRoot | State::AfterRoot => {
                return Err(TwimlError::new(
                    TwimlErrorKind::DocumentParse,
                    "unexpected end tag",
                ));
            }
        })
    }
}

fn finish_message(message: ParsedMessage, response: &mut TwimlResponse) -> Result<(), TwimlError> {
    let chars = message.body().chars().count();
    if chars > MAX_BODY_CHARS {
        return Err(TwimlError::new(
            TwimlErrorKind::InvalidBody,
            format!("message body is {chars} characters; the limit is {MAX_BODY_CHARS}"),
        ));
    }
    if message.is_empty() {
        response.warnings.push(TwimlError::new(
            TwimlErrorKind::InvalidBody,
            format!(
                "message {} has neither body nor media; Twilio sends nothing for it",
                response.verbs.len() + 1
            ),
        ));
    }
    response.verbs.push(ParsedVerb::Message(message));
    Ok(())
}

fn finish_redirect(
    mut redirect: ParsedRedirect,
    response: &mut TwimlResponse,
) -> Result<(), TwimlError> {
    redirect.url = redirect.url.trim().to_owned();
    if redirect.url.is_empty() {
        return Err(TwimlError::new(
            TwimlErrorKind::Schema,
            "<Redirect> needs a URL",
        ));
    }
    response.verbs.push(ParsedVerb::Redirect(redirect));
    Ok(())
}

fn check_media(message: &ParsedMessage) -> Result<(), TwimlError> {
    if message.media.len() > MAX_MEDIA {
        return Err(TwimlError::new(
            TwimlErrorKind::TooManyMedia,
            format!("more than {MAX_MEDIA} <Media> in one <Message>"),
        ));
    }
    if message.media.last().is_some_and(String::is_empty) {
        return Err(TwimlError::new(
            TwimlErrorKind::InvalidMedia,
            "empty <Media> URL",
        ));
    }
    Ok(())
}

fn check_method(method: Option<&str>, element: &str) -> Result<(), TwimlError> {
    match method {
        None => Ok(()),
        Some(m) if m.eq_ignore_ascii_case("GET") || m.eq_ignore_ascii_case("POST") => Ok(()),
        Some(m) => Err(TwimlError::new(
            TwimlErrorKind::Schema,
            format!("<{element}> method must be GET or POST, found {m:?}"),
        )),
    }
}

fn check_declaration(decl: &quick_xml::events::BytesDecl<'_>) -> Result<(), TwimlError> {
    let bad = |msg: String| TwimlError::new(TwimlErrorKind::DocumentParse, msg);
    let version = decl
        .version()
        .map_err(|e| bad(format!("malformed XML declaration: {e}")))?;
    if &*version != b"1.0" {
        return Err(bad(format!(
            "XML version {:?}; TwiML is XML 1.0",
            String::from_utf8_lossy(&version)
        )));
    }
    if let Some(encoding) = decl.encoding() {
        let encoding = encoding.map_err(|e| bad(format!("malformed XML declaration: {e}")))?;
        if !encoding.eq_ignore_ascii_case(b"utf-8") {
            return Err(bad(format!(
                "declared encoding {:?}; the response must be UTF-8",
                String::from_utf8_lossy(&encoding)
            )));
        }
    }
    Ok(())
}

/// The element's name, checked to be an XML name (a stray `<` in text shows up here).
fn element_name<'a>(start: &'a BytesStart<'_>, offset: u64) -> Result<&'a str, TwimlError> {
    let name = std::str::from_utf8(start.name().into_inner()).unwrap_or("");
    if !is_xml_name(name) {
        return Err(TwimlError::new(
            TwimlErrorKind::DocumentParse,
            format!(
                "malformed element at byte {offset} (an unescaped '<' in text must be written &lt;)"
            ),
        ));
    }
    Ok(name)
}

/// The element's attributes, unescaped; any name not in `allowed` is a schema error.
fn attributes(
    start: &BytesStart<'_>,
    offset: u64,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, TwimlError> {
    let element = String::from_utf8_lossy(start.name().into_inner()).into_owned();
    let mut out = Vec::new();
    for attr in start.attributes().with_checks(true) {
        let attr = attr.map_err(|e| {
            TwimlError::new(
                TwimlErrorKind::DocumentParse,
                format!("malformed attribute in <{element}> at byte {offset}: {e}"),
            )
        })?;
        let key = std::str::from_utf8(attr.key.into_inner()).unwrap_or("");
        if !is_xml_name(key) {
            return Err(TwimlError::new(
                TwimlErrorKind::DocumentParse,
                format!("malformed attribute name in <{element}> at byte {offset}"),
            ));
        }
        let raw = std::str::from_utf8(&attr.value).map_err(|_| {
            TwimlError::new(
                TwimlErrorKind::DocumentParse,
                format!("invalid UTF-8 in <{element}> at byte {offset}"),
            )
        })?;
        if raw.contains('<') {
            return Err(TwimlError::new(
                TwimlErrorKind::DocumentParse,
                format!("unescaped '<' in attribute {key} of <{element}> at byte {offset}"),
            ));
        }
        // Attribute-value normalisation: literal line ends and tabs become spaces; character
        // references (&#10;) survive because they are resolved afterwards.
        let normalized: String = normalize_line_ends(raw)
            .chars()
            .map(|c| if matches!(c, '\n' | '\t') { ' ' } else { c })
            .collect();
        let value = unescape(&normalized).map_err(|e| {
            TwimlError::new(
                TwimlErrorKind::DocumentParse,
                format!("attribute {key} of <{element}> at byte {offset}: {e} (write & as &amp;)"),
            )
        })?;
        if !allowed.contains(&key) {
            return Err(TwimlError::new(
                TwimlErrorKind::Schema,
                format!("unknown attribute {key} on <{element}> at byte {offset}"),
            ));
        }
        out.push((key.to_owned(), value.into_owned()));
    }
    Ok(out)
}

fn unescape_text(
    text: &quick_xml::events::BytesText<'_>,
    offset: u64,
) -> Result<String, TwimlError> {
    let raw = std::str::from_utf8(text).map_err(|_| {
        TwimlError::new(
            TwimlErrorKind::DocumentParse,
            format!("invalid UTF-8 at byte {offset}"),
        )
    })?;
    if let Some(i) = raw.find("]]>") {
        return Err(TwimlError::new(
            TwimlErrorKind::DocumentParse,
            format!("']]>' in text at byte {}", offset + i as u64),
        ));
    }
    let normalized = normalize_line_ends(raw);
    unescape(&normalized).map(Cow::into_owned).map_err(|e| {
        TwimlError::new(
            TwimlErrorKind::DocumentParse,
            format!("bad character reference in text near byte {offset}: {e} (an unescaped '&' must be written &amp;)"),
        )
    })
}

/// Resolves the five predefined entities and character references; anything else is an error.
fn unescape(text: &str) -> Result<Cow<'_, str>, String> {
    let unescaped = quick_xml::escape::unescape(text).map_err(|e| e.to_string())?;
    // A character reference may name a character XML forbids (&#0;, &#xFFFE;).
    if let Some(c) = unescaped.chars().find(|&c| !is_xml_char(c)) {
        return Err(format!(
            "character U+{:04X} is not allowed in XML",
            c as u32
        ));
    }
    Ok(unescaped)
}

fn normalize_line_ends(text: &str) -> Cow<'_, str> {
    if text.contains('\r') {
        Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(text)
    }
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// An XML 1.0 `Name`, restricted to what TwiML uses: ASCII letters, `_`, `:` first; then also
/// digits, `-`, `.`; non-ASCII letters are accepted as XML allows them.
fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let start = |c: char| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (!c.is_ascii() && c.is_alphabetic())
    };
    start(first)
        && chars.all(|c| {
            start(c)
                || c.is_ascii_digit()
                || c == '-'
                || c == '.'
                || (!c.is_ascii() && c.is_alphanumeric())
        })
}
