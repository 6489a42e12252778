//! One run: where the server is, the users and rooms it uses, and which of
//! the clients this process drives.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::cable::CableTarget;
use crate::cli::{App, Common, Via};
use crate::hearth;
use crate::http::HttpConn;
use crate::net::{Endpoint, raise_open_file_limit};
use crate::protocol;
use crate::workers::{read_setup, unix_nanos};

/// What the leader prepares once and every worker shares.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Setup {
    /// Tags this run's messages and users.
    pub run: u32,
    /// Session cookies to spread connections over (empty without auth).
    pub cookies: Vec<String>,
    /// The room every client joins.
    pub room: String,
    /// Rooms of their own for writers (`post --rooms own`).
    pub own_rooms: Vec<String>,
}

impl Setup {
    /// The cookie client `i` uses: users are shared round robin.
    pub fn cookie(&self, i: usize) -> Option<&str> {
        (!self.cookies.is_empty()).then(|| self.cookies[i % self.cookies.len()].as_str())
    }
}

/// Which clients this process drives: client `i` is ours when `i % of == index`.
#[derive(Debug, Clone, Copy)]
pub struct Share {
    /// This process's number.
    pub index: usize,
    /// How many processes share the clients.
    pub of: usize,
}

impl Share {
    /// Our clients among `0..n`.
    pub fn clients(&self, n: usize) -> impl Iterator<Item = usize> + use<> {
        let (index, of) = (self.index, self.of);
        (index..n).step_by(of)
    }

    /// Whether this process also runs the single-instance parts (the publisher).
    pub fn is_first(&self) -> bool {
        self.index == 0
    }

    /// Our part of a total budget such as the connect concurrency.
    pub fn part(&self, total: usize) -> usize {
        (total / self.of + usize::from(self.index < total % self.of)).max(1)
    }
}

/// Everything a scenario needs to reach the server.
pub struct Ctx {
    /// The command-line options.
    pub common: Common,
    /// The server's HTTP side.
    pub endpoint: Endpoint,
    /// The server's cable.
    pub cable: CableTarget,
    /// Users and rooms.
    pub setup: Setup,
    /// The setup as JSON, for workers.
    pub setup_json: String,
    /// This process's clients.
    pub share: Share,
    /// Whether to draw progress bars (the leader does; workers do not).
    pub progress: bool,
}

impl Ctx {
    /// Runs `work` here, or spread over `--workers` processes, with this
    /// run's options; `None` in a worker, whose results go to the leader.
    pub async fn drive<P, F, Fut>(
        &self,
        work: F,
    ) -> anyhow::Result<Option<crate::workers::Outcome<P>>>
    where
        P: serde::Serialize + serde::de::DeserializeOwned,
        F: FnOnce(crate::workers::Coord) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<P>>,
    {
        crate::workers::drive(
            self.common.workers,
            self.common.worker_index,
            self.common.pid,
            &self.setup_json,
            work,
        )
        .await
    }
}

impl Ctx {
    /// Prepares a run: raises the open-file limit; on the leader signs users
    /// up and finds or creates rooms (`own_rooms` of them); in a worker takes
    /// the leader's setup.
    pub async fn prepare(common: Common, own_rooms: usize) -> anyhow::Result<Self> {
        let limit = raise_open_file_limit().context("raising the open-file limit")?;
        let endpoint = Endpoint::parse(&common.server)?;
        let cable = CableTarget {
            endpoint: endpoint.clone(),
            path: common.cable_path.clone(),
            also: common.also.clone(),
        };
        let workers = common.workers.max(1);
        let (setup, share) = match common.worker_index {
            Some(index) => {
                let json = read_setup()?;
                (serde_json::from_str(&json)?, Share { index, of: workers })
            }
            None => {
                if workers == 1 {
                    eprintln!("open-file limit: {limit}");
                }
                let setup = make_setup(&common, &endpoint, own_rooms).await?;
                (
                    setup,
                    Share {
                        index: 0,
                        of: workers,
                    },
                )
            }
        };
        Ok(Self {
            setup_json: serde_json::to_string(&setup)?,
            progress: common.worker_index.is_none(),
            common,
            endpoint,
            cable,
            setup,
            share,
        })
    }

    /// The local address client `i` connects from.
    pub fn source(&self, i: usize) -> IpAddr {
        let sources = &self.common.sources.0;
        sources[i % sources.len()]
    }

    /// Fails when `--via http` is asked of a run without signed-in users:
    /// posting goes through Hearth's HTTP side as one of them.
    pub fn check_via(&self, via: Via) -> anyhow::Result<()> {
        if via == Via::Http && self.setup.cookies.is_empty() {
            anyhow::bail!("--via http posts to Hearth and needs signed-in users (--app hearth)");
        }
        Ok(())
    }

    /// The identifier of the shared room.
    pub fn identifier(&self) -> String {
        self.identifier_of(&self.setup.room)
    }

    /// The identifier of `room`, with presence if `--presence` and the
    /// `--format` asked for.
    pub fn identifier_of(&self, room: &str) -> String {
        protocol::identifier_with(room, self.common.presence, self.common.format.as_deref())
    }

    /// How long one connection set-up may take.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.common.connect_timeout)
    }
}

async fn make_setup(
    common: &Common,
    endpoint: &Endpoint,
    own_rooms: usize,
) -> anyhow::Result<Setup> {
    let run = run_id();
    let source = common.sources.0[0];
    let mut cookies = common.cookies.clone();
    if let Some(path) = &common.cookies_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        cookies.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from),
        );
    }
    let mut setup = Setup {
        run,
        cookies,
        room: common.room.clone().unwrap_or_else(|| "1".into()),
        own_rooms: Vec::new(),
    };
    if common.app == App::Plain {
        setup.own_rooms = (0..own_rooms)
            .map(|i| format!("bench-{run:08x}-{i}"))
            .collect();
        return Ok(setup);
    }
    if setup.cookies.is_empty() {
        eprintln!("signing up {} users…", common.users);
        setup.cookies = hearth::sign_up_pool(endpoint, source, run, common.users.max(1), 4).await?;
    }
    if common.room.is_none() {
        setup.room = hearth::general_room(endpoint, source, &setup.cookies[0]).await?;
    }
    if own_rooms > 0 {
        let mut conn = HttpConn::connect(endpoint, source).await?;
        for i in 0..own_rooms {
            let name = format!("bench-{run:08x}-{i}");
            let cookie = setup.cookie(i).expect("signed in");
            setup
                .own_rooms
                .push(hearth::create_room(&mut conn, cookie, &name).await?);
        }
    }
    Ok(setup)
}

/// A run id from the clock and the process id: unique enough to tell runs apart.
fn run_id() -> u32 {
    let t = unix_nanos();
    let mixed = (t ^ (t >> 29) ^ u64::from(std::process::id()).rotate_left(17))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_client_once() {
        let shares: Vec<Vec<usize>> = (0..3)
            .map(|index| Share { index, of: 3 }.clients(8).collect())
            .collect();
        assert_eq!(shares, [vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]]);
        let parts: usize = (0..3).map(|index| Share { index, of: 3 }.part(200)).sum();
        assert_eq!(parts, 200);
    }

    #[test]
    fn cookies_are_shared_round_robin() {
        let setup = Setup {
            run: 1,
            cookies: vec!["a".into(), "b".into()],
            room: "1".into(),
            own_rooms: vec![],
        };
        assert_eq!(
            (setup.cookie(0), setup.cookie(1), setup.cookie(2)),
            (Some("a"), Some("b"), Some("a"))
        );
        let none = Setup {
            cookies: vec![],
            ..setup
        };
        assert_eq!(none.cookie(5), None);
    }
}
