// Hearth's page script, native modules with no build step: the open room's
// live connection (js/cable.js), its message list with history paging
// (js/messages.js), the composer (js/composer.js), each message's actions:
// link, edit, delete (js/actions.js), and who is here and typing
// (js/presence.js), the sidebar's live lists (js/rooms.js), the read
// cursor and unread badges (js/unread.js), nickname suggestions
// (js/people.js), `@` completion in the composer (js/mention-picker.js),
// and browser notifications and mentions of the reader (js/notify.js).
// Without JavaScript the page still reads, pages and posts through plain
// links and forms.

import { startMessageActions } from "./js/actions.js";
import { connectRoom } from "./js/cable.js";
import { startComposer } from "./js/composer.js";
import { MessageList } from "./js/messages.js";
import { startPresence } from "./js/presence.js";
import { startMentionPicker } from "./js/mention-picker.js";
import { markMentionsOf, mentionsReader, notifyActivity, startNotificationButtons, startNotifyForm } from "./js/notify.js";
import { startNicknameSuggestions, startPersonMenu } from "./js/people.js";
import { applyOnline, roomListUpdater } from "./js/rooms.js";
import { applyActivity, applyNotify, applyRead, showTotal, startReadCursor } from "./js/unread.js";
import { localizeTimes } from "./js/times.js";

localizeTimes(document);
const list = document.getElementById("messages");
if (list) startRoom(list);
startDrawer();
startNicknameSuggestions();
showTotal();
markMentionsOf(document.body.dataset.nickname);
startNotificationButtons();
if (document.getElementById("directory")) import("./js/directory.js").then(({ startDirectory }) => startDirectory());

function startRoom(list) {
  const status = document.getElementById("connection-status");
  const messages = new MessageList(list, {
    roomId: Number(list.dataset.chatroomId),
    button: /** @type {HTMLButtonElement | null} */ (document.getElementById("new-messages")),
    onLive: () => cable.catchUp(),
  });
  messages.open();
  const reading = list.dataset.lastRead === undefined ? null : startReadCursor({ roomId: Number(list.dataset.chatroomId), list, messages, lastRead: Number(list.dataset.lastRead) });
  const banner = offlineBanner(() => cable.retryNow());
  const me = document.body.dataset.userId;
  const presence = startPresence({
    roster: document.getElementById("presence"),
    line: document.getElementById("typing"),
    me: me === undefined ? null : Number(me),
    sendTyping: () => cable.perform("typing"),
  });
  const open = {
    roomId: Number(list.dataset.chatroomId),
    seeing: () => document.visibilityState === "visible" && messages.atLiveEnd(),
  };
  const cable = connectRoom({
    roomId: Number(list.dataset.chatroomId),
    onMessage: (message) => {
      // The server sends no `activity` for the open room to this page: its
      // messages count as unread, and notify, from here.
      const fresh = message.type === "message" && !isMine(message) && !document.getElementById(`message_${message.id}`);
      presence.spoke(message);
      messages.receive(message, { mine: isMine(message) });
      reading?.check();
      if (fresh) {
        const activity = { type: "activity", id: open.roomId, seq: message.seq, mention: mentionsReader(message.html) };
        applyActivity(activity, open);
        notifyActivity(activity);
      }
    },
    presence: true,
    // Presence and typing frames carry no seq and never reach the message list.
    onEvent: (event) => {
      if (event.type === "presence" || event.type === "typing") presence.receive(event);
    },
    onSubscribed: () => cable.perform("presence"),
    onState: (state, text, retryAt) => {
      if (state !== "online") presence.reset();
      if (status) {
        status.dataset.state = state;
        status.textContent = text;
      }
      banner.show(state, text, retryAt);
    },
    resumeFrom: () => messages.resumeFrom(),
    also: [
      {
        channel: "RoomsChannel",
        onMessage: (() => {
          const update = roomListUpdater({ rooms: document.getElementById("room-list"), direct: document.getElementById("direct-list") });
          return (message) => {
            update(message);
            applyOnline(message);
            applyRead(message);
            applyNotify(message);
            applyActivity(message, open);
            notifyActivity(message);
          };
        })(),
      },
    ],
  });
  const form = /** @type {HTMLFormElement | null} */ (document.getElementById("new-message"));
  const input = /** @type {HTMLTextAreaElement | null} */ (document.getElementById("message-content"));
  const actions = startMessageActions({
    list,
    roomId: Number(list.dataset.chatroomId),
    userId: Number(document.body.dataset.userId),
    messages,
  });
  startNotifyForm(/** @type {HTMLFormElement | null} */ (document.getElementById("notify-form")));
  // An empty room's "Invite someone" opens the members panel at its form.
  list.addEventListener("click", (event) => {
    const link = /** @type {Element} */ (event.target).closest?.("[data-open-members]");
    const panel = /** @type {HTMLDetailsElement | null} */ (document.getElementById("members"));
    if (!link || !panel) return;
    event.preventDefault();
    panel.open = true;
    /** @type {HTMLInputElement | null} */ (panel.querySelector(".invite input[name=nickname]"))?.focus();
  });
  startPersonMenu(list, input);
  if (form && input) {
    startMentionPicker(input);
    startComposer({ form, input, roomId: Number(list.dataset.chatroomId), messages, editLast: actions.editLast });
    input.addEventListener("input", () => presence.typed(input.value));
  }
}

/**
 * The offline banner: says the page is offline, counts down to the next
 * try, and offers to try now; says why when the page will not retry.
 * @param {() => void} retryNow
 */
function offlineBanner(retryNow) {
  const banner = document.getElementById("offline-banner");
  const text = document.getElementById("offline-text");
  const retry = document.getElementById("retry-now");
  retry?.addEventListener("click", retryNow);
  let ticker = 0;
  return {
    /**
     * @param {string} state "online", "connecting" or "offline"
     * @param {string} reason what the connection says
     * @param {number} [retryAt] when the next try is due, if one is
     */
    show(state, reason, retryAt) {
      clearInterval(ticker);
      if (!banner || !text || !retry) return;
      if (state === "online") {
        banner.hidden = true;
        return;
      }
      if (state === "connecting") {
        if (!banner.hidden) text.textContent = "Reconnecting…";
        return;
      }
      banner.hidden = false;
      retry.hidden = retryAt === undefined;
      if (retryAt === undefined) {
        text.textContent = reason;
        return;
      }
      const tick = () => {
        const seconds = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
        text.textContent = `You are offline. Reconnecting in ${seconds} s…`;
      };
      tick();
      ticker = setInterval(tick, 250);
    },
  };
}

/** On a phone, the header's ☰ opens the room list as a drawer (a link to /chatrooms without JavaScript). */
function startDrawer() {
  const toggle = document.getElementById("rooms-toggle");
  if (!toggle) return;
  const close = () => {
    document.body.classList.remove("drawer-open");
    toggle.setAttribute("aria-expanded", "false");
  };
  toggle.addEventListener("click", (event) => {
    event.preventDefault();
    const open = document.body.classList.toggle("drawer-open");
    toggle.setAttribute("aria-expanded", String(open));
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close();
  });
  document.querySelector(".room")?.addEventListener("click", (event) => {
    if (event.target !== toggle && !toggle.contains(/** @type {Node} */ (event.target))) close();
  });
}

function isMine(message) {
  const me = document.body.dataset.userId;
  return me !== undefined && Number(me) === message.user_id;
}
