//! TwiML tests: the builder against twilio-python 9.13.0's exact output (docs/twilio.md §5), and
//! the parser against the seed bot's replies and each error Twilio raises.

use super::*;

const DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

#[test]
fn empty_response_matches_python() {
    assert_eq!(
        MessagingResponse::new().to_xml(),
        format!("{DECL}<Response />")
    );
    assert_eq!(
        MessagingResponse::new().to_xml_without_declaration(),
        "<Response />"
    );
}

#[test]
fn message_with_media_matches_python() {
    let mut r = MessagingResponse::new();
    r.message("Hi").media("https://example.com/cat.jpg");
    assert_eq!(
        r.to_xml(),
        format!(
            "{DECL}<Response><Message>Hi<Media>https://example.com/cat.jpg</Media></Message></Response>"
        )
    );
}

#[test]
fn message_with_nouns_matches_python() {
    let mut r = MessagingResponse::new();
    r.message("")
        .body("Hi")
        .media("https://example.com/cat.jpg");
    assert_eq!(
        r.to_string(),
        format!(
            "{DECL}<Response><Message><Body>Hi</Body><Media>https://example.com/cat.jpg</Media></Message></Response>"
        )
    );
}

#[test]
fn attributes_are_sorted_like_python() {
    let mut r = MessagingResponse::new();
    r.message("Hi")
        .to("+15558675310")
        .from("+15017122661")
        .method("POST")
        .action("/status");
    assert_eq!(
        r.to_xml_without_declaration(),
        r#"<Response><Message action="/status" from="+15017122661" method="POST" to="+15558675310">Hi</Message></Response>"#
    );
}

#[test]
fn escaping_matches_python() {
    let mut r = MessagingResponse::new();
    r.message(r#"5 < 6 & "q" 'a' > é 😀"#)
        .action(r#"a=1&b="2"<>"#);
    assert_eq!(
        r.to_xml_without_declaration(),
        r#"<Response><Message action="a=1&amp;b=&quot;2&quot;&lt;&gt;">5 &lt; 6 &amp; "q" 'a' &gt; é 😀</Message></Response>"#
    );
    // ElementTree writes CR, LF and TAB in attributes as character references; text keeps them.
    let mut r = MessagingResponse::new();
    r.message("a\nb\tc").to("x\ny\tz\r");
    assert_eq!(
        r.to_xml_without_declaration(),
        "<Response><Message to=\"x&#10;y&#09;z&#13;\">a\nb\tc</Message></Response>"
    );
}

#[test]
fn redirect_matches_python() {
    let mut r = MessagingResponse::new();
    r.redirect("https://example.com/next").method("POST");
    assert_eq!(
        r.to_xml(),
        format!(
            r#"{DECL}<Response><Redirect method="POST">https://example.com/next</Redirect></Response>"#
        )
    );
}

#[test]
fn empty_message_self_closes_like_python() {
    let mut r = MessagingResponse::new();
    r.message("").to("+15558675310");
    assert_eq!(
        r.to_xml_without_declaration(),
        r#"<Response><Message to="+15558675310" /></Response>"#
    );
}

#[test]
fn builder_output_round_trips_through_parse() {
    let mut r = MessagingResponse::new();
    r.message(r#"5 < 6 & "q" 'a' > é 😀"#)
        .action(r#"a=1&b="2"<>"#)
        .to("x\ny");
    r.message("")
        .body("Hi")
        .media("https://example.com/a.jpg")
        .media("https://example.com/b.jpg");
    r.redirect("https://example.com/next?a=1&b=2").method("GET");
    let parsed = parse(&r.to_xml()).expect("builder output parses");
    let messages: Vec<_> = parsed.messages().collect();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].text, r#"5 < 6 & "q" 'a' > é 😀"#);
    assert_eq!(messages[0].action.as_deref(), Some(r#"a=1&b="2"<>"#));
    assert_eq!(
        messages[0].to.as_deref(),
        Some("x\ny"),
        "character references survive normalisation"
    );
    assert_eq!(messages[1].body(), "Hi");
    assert_eq!(
        messages[1].media,
        ["https://example.com/a.jpg", "https://example.com/b.jpg"]
    );
    let redirect = parsed.redirect().expect("redirect");
    assert_eq!(redirect.url, "https://example.com/next?a=1&b=2");
    assert_eq!(redirect.method.as_deref(), Some("GET"));
    assert!(parsed.warnings.is_empty());
}

// --- parser: the seed bot's replies ---

#[test]
fn seed_help_reply_parses_to_one_message() {
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>\n    <Message>You can say:\n* HELP\n* LOGO\n* LINK\n</Message>\n</Response>";
    let parsed = parse(xml).unwrap();
    let messages: Vec<_> = parsed.messages().collect();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].text, "You can say:\n* HELP\n* LOGO\n* LINK\n");
    assert_eq!(messages[0].body(), "You can say:\n* HELP\n* LOGO\n* LINK");
    assert!(messages[0].media.is_empty());
    assert!(parsed.warnings.is_empty());
}

#[test]
fn seed_logo_reply_parses_to_two_messages() {
    // Verbatim from the seed package, CRLF line ends and tabs included.
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<Response>\r\n    <Message>\r\n    \tHere's the Cerb logo:\r\n    </Message>\r\n    <Message>\r\n    \t<Media>https://cerb.ai/assets/images/home/cerby.png</Media>\r\n    </Message>\r\n</Response>";
    let parsed = parse(xml).unwrap();
    let messages: Vec<_> = parsed.messages().collect();
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[0].text, "\n    \tHere's the Cerb logo:\n    ",
        "CRLF normalised to LF"
    );
    assert_eq!(messages[0].body(), "Here's the Cerb logo:");
    assert_eq!(messages[1].body(), "");
    assert_eq!(
        messages[1].media,
        ["https://cerb.ai/assets/images/home/cerby.png"]
    );
    assert!(
        parsed.warnings.is_empty(),
        "a media-only message is not empty"
    );
}

#[test]
fn escaped_user_text_parses_back() {
    let xml = format!(
        "{DECL}<Response><Message>Hi +1555! You said: a &amp; b &lt;3 &#128512; &#x1F600;</Message></Response>"
    );
    let parsed = parse(&xml).unwrap();
    assert_eq!(
        parsed.messages().next().unwrap().text,
        "Hi +1555! You said: a & b <3 😀 😀"
    );
}

#[test]
fn empty_response_forms_are_equivalent() {
    for xml in [
        "<Response/>",
        "<Response />",
        "<Response></Response>",
        "<?xml version=\"1.0\"?><Response/>",
        "<Response>\n</Response>\n",
    ] {
        let parsed = parse(xml).unwrap_or_else(|e| panic!("{xml}: {e}"));
        assert!(parsed.verbs.is_empty(), "{xml}");
    }
}

#[test]
fn comments_and_cdata_are_xml() {
    let parsed =
        parse("<Response><!-- hi --><Message><![CDATA[a & <b>]]></Message></Response>").unwrap();
    assert_eq!(parsed.messages().next().unwrap().text, "a & <b>");
}

#[test]
fn verbs_after_redirect_are_not_executed() {
    let parsed = parse("<Response><Message>one</Message><Redirect>https://x/next</Redirect><Message>two</Message></Response>").unwrap();
    assert_eq!(parsed.verbs.len(), 3);
    assert_eq!(parsed.effective_verbs().len(), 2);
    assert_eq!(
        parsed
            .messages()
            .map(ParsedMessage::body)
            .collect::<Vec<_>>(),
        ["one"]
    );
}

#[test]
fn empty_message_is_a_14103_warning() {
    let parsed = parse("<Response><Message/><Message>  </Message></Response>").unwrap();
    assert_eq!(parsed.warnings.len(), 2);
    assert!(parsed.warnings.iter().all(|w| w.code() == 14103));
}

// --- parser: what Twilio refuses ---

fn code(xml: &str) -> u32 {
    match parse(xml) {
        Ok(r) => panic!("expected an error for {xml:?}, parsed {r:?}"),
        Err(e) => {
            assert!(!e.message.is_empty());
            e.code()
        }
    }
}

#[test]
fn anything_before_the_declaration_is_12100() {
    assert_eq!(code(&format!("\n{DECL}<Response/>")), 12100, "blank line");
    assert_eq!(code(&format!(" {DECL}<Response/>")), 12100, "space");
    assert_eq!(code(&format!("\u{feff}{DECL}<Response/>")), 12100, "BOM");
    assert_eq!(
        code(&format!("<Response/>{DECL}")),
        12100,
        "declaration not first"
    );
    assert_eq!(
        code(&format!("<!-- c -->{DECL}<Response/>")),
        12100,
        "comment before declaration"
    );
}

#[test]
fn malformed_documents_are_12100() {
    assert_eq!(code(""), 12100);
    assert_eq!(code("   \n"), 12100);
    assert_eq!(code("Hello there"), 12100, "plain text");
    assert_eq!(code("{\"reply\": \"hi\"}"), 12100, "JSON");
    assert_eq!(
        code("<Response><Message>a & b</Message></Response>"),
        12100,
        "unescaped &"
    );
    assert_eq!(
        code("<Response><Message>5 < 6</Message></Response>"),
        12100,
        "unescaped <"
    );
    assert_eq!(
        code("<Response><Message>&nbsp;</Message></Response>"),
        12100,
        "HTML entity"
    );
    assert_eq!(
        code("<Response><Message>&#0;</Message></Response>"),
        12100,
        "forbidden char ref"
    );
    assert_eq!(
        code("<Response><Message>x</message></Response>"),
        12100,
        "end tag case mismatch"
    );
    assert_eq!(
        code("<Response><Message>x</Response>"),
        12100,
        "unclosed element"
    );
    assert_eq!(code("<Response>"), 12100, "unterminated");
    assert_eq!(code("<Response/><Response/>"), 12100, "two roots");
    assert_eq!(code("<Response/>trailing"), 12100, "text after root");
    assert_eq!(
        code("<Response><Message to=\"a&b\">x</Message></Response>"),
        12100,
        "& in attribute"
    );
    assert_eq!(
        code("<Response><Message to=\"a<b\">x</Message></Response>"),
        12100,
        "< in attribute"
    );
    assert_eq!(
        code("<Response><Message to=\"a\" to=\"b\">x</Message></Response>"),
        12100,
        "duplicate attribute"
    );
    assert_eq!(
        code("<!DOCTYPE r [<!ENTITY e \"x\">]><Response/>"),
        12100,
        "DOCTYPE"
    );
    assert_eq!(code("<?xml version=\"1.1\"?><Response/>"), 12100, "XML 1.1");
    assert_eq!(
        code("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><Response/>"),
        12100,
        "not UTF-8"
    );
    assert_eq!(
        code("<Response><Message>a ]]> b</Message></Response>"),
        12100,
        "]]> in text"
    );
}

#[test]
fn root_must_be_response_12102() {
    assert_eq!(code("<response/>"), 12102, "case-sensitive");
    assert_eq!(code(&format!("{DECL}<Message>hi</Message>")), 12102);
    assert_eq!(code("<html><body>hi</body></html>"), 12102);
}

#[test]
fn unknown_verbs_nouns_and_attributes_are_12200() {
    assert_eq!(
        code("<Response><Say>hi</Say></Response>"),
        12200,
        "voice verb"
    );
    assert_eq!(
        code("<Response><message>hi</message></Response>"),
        12200,
        "lowercase verb"
    );
    assert_eq!(
        code("<Response><Message><Foo/></Message></Response>"),
        12200,
        "unknown noun"
    );
    assert_eq!(
        code("<Response><Media>https://x/a.png</Media></Response>"),
        12200,
        "noun outside Message"
    );
    assert_eq!(
        code("<Response><Message><Body><Media>u</Media></Body></Message></Response>"),
        12200,
        "nested"
    );
    assert_eq!(
        code("<Response><Message colour=\"red\">x</Message></Response>"),
        12200,
        "unknown attribute"
    );
    assert_eq!(
        code("<Response version=\"1\"/>"),
        12200,
        "attribute on Response"
    );
    assert_eq!(
        code("<Response>hello</Response>"),
        12200,
        "bare text in Response"
    );
    assert_eq!(
        code("<Response><Message method=\"PUT\">x</Message></Response>"),
        12200,
        "method"
    );
    assert_eq!(
        code("<Response><Redirect/></Response>"),
        12200,
        "redirect without URL"
    );
}

#[test]
fn media_limits() {
    let media = |n: usize| "<Media>https://x/a.png</Media>".repeat(n);
    assert!(
        parse(&format!(
            "<Response><Message>{}</Message></Response>",
            media(10)
        ))
        .is_ok()
    );
    assert_eq!(
        code(&format!(
            "<Response><Message>{}</Message></Response>",
            media(11)
        )),
        21623
    );
    assert_eq!(
        code("<Response><Message><Media> </Media></Message></Response>"),
        21620
    );
    assert_eq!(
        code("<Response><Message><Media/></Message></Response>"),
        21620
    );
}

#[test]
fn body_limit_is_1600_characters() {
    let ok = "é".repeat(1600);
    assert!(
        parse(&format!("<Response><Message>{ok}</Message></Response>")).is_ok(),
        "characters, not bytes"
    );
    let long = "a".repeat(1601);
    assert_eq!(
        code(&format!("<Response><Message>{long}</Message></Response>")),
        14103
    );
    assert_eq!(
        code(&format!(
            "<Response><Message><Body>{long}</Body></Message></Response>"
        )),
        14103
    );
}

#[test]
fn response_limit_is_64_kb() {
    let message = format!("<Message>{}</Message>", "a".repeat(1000));
    let xml = |n: usize| format!("<Response>{}</Response>", message.repeat(n));
    assert!(xml(60).len() < MAX_RESPONSE_BYTES);
    assert!(parse(&xml(60)).is_ok());
    assert!(xml(70).len() > MAX_RESPONSE_BYTES);
    assert_eq!(code(&xml(70)), 11750);
}

#[test]
fn malformed_attributes_are_12100() {
    assert_eq!(
        code("<Response><Message to=abc>x</Message></Response>"),
        12100,
        "unquoted value"
    );
    assert_eq!(
        code("<Response><Message to>x</Message></Response>"),
        12100,
        "no value"
    );
    assert_eq!(
        code("<Response><Message to=\"a>x</Message></Response>"),
        12100,
        "unclosed quote"
    );
    assert_eq!(
        code("<Response><Message to=\"&#xD800;\">x</Message></Response>"),
        12100,
        "surrogate reference"
    );
}

#[test]
fn whitespace_and_comments_around_the_root_are_fine() {
    let parsed = parse(
        "<?xml version=\"1.0\"?>\n<!-- bot reply -->\n<Response>\n</Response>\n<!-- end -->\n",
    )
    .unwrap();
    assert!(parsed.verbs.is_empty());
    // Without a declaration, leading whitespace is ordinary XML.
    assert!(parse("\n  <Response/>").is_ok());
}

#[test]
fn attribute_values_are_normalised_like_xml() {
    // A literal newline or tab in an attribute becomes a space; a character reference stays.
    let parsed =
        parse("<Response><Message to=\"a\nb\tc&#10;d\" method=\"post\">x</Message></Response>")
            .unwrap();
    let message = parsed.messages().next().unwrap();
    assert_eq!(message.to.as_deref(), Some("a b c\nd"));
    assert_eq!(
        message.method.as_deref(),
        Some("post"),
        "method is case-insensitive, kept as written"
    );
}

#[test]
fn error_display_names_the_code() {
    let err = parse("<response/>").unwrap_err();
    assert_eq!(err.kind, TwimlErrorKind::RootNotResponse);
    assert_eq!(
        err.to_string(),
        "TwiML error 12102: the root element must be <Response>, found <response>"
    );
}

#[test]
fn control_characters_written_by_the_builder_are_caught_by_parse() {
    let mut r = MessagingResponse::new();
    r.message("bell \u{7}");
    assert_eq!(
        r.to_xml_without_declaration(),
        "<Response><Message>bell \u{7}</Message></Response>"
    );
    assert_eq!(parse(&r.to_xml()).unwrap_err().code(), 12100);
}
