// Who is here and who is typing: the room header's avatars and count, and
// the "alice is typing…" line above the composer. The server says who is
// present (a presence frame, already coalesced) and who typed (a typing
// frame, already rate-limited); this only shows them, and tells the server
// when this person types, at most every few seconds.

/** Avatars shown in the header; the count covers everyone. */
const AVATARS = 5;
/** Least time between two typing events this page sends. */
const TYPING_EVERY_MS = 3000;
/** How long someone shows as typing after their last typing event. */
const TYPING_SHOWN_MS = 6000;

/**
 * @typedef {{ id: number, nickname: string }} PresentUser
 * @typedef {{ type: "presence", count: number, users: PresentUser[] }} PresenceFrame
 * @typedef {{ type: "typing", user_id: number, nickname: string }} TypingFrame
 */

/**
 * @param {object} options
 * @param {HTMLElement | null} options.roster `#presence` in the room header
 * @param {HTMLElement | null} options.line `#typing`, the line above the composer
 * @param {number | null} options.me this page's user id: never shown as typing
 * @param {() => void} options.sendTyping tells the room this person is typing
 */
export function startPresence({ roster, line, me, sendTyping }) {
  /** @type {Map<number, { nickname: string, timer: number }>} */
  const typing = new Map();
  let lastSent = 0;

  function showRoster(/** @type {PresenceFrame} */ frame) {
    if (!roster) return;
    const users = frame.users ?? [];
    const count = Number(frame.count) || 0;
    const names = users.map((u) => u.nickname);
    const rest = count - names.length;
    const title = names.join(", ") + (rest > 0 ? ` and ${rest} more` : "");
    roster.replaceChildren(
      ...users.slice(0, AVATARS).map(avatar),
      countBadge(count),
    );
    roster.title = `Here now: ${title}`;
    roster.setAttribute("aria-label", `${count} ${count === 1 ? "person" : "people"} here: ${title}`);
    roster.hidden = false;
  }

  function showTyping() {
    if (!line) return;
    const names = [...typing.values()].map((t) => t.nickname);
    line.textContent =
      names.length === 0
        ? ""
        : names.length === 1
          ? `${names[0]} is typing…`
          : names.length === 2
            ? `${names[0]} and ${names[1]} are typing…`
            : "Several people are typing…";
  }

  function stopTyping(/** @type {number} */ userId) {
    const entry = typing.get(userId);
    if (!entry) return;
    clearTimeout(entry.timer);
    typing.delete(userId);
    showTyping();
  }

  function startTyping(/** @type {TypingFrame} */ frame) {
    const userId = Number(frame.user_id);
    if (userId === me) return;
    clearTimeout(typing.get(userId)?.timer);
    const timer = window.setTimeout(() => stopTyping(userId), TYPING_SHOWN_MS);
    typing.set(userId, { nickname: String(frame.nickname), timer });
    showTyping();
  }

  return {
    /** A presence or typing frame from the room's subscription. */
    receive(/** @type {PresenceFrame | TypingFrame} */ frame) {
      if (frame.type === "presence") showRoster(frame);
      else if (frame.type === "typing") startTyping(frame);
    },
    /** A message arrived: its author has stopped typing. */
    spoke(/** @type {{ user_id?: number }} */ message) {
      if (message.user_id !== undefined) stopTyping(Number(message.user_id));
    },
    /** This person changed the composer's text. */
    typed(/** @type {string} */ text) {
      const now = Date.now();
      if (!text.trim() || now - lastSent < TYPING_EVERY_MS) return;
      lastSent = now;
      sendTyping();
    },
    /** The connection dropped: whoever was typing is unknown now. */
    reset() {
      for (const userId of [...typing.keys()]) stopTyping(userId);
    },
  };
}

/** The header avatar of one user: the same initials and hue as their messages. */
function avatar(/** @type {PresentUser} */ user) {
  const span = document.createElement("span");
  span.className = "avatar";
  span.dataset.hue = String(((Number(user.id) % 12) + 12) % 12);
  span.textContent = initials(user.nickname);
  span.title = user.nickname;
  return span;
}

function countBadge(/** @type {number} */ count) {
  const span = document.createElement("span");
  span.className = "presence-count";
  span.textContent = String(count);
  return span;
}

/**
 * Up to two letters, as the server makes them for a message's avatar: the
 * first letters of the first two words, or the first two letters.
 * @param {string} nickname
 */
export function initials(nickname) {
  const words = String(nickname).split(/[^\p{L}\p{N}]+/u).filter(Boolean);
  const letters =
    words.length >= 2
      ? [...words[0]][0] + [...words[1]][0]
      : words.length === 1
        ? [...words[0]].slice(0, 2).join("")
        : [...String(nickname)].slice(0, 1).join("");
  return letters.toUpperCase();
}
