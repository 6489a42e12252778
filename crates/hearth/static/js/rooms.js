// The sidebar's lists, live: a public room created anywhere appears at the
// top of the rooms; a private room or a conversation someone added you to
// appears in its list; one you left or were removed from disappears. The
// server renders each list item; this only places or removes it.

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
    const list = message.list === "direct" ? lists.direct : lists.rooms;
    if (!list || message.type !== "room" || !message.html) return;
    if (list.querySelector(`[data-room-id="${id}"]`)) return;
    const template = document.createElement("template");
    template.innerHTML = message.html.trim();
    const item = template.content.firstElementChild;
    if (item) list.prepend(item);
  };
}
