//! Response shapes against the official OpenAPI descriptions: the fake's answers have exactly
//! the properties of the spec's schemas, with the spec's types, enums and nullability.

use serde_json::{Value, json};

use crate::support::*;

/// One of the official descriptions, as built into the fake.
fn spec(file: &str) -> Value {
    let (_, text) = twilio_fake::openapi::EMBEDDED
        .iter()
        .find(|(name, _)| *name == file)
        .expect("the OpenAPI descriptions");
    serde_json::from_str(text).unwrap()
}

fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        schema = doc.pointer(&r[1..]).unwrap();
    }
    schema
}

/// Asserts that `value` has every property of the object schema and no other, each of the
/// declared type (or null where nullable), and within its enum.
fn assert_conforms(doc: &Value, schema: &Value, value: &Value, at: &str) {
    let schema = resolve(doc, schema);
    let properties = schema["properties"].as_object().unwrap();
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{at}: not an object"));
    let mut expected: Vec<&str> = properties.keys().map(String::as_str).collect();
    let mut actual: Vec<&str> = object.keys().map(String::as_str).collect();
    expected.sort_unstable();
    actual.sort_unstable();
    assert_eq!(actual, expected, "{at}: property names");
    for (name, property) in properties {
        let property = resolve(doc, property);
        let v = &object[name];
        let at = format!("{at}.{name}");
        if v.is_null() {
            // The spec marks most properties nullable; a `$ref`'d object without `nullable`
            // is still sent as null by Twilio when the package was not requested.
            continue;
        }
        match property["type"].as_str() {
            Some("string") => assert!(v.is_string(), "{at}: {v} is not a string"),
            Some("integer") => assert!(v.is_i64() || v.is_u64(), "{at}: {v} is not an integer"),
            Some("boolean") => assert!(v.is_boolean(), "{at}: {v} is not a boolean"),
            Some("array") => assert!(v.is_array(), "{at}: {v} is not an array"),
            Some("object") if property.get("properties").is_some() => {
                assert_conforms(doc, property, v, &at)
            }
            Some("object") => assert!(v.is_object(), "{at}: {v} is not an object"),
            _ => {}
        }
        if let Some(options) = property["enum"].as_array() {
            assert!(options.contains(v), "{at}: {v} not in {options:?}");
        }
        if let Some(pattern) = property["pattern"].as_str() {
            let re = regex::Regex::new(pattern).unwrap();
            assert!(re.is_match(v.as_str().unwrap()), "{at}: {v} !~ {pattern}");
        }
    }
}

#[tokio::test]
async fn messages_answers_match_the_spec() {
    let doc = spec("twilio_api_v2010.json");
    let message = json!({"$ref": "#/components/schemas/api.v2010.account.message"});
    let fake = Fake::start().await;

    let created: Value = fake
        .create(&[("To", TO), ("From", FROM), ("Body", "hi")])
        .await
        .json()
        .await
        .unwrap();
    assert_conforms(&doc, &message, &created, "create");
    let via_service: Value = fake
        .create(&[
            ("To", TO),
            ("MessagingServiceSid", "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            ("MediaUrl", "https://example.com/a.png"),
        ])
        .await
        .json()
        .await
        .unwrap();
    assert_conforms(&doc, &message, &via_service, "create via service");

    let sid = created["sid"].as_str().unwrap();
    let fetched: Value = fake
        .get(&format!(
            "/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_conforms(&doc, &message, &fetched, "fetch");

    let list: Value = fake
        .get(&format!(
            "/2010-04-01/Accounts/{ACCOUNT}/Messages.json?PageSize=1"
        ))
        .await
        .json()
        .await
        .unwrap();
    let list_schema = &doc["paths"]["/2010-04-01/Accounts/{AccountSid}/Messages.json"]["get"]["responses"]
        ["200"]["content"]["application/json"]["schema"];
    assert_conforms(&doc, list_schema, &list, "list");
    for (i, m) in list["messages"].as_array().unwrap().iter().enumerate() {
        assert_conforms(&doc, &message, m, &format!("list.messages[{i}]"));
    }
}

#[tokio::test]
async fn lookup_answers_match_the_spec() {
    let fake = Fake::start().await;
    let v1 = spec("twilio_lookups_v1.json");
    let body: Value = fake
        .get("/v1/PhoneNumbers/%2B15108675310?Type=carrier&Type=caller-name")
        .await
        .json()
        .await
        .unwrap();
    assert_conforms(
        &v1,
        &json!({"$ref": "#/components/schemas/lookups.v1.phone_number"}),
        &body,
        "v1",
    );
    // The spec leaves carrier untyped; its enum and the example give the shape.
    let carrier_example = &v1["paths"]["/v1/PhoneNumbers/{PhoneNumber}"]["get"]["responses"]["200"]
        ["content"]["application/json"]["examples"]["fetchCarrierAndCallerName"]["value"];
    for part in ["carrier", "caller_name"] {
        let mut expected: Vec<&String> =
            carrier_example[part].as_object().unwrap().keys().collect();
        let mut actual: Vec<&String> = body[part].as_object().unwrap().keys().collect();
        expected.sort();
        actual.sort();
        assert_eq!(actual, expected, "v1 {part}");
    }
    let types = v1["components"]["schemas"]["phone_number_enum_type"]["enum"].clone();
    assert!(types.as_array().unwrap().contains(&body["carrier"]["type"]));

    let v2 = spec("twilio_lookups_v2.json");
    let lookup = json!({"$ref": "#/components/schemas/LookupResponse"});
    for path in [
        "/v2/PhoneNumbers/%2B15108675310?Fields=line_type_intelligence,caller_name",
        "/v2/PhoneNumbers/%2B141599299600",
    ] {
        let body: Value = fake.get(path).await.json().await.unwrap();
        assert_conforms(&v2, &lookup, &body, path);
    }
}
