// Hearth's page script, native modules with no build step: the open room's
// live connection (js/cable.js), its message list with history paging
// (js/messages.js), and the composer (js/composer.js). Without JavaScript the
// page still reads, pages and posts through plain links and forms.

import { connectRoom } from "./js/cable.js";
import { startComposer } from "./js/composer.js";
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
  const input = /** @type {HTMLTextAreaElement | null} */ (document.getElementById("message-content"));
  if (form && input) startComposer({ form, input, roomId: Number(list.dataset.chatroomId), messages });
}

function isMine(message) {
  const me = document.body.dataset.userId;
  return me !== undefined && Number(me) === message.user_id;
}
