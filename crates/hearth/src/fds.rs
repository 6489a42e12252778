//! Open-file descriptors: the process raises its soft limit to the hard one
//! at start, and the cable may use all but a reserve of them, so that a full
//! cable still leaves descriptors for HTTP requests, the database and logs.

/// Descriptors kept back from the cable: a tenth of the limit, at least
/// 64 and at most 512. HTTP requests, the database pool and the logs need a
/// few dozen; a tenth of a 20,000 limit (2,000) kept 1,500 descriptors idle
/// and refused the 18,001st cable connection.
fn reserve(limit: u64) -> u64 {
    (limit / 10).clamp(64, 512)
}

/// Raises the soft open-file limit to the hard limit, and returns the new
/// soft limit (`None` where the platform has no such limit).
pub fn raise_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(error) => {
            tracing::warn!(%error, "could not raise the open-file limit");
            current_limit()
        }
    }
}

fn current_limit() -> Option<u64> {
    rlimit::Resource::NOFILE
        .get()
        .ok()
        .map(|(soft, _hard)| soft)
        .filter(|&soft| soft != rlimit::INFINITY)
}

/// `configured` cable connections, capped at the open-file limit less the
/// reserve; says so in the log when it caps.
pub fn cable_connection_cap(configured: usize) -> usize {
    let Some(limit) = current_limit() else {
        return configured;
    };
    let usable = usize::try_from(limit.saturating_sub(reserve(limit))).unwrap_or(usize::MAX);
    if usable < configured {
        tracing::warn!(
            configured,
            capped = usable,
            open_file_limit = limit,
            "capping cable connections below the open-file limit, keeping a reserve for HTTP"
        );
    }
    configured.min(usable)
}

#[cfg(test)]
mod tests {
    use super::reserve;

    #[test]
    fn the_reserve_is_a_tenth_of_the_limit_and_never_below_64() {
        assert_eq!(reserve(256), 64);
        assert_eq!(reserve(1024), 102);
        assert_eq!(reserve(20_000), 512);
    }
}
