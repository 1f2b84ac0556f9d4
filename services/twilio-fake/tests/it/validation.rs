//! Twilio's synchronous validation codes, each in Twilio's JSON error shape.

use crate::support::*;

#[tokio::test]
async fn every_validation_code() {
    let fake = Fake::start().await;
    let long = "a".repeat(1601);
    let eleven: Vec<(&str, &str)> = (0..11)
        .map(|_| ("MediaUrl", "https://example.com/cat.png"))
        .collect();
    let mut too_many_media = vec![("To", TO), ("From", FROM)];
    too_many_media.extend(eleven);
    let cases: Vec<(Vec<(&str, &str)>, u64)> = vec![
        (vec![("From", FROM), ("Body", "x")], 21604),
        (vec![("To", ""), ("From", FROM), ("Body", "x")], 21604),
        (vec![("To", TO), ("Body", "x")], 21603),
        (vec![("To", TO), ("From", FROM)], 21602),
        (vec![("To", TO), ("From", FROM), ("Body", "")], 21602),
        (vec![("To", TO), ("From", FROM), ("Body", &long)], 21617),
        (too_many_media, 21623),
        (
            vec![("To", "5558675310"), ("From", FROM), ("Body", "x")],
            21211,
        ),
        (
            vec![("To", "+1 555 867 5310"), ("From", FROM), ("Body", "x")],
            21211,
        ),
        (vec![("To", "hello"), ("From", FROM), ("Body", "x")], 21211),
        (
            vec![("To", TO), ("MessagingServiceSid", "MGbad"), ("Body", "x")],
            21701,
        ),
        (
            vec![("To", TO), ("From", "not a sender!"), ("Body", "x")],
            21212,
        ),
        (
            vec![
                ("To", TO),
                ("From", FROM),
                ("MediaUrl", "ftp://example.com/a.png"),
            ],
            21620,
        ),
        (
            vec![
                ("To", TO),
                ("From", FROM),
                ("Body", "x"),
                ("StatusCallback", "https://bad_host.example.com/cb"),
            ],
            21609,
        ),
    ];
    for (form, code) in cases {
        let response = fake.create(&form).await;
        let body = expect_error(response, 400, code).await;
        println!("{code}: {}", body["message"]);
    }
    assert!(
        fake.admin("/messages").await.as_array().unwrap().is_empty(),
        "nothing was created"
    );
}

#[tokio::test]
async fn limits_are_inclusive() {
    let fake = Fake::start().await;
    let body = "a".repeat(1600);
    let response = fake
        .create(&[("To", TO), ("From", FROM), ("Body", &body)])
        .await;
    assert_eq!(response.status(), 201);
    let mut ten = vec![("To", TO), ("From", FROM)];
    ten.extend((0..10).map(|_| ("MediaUrl", "https://example.com/cat.png")));
    let response = fake.create(&ten).await;
    assert_eq!(response.status(), 201);
    let response = fake
        .create(&[
            ("To", "whatsapp:+15558675310"),
            ("From", "whatsapp:+15017122661"),
            ("Body", "x"),
        ])
        .await;
    assert_eq!(response.status(), 201, "channel addresses");
    let response = fake
        .create(&[("To", TO), ("From", "Switchboard"), ("Body", "x")])
        .await;
    assert_eq!(response.status(), 201, "alphanumeric sender");
}
