//! Hearth's HTTP side, as the load generator needs it: sign up a pool of
//! users, find `#general`, create rooms, post a message.

use std::net::IpAddr;

use anyhow::{Context, bail};

use crate::http::{HttpConn, Request};
use crate::net::Endpoint;

/// The password every bench user gets (Hearth wants at least 8 characters).
const PASSWORD: &str = "bench-password-1";

/// Signs up `count` users named after `run`, `concurrency` at a time
/// (Argon2 makes each take tens of milliseconds); returns their session cookies.
pub async fn sign_up_pool(
    endpoint: &Endpoint,
    source: IpAddr,
    run: u32,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    let mut cookies = Vec::with_capacity(count);
    let mut pending = tokio::task::JoinSet::new();
    let mut next = 0;
    while cookies.len() < count {
        while next < count && pending.len() < concurrency.max(1) {
            let endpoint = endpoint.clone();
            pending.spawn(async move { sign_up(&endpoint, source, run, next).await });
            next += 1;
        }
        let cookie = pending.join_next().await.expect("a sign-up is pending")??;
        cookies.push(cookie);
    }
    Ok(cookies)
}

/// Signs up user number `n` of run `run`; returns its session cookie.
pub async fn sign_up(
    endpoint: &Endpoint,
    source: IpAddr,
    run: u32,
    n: usize,
) -> anyhow::Result<String> {
    let mut conn = HttpConn::connect(endpoint, source).await?;
    let nickname = format!("b{run:08x}_{n}");
    let email = format!("{nickname}@bench.test");
    let response = conn
        .send(&Request {
            method: "POST",
            path: "/sign_up",
            headers: &[],
            form: Some(&[
                ("email", &email),
                ("nickname", &nickname),
                ("password", PASSWORD),
            ]),
        })
        .await
        .context("POST /sign_up")?;
    match (response.status, response.cookie("hearth_session")) {
        (303, Some(cookie)) => Ok(cookie.to_owned()),
        (status, _) => bail!(
            "sign-up of {nickname} answered {status}: {}",
            String::from_utf8_lossy(&response.body)
                .chars()
                .take(200)
                .collect::<String>()
        ),
    }
}

/// The id of the room `GET /` sends a signed-in user to (`#general`).
pub async fn general_room(
    endpoint: &Endpoint,
    source: IpAddr,
    cookie: &str,
) -> anyhow::Result<String> {
    let mut conn = HttpConn::connect(endpoint, source).await?;
    send_for_room(&mut conn, cookie, "GET", "/", None).await
}

/// Creates a room named `name`; returns its id.
pub async fn create_room(conn: &mut HttpConn, cookie: &str, name: &str) -> anyhow::Result<String> {
    send_for_room(conn, cookie, "POST", "/chatrooms", Some(&[("name", name)])).await
}

/// Sends a request as the user of session `cookie`; the room id it redirects to.
async fn send_for_room(
    conn: &mut HttpConn,
    cookie: &str,
    method: &str,
    path: &str,
    form: Option<&[(&str, &str)]>,
) -> anyhow::Result<String> {
    let cookie_header = format!("hearth_session={cookie}");
    let response = conn
        .send(&Request {
            method,
            path,
            headers: &[("Cookie", &cookie_header)],
            form,
        })
        .await?;
    room_from_redirect(response.status, response.header("location"))
}

fn room_from_redirect(status: u16, location: Option<&str>) -> anyhow::Result<String> {
    match (status, location.and_then(|l| l.strip_prefix("/chatrooms/"))) {
        (303, Some(id)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(id.to_owned())
        }
        _ => bail!(
            "expected 303 to /chatrooms/<id>, got {status} to {location:?} (is the cookie valid?)"
        ),
    }
}

/// What `POST /chatrooms/<id>/messages` with `Accept: application/json` answered.
pub async fn post_message(
    conn: &mut HttpConn,
    cookie_header: &str,
    path: &str,
    content: &str,
) -> anyhow::Result<u16> {
    let response = conn
        .send(&Request {
            method: "POST",
            path,
            headers: &[("Cookie", cookie_header), ("Accept", "application/json")],
            form: Some(&[("content", content)]),
        })
        .await?;
    Ok(response.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_come_from_the_redirect() {
        assert_eq!(
            room_from_redirect(303, Some("/chatrooms/12")).unwrap(),
            "12"
        );
        assert!(room_from_redirect(303, Some("/sign_in")).is_err());
        assert!(room_from_redirect(200, None).is_err());
    }
}
