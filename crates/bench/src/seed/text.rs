//! The text of seeded messages: English-ish sentences drawn from a word list
//! by frequency (Zipf), a few invented words that each occur rarely, some
//! Markdown and mentions, and 5 % Chinese or Japanese sentences. Everything
//! comes from the caller's seeded generator, so a seed gives the same text.

use rand::Rng;
use rand::seq::SliceRandom;

/// Common words of a team's chat, most frequent first: word `i` is drawn
/// with weight `1 / (i + 1)`.
#[rustfmt::skip]
const WORDS: &[&str] = &[
    "the", "to", "I", "a", "and", "is", "it", "we", "that", "for", "on", "you", "this", "in", "be",
    "of", "can", "with", "have", "just", "not", "so", "will", "are", "but", "do", "if", "at",
    "now", "was", "should", "think", "need", "me", "all", "what", "about", "get", "up", "one",
    "there", "out", "yes", "from", "they", "thanks", "today", "looks", "good", "an", "still",
    "some", "know", "see", "when", "it's", "more", "test", "fix", "build", "deploy", "review",
    "branch", "release", "issue", "meeting", "back", "after", "time", "work", "make", "going",
    "let's", "also", "like", "team", "how", "check", "right", "could", "would", "new", "first",
    "again", "update", "change", "tomorrow", "sure", "because", "which", "server", "please",
    "done", "maybe", "before", "other", "any", "error", "only", "then", "already", "users", "data",
    "working", "here", "been", "into", "week", "code", "lunch", "merge", "query", "page",
    "latency", "database", "tests", "staging", "production", "logs", "config", "deployment",
    "pipeline", "customer", "ticket", "design", "feedback", "draft", "doc", "metrics", "dashboard",
    "alert", "incident", "rollback", "cache", "index", "migration", "schema", "endpoint",
    "request", "response", "timeout", "retry", "queue", "worker", "cluster", "node", "memory",
    "disk", "network", "latest", "version", "patch", "bug", "feature", "flag", "experiment",
    "results", "numbers", "plan", "roadmap", "sprint", "standup", "demo", "call", "calendar",
    "friday", "monday", "morning", "afternoon", "tonight", "weekend", "coffee", "happy", "great",
    "nice", "awesome", "weird", "broken", "slow", "fast", "green", "red", "flaky", "stable",
    "ready", "blocked", "waiting", "pushed", "shipped", "reverted", "approved", "merged", "tested",
    "checked", "fixed", "found", "missing", "wrong", "strange", "interesting", "important",
    "quick", "small", "large", "employee", "onboarding", "hiring", "interview", "budget",
    "invoice", "contract", "vendor", "support", "security", "password", "permissions", "access",
    "token", "certificate", "renewal", "backup", "restore", "snapshot", "replica", "primary",
    "failover", "region", "upgrade", "downgrade", "benchmark", "profile", "flamegraph",
    "allocation", "thread", "lock", "contention", "throughput", "capacity", "forecast", "quarter",
    "planning", "offsite", "holiday", "birthday", "cake", "pizza", "weather", "train", "commute",
];

/// Syllables of the invented words.
const SYLLABLES: &[&str] = &[
    "ka", "lo", "mir", "ven", "tor", "sa", "qui", "dro", "bel", "nax", "fi", "zu", "gram", "pel",
    "ost", "ri", "wen", "cul", "tha", "mo",
];

/// How many invented words there are. Each appears in about one message
/// in 50,000 or so of a million: the "rare word" of a search benchmark.
pub const RARE_WORDS: usize = 2_000;

/// Chinese words, written without spaces. `会议` is the two-character and
/// `性能测试` the four-character phrase of the search benchmark.
#[rustfmt::skip]
const CHINESE: &[&str] = &[
    "我们", "今天", "明天", "会议", "项目", "部署", "服务器", "数据库", "问题", "已经", "需要", "完成", "检查", "发布", "性能测试",
    "数据迁移", "客户", "版本", "上线", "下午", "开会", "修复", "错误", "日志", "配置", "监控", "报警", "团队", "计划", "周末",
    "的", "了", "在", "是", "一下", "还",
];

/// Japanese words and phrases, written without spaces.
#[rustfmt::skip]
const JAPANESE: &[&str] = &[
    "今日", "明日", "会議", "資料", "確認", "お願いします", "ありがとう", "テスト", "デプロイ", "サーバー", "データベース", "リリース", "修正",
    "東京", "大阪", "レビュー", "です", "ます", "を", "が", "は", "の", "に", "しました", "できました",
];

/// Sentence-ending punctuation for English, weighted by repetition.
const ENDINGS: &[&str] = &[".", ".", ".", ".", "?", "!", "", ""];

/// Draws message texts.
pub struct TextGen {
    /// Cumulative Zipf weights of [`WORDS`].
    cumulative: Vec<f64>,
    rare: Vec<String>,
}

impl Default for TextGen {
    fn default() -> Self {
        Self::new()
    }
}

impl TextGen {
    /// The word tables.
    pub fn new() -> Self {
        let mut total = 0.0;
        let cumulative = (0..WORDS.len())
            .map(|i| {
                total += 1.0 / (i as f64 + 1.0);
                total
            })
            .collect();
        Self {
            cumulative,
            rare: rare_words(),
        }
    }

    fn word(&self, rng: &mut impl Rng) -> &'static str {
        let total = *self.cumulative.last().expect("words");
        let x = rng.gen_range(0.0..total);
        let i = self.cumulative.partition_point(|&c| c <= x);
        WORDS[i.min(WORDS.len() - 1)]
    }

    /// One English sentence of 3–15 words, capitalised and ended.
    fn sentence(&self, rng: &mut impl Rng, out: &mut String) {
        let words = rng.gen_range(3..=15);
        let start = out.len();
        for i in 0..words {
            if i > 0 {
                out.push(' ');
            }
            if rng.gen_bool(0.004) {
                out.push_str(&self.rare[rng.gen_range(0..self.rare.len())]);
            } else {
                out.push_str(self.word(rng));
            }
        }
        // Capitalise the first letter (every word starts with ASCII).
        if let Some(first) = out[start..].chars().next() {
            let upper = first.to_ascii_uppercase().to_string();
            out.replace_range(start..start + first.len_utf8(), &upper);
        }
        out.push_str(ENDINGS.choose(rng).expect("endings"));
    }

    fn cjk(rng: &mut impl Rng, words: &[&str], end: &str, out: &mut String) {
        for _ in 0..rng.gen_range(4..=12) {
            out.push_str(words.choose(rng).expect("words"));
        }
        out.push_str(end);
    }

    /// One message's text; `mention` is a nickname it may mention.
    pub fn message(&self, rng: &mut impl Rng, mention: &str) -> String {
        let mut out = String::new();
        let roll: f64 = rng.r#gen();
        if roll < 0.03 {
            Self::cjk(rng, CHINESE, "。", &mut out);
            return out;
        }
        if roll < 0.05 {
            Self::cjk(rng, JAPANESE, "。", &mut out);
            return out;
        }
        if rng.gen_bool(0.05) {
            out.push('@');
            out.push_str(mention);
            out.push(' ');
        }
        let markdown: f64 = rng.r#gen();
        if markdown < 0.03 {
            // A list.
            self.sentence(rng, &mut out);
            for _ in 0..rng.gen_range(2..=4) {
                out.push_str("\n- ");
                self.sentence(rng, &mut out);
            }
            return out;
        }
        if markdown < 0.05 {
            self.sentence(rng, &mut out);
            out.push_str("\n```\n");
            out.push_str(
                [
                    "cargo test --workspace",
                    "SELECT count(*) FROM messages;",
                    "git log --oneline | head",
                    "kubectl get pods -n prod",
                    "let total = rows.iter().sum::<i64>();",
                ]
                .choose(rng)
                .expect("code"),
            );
            out.push_str("\n```");
            return out;
        }
        for i in 0..rng.gen_range(1..=3) {
            if i > 0 {
                out.push(' ');
            }
            self.sentence(rng, &mut out);
        }
        if markdown < 0.09 {
            // Emphasis or inline code around one of its words.
            let word = self.word(rng);
            let wrapped = match rng.gen_range(0..3) {
                0 => format!(" **{word}**"),
                1 => format!(" _{word}_"),
                _ => format!(" `{word}`"),
            };
            out.push_str(&wrapped);
        } else if markdown < 0.11 {
            out.push_str(&format!(
                " https://example.com/{}/{}",
                self.word(rng).trim_end_matches("'s"),
                rng.gen_range(100..10_000)
            ));
        }
        out
    }
}

/// The invented words, the same for every run: word `i` is made of the
/// syllables of `i`'s digits in base 20, at least three of them.
pub fn rare_words() -> Vec<String> {
    (0..RARE_WORDS)
        .map(|i| {
            let mut n = i + 20 * 20;
            let mut word = String::new();
            while n > 0 {
                word.push_str(SYLLABLES[n % SYLLABLES.len()]);
                n /= SYLLABLES.len();
            }
            word
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn the_same_seed_gives_the_same_text() {
        let words = TextGen::new();
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..50)
                .map(|_| words.message(&mut rng, "ada1"))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn every_message_is_valid_content_and_some_are_cjk() {
        let words = TextGen::new();
        let mut rng = StdRng::seed_from_u64(1);
        let mut cjk = 0;
        for _ in 0..2_000 {
            let text = words.message(&mut rng, "ada1");
            assert!(
                hearth::domain::MessageContent::parse(&text).is_ok(),
                "{text:?}"
            );
            cjk += usize::from(text.contains('。'));
        }
        assert!(
            (40..=180).contains(&cjk),
            "about 5 % CJK, got {cjk} of 2,000"
        );
    }

    #[test]
    fn rare_words_are_distinct() {
        let mut words = rare_words();
        words.sort();
        words.dedup();
        assert_eq!(words.len(), RARE_WORDS);
    }
}
