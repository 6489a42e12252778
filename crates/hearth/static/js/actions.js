// A message's actions: one action bar, moved to the message under the
// pointer (or focus, or a tap on a phone), with Link (copies the
// permalink), and for one's own messages Edit (in place) and Delete.
// ↑ in an empty composer edits one's last message. The server renders the
// bar and the edit form once in the page; the answers to edits and
// deletions, like their broadcasts, go through the message list.

/**
 * @param {object} options
 * @param {HTMLElement} options.list `#messages`
 * @param {number} options.roomId
 * @param {number} options.userId the signed-in user
 * @param {import("./messages.js").MessageList} options.messages
 */
export function startMessageActions({ list, roomId, userId, messages }) {
  const bar = document.getElementById("message-actions");
  const editTemplate = /** @type {HTMLTemplateElement | null} */ (document.getElementById("edit-message"));
  if (!bar || !editTemplate) return { editLast: () => false };
  const status = /** @type {HTMLElement} */ (bar.querySelector(".action-status"));
  /** @type {HTMLElement | null} */
  let current = null;

  const messageOf = (/** @type {EventTarget | null} */ target) =>
    /** @type {HTMLElement | null} */ (
      target instanceof Element ? target.closest("article.message[data-seq]:not(.editing)") : null
    );
  const show = (/** @type {HTMLElement | null} */ article) => {
    if (!article || article === current) return;
    current = article;
    status.textContent = "";
    const own = Number(article.dataset.userId) === userId;
    for (const button of bar.querySelectorAll("[data-action=edit], [data-action=delete]")) {
      /** @type {HTMLElement} */ (button).hidden = !own;
    }
    article.append(bar);
    bar.hidden = false;
  };
  const hide = () => {
    current = null;
    bar.hidden = true;
  };

  list.addEventListener("pointerover", (event) => {
    if (event.pointerType === "mouse") show(messageOf(event.target));
  });
  list.addEventListener("pointerleave", (event) => {
    if (event.pointerType === "mouse" && !bar.contains(document.activeElement)) hide();
  });
  list.addEventListener("focusin", (event) => show(messageOf(event.target)));
  // Touch has no hover: a tap on a message (not on its links) shows its bar.
  list.addEventListener("click", (event) => {
    const target = /** @type {Element} */ (event.target);
    if (target.closest("a, button, form")) return;
    const article = messageOf(target);
    if (article && article !== current) show(article);
  });
  list.addEventListener("message:replaced", (event) => {
    if (bar.isConnected && /** @type {Element} */ (event.target).contains(bar)) {
      current = /** @type {HTMLElement} */ (event.target);
    }
  });

  bar.addEventListener("click", async (event) => {
    const button = /** @type {HTMLElement} */ (event.target).closest("button[data-action]");
    if (!button || !current) return;
    const article = current;
    switch (/** @type {HTMLElement} */ (button).dataset.action) {
      case "link":
        return copyLink(article);
      case "edit":
        return edit(article);
      case "delete":
        return remove(article);
    }
  });

  async function copyLink(/** @type {HTMLElement} */ article) {
    const url = new URL(`/chatrooms/${roomId}?around=${article.dataset.seq}`, location.href).href;
    try {
      await navigator.clipboard.writeText(url);
      status.textContent = "Link copied";
    } catch {
      // No clipboard (an insecure origin, or refused): go to the link instead.
      location.href = url;
    }
  }

  /** Edits `article` in place; its text comes from the server as typed. */
  async function edit(/** @type {HTMLElement} */ article) {
    const content = article.querySelector(".content");
    if (!content || article.classList.contains("editing")) return;
    const raw = await rawText(article);
    if (raw === null) {
      status.textContent = "Could not load the message to edit it";
      return;
    }
    hide();
    const form = /** @type {HTMLFormElement} */ (
      /** @type {DocumentFragment} */ (editTemplate.content.cloneNode(true)).firstElementChild
    );
    const input = /** @type {HTMLTextAreaElement} */ (form.querySelector("textarea"));
    const failure = /** @type {HTMLElement} */ (form.querySelector(".failure"));
    input.value = raw;
    article.classList.add("editing");
    content.after(form);
    const fit = () => {
      input.style.height = "auto";
      input.style.height = `${input.scrollHeight}px`;
    };
    fit();
    input.addEventListener("input", fit);
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
    const close = () => {
      form.remove();
      article.classList.remove("editing");
      document.getElementById("message-content")?.focus();
    };
    form.querySelector(".cancel")?.addEventListener("click", close);
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") close();
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const answer = await send(article, "PATCH", { content: input.value });
      if (answer.ok) {
        close();
        messages.receive(answer.payload);
      } else {
        failure.textContent = answer.error;
        failure.hidden = false;
      }
    });
  }

  async function remove(/** @type {HTMLElement} */ article) {
    if (!confirm("Delete this message? This cannot be undone.")) return;
    const answer = await send(article, "DELETE");
    if (answer.ok) {
      hide();
      list.after(bar);
      messages.receive(answer.payload);
    } else {
      status.textContent = answer.error;
    }
  }

  /** The message's text as typed (the page shows it rendered). */
  async function rawText(/** @type {HTMLElement} */ article) {
    const url = `/chatrooms/${roomId}/messages?around=${article.dataset.seq}&limit=1`;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      if (!response.ok) return null;
      const page = await response.json();
      const id = Number(article.id.replace("message_", ""));
      return page.messages.find((/** @type {{ id: number }} */ m) => m.id === id)?.content ?? null;
    } catch {
      return null;
    }
  }

  /**
   * @param {HTMLElement} article
   * @param {"PATCH" | "DELETE"} method
   * @param {object} [body]
   */
  async function send(article, method, body) {
    const id = article.id.replace("message_", "");
    try {
      const response = await fetch(`/chatrooms/${roomId}/messages/${id}`, {
        method,
        headers: { Accept: "application/json", ...(body ? { "Content-Type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
      const json = await response.json().catch(() => null);
      if (response.ok && json) return { ok: true, payload: json, error: "" };
      const said = json?.messages?.join(" ") ?? json?.message;
      return { ok: false, payload: null, error: said || `That did not work (${response.status})` };
    } catch {
      return { ok: false, payload: null, error: "You are offline; try again when connected" };
    }
  }

  return {
    /** Edits the user's last message, if one is shown; says whether it did. */
    editLast() {
      const last = messages.lastOf(userId);
      if (!last) return false;
      edit(last);
      return true;
    },
  };
}
