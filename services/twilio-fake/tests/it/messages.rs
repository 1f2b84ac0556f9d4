//! Create, fetch and list: the Message resource's shape, segments, media, paging, XML.

use pretty_assertions::assert_eq;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::support::*;

/// The properties of `api.v2010.account.message` in the spec, in the real API's order.
const MESSAGE_KEYS: &[&str] = &[
    "body",
    "num_segments",
    "direction",
    "from",
    "date_updated",
    "price",
    "error_message",
    "uri",
    "account_sid",
    "num_media",
    "to",
    "date_created",
    "status",
    "sid",
    "date_sent",
    "messaging_service_sid",
    "error_code",
    "price_unit",
    "api_version",
    "subresource_uris",
];

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

fn is_sid(s: &str, prefix: &str) -> bool {
    s.len() == 34 && s.starts_with(prefix) && s[2..].chars().all(|c| c.is_ascii_hexdigit())
}

#[tokio::test]
async fn create_answers_a_message_resource() {
    let fake = Fake::start().await;
    let response = fake
        .create(&[("To", TO), ("From", FROM), ("Body", "Hello!")])
        .await;
    assert_eq!(response.status(), 201);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let m: Value = response.json().await.unwrap();
    assert_eq!(keys(&m), MESSAGE_KEYS);
    let sid = m["sid"].as_str().unwrap();
    assert!(is_sid(sid, "SM"), "{sid}");
    assert_eq!(m["account_sid"], ACCOUNT);
    assert_eq!(m["to"], TO);
    assert_eq!(m["from"], FROM);
    assert_eq!(m["body"], "Hello!");
    assert_eq!(m["status"], "queued");
    assert_eq!(m["direction"], "outbound-api");
    assert_eq!(m["num_segments"], "1");
    assert_eq!(m["num_media"], "0");
    assert_eq!(m["api_version"], "2010-04-01");
    assert_eq!(m["error_code"], Value::Null);
    assert_eq!(m["messaging_service_sid"], Value::Null);
    assert_eq!(
        m["uri"],
        format!("/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json")
    );
    assert_eq!(
        m["subresource_uris"]["media"],
        format!("/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}/Media.json")
    );
    let created = m["date_created"].as_str().unwrap();
    assert!(created.ends_with(" +0000"), "{created}");
    let parsed = OffsetDateTime::parse(created, &Rfc2822).unwrap();
    assert!((OffsetDateTime::now_utc() - parsed).whole_seconds().abs() < 60);
}

#[tokio::test]
async fn fetch_and_list_created_messages() {
    let fake = Fake::start().await;
    let mut sids = Vec::new();
    for (to, body) in [(TO, "one"), ("+15558675311", "two"), (TO, "three")] {
        let m: Value = fake
            .create(&[("To", to), ("From", FROM), ("Body", body)])
            .await
            .json()
            .await
            .unwrap();
        sids.push(m["sid"].as_str().unwrap().to_owned());
    }

    let fetched = fake
        .get(&format!(
            "/2010-04-01/Accounts/{ACCOUNT}/Messages/{}.json",
            sids[1]
        ))
        .await;
    assert_eq!(fetched.status(), 200);
    let fetched: Value = fetched.json().await.unwrap();
    assert_eq!(keys(&fetched), MESSAGE_KEYS);
    assert_eq!(fetched["body"], "two");

    let missing = fake
        .get(&format!(
            "/2010-04-01/Accounts/{ACCOUNT}/Messages/SM00000000000000000000000000000000.json"
        ))
        .await;
    expect_error(missing, 404, 20404).await;

    // Newest first, filtered by To, with Twilio's paging envelope.
    let list: Value = fake
        .get(&format!(
            "/2010-04-01/Accounts/{ACCOUNT}/Messages.json?To=%2B15558675310&PageSize=1"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        keys(&list),
        [
            "end",
            "first_page_uri",
            "messages",
            "next_page_uri",
            "page",
            "page_size",
            "previous_page_uri",
            "start",
            "uri"
        ]
    );
    assert_eq!(list["messages"].as_array().unwrap().len(), 1);
    assert_eq!(list["messages"][0]["sid"], sids[2].as_str());
    assert_eq!(list["page"], 0);
    assert_eq!(list["page_size"], 1);
    assert_eq!(list["start"], 0);
    assert_eq!(list["end"], 0);
    assert_eq!(list["previous_page_uri"], Value::Null);
    let next = list["next_page_uri"].as_str().unwrap();
    assert!(next.starts_with(&format!(
        "/2010-04-01/Accounts/{ACCOUNT}/Messages.json?To=%2B15558675310&"
    )));

    let page2: Value = fake.get(next).await.json().await.unwrap();
    assert_eq!(page2["messages"][0]["sid"], sids[0].as_str());
    assert_eq!(page2["page"], 1);
    assert_eq!(page2["next_page_uri"], Value::Null);
    assert!(page2["previous_page_uri"].is_string());

    // DateSent>= today keeps everything, DateSent<= yesterday nothing.
    let today = OffsetDateTime::now_utc().date();
    let yesterday = today.previous_day().unwrap();
    let all: Value = fake
        .get(&format!(
            "/2010-04-01/Accounts/{ACCOUNT}/Messages.json?From=%2B15017122661&DateSent%3E={today}"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["messages"].as_array().unwrap().len(), 3);
    let none: Value = fake
        .get(&format!(
            "/2010-04-01/Accounts/{ACCOUNT}/Messages.json?DateSent<={yesterday}"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["messages"].as_array().unwrap().len(), 0);

    // Another account sees none of them.
    let other: Value = fake
        .client
        .get(fake.url(&format!(
            "/2010-04-01/Accounts/{OTHER_ACCOUNT}/Messages.json"
        )))
        .basic_auth(OTHER_ACCOUNT, Some(OTHER_TOKEN))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other["messages"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn segments_follow_gsm7_and_ucs2_rules() {
    let fake = Fake::start().await;
    let cases = [
        ("a".repeat(160), "1"),
        ("a".repeat(161), "2"),
        ("{".repeat(80), "1"),
        ("á".repeat(70), "1"),
        ("á".repeat(71), "2"),
        (format!("{}😀", "a".repeat(100)), "2"),
    ];
    for (body, segments) in cases {
        let m: Value = fake
            .create(&[("To", TO), ("From", FROM), ("Body", &body)])
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(m["num_segments"], segments, "{body}");
    }
}

#[tokio::test]
async fn messaging_service_and_media() {
    let fake = Fake::start().await;
    let service = "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let m: Value = fake
        .create(&[("To", TO), ("MessagingServiceSid", service), ("Body", "hi")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(m["status"], "accepted");
    assert_eq!(m["num_segments"], "0");
    assert_eq!(m["from"], Value::Null);
    assert_eq!(m["messaging_service_sid"], service);

    let response = fake
        .create(&[
            ("To", TO),
            ("From", FROM),
            ("MediaUrl", "https://example.com/a.png"),
            ("MediaUrl", "https://example.com/b.png"),
        ])
        .await;
    assert_eq!(response.status(), 201);
    let m: Value = response.json().await.unwrap();
    assert!(m["sid"].as_str().unwrap().starts_with("MM"));
    assert_eq!(m["num_media"], "2");
    assert_eq!(m["body"], "");
    let stored = fake.admin("/messages").await;
    assert_eq!(
        stored[1]["media_urls"],
        serde_json::json!(["https://example.com/a.png", "https://example.com/b.png"])
    );
}

#[tokio::test]
async fn xml_answer_without_json_suffix() {
    let fake = Fake::start().await;
    // As Cerb's seed package posts: no `.json`, and no Content-Type on the form body.
    let response = fake
        .client
        .post(fake.url(&format!("/2010-04-01/Accounts/{ACCOUNT}/Messages")))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .body("To=%2B15558675310&From=%2B15017122661&Body=Hi+%26+bye")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/xml")
    );
    let xml = response.text().await.unwrap();
    assert!(
        xml.starts_with("<?xml version='1.0' encoding='UTF-8'?>\n<TwilioResponse><Message><Sid>SM"),
        "{xml}"
    );
    assert!(
        xml.contains("<To>+15558675310</To><From>+15017122661</From>"),
        "{xml}"
    );
    assert!(
        xml.contains("<Body>Hi &amp; bye</Body><Status>queued</Status>"),
        "{xml}"
    );
    assert!(xml.contains("<NumSegments>1</NumSegments>"), "{xml}");
    assert!(xml.ends_with("</Message></TwilioResponse>"), "{xml}");
    let sid = &xml[xml.find("<Sid>").unwrap() + 5..xml.find("</Sid>").unwrap()];
    assert!(xml.contains(&format!(
        "<Uri>/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}</Uri>"
    )));

    let fetched = fake
        .get(&format!("/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(fetched.contains(&format!("<Sid>{sid}</Sid>")), "{fetched}");

    // Errors come back as a RestException.
    let error = fake
        .client
        .post(fake.url(&format!("/2010-04-01/Accounts/{ACCOUNT}/Messages")))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .form(&[("From", FROM), ("Body", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(error.status(), 400);
    let text = error.text().await.unwrap();
    assert!(
        text.contains("<RestException><Code>21604</Code><Message>A 'To' phone number is required.</Message><MoreInfo>https://www.twilio.com/docs/errors/21604</MoreInfo><Status>400</Status></RestException>"),
        "{text}"
    );
}

#[tokio::test]
async fn unknown_paths_are_twilio_404s() {
    let fake = Fake::start().await;
    let response = fake
        .get(&format!("/2010-04-01/Accounts/{ACCOUNT}/Calls.json"))
        .await;
    let body = expect_error(response, 404, 20404).await;
    assert!(body["message"].as_str().unwrap().contains("/Calls.json"));
    expect_error(fake.get("/nowhere").await, 404, 20404).await;
    let delete = fake
        .client
        .delete(fake.messages_url())
        .basic_auth(ACCOUNT, Some(TOKEN))
        .send()
        .await
        .unwrap();
    expect_error(delete, 405, 20004).await;
}

#[tokio::test]
async fn spawn_for_other_crates_tests() {
    let config = twilio_fake::Config::for_tests(vec![twilio_fake::Account::new(
        ACCOUNT.parse().unwrap(),
        TOKEN,
    )]);
    let running = twilio_fake::spawn(config).await.unwrap();
    let response = reqwest::Client::new()
        .get(format!(
            "{}/v2/PhoneNumbers/%2B15108675310",
            running.base_url()
        ))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn run_returns_after_shutdown() {
    let fake = Fake::start().await;
    assert_eq!(fake.admin("/health").await["status"], "ok");
    let base = fake.base.clone();
    tokio::time::timeout(std::time::Duration::from_secs(10), fake.stop())
        .await
        .expect("run returns")
        .expect("without error");
    let after = reqwest::Client::new()
        .get(format!("{base}/_fake/health"))
        .send()
        .await;
    assert!(after.is_err(), "the listener is closed");
}
