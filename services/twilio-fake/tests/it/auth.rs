//! Basic auth against the configured accounts: 401 / 20003 for everything else.

use crate::support::*;

#[tokio::test]
async fn credentials_are_checked() {
    let fake = Fake::start().await;
    let form = [("To", TO), ("From", FROM), ("Body", "x")];

    let none = fake
        .client
        .post(fake.messages_url())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        none.headers()["www-authenticate"],
        "Basic realm=\"Twilio API\""
    );
    expect_error(none, 401, 20003).await;

    let wrong_token = fake
        .client
        .post(fake.messages_url())
        .basic_auth(ACCOUNT, Some("not-the-token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    expect_error(wrong_token, 401, 20003).await;

    let unknown = "AC99999999999999999999999999999999";
    let unknown_account = fake
        .client
        .post(fake.url(&format!("/2010-04-01/Accounts/{unknown}/Messages.json")))
        .basic_auth(unknown, Some(TOKEN))
        .form(&form)
        .send()
        .await
        .unwrap();
    expect_error(unknown_account, 401, 20003).await;

    let bearer = fake
        .client
        .post(fake.messages_url())
        .bearer_auth(TOKEN)
        .form(&form)
        .send()
        .await
        .unwrap();
    expect_error(bearer, 401, 20003).await;

    // Valid credentials of another account do not open this account's path.
    let mismatch = fake
        .client
        .post(fake.messages_url())
        .basic_auth(OTHER_ACCOUNT, Some(OTHER_TOKEN))
        .form(&form)
        .send()
        .await
        .unwrap();
    expect_error(mismatch, 401, 20003).await;

    let lookup = fake
        .client
        .get(fake.url("/v1/PhoneNumbers/%2B15108675310"))
        .send()
        .await
        .unwrap();
    expect_error(lookup, 401, 20003).await;
    let lookup = fake
        .client
        .get(fake.url("/v2/PhoneNumbers/%2B15108675310"))
        .basic_auth(ACCOUNT, Some("nope"))
        .send()
        .await
        .unwrap();
    expect_error(lookup, 401, 20003).await;

    assert!(fake.admin("/messages").await.as_array().unwrap().is_empty());
    // The other account's own path works with its credentials.
    let own = fake
        .client
        .post(fake.url(&format!(
            "/2010-04-01/Accounts/{OTHER_ACCOUNT}/Messages.json"
        )))
        .basic_auth(OTHER_ACCOUNT, Some(OTHER_TOKEN))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 201);

    let records = fake.requests().await;
    assert_eq!(records.len(), 8);
    assert!(
        records.iter().all(|r| r["headers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h[0] != "authorization")),
        "Authorization is never recorded"
    );
    assert_eq!(records[1]["auth_user"], ACCOUNT);
    assert_eq!(records[0]["auth_user"], serde_json::Value::Null);
    assert_eq!(records[0]["response_status"], 401);
}

#[tokio::test]
async fn api_keys_act_for_their_account() {
    let key = "SKabcdefabcdefabcdefabcdefabcdefab";
    let fake = Fake::start_with(|c| {
        c.api_keys = vec![format!("{ACCOUNT}:{key}:key-secret").parse().unwrap()];
    })
    .await;
    let form = [("To", TO), ("From", FROM), ("Body", "x")];
    let created = fake
        .client
        .post(fake.messages_url())
        .basic_auth(key, Some("key-secret"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let m: serde_json::Value = created.json().await.unwrap();
    assert_eq!(m["account_sid"], ACCOUNT);
    let record = fake.last_request().await;
    assert_eq!(record["auth_user"], key);

    let wrong = fake
        .client
        .post(fake.messages_url())
        .basic_auth(key, Some("nope"))
        .form(&form)
        .send()
        .await
        .unwrap();
    expect_error(wrong, 401, 20003).await;
    let other_account = fake
        .client
        .post(fake.url(&format!(
            "/2010-04-01/Accounts/{OTHER_ACCOUNT}/Messages.json"
        )))
        .basic_auth(key, Some("key-secret"))
        .form(&form)
        .send()
        .await
        .unwrap();
    expect_error(other_account, 401, 20003).await;
    let lookup = fake
        .client
        .get(fake.url("/v2/PhoneNumbers/%2B15108675310"))
        .basic_auth(key, Some("key-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(lookup.status(), 200);
}
