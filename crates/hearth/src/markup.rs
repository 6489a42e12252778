//! User text to HTML: the Markdown chat people type (`**bold**`, `_em_`,
//! `` `code` ``, fenced code, lists, quotes, `~~strike~~`, links), bare
//! links made clickable, `@nickname`, `@here` and `@channel` marked as
//! mentions, every line break kept, and whatever HTML someone typed shown
//! as text. The result then goes through `ammonia` with a short list of
//! tags, so nothing else can reach a reader's page whatever the parser lets
//! through.
//!
//! [`mentions`] reads the same mentions out of a text, for the writer to
//! record whom a message mentions: what is shown as a mention and what
//! counts as one are found by one walk over the same parse.

use std::collections::HashSet;
use std::sync::LazyLock;

use linkify::{LinkFinder, LinkKind};
use pulldown_cmark::{CowStr, Event, LinkType, Options, Parser, Tag, TagEnd, html};

/// The tags a message may hold after rendering.
const TAGS: &[&str] = &[
    "p",
    "br",
    "em",
    "strong",
    "del",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "a",
    "span",
];

/// The sanitiser: the tags above, `href` on links (http, https and mailto
/// only), and every link opened away from the chat without a referrer,
/// marked as user content (`ugc`) and not endorsed (`nofollow`).
static CLEAN: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut builder = ammonia::Builder::empty();
    builder
        .tags(TAGS.iter().copied().collect::<HashSet<_>>())
        .tag_attributes(
            [("a", ["href"].into_iter().collect())]
                .into_iter()
                .collect(),
        )
        .add_tag_attributes("span", ["data-mention"])
        .add_allowed_classes("span", ["mention"])
        .url_schemes(["http", "https", "mailto"].into_iter().collect())
        .link_rel(Some("noopener noreferrer nofollow ugc"))
        .set_tag_attribute_value("a", "target", "_blank");
    builder
});

/// The safe HTML of a message's text.
pub fn render(text: &str) -> String {
    let mut in_link_or_code = 0usize;
    let mut events = Vec::new();
    for event in parse(text) {
        match event {
            // Typed HTML is text, shown as typed.
            Event::Html(raw) | Event::InlineHtml(raw) => events.push(Event::Text(raw)),
            // In chat, a line break is a line break.
            Event::SoftBreak => events.push(Event::HardBreak),
            // Headings, tables and images are not chat: keep their text.
            Event::Start(Tag::Heading { .. }) => events.push(Event::Start(Tag::Paragraph)),
            Event::End(TagEnd::Heading(_)) => events.push(Event::End(TagEnd::Paragraph)),
            Event::Start(Tag::Image { .. }) | Event::End(TagEnd::Image) => {}
            Event::Start(tag @ (Tag::Link { .. } | Tag::CodeBlock(_))) => {
                in_link_or_code += 1;
                events.push(Event::Start(tag));
            }
            Event::End(end @ (TagEnd::Link | TagEnd::CodeBlock)) => {
                in_link_or_code = in_link_or_code.saturating_sub(1);
                events.push(Event::End(end));
            }
            Event::Text(text) if in_link_or_code == 0 => linkify(text, &mut events),
            other => events.push(other),
        }
    }
    let mut unsafe_html = String::with_capacity(text.len() * 2);
    html::push_html(&mut unsafe_html, events.into_iter());
    CLEAN.clean(&unsafe_html).to_string()
}

fn parse(text: &str) -> Parser<'_> {
    Parser::new_ext(text, Options::ENABLE_STRIKETHROUGH)
}

/// Whom a message mentions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mentions {
    /// The nicknames after `@`, lower-cased, each once, in order, at most
    /// [`MAX_MENTIONS`].
    pub nicknames: Vec<String>,
    /// `@channel` (or `@everyone`): every member of the room.
    pub channel: bool,
    /// `@here`: the members present in the room.
    pub here: bool,
}

impl Mentions {
    /// Whether the message notifies a whole room.
    pub fn is_broadcast(&self) -> bool {
        self.channel || self.here
    }

    /// Whether it mentions anyone.
    pub fn is_empty(&self) -> bool {
        self.nicknames.is_empty() && !self.is_broadcast()
    }
}

/// Most people one message mentions by name; those after are shown as
/// mentions but not counted.
pub const MAX_MENTIONS: usize = 50;

/// Whom `text` mentions: every `@name` outside code and links.
pub fn mentions(text: &str) -> Mentions {
    let mut found = Mentions::default();
    let mut in_link_or_code = 0usize;
    for event in parse(text) {
        match event {
            Event::Start(Tag::Link { .. } | Tag::CodeBlock(_)) => in_link_or_code += 1,
            Event::End(TagEnd::Link | TagEnd::CodeBlock) => {
                in_link_or_code = in_link_or_code.saturating_sub(1);
            }
            Event::Text(text) if in_link_or_code == 0 => {
                for piece in split_mentions(&text) {
                    let Piece::Mention(name) = piece else {
                        continue;
                    };
                    match name.to_ascii_lowercase().as_str() {
                        "channel" | "everyone" => found.channel = true,
                        "here" => found.here = true,
                        name => {
                            if found.nicknames.len() < MAX_MENTIONS
                                && !found.nicknames.iter().any(|n| n == name)
                            {
                                found.nicknames.push(name.to_owned());
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    found
}

/// A part of a text: plain, or a mention's name (without its `@`).
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Mention(&'a str),
}

/// Whether `c` may be part of a nickname (`domain::Nickname`).
fn nickname_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// `text` cut into plain parts and mentions: an `@` at the start or after
/// anything but a nickname character, `.` or `@` (so `ann@example` is not
/// one), followed by 1 to 32 nickname characters.
fn split_mentions(text: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut plain = 0;
    let mut previous: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let starts =
            c == '@' && !previous.is_some_and(|p| nickname_char(p) || p == '.' || p == '@');
        previous = Some(c);
        if !starts {
            continue;
        }
        let name_start = at + 1;
        let name_end = text[name_start..]
            .char_indices()
            .find(|(_, c)| !nickname_char(*c))
            .map_or(text.len(), |(i, _)| name_start + i);
        let length = name_end - name_start;
        if length == 0 || length > 32 {
            continue;
        }
        if at > plain {
            pieces.push(Piece::Text(&text[plain..at]));
        }
        pieces.push(Piece::Mention(&text[name_start..name_end]));
        plain = name_end;
        while chars.peek().is_some_and(|(i, _)| *i < name_end) {
            previous = chars.next().map(|(_, c)| c);
        }
    }
    if plain < text.len() {
        pieces.push(Piece::Text(&text[plain..]));
    }
    pieces
}

/// Pushes `text` with its mentions as `<span class="mention">` elements.
fn push_mentions<'a>(text: CowStr<'a>, events: &mut Vec<Event<'a>>) {
    let pieces = split_mentions(&text);
    if !pieces.iter().any(|p| matches!(p, Piece::Mention(_))) {
        events.push(Event::Text(text));
        return;
    }
    for piece in pieces {
        match piece {
            Piece::Text(plain) => events.push(Event::Text(CowStr::from(plain.to_owned()))),
            // Nickname characters need no escaping.
            Piece::Mention(name) => events.push(Event::InlineHtml(CowStr::from(format!(
                "<span class=\"mention\" data-mention=\"{}\">@{name}</span>",
                name.to_ascii_lowercase()
            )))),
        }
    }
}

/// `text`, with each bare `http(s)://` link or email address made a link
/// and each mention marked.
fn linkify<'a>(text: CowStr<'a>, events: &mut Vec<Event<'a>>) {
    let mut finder = LinkFinder::new();
    finder.kinds(&[LinkKind::Url, LinkKind::Email]);
    let mut rest = 0;
    for link in finder.links(&text) {
        if link.start() > rest {
            push_mentions(CowStr::from(text[rest..link.start()].to_owned()), events);
        }
        let target = match link.kind() {
            LinkKind::Email => format!("mailto:{}", link.as_str()),
            _ => link.as_str().to_owned(),
        };
        events.push(Event::Start(Tag::Link {
            link_type: LinkType::Autolink,
            dest_url: CowStr::from(target),
            title: CowStr::from(""),
            id: CowStr::from(""),
        }));
        events.push(Event::Text(CowStr::from(link.as_str().to_owned())));
        events.push(Event::End(TagEnd::Link));
        rest = link.end();
    }
    if rest == 0 {
        push_mentions(text, events);
    } else if rest < text.len() {
        push_mentions(CowStr::from(text[rest..].to_owned()), events);
    }
}

#[cfg(test)]
mod tests {
    use super::{Mentions, mentions, render};

    #[test]
    fn mentions_are_marked_and_read_outside_code_links_and_emails() {
        assert_eq!(
            render("hi @Bob and @here!"),
            "<p>hi <span class=\"mention\" data-mention=\"bob\">@Bob</span> and \
             <span class=\"mention\" data-mention=\"here\">@here</span>!</p>\n"
        );
        let text =
            "@ann, @ANN ann@example.com `@code` [@link](https://x.y) @channel\n```\n@block\n```";
        assert_eq!(
            mentions(text),
            Mentions {
                nicknames: vec!["ann".to_owned()],
                channel: true,
                here: false,
            }
        );
        let html = render(text);
        assert!(!html.contains(r#"data-mention="code""#), "{html}");
        assert!(!html.contains(r#"data-mention="block""#), "{html}");
        assert!(!html.contains(r#"data-mention="example""#), "{html}");
        assert!(mentions("email@me or @ alone or a@b").is_empty());
        assert!(mentions(&format!("@{}", "a".repeat(33))).is_empty());
        let many: String = (0..80).map(|n| format!("@u{n} ")).collect();
        assert_eq!(mentions(&many).nicknames.len(), super::MAX_MENTIONS);
    }

    #[test]
    fn a_typed_mention_span_stays_text() {
        let html = render(r#"<span class="mention" data-mention="ann">x</span>"#);
        assert!(html.starts_with("<p>&lt;span"), "{html}");
    }

    #[test]
    fn markdown_renders_and_line_breaks_are_kept() {
        assert_eq!(
            render("**bold** and _em_"),
            "<p><strong>bold</strong> and <em>em</em></p>\n"
        );
        assert_eq!(render("one\ntwo"), "<p>one<br>\ntwo</p>\n");
        assert_eq!(
            render("~~gone~~ `x < y`"),
            "<p><del>gone</del> <code>x &lt; y</code></p>\n"
        );
    }

    #[test]
    fn bare_links_become_links_that_open_safely() {
        let html = render("see https://example.com/a?b=1 now");
        assert!(
            html.contains(r#"<a href="https://example.com/a?b=1" target="_blank" rel="noopener noreferrer nofollow ugc">https://example.com/a?b=1</a>"#),
            "{html}"
        );
        assert!(render("[x](https://example.com)").contains(r#"href="https://example.com""#));
    }

    #[test]
    fn typed_html_and_dangerous_links_never_get_through() {
        let html = render("<script>alert(1)</script> <img src=x onerror=alert(1)>");
        assert!(
            !html.contains("<script") && !html.contains("<img"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;"), "shown as typed: {html}");
        let link = render("[click](javascript:alert(1))");
        assert!(!link.contains("javascript:"), "{link}");
        let heading = render("# not a heading");
        assert!(!heading.contains("<h1"), "{heading}");
    }
}

/// Characters shown before and after the first match in a snippet.
const SNIPPET_CONTEXT: usize = 60;

/// A search result's snippet of `text` as safe HTML: the plain text (not
/// rendered Markdown) around the first place any of `terms` occurs, cut to
/// about [`SNIPPET_CONTEXT`] characters on each side, with every occurrence
/// of a term (ignoring case) in `<mark>`.
pub fn snippet(text: &str, terms: &[String]) -> String {
    let chars: Vec<char> = text.chars().collect();
    let terms: Vec<Vec<char>> = terms
        .iter()
        .map(|t| t.chars().collect::<Vec<_>>())
        .filter(|t| !t.is_empty())
        .collect();
    let matches_at = |at: usize| {
        terms
            .iter()
            .filter(|term| {
                at + term.len() <= chars.len()
                    && term
                        .iter()
                        .zip(&chars[at..])
                        .all(|(a, b)| a.to_lowercase().eq(b.to_lowercase()))
            })
            .map(Vec::len)
            .max()
    };
    let first = (0..chars.len())
        .find(|&at| matches_at(at).is_some())
        .unwrap_or(0);
    let start = first.saturating_sub(SNIPPET_CONTEXT);
    let end = (first + 2 * SNIPPET_CONTEXT).min(chars.len());
    let mut html = String::new();
    if start > 0 {
        html.push('…');
    }
    let mut at = start;
    while at < end {
        match matches_at(at) {
            Some(len) => {
                html.push_str("<mark>");
                escape_into(&mut html, &chars[at..at + len]);
                html.push_str("</mark>");
                at += len;
            }
            None => {
                escape_into(&mut html, &chars[at..=at]);
                at += 1;
            }
        }
    }
    if end < chars.len() {
        html.push('…');
    }
    html
}

/// Appends `text` with HTML's special characters escaped.
fn escape_into(html: &mut String, text: &[char]) {
    for &c in text {
        match c {
            '&' => html.push_str("&amp;"),
            '<' => html.push_str("&lt;"),
            '>' => html.push_str("&gt;"),
            '"' => html.push_str("&quot;"),
            '\'' => html.push_str("&#39;"),
            '\n' | '\r' | '\t' => html.push(' '),
            c => html.push(c),
        }
    }
}

#[cfg(test)]
mod snippet_tests {
    use super::snippet;

    #[test]
    fn a_snippet_marks_every_match_ignoring_case_and_escapes_the_rest() {
        let terms = vec!["deploy".to_owned()];
        assert_eq!(
            snippet("<b>Deploy</b> & deploy again", &terms),
            "&lt;b&gt;<mark>Deploy</mark>&lt;/b&gt; &amp; <mark>deploy</mark> again"
        );
        assert_eq!(
            snippet("明日は東京で", &["東京".to_owned()]),
            "明日は<mark>東京</mark>で"
        );
        let long = format!("{}needle{}", "a".repeat(200), "b".repeat(200));
        let cut = snippet(&long, &["needle".to_owned()]);
        assert!(cut.starts_with('…') && cut.ends_with('…') && cut.contains("<mark>needle</mark>"));
        assert_eq!(snippet("no match", &[]), "no match");
    }
}
