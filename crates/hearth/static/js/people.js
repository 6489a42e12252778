// Nickname suggestions for the inputs that name people (the "New message"
// form, a room's invitation): as the last name typed grows, ask
// `/users?prefix=` and offer what it answers in the input's datalist.

const WAIT_MS = 150;

/**
 * Suggests nicknames for every `input[list="nickname-suggestions"]`.
 * @param {ParentNode} root
 */
export function startNicknameSuggestions(root = document) {
  const datalist = root.querySelector("#nickname-suggestions");
  if (!datalist) return;
  for (const input of root.querySelectorAll('input[list="nickname-suggestions"]')) {
    let timer = 0;
    let asked = "";
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        // The name being typed is the last one; the rest stay as they are.
        const parts = input.value.split(/[\s,]+/);
        const prefix = (parts.pop() ?? "").replace(/^@/, "");
        if (!prefix || prefix === asked) return;
        asked = prefix;
        const response = await fetch(`/users?prefix=${encodeURIComponent(prefix)}`, { headers: { Accept: "application/json" } });
        if (!response.ok) return;
        /** @type {{ nickname: string }[]} */
        const people = await response.json();
        const head = parts.length ? `${parts.join(", ")}, ` : "";
        datalist.replaceChildren(
          ...people.map((person) => {
            const option = document.createElement("option");
            option.value = head + person.nickname;
            return option;
          }),
        );
      }, WAIT_MS);
    });
  }
}

/**
 * A person's name on a message opens a small menu: message them (their
 * conversation, found again or started) or mention them in the composer.
 * Without JavaScript the name is plain text; the member list links them.
 * @param {HTMLElement} list `#messages`
 * @param {HTMLTextAreaElement | null} input the composer's textarea
 */
export function startPersonMenu(list, input) {
  const me = document.body.dataset.nickname;
  const menu = document.createElement("div");
  menu.className = "person-menu";
  menu.setAttribute("role", "menu");
  menu.hidden = true;
  document.body.append(menu);
  const close = () => {
    menu.hidden = true;
  };
  list.addEventListener("click", (event) => {
    const name = /** @type {HTMLElement} */ (event.target).closest?.(".message .nickname");
    if (!name) return;
    const nickname = name.textContent?.trim() ?? "";
    if (!nickname) return;
    event.stopPropagation();
    const message = document.createElement("a");
    message.href = `/dm/${encodeURIComponent(nickname)}`;
    message.setAttribute("role", "menuitem");
    message.textContent = nickname.toLowerCase() === me ? "Your notes (a conversation with yourself)" : `Message ${nickname}`;
    const mention = document.createElement("button");
    mention.type = "button";
    mention.className = "link";
    mention.setAttribute("role", "menuitem");
    mention.textContent = `Mention @${nickname}`;
    mention.addEventListener("click", () => {
      close();
      if (!input) return;
      const gap = input.value && !/\s$/.test(input.value) ? " " : "";
      input.value = `${input.value}${gap}@${nickname} `;
      input.dispatchEvent(new Event("input", { bubbles: true }));
      input.focus();
    });
    menu.replaceChildren(message, mention);
    const box = name.getBoundingClientRect();
    menu.style.left = `${Math.min(box.left, window.innerWidth - 240)}px`;
    menu.style.top = `${box.bottom + 4}px`;
    menu.hidden = false;
    message.focus();
  });
  document.addEventListener("click", (event) => {
    if (!menu.contains(/** @type {Node} */ (event.target))) close();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close();
  });
  list.addEventListener("scroll", close, { passive: true });
}
