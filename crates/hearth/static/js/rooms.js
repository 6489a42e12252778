// The sidebar's lists, live: a public room created anywhere appears at the
// top of the rooms; a private room or a conversation someone added you to
// appears in its list; one you left or were removed from, or that was
// archived, disappears; a renamed one changes its name (and, if it is the
// open room, its header and the tab's title). The server renders each new
// list item; this only places, renames or removes it.

/**
 * What to do with a message of the `RoomsChannel` (the `rooms` stream and
 * the user's own).
 * @param {{ rooms: HTMLElement | null, direct: HTMLElement | null }} lists
 *   `#room-list` and `#direct-list`
 * @returns {(message: { type?: string, id?: number, list?: string, html?: string }) => void}
 */
export function roomListUpdater(lists) {
  return (message) => {
    const id = Number(message.id);
    if (message.type === "room_removed") {
      for (const list of [lists.rooms, lists.direct]) list?.querySelector(`[data-room-id="${id}"]`)?.remove();
      return;
    }
    if (message.type === "room_renamed") {
      renamed(lists, id, /** @type {{ name: string, topic: string, sigil: string }} */ (/** @type {unknown} */ (message)));
      return;
    }
    const list = message.list === "direct" ? lists.direct : lists.rooms;
    if (!list || message.type !== "room" || !message.html) return;
    if (list.querySelector(`[data-room-id="${id}"]`)) return;
    const template = document.createElement("template");
    template.innerHTML = message.html.trim();
    const item = template.content.firstElementChild;
    if (item) list.prepend(item);
  };
}

/**
 * Shows room `id`'s new name and topic wherever the page shows them.
 * @param {{ rooms: HTMLElement | null }} lists
 * @param {number} id
 * @param {{ name: string, topic: string, sigil: string }} room
 */
function renamed(lists, id, room) {
  const title = `${room.sigil} ${room.name}`;
  const item = lists.rooms?.querySelector(`[data-room-id="${id}"]`);
  const name = item?.querySelector(".room-name");
  if (name) name.textContent = title;
  item?.querySelector("a")?.setAttribute("title", title);
  const open = document.getElementById("messages");
  if (Number(open?.dataset.chatroomId) !== id) return;
  if (open) open.dataset.roomName = room.name;
  const heading = document.querySelector(".room-header h1");
  const old = heading?.textContent ?? "";
  if (heading) {
    heading.textContent = title;
    heading.setAttribute("title", title);
  }
  document.title = document.title.replace(old, title);
  const input = document.getElementById("message-content");
  input?.setAttribute("placeholder", `Message ${title}`);
  let topic = document.querySelector(".room-topic");
  if (!room.topic) {
    topic?.remove();
    return;
  }
  if (!topic) {
    topic = document.createElement("p");
    topic.className = "room-topic";
    heading?.after(topic);
  }
  topic.textContent = room.topic;
  topic.setAttribute("title", room.topic);
}

/**
 * What to do with the reader's own stream's `online` messages: someone they
 * share a conversation with opened their first page or closed their last.
 * Each conversation's item keeps which of its other members are online
 * (`data-online`); its dot is filled while one is.
 * @param {{ type?: string, user?: number, online?: boolean }} message
 */
export function applyOnline(message) {
  if (message.type !== "online") return;
  const user = String(Number(message.user));
  for (const item of document.querySelectorAll(`#direct-list li[data-members~="${user}"]`)) {
    const online = new Set((/** @type {HTMLElement} */ (item).dataset.online ?? "").split(" ").filter(Boolean));
    if (message.online) online.add(user);
    else online.delete(user);
    /** @type {HTMLElement} */ (item).dataset.online = [...online].join(" ");
    const label = item.querySelector(".presence-label");
    if (label) label.textContent = online.size > 0 ? " (online)" : "";
  }
}
