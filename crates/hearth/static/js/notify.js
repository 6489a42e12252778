// Browser notifications and mentions of the reader.
//
// Notifications are asked for only with a button (never on page load). While
// the tab is hidden, a new message in one of the reader's rooms is shown as a
// notification when the room's setting asks for it (`data-notify` on its
// sidebar item: every message of a conversation and mentions elsewhere by
// default, or all, mentions, nothing). The activity message says only which
// room and `seq`; the text is fetched from the room's history, through the
// same door as any read of it. Each tab may show it: the notification's tag
// (room and seq) makes the browser show it once.
//
// Mentions of the reader (`@theirname`, `@here`, `@channel`) are marked more
// strongly than others', and so is a message holding one.

const BODY_CHARS = 160;

/**
 * Shows the "Enable notifications" buttons while the browser has not been
 * asked, and asks when one is pressed.
 * @param {ParentNode} root
 */
export function startNotificationButtons(root = document) {
  const offers = root.querySelectorAll("[data-notify-permission]");
  const show = () => {
    const ask = "Notification" in window && Notification.permission === "default";
    for (const offer of offers) /** @type {HTMLElement} */ (offer).hidden = !ask;
  };
  for (const button of root.querySelectorAll("[data-enable-notifications]")) {
    button.addEventListener("click", async () => {
      if (!("Notification" in window)) return;
      await Notification.requestPermission();
      show();
    });
  }
  show();
}

/**
 * Whether a new message in a room whose sidebar item is `item` is worth a
 * notification.
 * @param {HTMLElement | null} item
 * @param {boolean} mention
 */
export function wanted(item, mention) {
  if (!item) return false;
  switch (item.dataset.notify) {
    case "all":
      return true;
    case "nothing":
      return false;
    case "mentions":
      return mention;
    default:
      return mention || item.hasAttribute("data-direct");
  }
}

/**
 * What to do with the reader's own stream's `activity` messages: notify
 * while the tab is hidden, if the room's setting asks for it.
 * @param {{ type?: string, id?: number, seq?: number, mention?: boolean }} message
 */
export async function notifyActivity(message) {
  if (message.type !== "activity" || document.visibilityState === "visible") return;
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const roomId = Number(message.id);
  const seq = Number(message.seq);
  const item = /** @type {HTMLElement | null} */ (document.querySelector(`#sidebar [data-room-id="${roomId}"]`));
  if (!wanted(item, Boolean(message.mention))) return;
  const response = await fetch(`/chatrooms/${roomId}/messages?around=${seq}&limit=1`, { headers: { Accept: "application/json" } }).catch(() => null);
  if (!response?.ok) return;
  /** @type {{ messages: { seq: number, nickname: string, content: string }[] }} */
  const page = await response.json();
  const found = page.messages.find((m) => m.seq === seq);
  if (!found) return;
  const place = item?.querySelector(".room-name")?.textContent?.trim() ?? "";
  const title = item?.hasAttribute("data-direct") ? found.nickname : `${found.nickname} in ${place}`;
  const body = found.content.length > BODY_CHARS ? `${found.content.slice(0, BODY_CHARS)}…` : found.content;
  const shown = new Notification(title, { body, tag: `hearth-${roomId}-${seq}`, icon: "/favicon.svg" });
  shown.addEventListener("click", () => {
    window.focus();
    location.assign(`/chatrooms/${roomId}?around=${seq}`);
    shown.close();
  });
}

/**
 * Saves the room's notification setting without leaving the page (the form
 * posts normally without JavaScript).
 * @param {HTMLFormElement | null} form `#notify-form`
 */
export function startNotifyForm(form) {
  if (!form) return;
  form.addEventListener("change", async () => {
    const choice = /** @type {HTMLInputElement | null} */ (form.querySelector("input[name=notify]:checked"));
    if (!choice) return;
    const response = await fetch(form.action, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ notify: choice.value }),
    }).catch(() => null);
    form.dataset.saved = response?.ok ? "yes" : "no";
  });
  // Saved as it changes: the button is for pages without JavaScript.
  const button = form.querySelector("button[type=submit]");
  if (button) /** @type {HTMLElement} */ (button).hidden = true;
}

/**
 * Whether a message's rendered `html` mentions the reader, by nickname or
 * as one of the room (the reader, with the room open, is present).
 * @param {string | undefined} html
 * @param {string | undefined} [nickname] the reader's, lower-cased
 */
export function mentionsReader(html, nickname = document.body.dataset.nickname) {
  const mine = new Set([nickname, "here", "channel", "everyone"]);
  for (const [, name] of (html ?? "").matchAll(/data-mention="([^"]*)"/g)) if (mine.has(name)) return true;
  return false;
}

/**
 * Marks mentions of the reader: a style sheet naming their nickname (the
 * page's styles cannot know it, and inline styles are not allowed).
 * @param {string | undefined} nickname the reader's, lower-cased
 */
export function markMentionsOf(nickname) {
  if (!nickname || !/^[a-z0-9_-]+$/.test(nickname) || !("adoptedStyleSheets" in document)) return;
  const mine = [nickname, "here", "channel", "everyone"].map((name) => `.mention[data-mention="${name}"]`).join(", ");
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(`${mine} { background: var(--mention-me-bg); color: var(--mention-me-fg); font-weight: 600; }
.message:has(${mine.replaceAll(", ", "), .message:has(")}) { background: var(--mention-row-bg); box-shadow: inset 3px 0 var(--mention-bar); }`);
  document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
}
