"use strict";
// Sorting and filtering of the leaderboard tables. Rows are moved as DOM nodes and the only
// text written is through textContent: record data never passes through innerHTML.
(() => {
  const sortKey = (row, column) => {
    const cell = row.cells[column];
    if (!cell) return null;
    if (cell.hasAttribute("data-sort")) {
      const raw = cell.getAttribute("data-sort");
      return raw === "" ? null : Number(raw);
    }
    const text = cell.textContent.trim();
    return text === "" || text === "\u2014" ? null : text;
  };

  const compare = (a, b) =>
    typeof a === "number" && typeof b === "number"
      ? a - b
      : String(a).localeCompare(String(b), undefined, { numeric: true, sensitivity: "base" });

  const sortBy = (header) => {
    const body = header.closest("table").tBodies[0];
    const ascending = header.getAttribute("aria-sort") !== "ascending";
    const rows = Array.from(body.rows, (row, index) => ({ row, index, key: sortKey(row, header.cellIndex) }));
    rows.sort((x, y) => {
      if (x.key === null || y.key === null) {
        // Unmeasured cells go last in both directions: "no latency" is not "fastest".
        return x.key === y.key ? x.index - y.index : x.key === null ? 1 : -1;
      }
      return (ascending ? 1 : -1) * compare(x.key, y.key) || x.index - y.index;
    });
    for (const { row } of rows) body.appendChild(row);
    for (const cell of header.parentElement.cells) cell.removeAttribute("aria-sort");
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  };

  document.addEventListener("DOMContentLoaded", () => {
    for (const button of document.querySelectorAll("table.sortable th button")) {
      button.addEventListener("click", () => sortBy(button.closest("th")));
    }
    const controls = document.querySelector(".controls");
    if (!controls) return;
    const query = controls.querySelector("input[type=search]");
    const hideRandom = controls.querySelector("input[type=checkbox]");
    const shown = controls.querySelector("output");
    const apply = () => {
      const terms = query.value.toLowerCase().split(/\s+/).filter(Boolean);
      let visible = 0;
      let total = 0;
      for (const row of document.querySelectorAll("table.sortable tbody tr")) {
        const text = row.textContent.toLowerCase();
        row.hidden = !terms.every((term) => text.includes(term)) || (hideRandom.checked && row.hasAttribute("data-random-init"));
        if (row.closest("table.runs")) {
          total += 1;
          if (!row.hidden) visible += 1;
        }
      }
      shown.textContent = `showing ${visible} of ${total} runs`;
    };
    query.addEventListener("input", apply);
    hideRandom.addEventListener("change", apply);
    controls.hidden = false;
    apply();
  });
})();
