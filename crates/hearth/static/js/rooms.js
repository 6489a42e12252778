// The room list, live: a room created anywhere appears at the top of the
// sidebar (the server renders its list item; this only places it).

/**
 * What to do with an announcement of the `RoomsChannel`.
 * @param {HTMLElement | null} list `#room-list`
 * @returns {(message: { type?: string, id?: number, html?: string }) => void}
 */
export function roomListUpdater(list) {
  return (message) => {
    if (!list || message.type !== "room" || !message.html) return;
    if (list.querySelector(`[data-room-id="${Number(message.id)}"]`)) return;
    const template = document.createElement("template");
    template.innerHTML = message.html.trim();
    const item = template.content.firstElementChild;
    if (item) list.prepend(item);
  };
}
