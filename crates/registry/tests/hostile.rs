//! Hostile servers: credentials stay with the origin they belong to, whatever a registry
//! or token server answers.

mod common;

use std::sync::{Arc, Mutex};

use common::{AuthDir, HttpResponse, Server, client};

/// What a server saw: (path and query, Authorization header).
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

fn recorder() -> Seen {
    Arc::default()
}

/// A registry that wants a Bearer token from `realm` and accepts any token.
fn token_registry(realm: String, seen: Seen) -> Server {
    Server::start(move |req| {
        let auth = req.header("authorization").map(str::to_owned);
        seen.lock().unwrap().push((req.target.clone(), auth.clone()));
        match auth {
            Some(a) if a.starts_with("Bearer ") => HttpResponse::new(200).with_body("{}"),
            _ => HttpResponse::new(401)
                .with_header("WWW-Authenticate", &format!("Bearer realm=\"{realm}\",service=\"hostile\""))
                .with_body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"token"}]}"#),
        }
    })
}

#[test]
fn token_credentials_do_not_follow_a_redirect_to_another_origin() {
    // The token server redirects the token request (which carries the user's Basic
    // credentials) to another origin; that one must get the request without them.
    let elsewhere_seen = recorder();
    let seen = Arc::clone(&elsewhere_seen);
    let elsewhere = Server::start(move |req| {
        seen.lock().unwrap().push((req.target.clone(), req.header("authorization").map(str::to_owned)));
        HttpResponse::new(200).with_body(r#"{"token":"anonymous"}"#)
    });
    let token_seen = recorder();
    let (seen, to) = (Arc::clone(&token_seen), elsewhere.addr().to_owned());
    let token_server = Server::start(move |req| {
        seen.lock().unwrap().push((req.target.clone(), req.header("authorization").map(str::to_owned)));
        HttpResponse::new(307).with_header("Location", &format!("http://{to}{}", req.target))
    });
    let registry_seen = recorder();
    let registry = token_registry(format!("http://{}/token", token_server.addr()), Arc::clone(&registry_seen));
    let auth = AuthDir::new(&[(registry.addr(), "alice", "s3cret")]);
    client(registry.addr(), &auth).ping().unwrap();

    let token_seen = token_seen.lock().unwrap();
    assert!(
        token_seen.iter().any(|(_, a)| a.as_deref().is_some_and(|a| a.starts_with("Basic "))),
        "the token server (the realm) gets the credentials: {token_seen:?}"
    );
    let elsewhere_seen = elsewhere_seen.lock().unwrap();
    assert!(!elsewhere_seen.is_empty(), "the redirect was followed");
    assert!(elsewhere_seen.iter().all(|(_, a)| a.is_none()), "credentials followed the redirect: {elsewhere_seen:?}");
    // The registry got the token, never the Basic credentials.
    let registry_seen = registry_seen.lock().unwrap();
    assert!(registry_seen.iter().any(|(_, a)| a.as_deref() == Some("Bearer anonymous")), "{registry_seen:?}");
    assert!(registry_seen.iter().all(|(_, a)| !a.as_deref().is_some_and(|a| a.starts_with("Basic "))));
}

#[test]
fn a_plain_http_token_realm_on_another_host_gets_no_credentials() {
    // --plain-http names the registry (127.0.0.1); a realm on another host over plain http
    // is refused before anything is sent (without the check, the client would try to
    // connect there and fail with a connection error instead).
    let registry = token_registry("http://127.0.0.2:9/token".into(), recorder());
    let auth = AuthDir::new(&[(registry.addr(), "alice", "s3cret")]);
    let e = client(registry.addr(), &auth).ping().unwrap_err().to_string();
    assert!(e.contains("plain http") && e.contains("127.0.0.2"), "{e}");
}
