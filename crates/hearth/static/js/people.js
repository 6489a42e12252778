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
