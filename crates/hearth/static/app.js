// Hearth's page script, native modules with no build step: the open room's
// live connection (js/cable.js), its message list with history paging
// (js/messages.js), and posting without a reload. Without JavaScript the
// page still reads, pages and posts through plain links and forms.

import { connectRoom } from "./js/cable.js";
import { MessageList } from "./js/messages.js";
import { localizeTimes } from "./js/times.js";

localizeTimes(document);
const list = document.getElementById("messages");
if (list) startRoom(list);

function startRoom(list) {
  const status = document.getElementById("connection-status");
  const messages = new MessageList(list, {
    roomId: Number(list.dataset.chatroomId),
    button: /** @type {HTMLButtonElement | null} */ (document.getElementById("new-messages")),
    onLive: () => cable.catchUp(),
  });
  messages.open();
  const cable = connectRoom({
    roomId: Number(list.dataset.chatroomId),
    onMessage: (message) => messages.receive(message, { mine: isMine(message) }),
    onState: (state, text) => {
      if (!status) return;
      status.dataset.state = state;
      status.textContent = text;
    },
    resumeFrom: () => messages.resumeFrom(),
  });
  const form = /** @type {HTMLFormElement | null} */ (document.getElementById("new-message"));
  const input = /** @type {HTMLInputElement | null} */ (document.getElementById("message-content"));
  if (form && input) interceptPosts(form, input, messages);
}

function isMine(message) {
  const me = document.body.dataset.userId;
  return me !== undefined && Number(me) === message.user_id;
}

/** Posts the composer with fetch; the answer is placed at once (the broadcast is then a duplicate, skipped). */
function interceptPosts(form, input, messages) {
  const errorBox = document.getElementById("composer-error");
  const showError = (text) => {
    if (!errorBox) return;
    errorBox.textContent = text;
    errorBox.hidden = !text;
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const content = input.value.trim();
    if (!content) return;
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        headers: { Accept: "application/json" },
        body: new URLSearchParams({ content }),
      });
      if (response.redirected) {
        location.assign(response.url);
        return;
      }
      if (response.status === 201) {
        const message = await response.json();
        if (!messages.live) await messages.jumpToLatest();
        messages.receive(message, { mine: true });
        input.value = "";
        showError("");
      } else {
        const body = await response.json().catch(() => ({}));
        showError(body.message || `Could not send (HTTP ${response.status})`);
      }
    } catch {
      showError("Could not send: the server is unreachable. Your message is still in the box.");
    } finally {
      if (button) button.disabled = false;
      input.focus();
    }
  });
}
