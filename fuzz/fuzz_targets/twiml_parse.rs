//! Fuzzes the strict TwiML parser with arbitrary documents (it must never panic), and checks that
//! a message built with `MessagingResponse` parses back to the same text.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use switchboard_twilio::twiml::{self, MessagingResponse};

#[derive(Arbitrary, Debug)]
struct Input {
    document: String,
    text: String,
    to: String,
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

fuzz_target!(|input: Input| {
    if let Ok(parsed) = twiml::parse(&input.document) {
        assert!(input.document.len() <= twiml::MAX_RESPONSE_BYTES);
        for message in parsed.messages() {
            assert!(message.media.len() <= twiml::MAX_MEDIA);
            assert!(message.body().chars().count() <= twiml::MAX_BODY_CHARS);
        }
    }

    // Round trip: any text XML can carry (no CR, which XML folds into LF) survives build + parse.
    let fits = input.text.trim().chars().count() <= twiml::MAX_BODY_CHARS;
    if fits && input.text.chars().all(is_xml_char) && input.to.chars().all(is_xml_char) {
        let mut response = MessagingResponse::new();
        response.message(input.text.as_str()).to(input.to.as_str());
        let xml = response.to_xml();
        let parsed = twiml::parse(&xml).unwrap_or_else(|e| panic!("builder output refused: {e}\n{xml}"));
        let message = parsed.messages().next().expect("one message");
        assert_eq!(message.text, input.text);
        assert_eq!(message.to.as_deref(), Some(input.to.as_str()));
    }
});
