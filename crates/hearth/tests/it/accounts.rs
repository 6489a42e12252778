//! Signing up, in and out, over real HTTP.

use crate::common::{TestApp, session_cookie};
use reqwest::header::{LOCATION, RETRY_AFTER, SET_COOKIE};

#[tokio::test]
async fn sign_up_signs_in_and_the_navbar_shows_the_nickname() {
    let app = TestApp::spawn().await;
    let response = app
        .post_form(
            "/sign_up",
            None,
            &[
                ("email", "Ann@Example.com"),
                ("nickname", "ann"),
                ("password", "correct horse"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    let cookie = session_cookie(response.headers()).unwrap();

    let room = app.get("/", Some(&cookie)).await;
    let location = room.headers()[LOCATION].to_str().unwrap().to_owned();
    let page = app.page(&location, &cookie).await;
    assert!(
        page.contains(r#"id="current-user">ann</span>"#),
        "navbar shows the nickname"
    );
    assert!(
        page.contains(r#"action="/sign_out""#),
        "navbar has a sign-out button"
    );
}

#[tokio::test]
async fn invalid_sign_ups_re_render_with_422_and_create_nothing() {
    let app = TestApp::spawn().await;
    let cases = [
        ("not-an-email", "ann", "long enough", "Email must look like"),
        (
            "ann@example.com",
            "",
            "long enough",
            "Nickname must be 1 to 32",
        ),
        (
            "ann@example.com",
            "ann smith",
            "long enough",
            "Nickname may contain only",
        ),
        (
            "ann@example.com",
            &"a".repeat(33),
            "long enough",
            "Nickname must be 1 to 32",
        ),
        (
            "ann@example.com",
            "ann",
            "short",
            "Password must be at least 8",
        ),
    ];
    for (email, nickname, password, error) in cases {
        let response = app
            .post_form(
                "/sign_up",
                None,
                &[
                    ("email", email),
                    ("nickname", nickname),
                    ("password", password),
                ],
            )
            .await;
        assert_eq!(response.status(), 422, "{email} {nickname} {password}");
        assert!(session_cookie(response.headers()).is_none());
        let body = response.text().await.unwrap();
        assert!(body.contains(error), "expected {error:?} in the page");
    }
    assert_eq!(app.count("users").await, 0);
    app.sign_up("ann").await;
    assert_eq!(app.count("users").await, 1);
}

#[tokio::test]
async fn taken_emails_ignore_case_and_taken_nicknames_are_refused() {
    let app = TestApp::spawn().await;
    app.sign_up("ann").await;
    let again = app
        .post_form(
            "/sign_up",
            None,
            &[
                ("email", "ANN@example.com"),
                ("nickname", "other"),
                ("password", "long enough"),
            ],
        )
        .await;
    assert_eq!(again.status(), 422);
    assert!(again.text().await.unwrap().contains("already registered"));
    let nick = app
        .post_form(
            "/sign_up",
            None,
            &[
                ("email", "x@example.com"),
                ("nickname", "ANN"),
                ("password", "long enough"),
            ],
        )
        .await;
    assert_eq!(nick.status(), 422);
    assert!(nick.text().await.unwrap().contains("nickname is taken"));
    assert_eq!(app.count("users").await, 1);
}

#[tokio::test]
async fn sign_in_gives_a_new_session_and_refuses_bad_credentials() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;

    for (email, password) in [
        (ann.email.as_str(), "wrong password"),
        ("nobody@example.com", "whatever1"),
    ] {
        let response = app.post_sign_in(email, password, None).await;
        assert_eq!(response.status(), 401);
        assert!(session_cookie(response.headers()).is_none());
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("Invalid email or password")
        );
    }

    let response = app
        .post_sign_in("ANN@example.com", &ann.password, Some(&ann.cookie))
        .await;
    assert_eq!(response.status(), 303);
    let fresh = session_cookie(response.headers()).unwrap();
    assert_ne!(fresh, ann.cookie, "sign-in issues a new session id");
    assert_eq!(app.get("/chatrooms", Some(&fresh)).await.status(), 200);
    assert_eq!(
        app.get("/chatrooms", Some(&ann.cookie)).await.status(),
        303,
        "the session the browser had before signing in is ended"
    );
}

#[tokio::test]
async fn sign_out_ends_the_session_on_the_server() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let response = app.post_form("/sign_out", Some(&ann.cookie), &[]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[LOCATION], "/sign_in");
    let replayed = app.get("/chatrooms", Some(&ann.cookie)).await;
    assert_eq!(replayed.status(), 303, "the old cookie no longer works");
    assert_eq!(replayed.headers()[LOCATION], "/sign_in?back=/chatrooms");
    assert_eq!(app.count("sessions").await, 0);
}

#[tokio::test]
async fn pages_that_need_a_user_redirect_to_sign_in() {
    let app = TestApp::spawn().await;
    for (path, to) in [
        ("/", "/sign_in"),
        ("/chatrooms", "/sign_in?back=/chatrooms"),
        ("/chatrooms/1", "/sign_in?back=/chatrooms/1"),
    ] {
        let response = app.get(path, None).await;
        assert_eq!(response.status(), 303, "{path}");
        assert_eq!(response.headers()[LOCATION], to, "{path}");
    }
    let response = app
        .post_form("/chatrooms/1/messages", None, &[("content", "hi")])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(app.count("messages").await, 0);
    assert_eq!(app.get("/sign_in", None).await.status(), 200);
    assert_eq!(app.get("/sign_up", None).await.status(), 200);
}

/// Posts the sign-in form as the client at `forwarded`, behind a trusted proxy.
async fn sign_in_from(
    app: &TestApp,
    forwarded: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    app.client()
        .post(app.url("/sign_in"))
        .header("x-forwarded-for", forwarded)
        .form(&[("email", email), ("password", password)])
        .send()
        .await
        .expect("POST /sign_in")
}

#[tokio::test]
async fn wrong_guesses_from_elsewhere_do_not_lock_the_owner_out() {
    let app = TestApp::spawn_with(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--sign-in-failures-per-account-ip",
        "3",
        "--sign-in-failures-per-ip",
        "100",
    ])
    .await;
    let ann = app.sign_up("ann").await;
    for _ in 0..3 {
        let guess = sign_in_from(&app, "6.6.6.6", &ann.email, "wrong guess").await;
        assert_eq!(guess.status(), 401);
    }
    let limited = sign_in_from(&app, "6.6.6.6", &ann.email, &ann.password).await;
    assert_eq!(
        limited.status(),
        429,
        "the guessing address waits, even with the right password"
    );
    assert!(limited.headers().contains_key(RETRY_AFTER));
    assert!(limited.text().await.unwrap().contains("Too many attempts"));

    let owner = sign_in_from(&app, "1.2.3.4", &ann.email, &ann.password).await;
    assert_eq!(
        owner.status(),
        303,
        "the owner signs in from an address that did not guess"
    );
    assert!(session_cookie(owner.headers()).is_some());
}

#[tokio::test]
async fn failed_sign_ins_are_limited_per_address_and_successes_do_not_count() {
    let app = TestApp::spawn_with(&["--sign-in-failures-per-ip", "2"]).await;
    let ann = app.sign_up("ann").await;
    for _ in 0..4 {
        let response = app.post_sign_in(&ann.email, &ann.password, None).await;
        assert_eq!(response.status(), 303, "successes never use up the limit");
    }
    for email in ["nobody@example.com", "else@example.com"] {
        let response = app.post_sign_in(email, "x", None).await;
        assert_eq!(response.status(), 401);
    }
    let limited = app.post_sign_in("third@example.com", "x", None).await;
    assert_eq!(limited.status(), 429, "two failures used up this address");
    assert!(limited.headers().contains_key(RETRY_AFTER));
}

#[tokio::test]
async fn a_two_megabyte_email_gets_a_clear_answer_and_is_not_echoed() {
    let app = TestApp::spawn().await;
    let huge = "x".repeat(2_000_000);
    let response = app
        .post_form(
            "/sign_in",
            None,
            &[("email", huge.as_str()), ("password", "whatever1")],
        )
        .await;
    assert_eq!(response.status(), 401);
    let body = response.text().await.unwrap();
    assert!(body.contains("Invalid email or password"));
    assert!(
        body.len() < 100_000,
        "the page does not echo the field back ({} bytes)",
        body.len()
    );
    // The server keeps answering normally afterwards.
    app.sign_up("ann").await;
}

#[tokio::test]
async fn passwords_of_only_spaces_or_equal_to_the_email_are_refused() {
    let app = TestApp::spawn().await;
    for (password, error) in [
        ("          ", "only spaces"),
        ("ANN@example.com", "must not be your email"),
        (" ann@example.com ", "must not be your email"),
    ] {
        let response = app
            .post_form(
                "/sign_up",
                None,
                &[
                    ("email", "ann@example.com"),
                    ("nickname", "ann"),
                    ("password", password),
                ],
            )
            .await;
        assert_eq!(response.status(), 422, "{password:?}");
        let body = response.text().await.unwrap();
        assert!(body.contains(error), "expected {error:?} for {password:?}");
    }
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn a_forwarded_hop_with_a_port_is_parsed_and_an_unknown_one_is_the_proxy() {
    let app = TestApp::spawn_with(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--sign-in-failures-per-ip",
        "1",
    ])
    .await;
    let fail = |forwarded: &'static str| {
        let app = &app;
        async move {
            sign_in_from(app, forwarded, "nobody@example.com", "x")
                .await
                .status()
        }
    };
    // The client is 1.2.3.4 whatever port the proxy wrote, not the hop the
    // client itself put on the left.
    assert_eq!(fail("6.6.6.6, 1.2.3.4:5555").await, 401);
    assert_eq!(fail("7.7.7.7, 1.2.3.4:6666").await, 429);
    assert_eq!(fail("6.6.6.6, [2001:db8::1]:443").await, 401);
    assert_eq!(fail("7.7.7.7, [2001:db8::1]:444").await, 429);
    // An unreadable hop is the proxy's own address, never the left hop.
    assert_eq!(fail("8.8.8.8, unknown").await, 401);
    assert_eq!(fail("9.9.9.9, unknown").await, 429);
}

#[tokio::test]
async fn sign_in_returns_to_the_page_asked_for_and_only_on_this_site() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let room = app.create_room(&ann, "later").await;
    let asked = app.get(&format!("/chatrooms/{room}?around=3"), None).await;
    let to_sign_in = asked.headers()[LOCATION].to_str().unwrap().to_owned();
    assert_eq!(
        to_sign_in,
        format!("/sign_in?back=/chatrooms/{room}%3Faround%3D3")
    );
    let form = app.get(&to_sign_in, None).await.text().await.unwrap();
    assert!(
        form.contains(&format!(
            r#"name="back" value="/chatrooms/{room}?around=3""#
        )),
        "the form carries where to go back to"
    );
    let back = format!("/chatrooms/{room}?around=3");
    for (back, lands) in [
        (back.as_str(), back.as_str()),
        ("//evil.example/phish", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/chatrooms\r\nSet-Cookie: x=1", "/"),
    ] {
        let response = app
            .post_form(
                "/sign_in",
                None,
                &[
                    ("email", &ann.email),
                    ("password", &ann.password),
                    ("back", back),
                ],
            )
            .await;
        assert_eq!(response.status(), 303, "{back}");
        assert_eq!(response.headers()[LOCATION], lands, "{back}");
    }
}

#[tokio::test]
async fn signed_in_people_skip_the_sign_in_and_sign_up_forms() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    for path in ["/sign_in", "/sign_up"] {
        let response = app.get(path, Some(&ann.cookie)).await;
        assert_eq!(response.status(), 303, "{path}");
        assert_eq!(response.headers()[LOCATION], "/", "{path}");
    }
}

#[tokio::test]
async fn error_pages_keep_the_signed_in_navbar() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    let missing = app.get("/chatrooms/999", Some(&ann.cookie)).await;
    assert_eq!(missing.status(), 404);
    let page = missing.text().await.unwrap();
    assert!(
        page.contains(r#"id="current-user">ann<"#),
        "the navbar shows ann"
    );
    assert!(page.contains(r#"action="/sign_out""#));
    assert!(
        !page.contains(r#"href="/sign_up""#),
        "no sign-up link for someone signed in"
    );
    let anonymous = app.get("/nowhere", None).await.text().await.unwrap();
    assert!(anonymous.contains(r#"href="/sign_in""#));
}
