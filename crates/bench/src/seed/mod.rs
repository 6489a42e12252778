//! `hearth-bench seed`: fills an empty database with what a busy Hearth
//! instance would hold — users, public and private rooms and direct
//! conversations with their members, a million messages with edits and
//! deletions, read cursors behind by various amounts, and the search index —
//! fast, and the same for the same seed.
//!
//! Hearth's own migrations make the schema (`hearth::db::connect`); the rows
//! are then written in bulk, as the app would have written them one by one:
//! each room's `seq` gap-free over its posts, edits and deletions
//! (`message_events`), `last_seq` and `active_at` to match, every poster a
//! member with a read cursor at or after their newest post, and the search
//! index filled once the rows are in, by the app's own indexer
//! (`hearth::db::search_index::build`, SQLite) or index (PostgreSQL).
//!
//! - [`text`]: the messages' words.
//! - [`sink`]: writing rows, multi-row INSERTs on SQLite, `COPY` on PostgreSQL.

pub mod sink;
pub mod text;

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{bail, ensure};
use argon2::password_hash::{PasswordHasher, SaltString};
use hearth::domain::{Email, MessageContent, Nickname, RoomName, RoomTopic};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::cli::SeedArgs;
use sink::{EventRow, MemberRow, MentionRow, MessageRow, RoomRow, Sink, UserRow};
use text::TextGen;

/// The password of every seeded user.
pub const PASSWORD: &str = "bench-password-1";

/// First names the seeded users cycle through: user 1 is `ada1`
/// (`ada1@seed.test`), user 2 `bob1`, …, user 41 `ada2`.
const NAMES: &[&str] = &[
    "ada", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "karl",
    "lena", "mallory", "nina", "oscar", "peggy", "quinn", "rupert", "sybil", "trent", "ursula",
    "victor", "wendy", "xavier", "yara", "zane", "amir", "bea", "chen", "dmitri", "emeka",
    "fatima", "goro", "hana", "ines", "jonas", "kofi", "lucia", "mei", "noor",
];

/// Room names the public and private rooms cycle through (then `-2`, `-3`…).
#[rustfmt::skip]
const ROOM_NAMES: &[&str] = &[
    "engineering", "design", "ops", "random", "support", "product", "marketing", "sales",
    "frontend", "backend", "infra", "security", "data", "mobile", "releases", "incidents",
    "hiring", "finance", "legal", "office", "music", "books", "travel", "pets", "food",
];

/// Messages held in memory before they are written (one transaction each):
/// edits and deletions pick their message among these.
const BATCH: usize = 20_000;

/// Messages start two days after this (2025-01-01T00:00:00Z, Unix ms) and
/// span a year, so dates are the same every run.
const EPOCH_MS: i64 = 1_735_689_600_000;
const DAY_MS: i64 = 86_400_000;

/// The nickname of user `id` (from 1).
pub fn nickname(id: i64) -> String {
    let i = (id - 1) as usize;
    format!("{}{}", NAMES[i % NAMES.len()], i / NAMES.len() + 1)
}

/// The email of user `id` (from 1).
pub fn email(id: i64) -> String {
    format!("{}@seed.test", nickname(id))
}

/// The SQLx URL of `--database`: a `postgres://` or `sqlite:` URL as given,
/// anything else a path to a SQLite file, created if missing.
pub fn database_url(database: &str) -> String {
    if database.starts_with("postgres://")
        || database.starts_with("postgresql://")
        || database.starts_with("sqlite:")
    {
        database.to_owned()
    } else {
        format!("sqlite://{database}?mode=rwc")
    }
}

/// A room while messages are drawn.
struct Room {
    row: RoomRow,
    /// Member ids, ascending.
    members: Vec<i64>,
    /// The members shuffled: the first ones talk most in this room.
    talkers: Vec<i64>,
    /// Draw weight: how busy it is.
    weight: f64,
    /// Indices into the pending batch of this room's newest messages, for
    /// edits and deletions.
    recent: Vec<usize>,
}

/// Runs `hearth-bench seed`.
pub async fn run(args: &SeedArgs) -> anyhow::Result<()> {
    ensure!(args.rooms >= 1, "--rooms must be at least 1");
    ensure!(args.users >= 2, "--users must be at least 2");
    let url = database_url(&args.database);
    let started = Instant::now();
    // Hearth's migrations make the schema, exactly as at a server's start.
    let db = hearth::db::connect(&url).await?;
    hearth::db::chatrooms::ensure_general(&db).await?;
    let (users, messages): (i64, i64) =
        sqlx::query_as("SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM messages)")
            .fetch_one(&db)
            .await?;
    if users > 0 || messages > 0 {
        bail!(
            "{} already holds {users} users and {messages} messages: seed an empty database",
            hearth::db::redact(&url)
        );
    }
    let general: (i64, i64) =
        sqlx::query_as("SELECT id, created_at FROM chatrooms WHERE name_key = 'general'")
            .fetch_one(&db)
            .await?;
    db.close().await;
    eprintln!("migrated in {:.1?}", started.elapsed());

    let mut sink = Sink::open(&url).await?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let users = make_users(args.users, &mut rng)?;
    sink.users(&users).await?;
    let mut rooms = make_rooms(args, general, &mut rng)?;
    let created: Vec<RoomRow> = rooms[1..].iter().map(|r| r.row.clone()).collect();
    sink.rooms(&created).await?;
    eprintln!(
        "{} users, {} rooms in {:.1?}",
        users.len(),
        rooms.len(),
        started.elapsed()
    );

    let newest_post = write_messages(args, &mut rooms, &mut sink, &mut rng, started).await?;

    let members = read_cursors(&rooms, &newest_post, &mut rng);
    sink.memberships(&members).await?;
    let rows: Vec<RoomRow> = rooms.iter().map(|r| r.row.clone()).collect();
    sink.finish(&rows).await?;
    if let Some(file) = hearth::db::sqlite_file(&url)? {
        let indexing = Instant::now();
        let indexed =
            tokio::task::spawn_blocking(move || hearth::db::search_index::build(&file)).await??;
        eprintln!(
            "indexed {indexed} messages for search in {:.1?}",
            indexing.elapsed()
        );
    }
    eprintln!(
        "seeded {} messages in {} rooms, {} users, {} memberships in {:.1?}",
        args.messages,
        rooms.len(),
        users.len(),
        members.len(),
        started.elapsed()
    );
    Ok(())
}

/// `count` users, the first the admin, with one Argon2 hash of
/// [`PASSWORD`] (a hash takes tens of milliseconds: one for all).
fn make_users(count: usize, rng: &mut StdRng) -> anyhow::Result<Vec<UserRow>> {
    let salt_bytes: [u8; 16] = rng.r#gen();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let hash = argon2::Argon2::default()
        .hash_password(PASSWORD.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?
        .to_string();
    (1..=count as i64)
        .map(|id| {
            let email = Email::parse(&email(id)).map_err(anyhow::Error::msg)?;
            let nickname = Nickname::parse(&nickname(id)).map_err(anyhow::Error::msg)?;
            Ok(UserRow {
                id,
                email: email.as_str().to_owned(),
                nickname: nickname.as_str().to_owned(),
                password_hash: hash.clone(),
                created_at: EPOCH_MS + id * 1_000,
                role: if id == 1 { "admin" } else { "member" },
            })
        })
        .collect()
}

/// The rooms: `general` (already made by the app), then about 70 % public,
/// 20 % private and 10 % direct conversations, each with its members and
/// a weight (how busy it is). User 1 is in every public room, half the
/// private ones and half the conversations.
fn make_rooms(args: &SeedArgs, general: (i64, i64), rng: &mut StdRng) -> anyhow::Result<Vec<Room>> {
    let users = args.users as i64;
    let all: Vec<i64> = (1..=users).collect();
    let mut rooms = vec![Room {
        row: RoomRow {
            id: general.0,
            name: hearth::db::chatrooms::GENERAL.to_owned(),
            name_key: Some(hearth::db::chatrooms::GENERAL.to_owned()),
            topic: String::new(),
            topic_key: String::new(),
            kind: "public",
            created_by: None,
            direct_key: None,
            created_at: general.1,
            last_seq: 0,
            active_at: general.1,
        },
        talkers: shuffled(&all, rng),
        members: all.clone(),
        weight: 3.0,
        recent: Vec::new(),
    }];
    let others = args.rooms - 1;
    // At least one of each kind once there are three rooms besides general.
    let directs = (others / 10).max(usize::from(others >= 3));
    let privates = (others / 5).max(usize::from(others >= 3));
    let publics = others - directs - privates;
    let words = TextGen::new();
    for n in 0..others {
        let id = general.0 + 1 + n as i64;
        let created_at = EPOCH_MS + DAY_MS + n as i64 * 60_000;
        let kind = if n < publics {
            "public"
        } else if n < publics + privates {
            "private"
        } else {
            "direct"
        };
        let mut members: Vec<i64> = match kind {
            "public" => {
                let share = rng.gen_range(0.05..0.4);
                all.iter()
                    .copied()
                    .filter(|&u| u == 1 || rng.gen_bool(share))
                    .collect()
            }
            "private" => {
                let count = rng.gen_range(3..=30).min(all.len());
                let mut picked: Vec<i64> = all.choose_multiple(rng, count).copied().collect();
                if n % 2 == 0 {
                    picked.push(1);
                }
                picked
            }
            _ => {
                let count = rng.gen_range(2..=8).min(all.len());
                let mut picked: Vec<i64> = all.choose_multiple(rng, count).copied().collect();
                if n % 2 == 0 && !picked.contains(&1) {
                    picked[0] = 1;
                }
                picked
            }
        };
        members.sort_unstable();
        members.dedup();
        let creator = *members.choose(rng).expect("a room has members");
        let row = if kind == "direct" {
            let mut names: Vec<String> = members.iter().map(|&u| nickname(u)).collect();
            names.sort_unstable_by_key(|n| n.to_lowercase());
            RoomRow {
                id,
                name: names.join(", "),
                name_key: None,
                topic: String::new(),
                topic_key: String::new(),
                kind,
                created_by: Some(creator),
                direct_key: Some(
                    members
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                created_at,
                last_seq: 0,
                active_at: created_at,
            }
        } else {
            let base = ROOM_NAMES[n % ROOM_NAMES.len()];
            let name = match n / ROOM_NAMES.len() {
                0 => base.to_owned(),
                k => format!("{base}-{}", k + 1),
            };
            let name = RoomName::parse(&name).map_err(anyhow::Error::msg)?;
            let topic = if rng.gen_bool(0.6) {
                let mut topic = words.message(rng, "ada1");
                topic.truncate(topic.find(['\n', '.', '。']).unwrap_or(topic.len()));
                topic.chars().take(120).collect()
            } else {
                String::new()
            };
            let topic = RoomTopic::parse(&topic).map_err(anyhow::Error::msg)?;
            RoomRow {
                id,
                name: name.as_str().to_owned(),
                name_key: Some(name.key()),
                topic: topic.as_str().to_owned(),
                topic_key: topic.key(),
                kind,
                created_by: Some(creator),
                direct_key: None,
                created_at,
                last_seq: 0,
                active_at: created_at,
            }
        };
        // A few busy rooms and a long tail; conversations are quieter.
        let rank = n as f64 + 2.0;
        let weight = if kind == "direct" { 0.3 } else { 1.0 } * 4.0 / rank.powf(0.7);
        rooms.push(Room {
            row,
            talkers: shuffled(&members, rng),
            members,
            weight,
            recent: Vec::new(),
        });
    }
    Ok(rooms)
}

fn shuffled(ids: &[i64], rng: &mut StdRng) -> Vec<i64> {
    let mut ids = ids.to_vec();
    ids.shuffle(rng);
    ids
}

/// Draws `--messages` posts over the rooms by weight, in time order, with
/// edits (1 %) and deletions (0.3 %) of recent messages taking their own
/// `seq`, and writes them a batch at a time. Returns each poster's newest
/// `seq` by `(room index, user)`.
async fn write_messages(
    args: &SeedArgs,
    rooms: &mut [Room],
    sink: &mut Sink,
    rng: &mut StdRng,
    started: Instant,
) -> anyhow::Result<HashMap<(usize, i64), i64>> {
    let words = TextGen::new();
    let total_weight: f64 = rooms.iter().map(|r| r.weight).sum();
    let mut cumulative = Vec::with_capacity(rooms.len());
    let mut sum = 0.0;
    for room in rooms.iter() {
        sum += room.weight / total_weight;
        cumulative.push(sum);
    }
    let start = EPOCH_MS + 2 * DAY_MS;
    let step = (365 * DAY_MS) as f64 / args.messages.max(1) as f64;
    let mut newest_post: HashMap<(usize, i64), i64> = HashMap::new();
    let mut batch: Vec<MessageRow> = Vec::with_capacity(BATCH);
    let mut events: Vec<EventRow> = Vec::new();
    let mut mentions: Vec<MentionRow> = Vec::new();
    let mut next_message_id = 1i64;
    let mut next_event_id = 1i64;
    for i in 0..args.messages {
        let at = start + (i as f64 * step) as i64;
        let x: f64 = rng.r#gen();
        let r = cumulative.partition_point(|&c| c < x).min(rooms.len() - 1);
        let room = &mut rooms[r];
        let change: f64 = rng.r#gen();
        if change < 0.013 && !room.recent.is_empty() {
            let pick = room.recent[rng.gen_range(0..room.recent.len())];
            let target = &mut batch[pick];
            if target.deleted_at.is_none() {
                room.row.last_seq += 1;
                let kind = if change < 0.003 {
                    target.content = String::new();
                    target.deleted_at = Some(at);
                    "deleted"
                } else {
                    let author = nickname(target.user_id);
                    let edited = words.message(rng, &author);
                    // An edit replaces whom its message mentions (here
                    // nobody: it names its own author, who is never counted).
                    let (room_id, seq) = (target.chatroom_id, target.seq);
                    mentions.retain(|m| (m.chatroom_id, m.seq) != (room_id, seq));
                    target.content = MessageContent::parse(&edited)
                        .map_err(anyhow::Error::msg)?
                        .as_str()
                        .to_owned();
                    target.edited_at = Some(at);
                    "edited"
                };
                events.push(EventRow {
                    id: next_event_id,
                    chatroom_id: room.row.id,
                    seq: room.row.last_seq,
                    message_id: target.id,
                    kind,
                    created_at: at,
                });
                next_event_id += 1;
            }
        }
        // A few members of each room do most of its talking.
        let u: f64 = rng.r#gen();
        let author = room.talkers[((u * u) * room.talkers.len() as f64) as usize];
        let mentioned = *room.members.choose(rng).expect("members");
        let mention = nickname(mentioned);
        let content = words.message(rng, &mention);
        room.row.last_seq += 1;
        // Some messages start by naming a member: the writer records it so.
        if mentioned != author && content.starts_with(&format!("@{mention} ")) {
            mentions.push(MentionRow {
                chatroom_id: room.row.id,
                seq: room.row.last_seq,
                user_id: mentioned,
                author_id: author,
            });
        }
        room.row.active_at = at;
        newest_post.insert((r, author), room.row.last_seq);
        room.recent.push(batch.len());
        if room.recent.len() > 32 {
            room.recent.remove(0);
        }
        batch.push(MessageRow {
            id: next_message_id,
            chatroom_id: room.row.id,
            seq: room.row.last_seq,
            user_id: author,
            content: MessageContent::parse(&content)
                .map_err(anyhow::Error::msg)?
                .as_str()
                .to_owned(),
            created_at: at,
            edited_at: None,
            deleted_at: None,
        });
        next_message_id += 1;
        if batch.len() == BATCH {
            sink.messages(&batch, &events, &mentions).await?;
            batch.clear();
            events.clear();
            mentions.clear();
            rooms.iter_mut().for_each(|room| room.recent.clear());
            if next_message_id % 100_000 == 1 {
                eprintln!(
                    "{} messages in {:.1?}",
                    next_message_id - 1,
                    started.elapsed()
                );
            }
        }
    }
    sink.messages(&batch, &events, &mentions).await?;
    Ok(newest_post)
}

/// Every member's read cursor: most have read everything, some are a few
/// messages behind, a few far behind; never before their own newest post
/// (posting reads what came before it). User 1 is behind in most rooms, far
/// behind in a tenth: the sidebar with the most counting to do.
fn read_cursors(
    rooms: &[Room],
    newest_post: &HashMap<(usize, i64), i64>,
    rng: &mut StdRng,
) -> Vec<MemberRow> {
    let mut rows = Vec::new();
    for (r, room) in rooms.iter().enumerate() {
        let last = room.row.last_seq;
        for &user in &room.members {
            let roll: f64 = rng.r#gen();
            let (caught_up, far) = if user == 1 { (0.3, 0.9) } else { (0.7, 0.95) };
            let cursor = if roll < caught_up {
                last
            } else if roll < far {
                last - rng.gen_range(1..=200).min(last)
            } else {
                rng.gen_range(0..=last)
            };
            let own = newest_post.get(&(r, user)).copied().unwrap_or(0);
            rows.push(MemberRow {
                chatroom_id: room.row.id,
                user_id: user,
                joined_at: room.row.created_at.max(EPOCH_MS + user * 1_000),
                last_read_seq: cursor.max(own),
            });
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_named_from_ada1_on() {
        assert_eq!(email(1), "ada1@seed.test");
        assert_eq!(nickname(2), "bob1");
        assert_eq!(nickname(NAMES.len() as i64 + 1), "ada2");
    }

    #[test]
    fn paths_become_sqlite_urls() {
        assert_eq!(database_url("/tmp/x.db"), "sqlite:///tmp/x.db?mode=rwc");
        assert_eq!(database_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
