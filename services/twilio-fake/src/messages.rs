//! The Messages resource of the 2010-04-01 API: create (with Twilio's validation codes), fetch
//! and list (with the paging envelope), in JSON (`.json`) or XML (no suffix).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{Value, json};
use switchboard_twilio::{E164, MessagingServiceSid, segments};
use time::{Date, OffsetDateTime};

use crate::conn::ConnHandle;
use crate::error::{Format, TwilioError};
use crate::faults::AcceptThenFail;
use crate::store::{API_VERSION, StoredMessage};
use crate::{AppState, ConnectionDropped, apply_faults, authenticate, callbacks, with_note};

/// Longest body Twilio accepts, in characters.
pub const MAX_BODY_CHARS: usize = 1600;

/// Most media per message.
pub const MAX_MEDIA: usize = 10;

/// Routes `/2010-04-01/Accounts/{AccountSid}/…` to the Messages operations.
#[tracing::instrument(skip_all, fields(%method, path = %uri.path()))]
pub async fn dispatch(
    State(state): State<Arc<AppState>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    Path((account, rest)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (resource, format) = match rest.strip_suffix(".json") {
        Some(stripped) => (stripped.to_owned(), Format::Json),
        None => (rest.clone(), Format::Xml),
    };
    let parts: Vec<&str> = resource.split('/').collect();
    let result = match (&method, parts.as_slice()) {
        (&Method::POST, ["Messages"]) => {
            create(&state, &conn, &account, &headers, &body, format).await
        }
        (&Method::GET, ["Messages"]) => list(&state, &account, &headers, &uri, format).await,
        (&Method::GET, ["Messages", sid]) => fetch(&state, &account, sid, &headers, format).await,
        (_, ["Messages"] | ["Messages", _]) => Err(fail(
            TwilioError::with_message(StatusCode::METHOD_NOT_ALLOWED, 20004, "Method not allowed"),
            format,
        )),
        _ => Err(fail(TwilioError::not_found(uri.path()), format)),
    };
    match result {
        Ok(response) | Err(response) => response,
    }
}

fn fail(error: TwilioError, format: Format) -> Response {
    error.in_format(format).into_response()
}

/// Authentication and the global faults shared by every Messages operation.
async fn gate(
    state: &AppState,
    account: &str,
    headers: &HeaderMap,
    number: Option<&str>,
    format: Format,
) -> Result<(), Response> {
    authenticate(state, headers, Some(account)).map_err(|e| fail(e, format))?;
    apply_faults(state, number)
        .await
        .map_err(|(error, note)| with_note(error.in_format(format), note))
}

async fn create(
    state: &Arc<AppState>,
    conn: &ConnHandle,
    account: &str,
    headers: &HeaderMap,
    body: &[u8],
    format: Format,
) -> Result<Response, Response> {
    let params = switchboard_twilio::signature::parse_form(body);
    let first = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let to = first("To");
    gate(state, account, headers, to, format).await?;

    // A forced error for this destination comes before validation: it stands for whatever
    // Twilio decided about the number.
    let rule = to.and_then(|to| crate::take_forced_error(state, to));
    if let Some(forced) = rule {
        let note = format!("forced {}", forced.code);
        return Err(with_note(forced.to_error().in_format(format), note));
    }

    let media: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "MediaUrl")
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
        .collect();
    let valid = validate(
        to,
        first("From"),
        first("MessagingServiceSid"),
        first("Body"),
        first("ContentSid"),
        &media,
        first("StatusCallback"),
    )
    .map_err(|e| fail(e, format))?;

    let now = OffsetDateTime::now_utc();
    let prefix = if media.is_empty() { "SM" } else { "MM" };
    let sid = format!("{prefix}{}", hex::encode(rand::rng().random::<[u8; 16]>()));
    let body_text = first("Body").unwrap_or("").to_owned();
    let via_service = valid.messaging_service_sid.is_some();
    let mut message = StoredMessage {
        sid: sid.clone(),
        account_sid: account.to_owned(),
        to: valid.to.clone(),
        from: valid.from.clone(),
        messaging_service_sid: valid.messaging_service_sid.clone(),
        num_segments: if via_service {
            0
        } else {
            segments::count(&body_text).segments.max(1)
        },
        body: body_text,
        media_urls: media,
        status: if via_service { "accepted" } else { "queued" }.to_owned(),
        error_code: None,
        error_message: None,
        date_created: now,
        date_updated: now,
        date_sent: None,
        status_callback: first("StatusCallback").map(str::to_owned),
        params: params.clone(),
        answered_with: None,
        listable_at: now,
    };
    let (accept_then_fail, delivery, list_lag_ms) = {
        let store = state.store();
        let rule = store.numbers.get(&valid.to);
        (
            rule.and_then(|r| r.accept_then_fail.clone())
                .or_else(|| store.faults.global.accept_then_fail.clone()),
            rule.and_then(|r| r.delivery.clone()),
            rule.and_then(|r| r.list_lag_ms)
                .unwrap_or(store.faults.global.list_lag_ms),
        )
    };
    message.listable_at =
        now + time::Duration::milliseconds(i64::try_from(list_lag_ms).unwrap_or(i64::MAX));
    message.answered_with = accept_then_fail.as_ref().map(|a| match a {
        AcceptThenFail::Status { status, .. } => format!("status {status}"),
        AcceptThenFail::Drop => "dropped".to_owned(),
        AcceptThenFail::Slow { delay_ms } => format!("slow {delay_ms} ms"),
    });
    let answer = render_one(&message, format, StatusCode::CREATED);
    state.store().push_message(message);
    callbacks::start_lifecycle(state, account, &sid, via_service, delivery);

    match accept_then_fail {
        None => Ok(answer),
        Some(AcceptThenFail::Status { status, empty_body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = if status == StatusCode::SERVICE_UNAVAILABLE {
                20503
            } else {
                20500
            };
            let mut error = TwilioError::new(status, code).in_format(format);
            error.empty_body = empty_body;
            Ok(with_note(
                error,
                format!("accept_then_fail status {}", status.as_u16()),
            ))
        }
        Some(AcceptThenFail::Slow { delay_ms }) => {
            // Created already: a client that gives up before this ends leaves it at "Twilio".
            tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
            Ok(with_note(answer, "accept_then_fail slow"))
        }
        Some(AcceptThenFail::Drop) => {
            conn.kill();
            let mut response =
                with_note(StatusCode::INTERNAL_SERVER_ERROR, "accept_then_fail drop");
            response.extensions_mut().insert(ConnectionDropped);
            Ok(response)
        }
    }
}

/// A create request that passed validation.
struct ValidCreate {
    to: String,
    from: Option<String>,
    messaging_service_sid: Option<String>,
}

/// Twilio's synchronous checks, in the order it reports them.
fn validate(
    to: Option<&str>,
    from: Option<&str>,
    service: Option<&str>,
    body: Option<&str>,
    content_sid: Option<&str>,
    media: &[String],
    status_callback: Option<&str>,
) -> Result<ValidCreate, TwilioError> {
    let to =
        to.ok_or_else(|| TwilioError::bad_request(21604, "A 'To' phone number is required."))?;
    if from.is_none() && service.is_none() {
        return Err(TwilioError::bad_request(
            21603,
            "A 'From' phone number is required.",
        ));
    }
    if body.is_none() && media.is_empty() && content_sid.is_none() {
        return Err(TwilioError::bad_request(21602, "Message body is required."));
    }
    if !is_address(to) {
        return Err(TwilioError::bad_request(
            21211,
            format!("The 'To' number {to} is not a valid phone number."),
        ));
    }
    if let Some(service) = service
        && MessagingServiceSid::parse(service).is_err()
    {
        return Err(TwilioError::bad_request(
            21701,
            format!("The Messaging Service Sid {service} is invalid."),
        ));
    }
    if let Some(from) = from
        && !is_sender(from)
    {
        return Err(TwilioError::bad_request(
            21212,
            format!(
                "The 'From' number {from} is not a valid phone number, shortcode, or alphanumeric sender ID."
            ),
        ));
    }
    if body.is_some_and(|b| b.chars().count() > MAX_BODY_CHARS) {
        return Err(TwilioError::bad_request(
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        ));
    }
    if media.len() > MAX_MEDIA {
        return Err(TwilioError::bad_request(
            21623,
            format!(
                "The number of media files ({}) exceeds the maximum allowed ({MAX_MEDIA}).",
                media.len()
            ),
        ));
    }
    if let Some(bad) = media.iter().find(|m| !is_http_url(m)) {
        return Err(TwilioError::bad_request(
            21620,
            format!("Media urls: {bad} are invalid. Please use only valid http and https urls"),
        ));
    }
    if let Some(url) = status_callback
        && !is_http_url(url)
    {
        return Err(TwilioError::bad_request(
            21609,
            format!("The StatusCallback URL {url} is not a valid URL."),
        ));
    }
    Ok(ValidCreate {
        to: to.to_owned(),
        from: from.map(str::to_owned),
        messaging_service_sid: service.map(str::to_owned),
    })
}

/// A recipient: E.164, optionally behind a channel prefix (`whatsapp:+1…`).
fn is_address(value: &str) -> bool {
    let number = match value.split_once(':') {
        Some((channel, rest))
            if !channel.is_empty() && channel.chars().all(|c| c.is_ascii_alphabetic()) =>
        {
            rest
        }
        _ => value,
    };
    E164::parse(number).is_ok()
}

/// A sender: an address, a short code (3–8 digits) or an alphanumeric sender ID (1–11
/// characters, letters, digits and spaces, at least one letter).
fn is_sender(value: &str) -> bool {
    is_address(value)
        || (value.len() >= 3 && value.len() <= 8 && value.chars().all(|c| c.is_ascii_digit()))
        || (value.chars().count() <= 11
            && value.chars().any(|c| c.is_ascii_alphabetic())
            && value.chars().all(|c| c.is_ascii_alphanumeric() || c == ' '))
}

/// An absolute http(s) URL with a hostname that has no underscore (Twilio refuses those).
fn is_http_url(value: &str) -> bool {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    let Some(rest) = rest else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = host.split(':').next().unwrap_or("");
    !host.is_empty() && !host.contains('_') && !value.chars().any(char::is_whitespace)
}

fn render_one(message: &StoredMessage, format: Format, status: StatusCode) -> Response {
    match format {
        Format::Json => (status, axum::Json(message.to_json())).into_response(),
        Format::Xml => xml_response(status, message.to_xml()),
    }
}

fn xml_response(status: StatusCode, inner: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        format!("<?xml version='1.0' encoding='UTF-8'?>\n<TwilioResponse>{inner}</TwilioResponse>"),
    )
        .into_response()
}

async fn fetch(
    state: &AppState,
    account: &str,
    sid: &str,
    headers: &HeaderMap,
    format: Format,
) -> Result<Response, Response> {
    gate(state, account, headers, None, format).await?;
    let found = state.store().message_mut(account, sid).map(|m| m.clone());
    match found {
        Some(message) => Ok(render_one(&message, format, StatusCode::OK)),
        None => Err(fail(
            TwilioError::not_found(&format!(
                "/{API_VERSION}/Accounts/{account}/Messages/{sid}.json"
            )),
            format,
        )),
    }
}

/// `DateSent` filters: on a day, on or before, on or after.
#[derive(Debug, Clone, Copy)]
enum DateFilter {
    On(Date),
    OnOrBefore(Date),
    OnOrAfter(Date),
}

/// A day from `YYYY-MM-DD` (anything after the tenth character, such as a time, is ignored)
/// or from an RFC 2822 date, the formats Twilio's helper libraries send.
fn parse_day(value: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    if let Some(day) = value.get(..10).and_then(|d| Date::parse(d, format).ok()) {
        return Some(day);
    }
    OffsetDateTime::parse(value.trim(), &time::format_description::well_known::Rfc2822)
        .ok()
        .map(|t| t.to_offset(time::UtcOffset::UTC).date())
}

async fn list(
    state: &AppState,
    account: &str,
    headers: &HeaderMap,
    uri: &Uri,
    format: Format,
) -> Result<Response, Response> {
    gate(state, account, headers, None, format).await?;
    let query = switchboard_twilio::signature::parse_form(uri.query().unwrap_or("").as_bytes());
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut dates = Vec::new();
    for (key, value) in &query {
        let filter = match key.as_str() {
            "DateSent" => parse_day(value).map(DateFilter::On),
            "DateSent<" => parse_day(value).map(DateFilter::OnOrBefore),
            "DateSent>" => parse_day(value).map(DateFilter::OnOrAfter),
            _ => continue,
        };
        match filter {
            Some(f) => dates.push(f),
            None => {
                return Err(fail(
                    TwilioError::bad_request(20001, format!("Invalid DateSent: {value}")),
                    format,
                ));
            }
        }
    }
    let page_size = get("PageSize")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let page = get("Page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let (to, from) = (get("To"), get("From"));

    // Newest first, as Twilio lists. A message not sent yet is dated by its creation. One a
    // `list_lag_ms` fault holds back is not listed yet.
    let now = OffsetDateTime::now_utc();
    let matching: Vec<StoredMessage> = state
        .store()
        .messages
        .iter()
        .rev()
        .filter(|m| m.listable_at <= now)
        .filter(|m| m.account_sid == account)
        .filter(|m| to.is_none_or(|to| m.to == to))
        .filter(|m| from.is_none_or(|from| m.from.as_deref() == Some(from)))
        .filter(|m| {
            let day = m.date_sent.unwrap_or(m.date_created).date();
            dates.iter().all(|f| match *f {
                DateFilter::On(d) => day == d,
                DateFilter::OnOrBefore(d) => day <= d,
                DateFilter::OnOrAfter(d) => day >= d,
            })
        })
        .cloned()
        .collect();
    let start = page * page_size;
    let items: Vec<&StoredMessage> = matching.iter().skip(start).take(page_size).collect();
    let has_next = matching.len() > start + items.len();

    let base = format!(
        "/{API_VERSION}/Accounts/{account}/Messages{}",
        if format == Format::Json { ".json" } else { "" }
    );
    let filters: String = query
        .iter()
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "To" | "From" | "DateSent" | "DateSent<" | "DateSent>"
            )
        })
        .map(|(k, v)| {
            form_urlencoded::Serializer::new(String::new())
                .append_pair(k, v)
                .finish()
                + "&"
        })
        .collect();
    let page_uri = |n: usize| {
        let token = if n > 0 {
            format!("&PageToken=PA{}", n * page_size)
        } else {
            String::new()
        };
        format!("{base}?{filters}PageSize={page_size}&Page={n}{token}")
    };
    let end = if items.is_empty() {
        start
    } else {
        start + items.len() - 1
    };
    match format {
        Format::Json => {
            let messages: Vec<Value> = items.iter().map(|m| m.to_json()).collect();
            Ok(axum::Json(json!({
                "end": end,
                "first_page_uri": page_uri(0),
                "messages": messages,
                "next_page_uri": has_next.then(|| page_uri(page + 1)),
                "page": page,
                "page_size": page_size,
                "previous_page_uri": (page > 0).then(|| page_uri(page - 1)),
                "start": start,
                "uri": page_uri(page),
            }))
            .into_response())
        }
        Format::Xml => {
            let inner: String = items.iter().map(|m| m.to_xml()).collect();
            let next_or_empty = if has_next {
                page_uri(page + 1)
            } else {
                String::new()
            };
            let previous_or_empty = if page > 0 {
                page_uri(page - 1)
            } else {
                String::new()
            };
            let attr = |s: &str| crate::error::xml_escape(s);
            Ok(xml_response(
                StatusCode::OK,
                format!(
                    "<Messages end=\"{end}\" firstpageuri=\"{}\" nextpageuri=\"{}\" page=\"{page}\" \
                     pagesize=\"{page_size}\" previouspageuri=\"{}\" start=\"{start}\" uri=\"{}\">{inner}</Messages>",
                    attr(&page_uri(0)),
                    attr(&next_or_empty),
                    attr(&previous_or_empty),
                    attr(&page_uri(page)),
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_senders() {
        assert!(is_address("+14155551234"));
        assert!(is_address("whatsapp:+14155551234"));
        assert!(!is_address("4155551234"));
        assert!(!is_address("+1 415 555 1234"));
        assert!(!is_address("hello"));
        assert!(is_sender("+14155551234"));
        assert!(is_sender("12345"));
        assert!(is_sender("Switchboard"));
        assert!(!is_sender("Switchboard Bot!"));
        assert!(!is_sender("12"));
    }

    #[test]
    fn date_filters() {
        let day = time::macros::date!(2019 - 06 - 19);
        assert_eq!(parse_day("2019-06-19"), Some(day));
        assert_eq!(parse_day("2019-06-19T22:04:00Z"), Some(day));
        assert_eq!(parse_day("Wed, 19 Jun 2019 22:04:00 +0000"), Some(day));
        assert_eq!(parse_day("yesterday"), None);
    }

    #[test]
    fn callback_urls() {
        assert!(is_http_url("https://example.com/status"));
        assert!(is_http_url("http://127.0.0.1:9000/cb?x=1"));
        assert!(!is_http_url("https://my_host.example.com/cb"));
        assert!(!is_http_url("ftp://example.com/cb"));
        assert!(!is_http_url("not a url"));
    }

    #[test]
    fn validation_order() {
        let code = |r: Result<ValidCreate, TwilioError>| r.err().map(|e| e.code);
        let media = |n: usize| vec!["https://example.com/a.png".to_owned(); n];
        assert_eq!(
            code(validate(None, None, None, None, None, &[], None)),
            Some(21604)
        );
        assert_eq!(
            code(validate(
                Some("+14155551234"),
                None,
                None,
                Some("x"),
                None,
                &[],
                None
            )),
            Some(21603)
        );
        assert_eq!(
            code(validate(
                Some("+14155551234"),
                Some("+14155550000"),
                None,
                None,
                None,
                &[],
                None
            )),
            Some(21602)
        );
        assert_eq!(
            code(validate(
                Some("555"),
                Some("+14155550000"),
                None,
                Some("x"),
                None,
                &[],
                None
            )),
            Some(21211)
        );
        assert_eq!(
            code(validate(
                Some("+14155551234"),
                None,
                Some("MGbad"),
                Some("x"),
                None,
                &[],
                None
            )),
            Some(21701)
        );
        assert_eq!(
            code(validate(
                Some("+14155551234"),
                Some("+14155550000"),
                None,
                None,
                None,
                &media(11),
                None
            )),
            Some(21623)
        );
        assert!(
            validate(
                Some("+14155551234"),
                Some("+14155550000"),
                None,
                None,
                None,
                &media(10),
                None
            )
            .is_ok()
        );
    }
}
