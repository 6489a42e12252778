//! `TestApp`: a real Hearth server on port 0 with its own data folder, and
//! typed helpers that talk to it over real HTTP and real WebSockets.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The variable naming the PostgreSQL server tests may create databases on.
pub const POSTGRES: &str = "HEARTH_TEST_POSTGRES_URL";

/// Runs on `url` the migrations of `engine` ("sqlite" or "postgres") whose
/// file names sort before `before` (e.g. "0006"), as an earlier release
/// left an instance; returns the pool, for the caller to fill.
pub async fn migrate_before(url: &str, engine: &str, before: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let folder = tempfile::tempdir().unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(engine);
    for entry in std::fs::read_dir(&all).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < before {
            std::fs::copy(&path, folder.path().join(name)).unwrap();
        }
    }
    let old = sqlx::migrate::Migrator::new(folder.path()).await.unwrap();
    let newest: i64 = before.parse().unwrap();
    assert!(old.iter().all(|m| m.version < newest) && old.iter().count() >= 2);
    let db = sqlx::AnyPool::connect(url).await.unwrap();
    old.run(&db).await.unwrap();
    db
}
/// The variable naming the Redis server tests may use (each with its own prefix).
pub const REDIS: &str = "HEARTH_TEST_REDIS_URL";

/// The URL in `variable`, for a test that needs a shared service. Such tests
/// are marked `#[ignore = "needs …"]`: `cargo test` lists them as ignored,
/// and `.ci/run` runs them with `--include-ignored`, where a missing
/// variable fails the test rather than letting it pass unseen.
pub fn service(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!("this test needs {variable}; .ci/run sets it (see the README's test section)")
    })
}

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// A database of its own for one test: a fresh PostgreSQL database when
/// `HEARTH_TEST_POSTGRES_URL` is set (dropped afterwards), else none, and the
/// server uses SQLite in its temporary data folder.
pub struct TestDatabase {
    /// The `--database-url` to give the server, if not SQLite.
    pub url: Option<String>,
    admin: Option<(String, String)>,
}

impl TestDatabase {
    /// A fresh database for this test.
    pub async fn create() -> Self {
        let Ok(admin_url) = std::env::var("HEARTH_TEST_POSTGRES_URL") else {
            return Self {
                url: None,
                admin: None,
            };
        };
        let name = format!("hearth_test_{}", uuid_like());
        Self::admin(&admin_url, &format!("CREATE DATABASE {name}")).await;
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or(&admin_url);
        Self {
            url: Some(format!("{base}/{name}")),
            admin: Some((admin_url, name)),
        }
    }

    async fn admin(admin_url: &str, sql: &str) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(admin_url)
            .await
            .expect("HEARTH_TEST_POSTGRES_URL must reach PostgreSQL");
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
        let _ = conn.close().await;
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.admin.take() else {
            return;
        };
        // Drop runs outside async code: use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(Self::admin(
                &admin_url,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ));
        })
        .join();
    }
}

/// A random lowercase hex string, unique enough to name test resources.
pub fn uuid_like() -> String {
    use std::hash::{BuildHasher, RandomState};
    let a = RandomState::new().hash_one(std::time::SystemTime::now());
    let b = RandomState::new().hash_one(std::process::id());
    format!("{a:016x}{b:08x}")[..20].to_owned()
}

/// A running server.
pub struct TestApp {
    /// Where it listens; `TestApp` derefs to it for the typed helpers.
    pub remote: Remote,
    pub data_dir: tempfile::TempDir,
    /// The server's own pool, for checking what was stored.
    pub db: hearth::db::Db,
    /// The server's message writer, for posts no HTTP request or speak
    /// could make (to a room that does not exist).
    pub writer: hearth::writer::MessageWriter,
    /// Its PostgreSQL database, if the suite runs on PostgreSQL; dropped last.
    pub database: Option<std::sync::Arc<TestDatabase>>,
    /// Where `/metrics` and `/ready` are, when started with `--ops-bind`.
    pub ops_addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A signed-up user and the cookie of their session.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub email: String,
    pub password: String,
    /// `hearth_session=…`, ready for a `Cookie` header.
    pub cookie: String,
}

impl TestApp {
    /// Starts a server with default settings.
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// Starts a server with extra `hearth serve` arguments, on a fresh
    /// database of its own.
    pub async fn spawn_with(args: &[&str]) -> Self {
        let database = std::sync::Arc::new(TestDatabase::create().await);
        Self::spawn_on(Some(database), args).await
    }

    /// Starts a server with `args` and signs ann up; she lands in the room
    /// whose id is returned ("general").
    pub async fn with_ann_in_general(args: &[&str]) -> (Self, TestUser, i64) {
        let app = Self::spawn_with(args).await;
        let ann = app.sign_up("ann").await;
        let room = app.general_room(&ann).await;
        (app, ann, room)
    }

    /// Starts a server on `database` (shared by several nodes), or on SQLite
    /// in its own folder when `None` or when the database is not PostgreSQL.
    pub async fn spawn_on(database: Option<std::sync::Arc<TestDatabase>>, args: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut all = vec![
            "--bind".to_string(),
            "127.0.0.1:0".to_string(),
            "--data-dir".to_string(),
            data_dir.path().display().to_string(),
        ];
        if let Some(url) = database.as_ref().and_then(|d| d.url.clone()) {
            all.extend(["--database-url".to_string(), url]);
        }
        all.extend(args.iter().map(std::string::ToString::to_string));
        let config = hearth::Config::from_args(all);
        let listener = hearth::bind(config.bind).expect("bind");
        let addr = listener.local_addr().unwrap();
        let app = hearth::App::build(config).await.expect("app builds");
        let db = app.state().db.clone();
        let writer = app.state().writer.clone();
        let ops_addr = app.ops_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(hearth::serve(listener, app, async move {
            let _ = stopped.await;
        }));
        Self {
            remote: Remote::new(addr),
            data_dir,
            db,
            writer,
            database,
            ops_addr,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Stops the server the way SIGTERM does and waits for it to finish.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(15), server)
                .await
                .expect("server stops in time")
                .expect("server task")
                .expect("server ends cleanly");
        }
    }

    /// `count` users named `<prefix>0`, `<prefix>1`, … with a session each,
    /// written straight to the database: signing up hashes a password, and
    /// tests that need a crowd need it fast. They cannot sign in.
    pub async fn crowd(&self, prefix: &str, count: usize) -> Vec<TestUser> {
        use hearth::domain::{Email, Nickname};
        let mut users = Vec::with_capacity(count);
        for n in 0..count {
            let nickname = format!("{prefix}{n}");
            let email = format!("{nickname}@example.com");
            let user = hearth::db::users::insert(
                &self.db,
                &Email::parse(&email).unwrap(),
                &Nickname::parse(&nickname).unwrap(),
                "not a password hash",
            )
            .await
            .expect("insert a user");
            let token = hearth::db::sessions::create(&self.db, user.id)
                .await
                .expect("create a session");
            users.push(TestUser {
                email,
                password: String::new(),
                cookie: format!("hearth_session={}", token.as_str()),
            });
        }
        users
    }

    /// The id of the user called `nickname`, from the database.
    pub async fn user_id(&self, nickname: &str) -> i64 {
        sqlx::query_scalar("SELECT id FROM users WHERE nickname = $1")
            .bind(nickname)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// Count of rows in a table, read from the server's database.
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        sqlx::query_scalar(&sql).fetch_one(&self.db).await.unwrap()
    }
}

/// A server reached over the network, by address: the typed helpers that
/// talk to it over real HTTP and real WebSockets. A [`TestApp`] derefs to
/// its own; tests of server processes build one from a port.
pub struct Remote {
    pub addr: SocketAddr,
    pub base: String,
}

impl Remote {
    /// The server listening at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            base: format!("http://{addr}"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client that shows redirects instead of following them.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap()
    }

    /// Posts a form, with the user's cookie if any.
    pub async fn post_form(
        &self,
        path: &str,
        cookie: Option<&str>,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self.client().post(self.url(path)).form(form);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send().await.expect("POST")
    }

    /// GETs a path, with the user's cookie if any.
    pub async fn get(&self, path: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut request = self.client().get(self.url(path));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send().await.expect("GET")
    }

    /// GETs a page and returns its body, asserting 200.
    pub async fn page(&self, path: &str, cookie: &str) -> String {
        let response = self.get(path, Some(cookie)).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.text().await.unwrap()
    }

    /// Posts the sign-up form for `nickname` (email `<nickname>@example.com`,
    /// password `<nickname>-password`) and returns the raw answer.
    pub async fn post_sign_up(&self, nickname: &str) -> reqwest::Response {
        let email = format!("{nickname}@example.com");
        let password = format!("{nickname}-password");
        self.post_form(
            "/sign_up",
            None,
            &[
                ("email", &email),
                ("nickname", nickname),
                ("password", &password),
            ],
        )
        .await
    }

    /// Posts the sign-in form, with a session cookie if any; the raw answer.
    pub async fn post_sign_in(
        &self,
        email: &str,
        password: &str,
        cookie: Option<&str>,
    ) -> reqwest::Response {
        self.post_form(
            "/sign_in",
            cookie,
            &[("email", email), ("password", password)],
        )
        .await
    }

    /// Signs a new user up and returns their session cookie.
    pub async fn sign_up(&self, nickname: &str) -> TestUser {
        let email = format!("{nickname}@example.com");
        let password = format!("{nickname}-password");
        let response = self.post_sign_up(nickname).await;
        assert_eq!(response.status(), 303, "sign up {nickname}");
        TestUser {
            email,
            password,
            cookie: session_cookie(response.headers()).expect("sign-up sets the session cookie"),
        }
    }

    /// The id of the room `/` lands on ("general").
    pub async fn general_room(&self, user: &TestUser) -> i64 {
        let response = self.get("/", Some(&user.cookie)).await;
        assert_eq!(response.status(), 303);
        let location = response.headers()[LOCATION].to_str().unwrap();
        location
            .strip_prefix("/chatrooms/")
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("/ should redirect to a room, not {location}"))
    }

    /// Creates a private room and returns its id.
    pub async fn create_private_room(&self, user: &TestUser, name: &str) -> i64 {
        let response = self
            .post_form(
                "/chatrooms",
                Some(&user.cookie),
                &[("name", name), ("private", "1")],
            )
            .await;
        assert_eq!(response.status(), 303, "create private room {name}");
        redirected_room(&response)
    }

    /// `user` invites `nickname` to `room`; the answer.
    pub async fn invite(&self, user: &TestUser, room: i64, nickname: &str) -> reqwest::Response {
        self.post_form(
            &format!("/chatrooms/{room}/members"),
            Some(&user.cookie),
            &[("nickname", nickname)],
        )
        .await
    }

    /// `user` removes the member with id `member` from `room`; the answer.
    pub async fn remove_member(
        &self,
        user: &TestUser,
        room: i64,
        member: i64,
    ) -> reqwest::Response {
        self.post_form(
            &format!("/chatrooms/{room}/members/{member}/remove"),
            Some(&user.cookie),
            &[],
        )
        .await
    }

    /// `user` opens `/dm/<nickname>`; the conversation's room id.
    pub async fn open_direct(&self, user: &TestUser, nickname: &str) -> i64 {
        let response = self
            .get(&format!("/dm/{nickname}"), Some(&user.cookie))
            .await;
        assert_eq!(response.status(), 303, "/dm/{nickname}");
        redirected_room(&response)
    }

    /// Creates a room and returns its id.
    pub async fn create_room(&self, user: &TestUser, name: &str) -> i64 {
        let response = self
            .post_form("/chatrooms", Some(&user.cookie), &[("name", name)])
            .await;
        assert_eq!(response.status(), 303, "create room {name}");
        let location = response.headers()[LOCATION].to_str().unwrap();
        location
            .strip_prefix("/chatrooms/")
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Posts a message asking for JSON; returns the response.
    pub async fn post_message(
        &self,
        user: &TestUser,
        room: i64,
        content: &str,
    ) -> reqwest::Response {
        self.try_post_message(user, room, content)
            .await
            .expect("POST message")
    }

    /// The same, with the error if the request failed (the server is down).
    pub async fn try_post_message(
        &self,
        user: &TestUser,
        room: i64,
        content: &str,
    ) -> reqwest::Result<reqwest::Response> {
        self.try_post_json(
            &format!("/chatrooms/{room}/messages"),
            user,
            &[("content", content)],
        )
        .await
    }

    /// Posts a form as `user` asking for JSON; the error if the request failed.
    pub async fn try_post_json(
        &self,
        path: &str,
        user: &TestUser,
        form: &[(&str, &str)],
    ) -> reqwest::Result<reqwest::Response> {
        self.client()
            .post(self.url(path))
            .header("cookie", &user.cookie)
            .header(ACCEPT, "application/json")
            .form(form)
            .send()
            .await
    }

    /// Sends `method` to `path` as `user` with a JSON body (if any), asking for JSON.
    pub async fn request_json(
        &self,
        user: &TestUser,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self
            .client()
            .request(method, self.url(path))
            .header("cookie", &user.cookie)
            .header(ACCEPT, "application/json");
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        request.send().await.unwrap()
    }

    /// Edits message `id` of `room` as `user` (`PATCH` with JSON).
    pub async fn edit_message(
        &self,
        user: &TestUser,
        room: i64,
        id: i64,
        content: &str,
    ) -> reqwest::Response {
        let path = format!("/chatrooms/{room}/messages/{id}");
        let body = json!({ "content": content });
        self.request_json(user, reqwest::Method::PATCH, &path, Some(body))
            .await
    }

    /// Deletes message `id` of `room` as `user` (`DELETE`, asking for JSON).
    pub async fn delete_message(&self, user: &TestUser, room: i64, id: i64) -> reqwest::Response {
        let path = format!("/chatrooms/{room}/messages/{id}");
        self.request_json(user, reqwest::Method::DELETE, &path, None)
            .await
    }

    /// Opens a cable as `user` and joins `room`; the cable and the room's
    /// identifier.
    pub async fn join(&self, user: &TestUser, room: i64) -> (CableClient, String) {
        let mut cable = self.connect_cable(Some(&user.cookie)).await;
        let identifier = cable.join_room(room).await;
        (cable, identifier)
    }

    /// Opens a cable as `user` following the live room list; the cable and
    /// the `RoomsChannel` identifier.
    pub async fn follow_rooms(&self, user: &TestUser) -> (CableClient, String) {
        let mut cable = self.connect_cable(Some(&user.cookie)).await;
        cable.expect_welcome().await;
        let identifier = json!({ "channel": "RoomsChannel" }).to_string();
        let answer = cable.subscribe_raw(&identifier).await;
        assert_eq!(answer["type"], "confirm_subscription", "{answer}");
        (cable, identifier)
    }

    /// Opens `/cable` with the default sub-protocol and an optional cookie.
    pub async fn connect_cable(&self, cookie: Option<&str>) -> CableClient {
        self.try_connect_cable(cookie, &[])
            .await
            .expect("cable upgrade")
    }

    /// Opens `/cable` with extra headers; the handshake's error on refusal.
    pub async fn try_connect_cable(
        &self,
        cookie: Option<&str>,
        headers: &[(&'static str, &str)],
    ) -> Result<CableClient, tungstenite::Error> {
        self.connect_cable_at("/cable", "actioncable-v1-json", cookie, headers)
            .await
    }

    /// Opens a cable with the extended protocol, optionally restoring `sid`.
    pub async fn connect_extended(&self, cookie: &str, sid: Option<&str>) -> CableClient {
        let path = match sid {
            Some(sid) => format!("/cable?sid={sid}"),
            None => "/cable".to_owned(),
        };
        self.connect_cable_at(&path, "actioncable-v1-ext-json", Some(cookie), &[])
            .await
            .expect("cable upgrade")
    }

    /// Opens a cable at `path` offering `protocol`.
    pub async fn connect_cable_at(
        &self,
        path: &str,
        protocol: &str,
        cookie: Option<&str>,
        headers: &[(&'static str, &str)],
    ) -> Result<CableClient, tungstenite::Error> {
        let mut request = format!("ws://{}{path}", self.addr)
            .into_client_request()
            .unwrap();
        let h = request.headers_mut();
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(protocol).unwrap(),
        );
        if let Some(cookie) = cookie {
            h.insert("cookie", HeaderValue::from_str(cookie).unwrap());
        }
        for (name, value) in headers {
            h.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        let (ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("handshake in time")?;
        let protocol = response
            .headers()
            .get("sec-websocket-protocol")
            .map(|p| p.to_str().unwrap().to_owned());
        Ok(CableClient { ws, protocol })
    }

    /// One value from `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        metric_value(
            &self.get("/metrics", None).await.text().await.unwrap(),
            name,
        )
    }

    /// Waits until `/metrics` reports `value` for `name`; fails after [`WAIT`]
    /// with the last value seen.
    pub async fn wait_for_metric(&self, name: &str, value: f64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let seen = self.metric(name).await;
            if seen == value {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} stayed at {seen}, expected {value}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl std::ops::Deref for TestApp {
    type Target = Remote;

    fn deref(&self) -> &Remote {
        &self.remote
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `hearth_session=…` from a response's `Set-Cookie`, if it sets one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers.get_all(SET_COOKIE).iter().find_map(|value| {
        let value = value.to_str().ok()?;
        let pair = value.split(';').next()?.trim();
        (pair.starts_with("hearth_session=") && pair.len() > "hearth_session=".len())
            .then(|| pair.to_owned())
    })
}

/// Opens a cable at `addr` whose socket has a 4 KiB receive buffer, so that
/// once the test stops reading, the server's writes stall after kilobytes
/// rather than after megabytes of kernel buffers.
pub async fn connect_small_window(addr: SocketAddr, protocol: &str, cookie: &str) -> CableClient {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let mut request = format!("ws://{addr}/cable").into_client_request().unwrap();
    let h = request.headers_mut();
    h.insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(protocol).unwrap(),
    );
    h.insert("cookie", HeaderValue::from_str(cookie).unwrap());
    let (ws, response) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp)),
    )
    .await
    .expect("handshake in time")
    .expect("cable upgrade");
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|p| p.to_str().unwrap().to_owned());
    CableClient { ws, protocol }
}

/// The value of `name` in a `/metrics` text; fails if it is missing.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
}

/// The `type` of each payload, in order (`message`, `message_edited`, …).
pub fn payload_types(payloads: &[Value]) -> Vec<&str> {
    payloads
        .iter()
        .map(|payload| payload["type"].as_str().unwrap_or_default())
        .collect()
}

/// The `Content-Type` header of an answer.
pub fn content_type(response: &reqwest::Response) -> &str {
    response.headers()["content-type"].to_str().unwrap()
}

/// Asserts that each of `texts` is on `page`, in this order.
pub fn assert_in_order(page: &str, texts: &[&str]) {
    let at: Vec<usize> = texts
        .iter()
        .map(|text| {
            page.find(text)
                .unwrap_or_else(|| panic!("{text:?} is not on the page"))
        })
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "{texts:?} are out of order"
    );
}

/// The identifier a client sends for a room.
pub fn room_identifier(room: i64) -> String {
    json!({ "channel": "ChatroomChannel", "id": room }).to_string()
}

/// The room a 303 answer sends to (`/chatrooms/<id>`).
pub fn redirected_room(response: &reqwest::Response) -> i64 {
    let location = response.headers()[LOCATION].to_str().unwrap();
    location
        .strip_prefix("/chatrooms/")
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("expected a room, got {location}"))
}

/// A test's end of a cable.
pub struct CableClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The sub-protocol the server chose in its 101 answer.
    pub protocol: Option<String>,
}

/// What the next event on a cable was.
#[derive(Debug)]
pub enum Event {
    Frame(Value),
    Closed(Option<u16>),
}

impl CableClient {
    /// The next JSON frame or the close, skipping pings; fails after [`WAIT`].
    pub async fn next_event(&mut self) -> Event {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait");
            match message {
                None => return Event::Closed(None),
                Some(Err(_)) => return Event::Closed(None),
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).expect("server frames are JSON");
                    if frame["type"] == "ping" {
                        continue;
                    }
                    return Event::Frame(frame);
                }
                Some(Ok(Message::Close(close))) => {
                    return Event::Closed(close.map(|c| c.code.into()));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next frame other than a ping; panics on close.
    pub async fn next_frame(&mut self) -> Value {
        match self.next_event().await {
            Event::Frame(frame) => frame,
            Event::Closed(code) => panic!("cable closed ({code:?}) while a frame was expected"),
        }
    }

    /// Asserts that no frame but pings arrives for `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(frame["type"], "ping", "unexpected frame {frame}");
                }
                Ok(other) => panic!("unexpected event {other:?}"),
            }
        }
    }

    /// Reads the welcome.
    pub async fn expect_welcome(&mut self) {
        let frame = self.next_frame().await;
        assert_eq!(frame, json!({ "type": "welcome" }));
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    pub async fn send_json(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends subscribe and returns the answer frame.
    pub async fn subscribe_raw(&mut self, identifier: &str) -> Value {
        self.send_json(json!({ "command": "subscribe", "identifier": identifier }))
            .await;
        self.next_frame().await
    }

    /// Welcome, then subscribe to a room and assert the confirmation.
    pub async fn join_room(&mut self, room: i64) -> String {
        self.expect_welcome().await;
        let identifier = room_identifier(room);
        let answer = self.subscribe_raw(&identifier).await;
        assert_eq!(
            answer,
            json!({ "type": "confirm_subscription", "identifier": identifier })
        );
        identifier
    }

    /// Performs `data` (an object with an `action`) on `identifier`.
    pub async fn perform(&mut self, identifier: &str, data: Value) {
        let data = data.to_string();
        self.send_json(json!({ "command": "message", "identifier": identifier, "data": data }))
            .await;
    }

    /// Performs `speak`.
    pub async fn speak(&mut self, identifier: &str, content: &str) {
        self.perform(identifier, json!({ "action": "speak", "content": content }))
            .await;
    }

    /// Asks the room subscription `identifier` for what came after `after`.
    pub async fn catch_up(&mut self, identifier: &str, after: i64) {
        self.perform(identifier, json!({ "action": "catch_up", "after": after }))
            .await;
    }

    /// Speaks `text` `count` times, reading each broadcast back in rounds of
    /// 100: a writer that stopped reading would be dropped as too slow.
    pub async fn speak_many(&mut self, identifier: &str, text: &str, count: usize) {
        let mut left = count;
        while left > 0 {
            let round = left.min(100);
            for _ in 0..round {
                self.speak(identifier, text).await;
            }
            for _ in 0..round {
                assert_eq!(self.next_message(identifier).await["content"], text);
            }
            left -= round;
        }
    }

    /// The `message` of the next broadcast to `identifier`.
    pub async fn next_message(&mut self, identifier: &str) -> Value {
        let frame = self.next_frame().await;
        assert_eq!(frame["identifier"], identifier, "frame {frame}");
        frame["message"].clone()
    }
}
