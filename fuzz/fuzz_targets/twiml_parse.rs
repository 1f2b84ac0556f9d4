//! Fuzzes the strict TwiML parser with arbitrary documents (it must never panic, and what it
//! accepts respects Twilio's limits), and checks that text put through `MessagingResponse` parses
//! back unchanged. The input is the document itself, so seeds and the dictionary are plain TwiML.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_twilio::twiml::{self, MessagingResponse};

fn is_xml_char(c: char) -> bool {
    // CR is left out: XML folds it into LF, so it does not round-trip by design.
    matches!(c, '\t' | '\n' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

fuzz_target!(|data: &[u8]| {
    let Ok(document) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(parsed) = twiml::parse(document) {
        assert!(document.len() <= twiml::MAX_RESPONSE_BYTES);
        for message in parsed.messages() {
            assert!(message.media.len() <= twiml::MAX_MEDIA);
            assert!(message.media.iter().all(|m| !m.is_empty()));
            assert!(message.body().chars().count() <= twiml::MAX_BODY_CHARS);
        }
    }

    // Round trip: the same bytes as message text, and their first line as the `to` attribute.
    let text = document;
    let to = document.lines().next().unwrap_or("");
    let fits = text.trim().chars().count() <= twiml::MAX_BODY_CHARS;
    if fits && text.chars().all(is_xml_char) {
        let mut response = MessagingResponse::new();
        response.message(text).to(to);
        let xml = response.to_xml();
        let parsed =
            twiml::parse(&xml).unwrap_or_else(|e| panic!("builder output refused: {e}\n{xml}"));
        let message = parsed.messages().next().expect("one message");
        assert_eq!(message.text, text);
        assert_eq!(message.to.as_deref(), Some(to));
    }
});
