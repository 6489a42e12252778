// Unread state: the room's read cursor, moved when the reader has seen the
// room's newest message (scrolled to the bottom, tab visible), and the
// sidebar's unread badges and the tab's title, kept in step with the
// reader's other tabs and devices through their own stream.

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
  item?.querySelector(".badge")?.remove();
  showTotal();
}

/** The tab's title starts with the number of unread messages, as "(3) # general · Hearth". */
export function showTotal() {
  let total = 0;
  for (const badge of document.querySelectorAll("#sidebar .badge")) total += Number.parseInt(badge.textContent ?? "0", 10) || 0;
  const title = document.title.replace(/^\(\d+\+?\) /, "");
  document.title = total > 0 ? `(${total}) ${title}` : title;
}

/**
 * What to do with the reader's own stream's `activity` messages: a new
 * message from someone else in one of their rooms. It counts as unread
 * unless it is the open room and the reader is at its end, looking.
 * @param {{ type?: string, id?: number }} message
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
  let badge = link.querySelector(".badge");
  if (!badge) {
    badge = document.createElement("span");
    badge.className = "badge";
    link.append(" ", badge);
  }
  const count = (Number.parseInt(badge.textContent ?? "0", 10) || 0) + 1;
  badge.textContent = count > 99 ? "99+" : String(count);
  badge.setAttribute("aria-label", `${count} unread`);
  showTotal();
}
