// Times are rendered in UTC by the server; show them in the reader's zone.

/** Rewrites every `<time datetime>` under `root` in the reader's time zone. */
export function localizeTimes(root) {
  for (const time of root.querySelectorAll("time[datetime]")) {
    const date = new Date(time.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) continue;
    // A clock time in a room (its day divider gives the date); elsewhere both.
    time.textContent =
      time.dataset.format === "datetime"
        ? date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" })
        : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    time.title = date.toLocaleString();
  }
}
