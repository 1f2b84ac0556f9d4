//! Lookup v1 (404 for invalid numbers) and v2 (200 with `valid: false`).

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn v1_carrier_and_caller_name() {
    let fake = Fake::start().await;
    // The seed package's request: the number url-encoded, Type given twice.
    let response = fake
        .get("/v1/PhoneNumbers/%2B15108675310?Type=carrier&Type=caller-name")
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "caller_name": {"caller_name": "SWITCHBOARD FAKE", "caller_type": "CONSUMER", "error_code": null},
            "carrier": {
                "mobile_country_code": "310",
                "mobile_network_code": "456",
                "name": "Fake Wireless",
                "type": "mobile",
                "error_code": null
            },
            "country_code": "US",
            "national_format": "(510) 867-5310",
            "phone_number": "+15108675310",
            "add_ons": null,
            "url": "https://lookups.twilio.com/v1/PhoneNumbers/+15108675310"
        })
    );

    let plain: Value = fake
        .get("/v1/PhoneNumbers/5108675310")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(plain["phone_number"], "+15108675310");
    assert_eq!(plain["carrier"], Value::Null);
    assert_eq!(plain["caller_name"], Value::Null);

    let gb: Value = fake
        .get("/v1/PhoneNumbers/02077651182?CountryCode=GB&Type=carrier")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(gb["phone_number"], "+442077651182");
    assert_eq!(gb["country_code"], "GB");
}

#[tokio::test]
async fn v1_invalid_numbers_are_404() {
    let fake = Fake::start().await;
    for number in [
        "%2B1415",
        "hello",
        "%2B1%20510%20867%205310",
        "%2B141599299600",
    ] {
        let response = fake
            .get(&format!("/v1/PhoneNumbers/{number}?Type=carrier"))
            .await;
        let body = expect_error(response, 404, 20404).await;
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("The requested resource /PhoneNumbers/"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn v2_fields_and_invalid_numbers() {
    let fake = Fake::start().await;
    let body: Value = fake
        .get("/v2/PhoneNumbers/%2B14159929960?Fields=line_type_intelligence,caller_name")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["valid"], true);
    assert_eq!(body["calling_country_code"], "1");
    assert_eq!(body["country_code"], "US");
    assert_eq!(body["national_format"], "(415) 992-9960");
    assert_eq!(body["validation_errors"], Value::Null);
    assert_eq!(body["line_type_intelligence"]["type"], "mobile");
    assert_eq!(
        body["line_type_intelligence"]["carrier_name"],
        "Fake Wireless"
    );
    assert_eq!(body["caller_name"]["caller_type"], "CONSUMER");
    assert_eq!(body["sim_swap"], Value::Null);
    assert_eq!(
        body["url"],
        "https://lookups.twilio.com/v2/PhoneNumbers/+14159929960"
    );

    // The spec's `fetchInvalid` example, exactly.
    let response = fake.get("/v2/PhoneNumbers/%2B141599299600").await;
    assert_eq!(response.status(), 200);
    let invalid: Value = response.json().await.unwrap();
    assert_eq!(
        invalid,
        json!({
            "calling_country_code": null,
            "country_code": null,
            "phone_number": "+141599299600",
            "national_format": null,
            "valid": false,
            "validation_errors": ["TOO_LONG"],
            "caller_name": null,
            "sim_swap": null,
            "call_forwarding": null,
            "line_status": null,
            "line_type_intelligence": null,
            "identity_match": null,
            "reassigned_number": null,
            "sms_pumping_risk": null,
            "phone_number_quality_score": null,
            "pre_fill": null,
            "url": "https://lookups.twilio.com/v2/PhoneNumbers/+141599299600"
        })
    );
    let short: Value = fake
        .get("/v2/PhoneNumbers/%2B1415")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(short["validation_errors"], json!(["TOO_SHORT"]));
    let text: Value = fake
        .get("/v2/PhoneNumbers/pizza")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(text["validation_errors"], json!(["NOT_A_NUMBER"]));
}

#[tokio::test]
async fn number_rules_shape_lookups() {
    let fake =
        Fake::start_with(|c| c.public_base_url = Some("http://twilio-fake:8090/".into())).await;
    fake.rule(
        "+15108675310",
        json!({"lookup": {"line_type": "landline", "carrier_name": "Acme Telco", "caller_name": "ACME", "caller_type": "BUSINESS"}}),
    )
    .await;
    let v1: Value = fake
        .get("/v1/PhoneNumbers/%2B15108675310?Type=carrier&Type=caller-name")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v1["carrier"]["type"], "landline");
    assert_eq!(v1["carrier"]["name"], "Acme Telco");
    assert_eq!(v1["carrier"]["mobile_country_code"], Value::Null);
    assert_eq!(v1["caller_name"]["caller_name"], "ACME");
    assert_eq!(v1["caller_name"]["caller_type"], "BUSINESS");
    assert_eq!(
        v1["url"],
        "http://twilio-fake:8090/v1/PhoneNumbers/+15108675310"
    );

    fake.rule("+15108675311", json!({"lookup": {"valid": false}}))
        .await;
    expect_error(
        fake.get("/v1/PhoneNumbers/%2B15108675311").await,
        404,
        20404,
    )
    .await;
    let v2: Value = fake
        .get("/v2/PhoneNumbers/%2B15108675311")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v2["valid"], false);

    fake.rule("+15108675312", json!({"lookup": {"line_type": "voip"}}))
        .await;
    let v2: Value = fake
        .get("/v2/PhoneNumbers/%2B15108675312?Fields=line_type_intelligence")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v2["line_type_intelligence"]["type"], "nonFixedVoip");
}
