//! User text to HTML: the Markdown chat people type (`**bold**`, `_em_`,
//! `` `code` ``, fenced code, lists, quotes, `~~strike~~`, links), bare
//! links made clickable, every line break kept, and whatever HTML someone
//! typed shown as text. The result then goes through `ammonia` with a short
//! list of tags, so nothing else can reach a reader's page whatever the
//! parser lets through.

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
        .url_schemes(["http", "https", "mailto"].into_iter().collect())
        .link_rel(Some("noopener noreferrer nofollow ugc"))
        .set_tag_attribute_value("a", "target", "_blank");
    builder
});

/// The safe HTML of a message's text.
pub fn render(text: &str) -> String {
    let options = Options::ENABLE_STRIKETHROUGH;
    let mut in_link_or_code = 0usize;
    let mut events = Vec::new();
    for event in Parser::new_ext(text, options) {
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

/// `text`, with each bare `http(s)://` link or email address made a link.
fn linkify<'a>(text: CowStr<'a>, events: &mut Vec<Event<'a>>) {
    let mut finder = LinkFinder::new();
    finder.kinds(&[LinkKind::Url, LinkKind::Email]);
    let mut rest = 0;
    for link in finder.links(&text) {
        if link.start() > rest {
            events.push(Event::Text(CowStr::from(
                text[rest..link.start()].to_owned(),
            )));
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
        events.push(Event::Text(text));
    } else if rest < text.len() {
        events.push(Event::Text(CowStr::from(text[rest..].to_owned())));
    }
}

#[cfg(test)]
mod tests {
    use super::render;

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
