//! Posting messages over HTTP, the room page, and the forgery guard.

use crate::common::TestApp;
use reqwest::header::LOCATION;
use serde_json::{Value, json};

#[tokio::test]
async fn a_form_post_redirects_back_and_the_room_lists_the_message() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let response = app
        .post_form(
            &format!("/chatrooms/{room}/messages"),
            Some(&ann.cookie),
            &[("content", "  hello there  ")],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()[LOCATION],
        format!("/chatrooms/{room}").as_str()
    );
    let page = app.page(&format!("/chatrooms/{room}"), &ann.cookie).await;
    assert!(page.contains(r#"id="message_1""#));
    assert!(
        page.contains(r#"<div class="content"><p>hello there</p>"#),
        "content is trimmed"
    );
    assert!(page.contains(r#"<strong class="nickname">ann</strong>"#));
}

#[tokio::test]
async fn a_json_post_gets_201_and_the_message_object() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let response = app.post_message(&ann, room, "hi <b>all</b> & co").await;
    assert_eq!(response.status(), 201);
    let message: Value = response.json().await.unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["chatroom_id"], room);
    assert_eq!(message["nickname"], "ann");
    assert_eq!(message["content"], "hi <b>all</b> & co");
    assert_eq!(message["seq"], 1);
    let id = message["id"].as_i64().unwrap();
    let html = message["html"].as_str().unwrap();
    assert!(html.contains(&format!(r#"id="message_{id}""#)));
    assert!(!html.contains("<b>"), "content is escaped in html: {html}");
    let created = message["created_at"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
            .is_ok()
    );
}

#[tokio::test]
async fn empty_or_too_long_content_gets_422_and_is_not_stored() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    for content in ["", "   \n\t ", &"x".repeat(4001)] {
        assert_eq!(app.post_message(&ann, room, content).await.status(), 422);
        let form = app
            .post_form(
                &format!("/chatrooms/{room}/messages"),
                Some(&ann.cookie),
                &[("content", content)],
            )
            .await;
        assert_eq!(form.status(), 422);
        assert!(
            form.text().await.unwrap().contains("Message"),
            "the page explains the error"
        );
    }
    assert_eq!(
        app.post_message(&ann, room, &"x".repeat(4000))
            .await
            .status(),
        201
    );
    assert_eq!(app.count("messages").await, 1);
}

#[tokio::test]
async fn posting_to_a_missing_room_is_404() {
    let app = TestApp::spawn().await;
    let ann = app.sign_up("ann").await;
    assert_eq!(app.post_message(&ann, 999, "hello").await.status(), 404);
    assert_eq!(app.count("messages").await, 0);
}

#[tokio::test]
async fn the_room_shows_the_latest_fifty_oldest_first() {
    let (app, ann, room) = TestApp::with_ann_in_general(&["--message-rate", "0"]).await;
    for n in 1..=55 {
        assert_eq!(
            app.post_message(&ann, room, &format!("message number {n}"))
                .await
                .status(),
            201
        );
    }
    let page = app.page(&format!("/chatrooms/{room}"), &ann.cookie).await;
    assert_eq!(page.matches(r#"<article class="message""#).count(), 50);
    assert!(!page.contains("message number 5<"));
    // The 6th is the oldest shown, the newest last.
    crate::common::assert_in_order(&page, &["message number 6<", "message number 55<"]);
}

#[tokio::test]
async fn user_text_is_escaped_on_the_page() {
    let app = TestApp::spawn().await;
    let evil = app.sign_up("evil").await;
    let room = app.create_room(&evil, "<img src=x onerror=alert(1)>").await;
    app.post_message(&evil, room, "<script>alert('x')</script>")
        .await;
    let page = app.page(&format!("/chatrooms/{room}"), &evil.cookie).await;
    assert!(!page.contains("<script>alert"));
    assert!(!page.contains("<img src=x"));
}

#[tokio::test]
async fn cross_site_posts_are_refused_and_same_site_ones_pass() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let path = format!("/chatrooms/{room}/messages");
    let send = |headers: Vec<(&'static str, String)>| {
        let mut request = app
            .client()
            .post(app.url(&path))
            .header("cookie", &ann.cookie)
            .form(&[("content", "hello")]);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let foreign = send(vec![("origin", "https://evil.example".into())])
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let cross = send(vec![("sec-fetch-site", "cross-site".into())])
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    let sign_out = app
        .client()
        .post(app.url("/sign_out"))
        .header("cookie", &ann.cookie)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(sign_out.status(), 403, "sign-out is protected too");
    assert_eq!(app.count("messages").await, 0);

    let own = send(vec![
        ("origin", app.base.clone()),
        ("sec-fetch-site", "same-origin".into()),
    ])
    .await
    .unwrap();
    assert_eq!(own.status(), 303);
    let plain = send(vec![]).await.unwrap();
    assert_eq!(
        plain.status(),
        303,
        "non-browser clients send neither header"
    );
    assert_eq!(app.count("messages").await, 2);
}

#[tokio::test]
async fn an_allowed_origin_may_post() {
    let (app, ann, room) =
        TestApp::with_ann_in_general(&["--allowed-origin", "https://chat.example.com"]).await;
    let response = app
        .client()
        .post(app.url(&format!("/chatrooms/{room}/messages")))
        .header("cookie", &ann.cookie)
        .header("origin", "https://chat.example.com")
        .form(&[("content", "hello")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
}

#[tokio::test]
async fn pages_carry_security_headers() {
    let app = TestApp::spawn().await;
    let response = app.get("/sign_in", None).await;
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert!(response.headers().contains_key("referrer-policy"));
}

#[tokio::test]
async fn concurrent_posts_to_several_rooms_get_gapless_sequences() {
    let app = TestApp::spawn_with(&["--message-rate", "0"]).await;
    let ann = app.sign_up("ann").await;
    let rooms = [
        app.general_room(&ann).await,
        app.create_room(&ann, "other").await,
        9999,
    ];
    let posts = (0..90).map(|n| {
        let room = rooms[n % 3];
        let (app, ann) = (&app, &ann);
        async move {
            (
                room,
                app.post_message(ann, room, &format!("post {n}")).await,
            )
        }
    });
    let mut seqs: std::collections::HashMap<i64, Vec<i64>> = Default::default();
    for (room, response) in futures_util::future::join_all(posts).await {
        if room == 9999 {
            assert_eq!(
                response.status(),
                404,
                "a missing room in the same batch fails alone"
            );
            continue;
        }
        assert_eq!(response.status(), 201);
        let message: Value = response.json().await.unwrap();
        seqs.entry(room)
            .or_default()
            .push(message["seq"].as_i64().unwrap());
    }
    for room in &rooms[..2] {
        let mut got = seqs.remove(room).unwrap();
        got.sort_unstable();
        assert_eq!(got, (1..=30).collect::<Vec<_>>(), "room {room}");
    }
    assert_eq!(app.count("messages").await, 60);
}

#[tokio::test]
async fn every_module_the_page_script_imports_is_served() {
    let app = TestApp::spawn().await;
    let mut queue = vec!["/static/app.js".to_owned()];
    let mut served = std::collections::BTreeSet::new();
    while let Some(path) = queue.pop() {
        if !served.insert(path.clone()) {
            continue;
        }
        let response = app.get(&path, None).await;
        assert_eq!(response.status(), 200, "{path}");
        assert!(crate::common::content_type(&response).starts_with("text/javascript"));
        let source = response.text().await.unwrap();
        let folder = &path[..path.rfind('/').unwrap() + 1];
        for import in source.split(" from \"").skip(1) {
            let relative = import.split('"').next().unwrap();
            let resolved = match relative.strip_prefix("./") {
                Some(rest) => format!("{folder}{rest}"),
                None => panic!("{path} imports {relative}, not a relative module"),
            };
            queue.push(resolved);
        }
    }
    assert!(served.len() >= 4, "{served:?}");
    assert_eq!(app.get("/static/app.css", None).await.status(), 200);
}

#[tokio::test]
async fn a_pages_id_for_its_pending_copy_comes_back_with_the_stored_message() {
    let (app, ann, room) = TestApp::with_ann_in_general(&[]).await;
    let (mut cable, identifier) = app.join(&ann, room).await;
    let answer: Value = app
        .try_post_json(
            &format!("/chatrooms/{room}/messages"),
            &ann,
            &[("content", "hi"), ("client_id", "3f2b-41_a")],
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["client_id"], "3f2b-41_a");
    assert_eq!(
        cable.next_message(&identifier).await["client_id"],
        "3f2b-41_a"
    );

    // Spoken with one, and an unusable one is dropped, not refused.
    let data = json!({ "action": "speak", "content": "yo", "client_id": "c-2" }).to_string();
    cable
        .send_json(json!({ "command": "message", "identifier": identifier, "data": data }))
        .await;
    assert_eq!(cable.next_message(&identifier).await["client_id"], "c-2");
    let odd = app
        .try_post_json(
            &format!("/chatrooms/{room}/messages"),
            &ann,
            &[("content", "odd"), ("client_id", "<script>")],
        )
        .await
        .unwrap();
    assert_eq!(odd.status(), 201);
    let message = cable.next_message(&identifier).await;
    assert_eq!(message["content"], "odd");
    assert!(message.get("client_id").is_none(), "{message}");
}
