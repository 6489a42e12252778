// Unread state: the room's read cursor, moved when the reader has seen the
// room's newest message (scrolled to the bottom, tab visible), and the
// sidebar's unread and mention badges and the tab's title, kept in step
// with the reader's other tabs and devices through their own stream.

const SEND_AFTER_MS = 400;

/**
 * Moves the read cursor of the open room as the reader reaches its end.
 * @param {object} options
 * @param {number} options.roomId
 * @param {HTMLElement} options.list `#messages`
 * @param {{ atLiveEnd(): boolean, resumeFrom(): number | null }} options.messages
 * @param {number} options.lastRead the cursor when the page was made
 */
export function startReadCursor({ roomId, list, messages, lastRead }) {
  let sent = lastRead;
  let timer = 0;
  const check = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if (document.visibilityState !== "visible" || !messages.atLiveEnd()) return;
      const seq = messages.resumeFrom();
      if (seq === null || seq <= sent) return;
      sent = seq;
      await fetch(`/chatrooms/${roomId}/read`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ seq }),
      }).catch(() => {
        sent = Math.min(sent, lastRead);
      });
      clearBadge(roomId);
    }, SEND_AFTER_MS);
  };
  list.addEventListener("scroll", check, { passive: true });
  document.addEventListener("visibilitychange", check);
  check();
  return { check };
}

/**
 * What to do with the reader's own stream's `read` messages: another tab
 * or device read the room up to its end.
 * @param {{ type?: string, id?: number }} message
 */
export function applyRead(message) {
  if (message.type === "read") clearBadge(Number(message.id));
}

/** @param {number} roomId */
function clearBadge(roomId) {
  const item = document.querySelector(`#sidebar [data-room-id="${roomId}"]`);
  item?.classList.remove("unread");
  for (const badge of item?.querySelectorAll(".badge") ?? []) badge.remove();
  showTotal();
}

/** The tab's title starts with the number of unread messages, as "(3) # general · Hearth". */
export function showTotal() {
  let total = 0;
  for (const badge of document.querySelectorAll("#sidebar .badge:not(.mention-badge)")) total += countOf(badge);
  const title = document.title.replace(/^\(\d+\+?\) /, "");
  document.title = total > 0 ? `(${total}) ${title}` : title;
}

/** @param {Element} badge */
function countOf(badge) {
  return Number.parseInt((badge.textContent ?? "0").replace(/^@/, ""), 10) || 0;
}

/**
 * What to do with the reader's own stream's `activity` messages: a new
 * message from someone else in one of their rooms, mentioning them or not.
 * It counts as unread unless it is the open room and the reader is at its
 * end, looking.
 * @param {{ type?: string, id?: number, mention?: boolean }} message
 * @param {{ roomId: number | null, seeing: () => boolean }} open the open room, and whether its end is in view
 */
export function applyActivity(message, open) {
  if (message.type !== "activity") return;
  const roomId = Number(message.id);
  if (roomId === open.roomId && open.seeing()) return;
  const item = document.querySelector(`#sidebar [data-room-id="${roomId}"]`);
  const link = item?.querySelector("a");
  if (!item || !link) return;
  item.classList.add("unread");
  bump(link, "badge", (count) => `${count} unread`, "");
  if (message.mention) bump(link, "badge mention-badge", (count) => `${count} ${count === 1 ? "mention" : "mentions"}`, "@");
  showTotal();
}

/**
 * Adds one to the badge of class `className` in `link`, creating it.
 * @param {HTMLElement} link
 * @param {string} className
 * @param {(count: number) => string} label
 * @param {string} sign shown before the count
 */
function bump(link, className, label, sign) {
  let badge = link.querySelector(`.${className.split(" ").join(".")}`);
  if (!badge) {
    badge = document.createElement("span");
    badge.className = className;
    // Mentions first, as the page renders them.
    const count = link.querySelector(".badge:not(.mention-badge)");
    if (sign && count) count.before(badge, " ");
    else link.append(" ", badge);
  }
  const count = countOf(badge) + 1;
  badge.textContent = sign + (count > 99 ? "99+" : String(count));
  badge.setAttribute("aria-label", label(count));
}

/**
 * What to do with the reader's own stream's `notify` messages: they changed
 * what they are notified of in a room, here or in another tab.
 * @param {{ type?: string, id?: number, notify?: string }} message
 */
export function applyNotify(message) {
  if (message.type !== "notify" || !message.notify) return;
  const item = /** @type {HTMLElement | null} */ (document.querySelector(`#sidebar [data-room-id="${Number(message.id)}"]`));
  if (item) item.dataset.notify = message.notify;
  const form = document.getElementById("notify-form");
  if (form && form.getAttribute("action") === `/chatrooms/${Number(message.id)}/notify`) {
    const choice = /** @type {HTMLInputElement | null} */ (form.querySelector(`input[value="${message.notify}"]`));
    if (choice) choice.checked = true;
  }
}
