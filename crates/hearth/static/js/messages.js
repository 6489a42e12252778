// The message list: messages placed by their room `seq` and never twice,
// edits and deletions applied where the message is shown, history loaded a
// page at a time as the reader reaches either end, at most MAX_KEPT
// messages kept in the page, and the "new messages" button.
//
// A room's `seq` counts posts, edits and deletions alike (an edit takes the
// next number; the message keeps its own), so the newest `seq` seen, not
// the newest message's, is where a reconnect catches up from.
//
// The server renders every message (the `html` of each payload); this
// module only places, trims and scrolls. Pages come from
// `GET /chatrooms/<id>/messages` by `seq`, which never skips or repeats.

import { arrange } from "./arrange.js";
import { localizeTimes } from "./times.js";

/** Messages kept in the page; past it (and a leeway) the far end is dropped. */
const MAX_KEPT = 300;
const LEEWAY = 40;
/** Messages fetched per page. */
const PAGE = 50;
/** How close to the bottom counts as "at the bottom". */
const NEAR_BOTTOM_PX = 80;

export class MessageList {
  /**
   * @param {HTMLElement} list `#messages`
   * @param {object} options
   * @param {number} options.roomId
   * @param {HTMLButtonElement | null} options.button the "new messages" button
   * @param {() => void} options.onLive called when the list reaches the room's newest message again
   */
  constructor(list, { roomId, button, onLive }) {
    this.list = list;
    this.roomId = roomId;
    this.button = button;
    this.onLive = onLive;
    /** Whether the room's newest message is in the list (no gap below). */
    this.live = list.dataset.moreAfter !== "true";
    /** Messages that arrived while the reader could not see them. */
    this.unseen = 0;
    /** The newest place in the room's sequence applied here, while live. */
    this.lastEvent = this.live ? Number(list.dataset.lastSeq ?? 0) : 0;
    this.loading = false;
    this.observer = new IntersectionObserver((entries) => this.#reached(entries), { root: list });
    this.#observeEnds();
    list.addEventListener("scroll", () => {
      if (this.live && this.#nearBottom()) this.#setUnseen(0);
    });
    button?.addEventListener("click", () => this.jumpToLatest());
    this.#setUnseen(0);
    arrange(list);
  }

  /** The newest `seq` in the list, for catching up; `null` away from the live end. */
  resumeFrom() {
    return this.live ? Math.max(this.lastEvent, this.#lastSeq()) : null;
  }

  /** Whether the reader sees the room's newest message: live, scrolled to the bottom. */
  atLiveEnd() {
    return this.live && this.#nearBottom();
  }

  /** Opens at the linked message (a permalink) or at the bottom. */
  open() {
    const linked = document.getElementById("linked");
    if (linked) linked.scrollIntoView({ block: "center" });
    else this.scrollToBottom();
  }

  scrollToBottom() {
    this.list.scrollTop = this.list.scrollHeight;
  }

  /**
   * A payload from the cable or from an answer of the server: a new
   * message (`type` "message"), an edit ("message_edited") or a deletion
   * ("message_deleted").
   * @param {{ type?: string, id: number, seq: number, user_id?: number, html?: string, client_id?: string }} message
   * @param {{ mine?: boolean }} [how]
   */
  receive(message, { mine = false } = {}) {
    if (this.live && message.seq > this.lastEvent) this.lastEvent = message.seq;
    if (message.type === "message_edited") return this.#replace(message);
    if (message.type === "message_deleted") return this.#remove(message);
    if (message.type !== "message" || typeof message.html !== "string") return;
    // The stored copy of a message this page shows as pending replaces it.
    if (message.client_id) {
      for (const pending of this.list.querySelectorAll("article.pending")) {
        if (/** @type {HTMLElement} */ (pending).dataset.clientId === message.client_id) pending.remove();
      }
    }
    if (!this.live) {
      // Below what is shown lies a gap: count it, show it on the way down.
      if (!mine) this.#setUnseen(this.unseen + 1);
      return;
    }
    const shown = document.getElementById(`message_${message.id}`);
    if (shown) {
      // Catching up may bring a message already shown, edited since.
      if (message.edited_at) this.#replace(message);
      return;
    }
    const follow = mine || this.#nearBottom();
    this.#place(message);
    arrange(this.list);
    if (follow) {
      this.scrollToBottom();
      this.#trim("top");
    } else {
      this.#setUnseen(this.unseen + 1);
    }
  }

  /**
   * Shows a message being sent, at the end of the live list.
   * @param {HTMLElement} element
   */
  async addPending(element) {
    if (!this.live) await this.jumpToLatest();
    if (!element.isConnected) {
      this.list.querySelector(".empty-room")?.remove();
      this.list.append(element);
    }
    this.scrollToBottom();
  }

  /** The last message of `userId` shown, not pending. */
  lastOf(userId) {
    return [...this.#messages()].findLast((m) => Number(m.dataset.userId) === userId) ?? null;
  }

  /** Replaces the list with the newest page and follows it again. */
  async jumpToLatest() {
    const page = await this.#fetch({});
    if (!page) return;
    this.lastEvent = Math.max(this.lastEvent, page.last_seq ?? 0);
    const pending = [...this.list.querySelectorAll("article.pending")];
    this.list.replaceChildren();
    this.#setOlderLink(page.more_before ? page.messages[0]?.seq : null);
    for (const message of page.messages) this.#place(message);
    this.list.append(...pending);
    arrange(this.list);
    this.live = true;
    this.#setUnseen(0);
    this.#observeEnds();
    this.scrollToBottom();
    this.onLive();
  }

  // Internal

  #messages() {
    return this.list.querySelectorAll("article.message[data-seq]");
  }

  #firstSeq() {
    return Number(this.#messages()[0]?.dataset.seq ?? 0);
  }

  #lastSeq() {
    const all = this.#messages();
    return Number(all[all.length - 1]?.dataset.seq ?? 0);
  }

  #nearBottom() {
    const list = this.list;
    return list.scrollHeight - list.scrollTop - list.clientHeight < NEAR_BOTTOM_PX;
  }

  #setUnseen(count) {
    this.unseen = count;
    if (!this.button) return;
    const show = count > 0 || !this.live;
    this.button.hidden = !show;
    this.button.textContent =
      count > 0 ? `${count} new message${count === 1 ? "" : "s"} ↓` : "Jump to the latest ↓";
  }

  /** The element of `message`, placed by `seq` among those shown. */
  #place(message) {
    const template = document.createElement("template");
    template.innerHTML = message.html.trim();
    const element = template.content.firstElementChild;
    if (!element || document.getElementById(element.id)) return;
    this.list.querySelector(".empty-room")?.remove();
    const all = [...this.#messages()];
    let before = all.findLast((m) => Number(m.dataset.seq) < message.seq);
    if (before) this.#outer(before).after(element);
    else {
      const top = this.list.querySelector(".history-link.older, .history-start");
      if (top) top.after(element);
      else this.list.prepend(element);
    }
    localizeTimes(element);
  }

  /** Shows the edited message in place of the old one, where it is shown. */
  #replace(message) {
    const old = document.getElementById(`message_${message.id}`);
    if (!old || !message.html) return;
    const template = document.createElement("template");
    template.innerHTML = message.html.trim();
    const element = template.content.firstElementChild;
    if (!element) return;
    // Whatever the page added to the message (its action bar) moves along.
    for (const added of old.querySelectorAll(":scope > .message-actions")) element.append(added);
    this.#keepPosition(() => {
      old.replaceWith(element);
      localizeTimes(element);
      arrange(this.list);
    }, this.#isAbove(old));
    element.dispatchEvent(new CustomEvent("message:replaced", { bubbles: true }));
  }

  /** Takes a deleted message out of the list, where it is shown. */
  #remove(message) {
    const old = document.getElementById(`message_${message.id}`);
    if (!old) return;
    for (const added of old.querySelectorAll(":scope > .message-actions")) this.list.after(added);
    this.#keepPosition(() => {
      this.#outer(old).remove();
      arrange(this.list);
    }, this.#isAbove(old));
  }

  /** Whether `element` lies above what the reader sees (its changes must not move the view). */
  #isAbove(element) {
    return element.getBoundingClientRect().bottom <= this.list.getBoundingClientRect().top;
  }

  /** The list's child holding `article` (a permalink wraps it). */
  #outer(article) {
    return article.parentElement === this.list ? article : article.parentElement;
  }

  /** Watches the links at either end: reaching one loads the next page. */
  #observeEnds() {
    this.observer.disconnect();
    for (const link of this.list.querySelectorAll(".history-link.older, .history-link.newer")) {
      this.observer.observe(link);
    }
  }

  #reached(entries) {
    for (const entry of entries) {
      if (!entry.isIntersecting || this.loading) continue;
      if (entry.target.classList.contains("older")) this.#loadOlder();
      else if (entry.target.classList.contains("newer")) this.#loadNewer();
    }
  }

  async #fetch(query) {
    const url = new URL(`/chatrooms/${this.roomId}/messages`, location.href);
    url.searchParams.set("limit", String(PAGE));
    url.searchParams.set("format", "html");
    for (const [key, value] of Object.entries(query)) url.searchParams.set(key, String(value));
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      return response.ok ? await response.json() : null;
    } catch {
      return null;
    }
  }

  async #loadOlder() {
    this.loading = true;
    try {
      const page = await this.#fetch({ before: this.#firstSeq() });
      if (!page) return;
      this.#keepPosition(() => {
        for (const message of page.messages) this.#place(message);
        this.#setOlderLink(page.more_before ? page.messages[0]?.seq : null);
        arrange(this.list);
      });
      this.#trim("bottom");
    } finally {
      this.loading = false;
      this.#observeEnds();
    }
  }

  async #loadNewer() {
    this.loading = true;
    try {
      const page = await this.#fetch({ after: this.#lastSeq() });
      if (!page) return;
      for (const message of page.messages) this.#place(message);
      this.#setNewerLink(page.more_after ? page.messages.at(-1)?.seq : null);
      arrange(this.list);
      this.#trim("top");
      if (!page.more_after) {
        this.lastEvent = Math.max(this.lastEvent, page.last_seq ?? 0);
        this.live = true;
        this.#setUnseen(0);
        this.onLive();
      }
    } finally {
      this.loading = false;
      this.#observeEnds();
    }
  }

  /** Drops messages from one end past MAX_KEPT, keeping what the reader sees in place. */
  #trim(end) {
    const all = [...this.#messages()];
    const excess = all.length - MAX_KEPT;
    if (excess <= LEEWAY) return;
    const doomed = end === "top" ? all.slice(0, excess) : all.slice(-excess);
    this.#keepPosition(() => {
      for (const article of doomed) this.#outer(article).remove();
      if (end === "top") this.#setOlderLink(this.#firstSeq());
      else {
        this.live = false;
        this.#setNewerLink(this.#lastSeq());
        this.#setUnseen(this.unseen);
      }
      arrange(this.list);
    }, end === "top");
    this.#observeEnds();
  }

  /** Runs `change`; content added or removed above the view does not move it. */
  #keepPosition(change, above = true) {
    const { scrollTop, scrollHeight } = this.list;
    change();
    this.list.scrollTop = above ? scrollTop + (this.list.scrollHeight - scrollHeight) : scrollTop;
  }

  #setOlderLink(seq) {
    let link = this.list.querySelector(".history-link.older");
    this.#setStart(!seq);
    if (!seq) return link?.remove();
    if (!link) {
      link = this.#link("older", "Older messages", "prev");
      this.list.prepend(link);
    }
    link.href = `/chatrooms/${this.roomId}?before=${seq}`;
  }

  #setNewerLink(seq) {
    let link = this.list.querySelector(".history-link.newer");
    if (!seq) {
      link?.remove();
      this.list.querySelector(".history-link.latest")?.remove();
      return;
    }
    if (!link) {
      link = this.#link("newer", "Newer messages", "next");
      const latest = this.list.querySelector(".history-link.latest");
      if (latest) latest.before(link);
      else this.list.append(link);
    }
    link.href = `/chatrooms/${this.roomId}?after=${seq}`;
  }

  /** Shows "This is the start of #room" above the first message, or not. */
  #setStart(shown) {
    let start = this.list.querySelector(".history-start");
    if (!shown || !this.#messages().length) return start?.remove();
    if (start) return;
    start = document.createElement("p");
    start.className = "history-start";
    const name = document.createElement("strong");
    name.textContent = `# ${this.list.dataset.roomName ?? ""}`;
    start.append("This is the start of ", name, ".");
    this.list.prepend(start);
  }

  #link(kind, text, rel) {
    const link = document.createElement("a");
    link.className = `history-link ${kind}`;
    link.rel = rel;
    link.textContent = text;
    return link;
  }
}
