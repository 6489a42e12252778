//! Page and partial types, one per template under `templates/`.
//! Askama escapes every value for HTML, so user text is never trusted.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use crate::db::chatrooms::{Chatroom, DirectoryRoom, RoomKind};
use crate::db::memberships::{Member, Unread};
use crate::db::messages::{HistoryPage, Message};
use crate::db::users::User;

/// The sign-up form.
#[derive(Template, Default)]
#[template(path = "sign_up.html")]
pub struct SignUpPage {
    pub current_user: Option<User>,
    pub errors: Vec<String>,
    pub email: String,
    pub nickname: String,
    /// The local page to return to once signed up, if any.
    pub back: String,
}

/// The sign-in form.
#[derive(Template, Default)]
#[template(path = "sign_in.html")]
pub struct SignInPage {
    pub current_user: Option<User>,
    pub errors: Vec<String>,
    pub email: String,
    /// The local page to return to once signed in, if any.
    pub back: String,
}

/// The room directory, a page at a time, searchable, and the form to create
/// a room.
#[derive(Template)]
#[template(path = "chatrooms/index.html")]
pub struct ChatroomsPage {
    pub current_user: Option<User>,
    pub sidebar: Sidebar,
    /// The room shown, marked in the sidebar; 0 for none.
    pub current_room_id: i64,
    /// The rooms found, the part the search replaces.
    pub listing: DirectoryListing,
    /// The new-room form's errors and fields as typed.
    pub errors: Vec<String>,
    pub name: String,
    pub topic: String,
    /// The longest search, for the search box.
    pub max_search_chars: usize,
    /// The longest topic, for the form.
    pub max_topic_chars: usize,
}

/// The directory's results alone, for its script's search-as-you-type.
#[derive(Template)]
#[template(path = "chatrooms/_directory.html")]
pub struct DirectoryFragment<'a> {
    pub listing: &'a DirectoryListing,
}

/// One page of the directory's results.
#[derive(Debug, Clone, Default)]
pub struct DirectoryListing {
    /// This page of rooms, by name.
    pub rows: Vec<DirectoryRow>,
    /// What was searched for, trimmed; empty for every room.
    pub search: String,
    /// The page shown, from 0.
    pub page: i64,
    /// Whether a later page exists.
    pub has_next: bool,
    /// Why the search was refused, if it was.
    pub error: Option<String>,
}

impl DirectoryListing {
    /// The query string of page `page` of this search, for the pager.
    pub fn page_query(&self, page: i64) -> String {
        if self.search.is_empty() {
            format!("?page={page}")
        } else {
            format!("?q={}&page={page}", urlencode(&self.search))
        }
    }
}

/// A room as a row of the directory.
#[derive(Debug, Clone)]
pub struct DirectoryRow {
    pub id: i64,
    pub name: String,
    pub topic: String,
    /// How many members it has.
    pub members: i64,
    /// Whether the reader is one of them.
    pub joined: bool,
    /// Whether only its members may read it.
    pub private: bool,
    /// "active 3 h ago", or "no messages yet".
    pub activity: String,
    /// When, in full (UTC), for the hover.
    pub active_title: String,
}

impl DirectoryRow {
    /// What the row says of the room's last activity, as of `now` (Unix ms).
    pub fn activity(room: &DirectoryRoom, now: i64) -> String {
        if room.last_seq == 0 {
            return "no messages yet".to_owned();
        }
        format!("active {}", ago(now, room.active_at))
    }

    /// The time of the room's last activity in full, UTC.
    pub fn active_title(room: &DirectoryRoom) -> String {
        let at = from_millis(room.active_at);
        at.format(format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_default()
    }

    /// "1 member", "12 members".
    pub fn members_text(&self) -> String {
        match self.members {
            1 => "1 member".to_owned(),
            n => format!("{n} members"),
        }
    }
}

/// How long before `now` `then` was, in words: "just now", "5 min ago",
/// "3 h ago", "2 days ago", or the date for anything over a month.
fn ago(now: i64, then: i64) -> String {
    let minutes = (now - then).max(0) / 60_000;
    match minutes {
        0 => "just now".to_owned(),
        1..60 => format!("{minutes} min ago"),
        60..1440 => format!("{} h ago", minutes / 60),
        1440..2880 => "yesterday".to_owned(),
        2880..43_200 => format!("{} days ago", minutes / 1440),
        _ => from_millis(then)
            .format(format_description!(
                "on [month repr:short] [day padding:none], [year]"
            ))
            .unwrap_or_default(),
    }
}

fn from_millis(millis: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Percent-encodes `text` for a query string (UTF-8, everything but
/// unreserved characters encoded).
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One room: its latest messages and the message form.
#[derive(Template)]
#[template(path = "chatrooms/show.html")]
pub struct ChatroomPage {
    pub current_user: Option<User>,
    pub sidebar: Sidebar,
    /// The room shown, marked in the sidebar; 0 for none.
    pub current_room_id: i64,
    pub room: Chatroom,
    /// What the room is called here: its name, or a conversation's people.
    pub title: RoomTitle,
    /// Whether the reader is a member (else a public room offers Join).
    pub member: bool,
    /// Its members, by nickname (the first 200 of them).
    pub members: Vec<Member>,
    pub member_count: i64,
    /// Whether the reader may rename and archive it (its creator, an admin).
    pub can_manage: bool,
    /// The messages shown: the newest, or the page a link asked for.
    pub page: HistoryPage,
    /// The `seq` a permalink (`?around=`) points at.
    pub highlight: Option<i64>,
    /// Who is reading: their linked message offers Edit and Delete.
    pub viewer_id: i64,
    /// The `seq` of the first message from others the reader had not read
    /// when the page was made: the "New" line goes above it.
    pub first_unread: Option<i64>,
    /// The reader's read cursor in the room (0 for a non-member).
    pub last_read_seq: i64,
    pub errors: Vec<String>,
    pub draft: String,
    /// The longest message, for the composer's counter.
    pub max_chars: usize,
    /// The room's newest place in its sequence (posts, edits, deletions),
    /// read before the page: the script catches up from it.
    pub last_seq: i64,
}

/// The sidebar: the rooms the reader may read and their direct conversations.
#[derive(Debug, Clone, Default)]
pub struct Sidebar {
    /// Public and private rooms, most recently active first.
    pub rooms: Vec<Chatroom>,
    /// Direct conversations, most recently active first.
    pub directs: Vec<DirectLink>,
    /// What the reader has not read in each room they are a member of,
    /// and what they are notified of there.
    pub unread: std::collections::HashMap<i64, Unread>,
}

impl Sidebar {
    /// What the reader has not read in `room` (by reference, as templates
    /// pass it); nothing for a room they are not a member of.
    pub fn unread_of(&self, room: &i64) -> Unread {
        self.unread.get(room).copied().unwrap_or_default()
    }
}

/// A direct conversation as the sidebar lists it.
#[derive(Debug, Clone)]
pub struct DirectLink {
    pub id: i64,
    /// The other members' nicknames, e.g. "bob, carol"; "you" alone.
    pub names: String,
    /// The other members' ids.
    pub members: Vec<i64>,
    /// Those of them online: the item shows a presence dot while there is one.
    pub online: Vec<i64>,
}

impl DirectLink {
    /// The conversation `id` as `viewer` sees it among `members`.
    pub fn new<'a>(id: i64, viewer: i64, members: impl Iterator<Item = &'a Member>) -> Self {
        let others: Vec<&Member> = members.filter(|m| m.user_id != viewer).collect();
        Self {
            id,
            names: if others.is_empty() {
                "you".to_owned()
            } else {
                others
                    .iter()
                    .map(|m| m.nickname.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            members: others.iter().map(|m| m.user_id).collect(),
            online: Vec::new(),
        }
    }

    /// The same, saying which of the other members are online.
    pub fn online(mut self, is_online: impl Fn(i64) -> bool) -> Self {
        self.online = self
            .members
            .iter()
            .copied()
            .filter(|id| is_online(*id))
            .collect();
        self
    }

    /// Ids as the item's `data-members` and `data-online` hold them:
    /// separated by spaces.
    pub fn ids(ids: &[i64]) -> String {
        ids.iter().map(i64::to_string).collect::<Vec<_>>().join(" ")
    }
}

/// What a room is called in its header and title: `# name`, `🔒 name`, or
/// for a direct conversation the other people in it.
#[derive(Debug, Clone)]
pub struct RoomTitle {
    /// "#", "🔒" or "@".
    pub sigil: &'static str,
    pub text: String,
}

impl RoomTitle {
    /// The title of `room` for `viewer`, knowing its `members`.
    pub fn of(room: &Chatroom, viewer: i64, members: &[Member]) -> Self {
        match room.kind {
            RoomKind::Public => Self {
                sigil: "#",
                text: room.name.clone(),
            },
            RoomKind::Private => Self {
                sigil: "🔒",
                text: room.name.clone(),
            },
            RoomKind::Direct => Self {
                sigil: "@",
                text: DirectLink::new(room.id, viewer, members.iter()).names,
            },
        }
    }
}

/// The room list item's sigil for `room`: "#" or "🔒".
pub fn sigil(room: &Chatroom) -> &'static str {
    if room.kind == RoomKind::Private {
        "🔒"
    } else {
        "#"
    }
}

/// One room in the sidebar's list: the page renders it, and so does the
/// announcement of a new room.
#[derive(Template)]
#[template(path = "chatrooms/_room_link.html")]
pub struct RoomLinkPartial<'a> {
    pub room: &'a Chatroom,
    /// The room shown, marked as current; 0 for none.
    pub current_room_id: i64,
    /// What the reader has not read in it.
    pub unread: Unread,
}

/// One direct conversation in the sidebar's list, as its announcement
/// carries it.
#[derive(Template)]
#[template(path = "chatrooms/_direct_link.html")]
pub struct DirectLinkPartial<'a> {
    pub direct: &'a DirectLink,
    /// The room shown, marked as current; 0 for none.
    pub current_room_id: i64,
    /// What the reader has not read in it.
    pub unread: Unread,
}

/// A page of a room's history as an HTML fragment: the messages, with
/// links to the older and newer pages where there are more.
#[derive(Template)]
#[template(path = "messages/_page.html")]
pub struct HistoryFragment<'a> {
    /// The room, for the history links and the start of its history.
    pub room: &'a Chatroom,
    pub page: &'a HistoryPage,
    /// The `seq` to mark as the one linked to, if any.
    pub highlight: Option<i64>,
    /// Who is reading: their linked message offers Edit and Delete.
    pub viewer_id: i64,
    /// Where the "New" line goes; `None` in a page of history.
    pub first_unread: Option<i64>,
}

/// A refused request without a form of its own: what went wrong.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub current_user: Option<User>,
    pub title: &'static str,
    pub errors: Vec<String>,
}

/// The 404 page.
#[derive(Template)]
#[template(path = "not_found.html")]
pub struct NotFoundPage {
    pub current_user: Option<User>,
}

/// The form to edit one's message, for browsers without JavaScript (the
/// page edits in place otherwise); it also offers to delete it.
#[derive(Template)]
#[template(path = "messages/edit.html")]
pub struct EditMessagePage {
    pub current_user: Option<User>,
    pub message: Message,
    pub room_name: String,
    pub errors: Vec<String>,
    /// The text in the form: the message's, or what was refused.
    pub draft: String,
}

/// The search page: the box, and the results of a search if one was made.
#[derive(Template)]
#[template(path = "search.html")]
pub struct SearchPage {
    pub current_user: Option<User>,
    /// The query as typed.
    pub q: String,
    pub results: Vec<SearchResult>,
    /// The results page shown, from 0.
    pub page: i64,
    /// Whether a later page exists.
    pub more: bool,
    /// Whether there was anything to search for.
    pub searched: bool,
    pub errors: Vec<String>,
}

/// The "New message" page: whom to start a conversation with.
#[derive(Template)]
#[template(path = "direct/new.html")]
pub struct NewDirectPage {
    pub current_user: Option<User>,
    pub sidebar: Sidebar,
    /// The room shown, marked in the sidebar; 0 for none.
    pub current_room_id: i64,
    /// The nicknames as typed.
    pub to: String,
    /// Most people besides the starter.
    pub max_others: usize,
    pub errors: Vec<String>,
}

/// One search result, as listed and as JSON.
#[derive(Debug, serde::Serialize)]
pub struct SearchResult {
    pub id: i64,
    pub chatroom_id: i64,
    pub room_name: String,
    /// `public`, `private` or `direct`.
    pub room_kind: String,
    /// "#", "🔒" or "@", shown before the room's name.
    #[serde(skip)]
    pub sigil: &'static str,
    pub seq: i64,
    pub user_id: i64,
    pub nickname: String,
    /// RFC 3339.
    pub created_at: String,
    /// The same for people: `2026-12-02 16:17 UTC` (the page's script
    /// shows it in the reader's zone).
    #[serde(skip)]
    pub when: String,
    /// The text around the first match, escaped, matches in `<mark>`.
    pub snippet_html: String,
    /// The message's permalink.
    pub url: String,
}

/// One message element, as listed on the room page and broadcast as `html`.
#[derive(Template)]
#[template(path = "messages/_message.html")]
pub struct MessagePartial<'a> {
    pub message: &'a Message,
}

/// Unix milliseconds as a date and a time for people, in UTC.
pub fn date_time_utc(millis: i64) -> String {
    let at = from_millis(millis);
    format!("{} {:02}:{:02} UTC", at.date(), at.hour(), at.minute())
}

/// Unix milliseconds as RFC 3339, UTC, millisecond precision.
pub fn rfc3339_millis(millis: i64) -> String {
    let at = from_millis(millis);
    let at = at
        .replace_nanosecond(at.millisecond() as u32 * 1_000_000)
        .unwrap_or(at);
    at.format(&Rfc3339).unwrap_or_default()
}

impl Message {
    fn created(&self) -> OffsetDateTime {
        from_millis(self.created_at)
    }

    /// `created_at` as RFC 3339, UTC, millisecond precision.
    pub fn created_rfc3339(&self) -> String {
        rfc3339_millis(self.created_at)
    }

    /// `edited_at` as RFC 3339, if the message was edited.
    pub fn edited_rfc3339(&self) -> Option<String> {
        self.edited_at.map(rfc3339_millis)
    }

    /// The author's initials, for the avatar.
    pub fn initials(&self) -> String {
        initials(&self.nickname)
    }

    /// The text as safe HTML ([`crate::markup`]).
    pub fn content_html(&self) -> String {
        // The renderer ends each block with a line break; the last is
        // only bytes in every broadcast.
        let mut html = crate::markup::render(&self.content);
        html.truncate(html.trim_end().len());
        html
    }

    /// `HH:MM` in UTC; the page's script shows it in the reader's time zone.
    pub fn clock(&self) -> String {
        let created = self.created();
        format!("{:02}:{:02}", created.hour(), created.minute())
    }
}

impl User {
    /// The user's initials, for the avatar.
    pub fn initials(&self) -> String {
        initials(&self.nickname)
    }
}

/// Up to two letters for an avatar: the first letters of the first two words
/// of a nickname, or its first two letters.
fn initials(nickname: &str) -> String {
    let words: Vec<&str> = nickname
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let letters: String = match words.as_slice() {
        [first, second, ..] => first
            .chars()
            .take(1)
            .chain(second.chars().take(1))
            .collect(),
        [only] => only.chars().take(2).collect(),
        [] => nickname.chars().take(1).collect(),
    };
    letters.to_uppercase()
}

/// Renders a template with a status; a template error becomes a logged 500.
pub fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "template failed to render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ago, initials, urlencode};

    #[test]
    fn ago_says_how_long_in_words_then_the_date() {
        let minute = 60_000;
        let now = 1_780_000_000_000;
        assert_eq!(ago(now, now - 10_000), "just now");
        assert_eq!(ago(now, now - 5 * minute), "5 min ago");
        assert_eq!(ago(now, now - 185 * minute), "3 h ago");
        assert_eq!(ago(now, now - 30 * 60 * minute), "yesterday");
        assert_eq!(ago(now, now - 3 * 1440 * minute), "3 days ago");
        assert_eq!(ago(now, 1_700_000_000_000), "on Nov 14, 2023");
        assert_eq!(ago(now, now + minute), "just now", "a clock ahead is now");
    }

    #[test]
    fn search_queries_are_percent_encoded() {
        assert_eq!(urlencode("a b&c=%/é"), "a%20b%26c%3D%25%2F%C3%A9");
    }

    #[test]
    fn initials_take_two_words_or_two_letters() {
        assert_eq!(initials("ann"), "AN");
        assert_eq!(initials("mary-jane"), "MJ");
        assert_eq!(initials("josé garcía"), "JG");
        assert_eq!(initials("émile"), "ÉM");
        assert_eq!(initials("__"), "_");
    }
}
