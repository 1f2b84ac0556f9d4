//! The OpenAPI check: violations recorded per request, against Twilio's own descriptions.

use serde_json::Value;

use crate::support::*;

/// `(location, name)` of each violation of the last request.
async fn violations(fake: &Fake) -> Vec<(String, String)> {
    let record = fake.last_request().await;
    assert_eq!(record["openapi_checked"], true, "{record}");
    record["openapi_violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["location"].as_str().unwrap().to_owned(),
                v["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A create form and the violations it must produce.
type Case = (Vec<(&'static str, &'static str)>, Vec<(String, String)>);

fn v(location: &str, name: &str) -> (String, String) {
    (location.to_owned(), name.to_owned())
}

#[tokio::test]
async fn valid_requests_have_no_violations() {
    let fake = Fake::start().await;
    fake.create(&[
        ("To", TO),
        ("From", FROM),
        ("Body", "hi"),
        ("StatusCallback", "https://example.com/status"),
        ("MediaUrl", "https://example.com/a.png"),
        ("MediaUrl", "https://example.com/b.png"),
        ("ValidityPeriod", "600"),
        ("SmartEncoded", "true"),
        ("ContentRetention", "retain"),
    ])
    .await;
    assert_eq!(violations(&fake).await, vec![]);
    assert_eq!(fake.last_request().await["operation"], "CreateMessage");

    fake.create(&[
        ("To", TO),
        ("MessagingServiceSid", "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        ("Body", "x"),
    ])
    .await;
    assert_eq!(violations(&fake).await, vec![]);

    let m: Value = fake
        .create(&[("To", TO), ("From", FROM), ("Body", "x")])
        .await
        .json()
        .await
        .unwrap();
    let sid = m["sid"].as_str().unwrap();
    fake.get(&format!(
        "/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json"
    ))
    .await;
    assert_eq!(violations(&fake).await, vec![]);
    assert_eq!(fake.last_request().await["operation"], "FetchMessage");
    fake.get(&format!(
        "/2010-04-01/Accounts/{ACCOUNT}/Messages.json?To=%2B15558675310&DateSent%3E=2024-01-01&PageSize=20"
    ))
    .await;
    assert_eq!(violations(&fake).await, vec![]);
    assert_eq!(fake.last_request().await["operation"], "ListMessage");

    // The XML variant is checked against the `.json` operation.
    fake.client
        .post(fake.url(&format!("/2010-04-01/Accounts/{ACCOUNT}/Messages")))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .form(&[("To", TO), ("From", FROM), ("Body", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(violations(&fake).await, vec![]);

    fake.get("/v1/PhoneNumbers/%2B15108675310?Type=carrier&Type=caller-name")
        .await;
    assert_eq!(violations(&fake).await, vec![]);
    assert_eq!(fake.last_request().await["operation"], "FetchPhoneNumber");
    fake.get("/v1/PhoneNumbers/%2B15108675310?AddOns=x&AddOnsData.x.key=1")
        .await;
    assert_eq!(
        violations(&fake).await,
        vec![],
        "a prefixed collapsible map"
    );
    fake.get("/v2/PhoneNumbers/%2B15108675310?Fields=line_type_intelligence,caller_name")
        .await;
    assert_eq!(violations(&fake).await, vec![]);
}

#[tokio::test]
async fn each_departure_names_its_field() {
    let fake = Fake::start().await;
    let cases: Vec<Case> = vec![
        (vec![("From", FROM), ("Body", "x")], vec![v("body", "To")]),
        (
            vec![("To", TO), ("MessagingServiceSid", "MGbad"), ("Body", "x")],
            vec![v("body", "MessagingServiceSid")],
        ),
        (
            vec![
                ("To", TO),
                ("From", FROM),
                ("Body", "x"),
                ("StatusCallback", "not a url"),
            ],
            vec![v("body", "StatusCallback")],
        ),
        (
            vec![
                ("To", TO),
                ("From", FROM),
                ("Body", "x"),
                ("ValidityPeriod", "abc"),
            ],
            vec![v("body", "ValidityPeriod")],
        ),
        (
            vec![
                ("To", TO),
                ("From", FROM),
                ("Body", "x"),
                ("ContentRetention", "forever"),
            ],
            vec![v("body", "ContentRetention")],
        ),
        (
            vec![
                ("To", TO),
                ("From", FROM),
                ("Body", "x"),
                ("Colour", "blue"),
            ],
            vec![v("body", "Colour")],
        ),
        (
            vec![("To", TO), ("From", FROM), ("Body", "x"), ("Body", "y")],
            vec![v("body", "Body")],
        ),
        (
            vec![("To", TO), ("Body", "x")],
            vec![v("body", "From|MessagingServiceSid")],
        ),
        (
            vec![("To", TO), ("From", FROM)],
            vec![v("body", "Body|MediaUrl|ContentSid")],
        ),
    ];
    for (form, expected) in cases {
        fake.create(&form).await;
        assert_eq!(violations(&fake).await, expected, "{form:?}");
    }
    let record = fake.last_request().await;
    let message = record["openapi_violations"][0]["message"].as_str().unwrap();
    assert!(message.contains("one of"), "{message}");
}

#[tokio::test]
async fn path_query_header_and_security_departures() {
    let fake = Fake::start().await;
    // A bad AccountSid in the path (also refused by auth, but recorded first).
    let response = fake
        .client
        .post(fake.url("/2010-04-01/Accounts/ACbad/Messages.json"))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .form(&[("To", TO), ("From", FROM), ("Body", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(violations(&fake).await, vec![v("path", "AccountSid")]);
    let message = fake.last_request().await["openapi_violations"][0]["message"].clone();
    assert!(message.as_str().unwrap().contains("34"), "{message}");

    fake.get(&format!(
        "/2010-04-01/Accounts/{ACCOUNT}/Messages/XX123.json"
    ))
    .await;
    assert_eq!(violations(&fake).await, vec![v("path", "Sid")]);

    fake.get(&format!(
        "/2010-04-01/Accounts/{ACCOUNT}/Messages.json?PageSize=5000&Colour=red"
    ))
    .await;
    assert_eq!(
        violations(&fake).await,
        vec![v("query", "PageSize"), v("query", "Colour")]
    );

    // A JSON body where the operation takes a form.
    fake.client
        .post(fake.messages_url())
        .basic_auth(ACCOUNT, Some(TOKEN))
        .json(&serde_json::json!({"To": TO}))
        .send()
        .await
        .unwrap();
    let found = violations(&fake).await;
    assert!(found.contains(&v("header", "Content-Type")), "{found:?}");

    // No credentials.
    fake.client
        .get(fake.url("/v2/PhoneNumbers/%2B15108675310"))
        .send()
        .await
        .unwrap();
    assert_eq!(violations(&fake).await, vec![v("header", "Authorization")]);

    // Nothing in the description.
    fake.get(&format!("/2010-04-01/Accounts/{ACCOUNT}/Nothing.json"))
        .await;
    assert_eq!(violations(&fake).await[0].0, "operation");
    fake.client
        .delete(fake.url("/v1/PhoneNumbers/%2B15108675310"))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(violations(&fake).await[0].0, "operation");
}

#[tokio::test]
async fn without_descriptions_nothing_is_checked() {
    let fake = Fake::start_with(|c| c.openapi_dir = Some("/nonexistent/twilio-oai".into())).await;
    assert_eq!(fake.admin("/health").await["openapi_check"], false);
    let response = fake
        .create(&[("To", TO), ("From", FROM), ("Body", "x")])
        .await;
    assert_eq!(response.status(), 201);
    let record = fake.last_request().await;
    assert_eq!(record["openapi_checked"], false);
    assert_eq!(
        record["operation"], "CreateMessage",
        "named without the descriptions"
    );
    assert_eq!(record["openapi_violations"], serde_json::json!([]));
}
